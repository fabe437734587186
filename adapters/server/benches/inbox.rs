//! Inbox latency (issue 5): `GET /api/tasks?candidateGroup=X&state=open&sort=due&limit=50` and
//! the next cursor page, with 1,000,000 open tasks across 50 groups, through the real router on
//! a loopback listener. Reports p50/p99 per backend.
//!
//! Run: `cargo bench -p reglament-server --bench inbox -- [sqlite|postgres] [--tasks N]`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reglament_engine::runtime::Env;
use reglament_server::driver::{DriverConfig, Runtime};
use reglament_store::Store;

fn get(addr: &str, path: &str, token: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn fill(store: &Store, n: i64, postgres: bool) {
    let mut tx = store.begin().await.unwrap();
    // A recursive CTE counts on both backends; every task is open, in one of 50 groups, with
    // a due time spread over a year.
    let series = if postgres {
        format!("SELECT generate_series(1::bigint, {n}::bigint) AS i")
    } else {
        format!("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT i FROM s")
    };
    let cast = if postgres { "::text" } else { "" };
    tx.execute_sql(&format!(
        "INSERT INTO tasks (id, instance_id, task_key, definition_key, element_id, name, state, candidate_groups, \
         candidate_users, due, created_at) \
         SELECT 'bench-' || i{cast} || '.2', 'bench-' || i{cast}, 2, 'bench', 'review', 'Рассмотреть', 'open', \
         'group' || (i % 50){cast}, '', 1790000000000 + (i * 7919 % 31536000) * 1000, 1780000000000 + i \
         FROM ({series}) x"
    ))
    .await
    .unwrap();
    tx.execute_sql(
        "INSERT INTO task_groups (group_name, task_id, state, due_sort, created_at) \
         SELECT candidate_groups, id, state, due, created_at FROM tasks WHERE definition_key = 'bench'",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.execute_sql("ANALYZE").await.unwrap();
    tx.commit().await.unwrap();
}

async fn bench(kind: &str, n: i64) {
    let (url, cleanup) = if kind == "postgres" {
        let admin = std::env::var("REGLAMENT_BENCH_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let name = format!("reglament_inbox_{}", uuid::Uuid::now_v7().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.expect("PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or_default();
        (format!("{base}/{name}"), Some((admin, name)))
    } else {
        let dir = std::env::temp_dir().join(format!("reglament-inbox-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        (format!("sqlite://{}", dir.join("inbox.db").display()), None)
    };
    let store = Store::connect(&url, 8).await.unwrap();
    let t0 = Instant::now();
    fill(&store, n, kind == "postgres").await;
    println!("== {kind}: {n} open tasks in 50 groups loaded in {:.0} s", t0.elapsed().as_secs_f64());
    let token = reglament_server::accounts::add_with_token(
        &store,
        reglament_store::auth::UserRecord {
            login: "bench".into(),
            name: None,
            email: "bench@example.org".into(),
            groups: vec!["group7".into()],
            disabled: false,
            created_at: chrono::Utc::now(),
        },
        "bench",
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let rt = Runtime::start(
        store.clone(),
        Env::default(),
        DriverConfig::from_settings(
            &reglament_server::settings::Settings::defaults(),
            reglament_server::clock::Clock::system(),
        ),
    )
    .await
    .unwrap();
    let app = reglament_server::http::router(reglament_server::http::AppState::new(rt, "http://127.0.0.1"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let addr2 = addr.clone();
    let (first, next) = tokio::task::spawn_blocking(move || {
        let mut first = Vec::new();
        let mut next = Vec::new();
        let path = "/api/tasks?candidateGroup=group7&state=open&sort=due&limit=50";
        for round in 0..1000 {
            let start = Instant::now();
            let (status, body) = get(&addr2, path, &token);
            let took = start.elapsed();
            assert_eq!(status, 200, "{body}");
            let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(doc["items"].as_array().map(Vec::len), Some(50));
            let cursor = doc["nextCursor"].as_str().expect("a next page").to_string();
            if round > 10 {
                first.push(took);
            }
            let start = Instant::now();
            let (status, body) = get(&addr2, &format!("{path}&cursor={cursor}"), &token);
            let took = start.elapsed();
            assert_eq!(status, 200, "{body}");
            if round > 10 {
                next.push(took);
            }
        }
        first.sort();
        next.sort();
        (first, next)
    })
    .await
    .unwrap();
    for (name, d) in [("first page", &first), ("next cursor page", &next)] {
        println!(
            "{name}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} requests (target p99 ≤ 20 ms)",
            percentile(d, 0.5).as_secs_f64() * 1e3,
            percentile(d, 0.99).as_secs_f64() * 1e3,
            d.last().unwrap().as_secs_f64() * 1e3,
            d.len()
        );
    }
    store.close().await;
    if let Some((admin, name)) = cleanup
        && let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await
    {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = args
        .iter()
        .position(|a| a == "--tasks")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let kinds: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a == "sqlite" || *a == "postgres").collect();
    let kinds = if kinds.is_empty() { vec!["sqlite", "postgres"] } else { kinds };
    println!("machine: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    for kind in kinds {
        bench(kind, n).await;
    }
}
