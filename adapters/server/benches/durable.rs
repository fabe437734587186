//! Durable throughput through the driver (not HTTP), issue 4's benchmark:
//!
//! - the disk's commit ceiling measured in the same run (single-row transactions, batched rows);
//! - workload `b_user_task` (start + complete one task) with concurrent clients;
//! - 100,000 timers due at the same instant: time until all fired;
//! - start throughput with many pending timers and open tasks in the database.
//!
//! Run: `cargo bench -p reglament-server --bench durable -- [sqlite|postgres] [--quick] [--clients N]`
//! (`--clients`: concurrent clients of the b_user_task and start phases, default 64)
//! (PostgreSQL at `REGLAMENT_BENCH_PG_URL`, default postgres://postgres@127.0.0.1:5432/postgres;
//! a scratch database is created and dropped). SQLite runs with `synchronous=FULL`, PostgreSQL
//! with its default `synchronous_commit=on`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reglament_engine::runtime::Env;
use reglament_server::driver::{DriverConfig, Op, Outcome, Runtime};
use reglament_server::scheduler::SchedulerConfig;
use reglament_store::{CountOf, Store};
use serde_json::json;

const TIMER_MODEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="urn:bench">
  <process id="timer_at" isExecutable="true">
    <startEvent id="s" /><sequenceFlow id="f1" sourceRef="s" targetRef="wait" />
    <intermediateCatchEvent id="wait"><timerEventDefinition><timeDate>=dueAt</timeDate></timerEventDefinition></intermediateCatchEvent>
    <sequenceFlow id="f2" sourceRef="wait" targetRef="e" /><endEvent id="e" />
  </process>
</definitions>"#;

struct Db {
    url: String,
    admin: Option<(String, String)>,
    dir: Option<std::path::PathBuf>,
}

