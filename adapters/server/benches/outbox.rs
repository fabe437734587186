//! Outbox drain: 10,000 emails queued by committed send tasks, then delivered by the dispatcher
//! to a real SMTP server on loopback (`tests/smtp/server.py`, aiosmtpd — it stores each message
//! as a file), through lettre's pooled transport (connection reuse). Reports emails/s from the
//! start of the drain until every row is `sent` and every send task has completed.
//!
//! ```text
//! cargo bench -p reglament-server --bench outbox                 # SQLite, 10,000 emails, 8 connections
//! cargo bench -p reglament-server --bench outbox -- postgres     # PostgreSQL at 127.0.0.1:5432
//! BENCH_EMAILS=2000 BENCH_CONNECTIONS=1 cargo bench -p reglament-server --bench outbox
//! ```
//!
//! The SMTP server runs under the tests' venv (`tests/it/tools.rs`, installed on first use from
//! `tests/tools/requirements.txt`). Target (issue 6): ≥ 500 emails/s.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use reglament_engine::runtime::Env;
use reglament_server::driver::{DriverConfig, Op, Runtime};
use reglament_server::email::{EmailConfig, Transport};
use reglament_store::Store;
use tokio::task::JoinSet;

const MODEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d" targetNamespace="urn:bench">
  <bpmn:process id="answer" name="Ответ заявителю" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="notify" />
    <bpmn:sendTask id="notify" name="Направить ответ">
      <bpmn:extensionElements>
        <zeebe:taskDefinition type="email" />
        <zeebe:taskHeaders>
          <zeebe:header key="to" value="=recipient" />
          <zeebe:header key="subject" value='="Ответ на обращение № " + string(n)' />
          <zeebe:header key="template" value="notification" />
        </zeebe:taskHeaders>
      </bpmn:extensionElements>
    </bpmn:sendTask>
    <bpmn:sequenceFlow id="f2" sourceRef="notify" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>"#;

// The test suites' tool set-up: the venv with aiosmtpd and the SMTP server's start. The bench
// uses only part of it.
#[allow(dead_code)]
#[path = "../../../tests/it/tools.rs"]
mod tools;

struct Smtp(Child);

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|l| l.trim_start_matches([' ', '\t', ':']));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0));
    format!(
        "{} cores ({}), {} RAM, {} {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        model.unwrap_or("unknown CPU"),
        mem.unwrap_or_else(|| "unknown".into()),
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let postgres = std::env::args().any(|a| a == "postgres");
    let emails = env_num("BENCH_EMAILS", 10_000) as usize;
    let connections = env_num("BENCH_CONNECTIONS", 8) as u32;
    let dir = std::env::temp_dir().join(format!("reglament-outbox-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(dir.join("received")).unwrap();
    let (url, pg) = if postgres {
        let admin = "postgres://postgres@127.0.0.1:5432/postgres";
        let name = format!("reglament_bench_{}", uuid::Uuid::now_v7().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin).await.expect("PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        (format!("postgres://postgres@127.0.0.1:5432/{name}"), Some((admin, name)))
    } else {
        (format!("sqlite://{}", dir.join("bench.db").display()), None)
    };
    println!("machine: {}", machine());
    println!(
        "database: {}; {emails} emails; {connections} SMTP connections (pooled, reused)",
        if postgres { "PostgreSQL" } else { "SQLite (WAL, synchronous=FULL)" }
    );

    let store = Store::connect(&url, 16).await.expect("store");
    let rt = Runtime::start(
        store.clone(),
        Env::default(),
        DriverConfig::from_settings(
            &reglament_server::settings::Settings::defaults(),
            reglament_server::clock::Clock::system(),
        ),
    )
    .await
    .expect("driver");
    rt.deploy(MODEL.as_bytes(), None).await.expect("deploy");

    // Queue: every start commits its email to the outbox (the dispatcher is not running yet).
    let queued = Instant::now();
    let mut set = JoinSet::new();
    for n in 0..emails {
        if set.len() >= 512 {
            set.join_next().await.unwrap().unwrap();
        }
        let rt = rt.clone();
        set.spawn(async move {
            let variables = serde_json::json!({
                "recipient": format!("Заявитель {n} <person{n}@example.org>"),
                "n": n,
                "message": "Ваше обращение рассмотрено, ответ направлен почтой.",
            });
            let op = Op::Start {
                definition: "answer".into(),
                business_key: Some(format!("REQ-{n}")),
                variables: variables.as_object().unwrap().clone(),
                start_event: None,
                by: None,
            };
            rt.submit(op).await.expect("start");
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    println!(
        "queued {emails} emails in {:.2} s (instances started, outbox rows committed)",
        queued.elapsed().as_secs_f64()
    );

    // Drain.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _smtp = Smtp(tools::spawn_smtp_server(port, &dir.join("received")));
    let config = EmailConfig {
        transport: Transport::Smtp { url: format!("smtp://127.0.0.1:{port}?tls=none") },
        templates: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../definitions/templates"),
        connections,
        batch: 512,
        ..EmailConfig::from_settings(&reglament_server::settings::Settings::defaults())
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let mail = tokio::spawn(reglament_server::email::run(rt.clone(), config, stop_rx));
    loop {
        let sent = store.count_sent_emails().await.unwrap() as usize;
        if sent >= emails {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "the drain took too long: {sent} sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    mail.await.unwrap();
    let files = std::fs::read_dir(dir.join("received"))
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml")))
        .count();
    let active = store.count(reglament_store::CountOf::ActiveInstances).await.unwrap();
    println!(
        "drained {emails} emails in {elapsed:.2} s: {:.0} emails/s (received {files} messages; {active} send tasks still waiting)",
        emails as f64 / elapsed
    );
    assert_eq!(files, emails, "every email delivered exactly once");
    store.close().await;
    if let Some((admin, name)) = pg
        && let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(admin).await
    {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
