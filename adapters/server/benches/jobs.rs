//! Job throughput of external workers (issue 17): activate + complete through the `/v2` job
//! API over loopback, 16 concurrent keep-alive workers, on durable SQLite (WAL,
//! synchronous=FULL) or PostgreSQL. The jobs are created beforehand (one instance each) and
//! are not counted.
//!
//! Run: `cargo bench -p reglament-server --bench jobs -- [--jobs N] [--workers N] [--batch N]
//! [--parallel N] [--postgres URL]` (PostgreSQL: a database the bench may fill, e.g.
//! `postgres://postgres@127.0.0.1:5432/bench_jobs`, created if missing).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use reglament_engine::runtime::Env;
use reglament_server::clock::Clock;
use reglament_server::driver::{DriverConfig, Op, Runtime};
use reglament_store::Store;

const MODEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d" targetNamespace="urn:bench">
  <bpmn:process id="bench_jobs" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
    <bpmn:serviceTask id="work"><bpmn:extensionElements><zeebe:taskDefinition type="bench" /></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>"#;

#[path = "support/conn.rs"]
mod conn;
use conn::Conn;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let number = |name: &str, default: u64| value(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    let jobs = number("--jobs", 20_000);
    let workers = number("--workers", 16) as usize;
    let batch = number("--batch", 32);
    let parallel = number("--parallel", 8).max(1) as usize;
    let dir = std::env::temp_dir().join(format!("reglament-jobs-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (url, backend) = match value("--postgres") {
        Some(url) => {
            let (base, name) = url.rsplit_once('/').expect("a database name in the URL");
            let mut admin =
                <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{base}/postgres")).await.unwrap();
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&mut admin).await;
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
            (url.clone(), "PostgreSQL")
        }
        None => (format!("sqlite://{}", dir.join("jobs.db").display()), "SQLite WAL synchronous=FULL"),
    };
    let store = Store::connect(&url, 16).await.unwrap();
    let token = reglament_server::accounts::add_with_token(
        &store,
        reglament_store::auth::UserRecord {
            login: "bench".into(),
            name: None,
            email: "bench@example.org".into(),
            groups: vec!["job-workers".into()],
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
    rt.deploy(MODEL.as_bytes(), None).await.unwrap();
    // The jobs, created by starts through the driver (not measured).
    let mut handles = Vec::new();
    for chunk in 0..64u64 {
        let rt = rt.clone();
        handles.push(tokio::spawn(async move {
            for _ in (chunk..jobs).step_by(64) {
                let op = Op::Start {
                    definition: "bench_jobs".into(),
                    business_key: None,
                    variables: Default::default(),
                    start_event: None,
                    by: None,
                };
                rt.submit(op).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let app = reglament_server::http::router(reglament_server::http::AppState::new(rt, "http://127.0.0.1"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    println!(
        "machine: {} cores; {backend}; {jobs} jobs; {workers} workers activating {batch} at a time, completing {parallel} at once each",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let done = Arc::new(AtomicU64::new(0));
    let begin = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let (addr, token, done) = (addr.clone(), token.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            // A worker completes the jobs of a batch concurrently, as Camunda's clients do
            // (maxParallelJobs), over `parallel` keep-alive connections.
            let mut conn = Conn::open(&addr, &token).await;
            let mut pool = Vec::new();
            for _ in 0..parallel {
                pool.push(Conn::open(&addr, &token).await);
            }
            let activation = format!(
                r#"{{"type":"bench","worker":"w{w}","timeout":60000,"maxJobsToActivate":{batch},"requestTimeout":-1}}"#
            );
            loop {
                let (status, body) = conn.post("/v2/jobs/activation", &activation).await;
                assert_eq!(status, 200, "{body}");
                let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
                let keys: Vec<String> = doc["jobs"]
                    .as_array()
                    .map(|jobs| jobs.iter().filter_map(|j| j["jobKey"].as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                if keys.is_empty() {
                    break;
                }
                let mut chunks: Vec<Vec<String>> = vec![Vec::new(); pool.len()];
                for (i, key) in keys.into_iter().enumerate() {
                    chunks[i % pool.len()].push(key);
                }
                let mut set = tokio::task::JoinSet::new();
                for (mut c, chunk) in pool.drain(..).zip(chunks) {
                    let done = done.clone();
                    set.spawn(async move {
                        for key in chunk {
                            let (status, body) =
                                c.post(&format!("/v2/jobs/{key}/completion"), r#"{"variables":{"ok":true}}"#).await;
                            assert_eq!(status, 204, "{body}");
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        c
                    });
                }
                while let Some(c) = set.join_next().await {
                    pool.push(c.unwrap());
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let took = begin.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!("activate + complete: {n} jobs in {took:.1} s = {:.0} jobs/s", n as f64 / took);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