async fn make_db(kind: &str) -> Db {
    if kind == "postgres" {
        let admin = std::env::var("REGLAMENT_BENCH_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let name = format!("reglament_bench_{}", uuid::Uuid::now_v7().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.expect("PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create db");
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or_default();
        Db { url: format!("{base}/{name}"), admin: Some((admin, name)), dir: None }
    } else {
        let dir = std::env::temp_dir().join(format!("reglament-bench-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Db { url: format!("sqlite://{}", dir.join("bench.db").display()), admin: None, dir: Some(dir) }
    }
}

async fn drop_db(db: Db) {
    if let Some((admin, name)) = db.admin
        && let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await
    {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
    }
    if let Some(dir) = db.dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The disk's ceiling on this machine, now: single-row commits/s from `clients` writers, and
/// rows/s in 100-row transactions.
async fn ceiling(store: &Store, clients: usize, seconds: f64) -> (f64, f64) {
    {
        let mut tx = store.begin().await.unwrap();
        tx.execute_sql("CREATE TABLE IF NOT EXISTS bench_ceiling (id TEXT PRIMARY KEY, v TEXT NOT NULL)")
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let commits = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs_f64(seconds);
    let mut handles = Vec::new();
    for _ in 0..clients {
        let store = store.clone();
        let commits = commits.clone();
        handles.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let mut tx = store.begin().await.unwrap();
                tx.execute_sql(&format!("INSERT INTO bench_ceiling (id, v) VALUES ('{}', 'x')", uuid::Uuid::now_v7()))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                commits.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let single = commits.load(Ordering::Relaxed) as f64 / seconds;
    let start = Instant::now();
    let mut rows = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        let mut tx = store.begin().await.unwrap();
        for _ in 0..100 {
            tx.execute_sql(&format!("INSERT INTO bench_ceiling (id, v) VALUES ('{}', 'x')", uuid::Uuid::now_v7()))
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        rows += 100;
    }
    (single, rows as f64 / start.elapsed().as_secs_f64())
}

async fn user_task_rate(rt: &Runtime, clients: usize, seconds: f64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs_f64(seconds);
    let mut handles = Vec::new();
    for _ in 0..clients {
        let rt = rt.clone();
        let done = done.clone();
        handles.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let start = Op::Start {
                    definition: "b_user_task".into(),
                    business_key: None,
                    variables: Default::default(),
                    start_event: None,
                    by: None,
                };
                let Outcome::Started { id, .. } = rt.submit(start).await.unwrap() else { panic!("not started") };
                let task = format!("{id}.2");
                let mut vars = serde_json::Map::new();
                vars.insert("decision".into(), json!("approve"));
                rt.submit(Op::CompleteTask { task_id: task, variables: vars, by: None }).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / seconds
}

async fn start_rate(rt: &Runtime, definition: &str, clients: usize, seconds: f64, variables: serde_json::Value) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs_f64(seconds);
    let mut handles = Vec::new();
    for _ in 0..clients {
        let rt = rt.clone();
        let done = done.clone();
        let definition = definition.to_string();
        let variables = variables.as_object().cloned().unwrap_or_default();
        handles.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let op = Op::Start {
                    definition: definition.clone(),
                    business_key: None,
                    variables: variables.clone(),
                    start_event: None,
                    by: None,
                };
                rt.submit(op).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / seconds
}

/// Starts `n` instances quickly (many clients), returning when all are committed.
async fn fill(rt: &Runtime, definition: &str, n: u64, variables: serde_json::Value) {
    let next = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..64 {
        let rt = rt.clone();
        let next = next.clone();
        let definition = definition.to_string();
        let variables = variables.as_object().cloned().unwrap_or_default();
        handles.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let op = Op::Start {
                    definition: definition.clone(),
                    business_key: None,
                    variables: variables.clone(),
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
}

fn env() -> Env {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../definitions/calendars");
    Env { calendars: reglament_server::calendars::load(&[dir]).unwrap(), ..Env::default() }
}

async fn bench(kind: &str, quick: bool, clients: usize) {
    let db = make_db(kind).await;
    let store = Store::connect(&db.url, 16).await.unwrap();
    let seconds = if quick { 3.0 } else { 10.0 };
    println!("== {kind} ({})", if kind == "sqlite" { "WAL, synchronous=FULL" } else { "synchronous_commit=on" });
    let (single1, batched) = ceiling(&store, 1, seconds / 2.0).await;
    let (single8, _) = ceiling(&store, 8, seconds / 2.0).await;
    println!(
        "ceiling: {single1:.0} single-row commits/s (1 client), {single8:.0} (8 clients), {batched:.0} rows/s in 100-row transactions"
    );

    let config = DriverConfig {
        max_batch: 512,
        ..DriverConfig::from_settings(
            &reglament_server::settings::Settings::defaults(),
            reglament_server::clock::Clock::system(),
        )
    };
    let rt = Runtime::start(store.clone(), env(), config).await.unwrap();
    let workload =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench/workloads/b_user_task.bpmn");
    rt.deploy(&std::fs::read(workload).unwrap(), None).await.unwrap();
    rt.deploy(TIMER_MODEL.as_bytes(), None).await.unwrap();

    let rate = user_task_rate(&rt, clients, seconds).await;
    let best_ceiling = single1.max(single8);
    println!(
        "b_user_task (start + complete, {clients} clients): {rate:.0} instances/s = {:.0} commands/s; {:.1}× the single-row commit ceiling",
        rate * 2.0,
        rate * 2.0 / best_ceiling
    );
    let empty_starts = start_rate(&rt, "b_user_task", clients, seconds / 2.0, json!({})).await;
    println!("start-instance, near-empty database: {empty_starts:.0} instances/s");

    // 100,000 timers due at the same instant.
    let n_timers: u64 = if quick { 20_000 } else { 100_000 };
    let due = chrono::Utc::now() + chrono::Duration::seconds(3600);
    fill(&rt, "timer_at", n_timers, json!({ "dueAt": due.to_rfc3339() })).await;
    assert_eq!(store.count(CountOf::Timers).await.unwrap(), n_timers as i64);
    // Move them all to "now" and let the scheduler loose.
    {
        let mut tx = store.begin().await.unwrap();
        tx.execute_sql(&format!("UPDATE timers SET due = {}", reglament_store::ms(chrono::Utc::now()))).await.unwrap();
        tx.commit().await.unwrap();
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let sched = tokio::spawn(reglament_server::scheduler::run(
        rt.clone(),
        SchedulerConfig::from_settings(&reglament_server::settings::Settings::defaults(), false),
        stop_rx,
    ));
    rt.wakers().scheduler.notify_one();
    loop {
        let left = store.count(CountOf::Timers).await.unwrap();
        if left == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            println!("timers: {left} still pending after 300 s");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed().as_secs_f64();
    println!("{n_timers} timers due at one instant: all fired in {took:.1} s = {:.0} timers/s", n_timers as f64 / took);
    let _ = stop_tx.send(true);
    let _ = sched.await;

    // Start throughput with many pending timers and open tasks.
    let n_big: u64 = if quick { 50_000 } else { 1_000_000 };
    let far = chrono::Utc::now() + chrono::Duration::days(365);
    let t0 = Instant::now();
    fill(&rt, "timer_at", n_big, json!({ "dueAt": far.to_rfc3339() })).await;
    fill(&rt, "b_user_task", n_big, json!({})).await;
    println!(
        "loaded {} pending timers and {} open tasks in {:.0} s",
        store.count(CountOf::Timers).await.unwrap(),
        store.count(CountOf::OpenTasks).await.unwrap(),
        t0.elapsed().as_secs_f64()
    );
    let full_starts = start_rate(&rt, "b_user_task", clients, seconds / 2.0, json!({})).await;
    println!(
        "start-instance with them: {full_starts:.0} instances/s ({:+.1}% vs near-empty)",
        (full_starts / empty_starts - 1.0) * 100.0
    );
    store.close().await;
    drop_db(db).await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let kinds: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a == "sqlite" || *a == "postgres").collect();
    let kinds = if kinds.is_empty() { vec!["sqlite", "postgres"] } else { kinds };
    let clients = match args.iter().position(|a| a == "--clients") {
        Some(i) => args.get(i + 1).and_then(|n| n.parse().ok()).expect("--clients takes a number"),
        None => 64,
    };
    println!(
        "machine: {} cores; {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        if quick { "quick run" } else { "full run" }
    );
    for kind in kinds {
        bench(kind, quick, clients).await;
    }
}
