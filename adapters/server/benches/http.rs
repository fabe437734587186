//! HTTP throughput (issue 5): start-instance and complete-task over loopback against the real
//! router on durable SQLite (WAL, synchronous=FULL), 64 concurrent keep-alive clients.
//!
//! Run: `cargo bench -p reglament-server --bench http -- [--seconds N] [--clients N]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reglament_engine::runtime::Env;
use reglament_server::clock::Clock;
use reglament_server::driver::{DriverConfig, Runtime};
use reglament_store::Store;

#[path = "support/conn.rs"]
mod conn;
use conn::Conn;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let seconds = arg("--seconds", 10) as f64;
    let clients = arg("--clients", 64) as usize;
    let dir = std::env::temp_dir().join(format!("reglament-http-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.join("http.db").display()), 16).await.unwrap();
    let token = reglament_server::accounts::add_with_token(
        &store,
        reglament_store::auth::UserRecord {
            login: "bench".into(),
            name: None,
            email: "bench@example.org".into(),
            groups: vec!["reviewers".into()],
            disabled: false,
            created_at: chrono::Utc::now(),
        },
        "bench",
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let settings = reglament_server::settings::Settings::defaults();
    let rt = Runtime::start(store.clone(), Env::default(), DriverConfig::from_settings(&settings, Clock::system()))
        .await
        .unwrap();
    let workload =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench/workloads/b_user_task.bpmn");
    rt.deploy(&std::fs::read(workload).unwrap(), None).await.unwrap();
    let app = reglament_server::http::router(reglament_server::http::AppState::new(rt, "http://127.0.0.1"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    println!(
        "machine: {} cores; SQLite WAL synchronous=FULL; {clients} keep-alive clients; {seconds} s per phase",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    // Phase 1: starts. Phase 2: completions of the tasks the starts created.
    let started = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs_f64(seconds);
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (addr, token, started, count) = (addr.clone(), token.clone(), started.clone(), count.clone());
        handles.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr, &token).await;
            while Instant::now() < stop {
                let (status, body) =
                    conn.post("/api/process-instances", r#"{"definitionKey":"b_user_task","variables":{}}"#).await;
                assert_eq!(status, 201, "{body}");
                let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
                started.lock().unwrap().push(format!("{}.2", doc["id"].as_str().unwrap()));
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    println!("start-instance: {:.0} requests/s (target ≥ 3,000)", count.load(Ordering::Relaxed) as f64 / seconds);

    let tasks: Vec<String> = std::mem::take(&mut *started.lock().unwrap());
    let tasks = Arc::new(std::sync::Mutex::new(tasks));
    let count = Arc::new(AtomicU64::new(0));
    let begin = Instant::now();
    let stop = begin + Duration::from_secs_f64(seconds);
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (addr, token, tasks, count) = (addr.clone(), token.clone(), tasks.clone(), count.clone());
        handles.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr, &token).await;
            while Instant::now() < stop {
                let Some(task) = tasks.lock().unwrap().pop() else { break };
                let (status, body) =
                    conn.post(&format!("/api/tasks/{task}/complete"), r#"{"variables":{"decision":"approve"}}"#).await;
                assert_eq!(status, 200, "{body}");
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let took = begin.elapsed().as_secs_f64().min(seconds);
    println!("complete-task: {:.0} requests/s (target ≥ 3,000)", count.load(Ordering::Relaxed) as f64 / took);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
