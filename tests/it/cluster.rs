//! Several nodes (issue 4): three `reglament serve` processes on one PostgreSQL database share
//! 10,000 timers due within a minute. One node is killed mid-run; its leased timers are taken
//! over by the others once the lease expires. Every timer fires exactly once: no duplicate
//! tasks, no lost instances. A PostgreSQL restart under load is survived too.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reglament_engine::runtime::Event;
use reglament_server::driver::{Op, Outcome, Runtime};
use reglament_store::{CountOf, Store};
use serde_json::json;

use crate::server::{Server, add_user, request};
use crate::store::{TestDb, env, vars};

const MODEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d" targetNamespace="urn:cluster">
  <bpmn:process id="cluster" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="at" />
    <bpmn:intermediateCatchEvent id="at"><bpmn:timerEventDefinition><bpmn:timeDate>=dueAt</bpmn:timeDate></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="at" targetRef="work" />
    <bpmn:userTask id="work" name="Работа"><bpmn:extensionElements><zeebe:assignmentDefinition candidateGroups="staff" /></bpmn:extensionElements></bpmn:userTask>
    <bpmn:sequenceFlow id="f3" sourceRef="work" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>"#;

fn node_env(url: &str, node: &str) -> Vec<(&'static str, String)> {
    vec![
        ("REGLAMENT_DATABASE_URL", url.to_string()),
        ("REGLAMENT_NODE", node.to_string()),
        ("REGLAMENT_LEASE_SECONDS", "3".to_string()),
    ]
}

/// Starts `n` instances of `definition` through the test's own driver, 50 at a time, instance
/// `i` with business key `{definition}-{i}` and the variables `variables(i)`.
async fn start_instances(
    rt: &Runtime,
    n: u32,
    definition: &'static str,
    variables: impl Fn(u32) -> serde_json::Value + Send + Sync + Clone + 'static,
) {
    let mut handles = Vec::new();
    for chunk in 0..50u32 {
        let (rt, variables) = (rt.clone(), variables.clone());
        handles.push(tokio::spawn(async move {
            for i in (chunk..n).step_by(50) {
                let op = Op::Start {
                    definition: definition.into(),
                    business_key: Some(format!("{definition}-{i}")),
                    variables: vars(variables(i)),
                    start_event: None,
                    by: None,
                };
                assert!(matches!(rt.submit(op).await.unwrap(), Outcome::Started { .. }));
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

#[test]
fn three_nodes_fire_ten_thousand_timers_exactly_once() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let db = tokio.block_on(TestDb::postgres());
    let dir = std::env::temp_dir().join(format!("reglament-cluster-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(dir.join("definitions")).unwrap();
    std::fs::write(dir.join("definitions/cluster.bpmn"), MODEL).unwrap();

    // The test itself creates the instances through a driver of its own (no scheduler).
    let store = tokio.block_on(Store::connect(&db.url, 8)).unwrap();
    let rt = tokio.block_on(Runtime::start(store.clone(), env(), crate::store::test_driver_config())).unwrap();
    tokio.block_on(rt.deploy(MODEL.as_bytes(), None)).unwrap();
    let n = 10_000u32;
    let first_due = crate::support::test_now() + chrono::Duration::seconds(15);
    // Due times spread over 40 seconds.
    tokio.block_on(start_instances(&rt, n, "cluster", move |i| {
        let due = first_due + chrono::Duration::milliseconds(i64::from(i) * 4);
        json!({ "dueAt": due.to_rfc3339() })
    }));
    assert_eq!(tokio.block_on(store.count(CountOf::Timers)).unwrap(), i64::from(n));

    let mut nodes: Vec<Server> =
        ["a", "b", "c"].iter().map(|name| Server::start(&dir, &node_env(&db.url, name))).collect();
    // Kill node a while timers are being fired.
    while crate::support::test_now() < first_due + chrono::Duration::seconds(12) {
        std::thread::sleep(Duration::from_millis(100));
    }
    nodes[0].kill9();
    let killed_at = crate::support::test_now();
    let last_due = first_due + chrono::Duration::milliseconds(i64::from(n) * 4);
    let limit = Instant::now() + Duration::from_secs(120);
    loop {
        let left = tokio.block_on(store.count(CountOf::Timers)).unwrap();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < limit, "{left} timers never fired");
        std::thread::sleep(Duration::from_millis(200));
    }
    let done_at = crate::support::test_now();
    // Takeover within the lease: everything fired within lease + a margin after the last due.
    assert!(
        done_at < last_due.max(killed_at) + chrono::Duration::seconds(3 + 10),
        "the timers of the killed node were taken over too late ({done_at} vs last due {last_due})"
    );

    let (tasks, per_instance_fired, instances) = tokio.block_on(async {
        let mut tx = store.begin().await.unwrap();
        let summary = tx.instances_summary().await.unwrap();
        tx.rollback().await.unwrap();
        let open = store.count(CountOf::OpenTasks).await.unwrap();
        let mut fired: BTreeMap<u32, usize> = BTreeMap::new();
        for (id, _, _) in summary.iter().take(2_000) {
            let history = store.history(id).await.unwrap();
            let count = history
                .iter()
                .flat_map(|(_, _, e)| reglament_store::codec::decode_events(e).unwrap())
                .filter(|e| matches!(e, Event::TimerFired { .. }))
                .count();
            *fired.entry(count as u32).or_default() += 1;
        }
        (open, fired, summary)
    });
    assert_eq!(instances.len(), n as usize, "no instance is lost");
    assert!(instances.iter().all(|(_, _, status)| status == "active"));
    assert_eq!(tasks, i64::from(n), "one task per instance: no duplicates, none missing");
    assert_eq!(per_instance_fired.keys().copied().collect::<Vec<_>>(), vec![1], "each timer fired exactly once");
    drop(nodes);
    tokio.block_on(store.close());
    tokio.block_on(db.drop_db());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Restarts PostgreSQL under load (needs `pg_ctlcluster`, as on the CI machines). The server
/// reconnects and continues; each failed command was answered with an error and left nothing
/// half-applied.
#[test]
fn postgres_restart_under_load() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    // Alone: every other PostgreSQL test holds the read side while it runs.
    let exclusive = crate::store::POSTGRES_SERVER.blocking_write();
    let db = tokio.block_on(TestDb::postgres_unlocked());
    let dir = std::env::temp_dir().join(format!("reglament-pgrestart-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(dir.join("definitions")).unwrap();
    std::fs::write(dir.join("definitions/cluster.bpmn"), MODEL).unwrap();
    let token = add_user(&dir, &db.url, "clerk", "staff");
    let server = Server::start(&dir, &node_env(&db.url, "solo"));
    let auth = format!("Bearer {token}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load = {
        let (addr, auth, stop, acked, failed) =
            (server.addr.clone(), auth.clone(), stop.clone(), acked.clone(), failed.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let key = format!("k{i}");
                let due = (crate::support::test_now() + chrono::Duration::days(1)).to_rfc3339();
                let body =
                    json!({"definitionKey": "cluster", "businessKey": key, "variables": {"dueAt": due}}).to_string();
                match request(&addr, "POST", "/api/process-instances", Some(&body), &[("Authorization", auth.as_str())])
                {
                    Ok(r) if r.status == 201 => {
                        acked.lock().unwrap().push((key, r.json()["id"].as_str().unwrap().to_string()))
                    }
                    Ok(r) if r.status >= 500 => {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        assert!(
                            r.body.contains("problem") || r.body.contains("type"),
                            "errors are problem documents: {}",
                            r.body
                        );
                    }
                    Ok(r) => panic!("unexpected {} {}", r.status, r.body),
                    Err(_) => {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name());
    let version = version.expect("a PostgreSQL cluster under /etc/postgresql").to_string_lossy().to_string();
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "PostgreSQL restart failed");
    let before = acked.lock().unwrap().len();
    let limit = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < before + 50 {
        assert!(Instant::now() < limit, "the server did not recover after the restart");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().unwrap();
    drop(server);
    let store = tokio.block_on(Store::connect(&db.url, 2)).unwrap();
    let rows = tokio.block_on(async {
        let mut tx = store.begin().await.unwrap();
        let rows = tx.instances_summary().await.unwrap();
        tx.rollback().await.unwrap();
        rows
    });
    let stored: BTreeMap<String, String> =
        rows.iter().map(|(id, key, _)| (key.clone().unwrap_or_default(), id.clone())).collect();
    for (key, id) in acked.lock().unwrap().iter() {
        assert_eq!(stored.get(key), Some(id), "acknowledged start {key} is missing after the restart");
    }
    for (id, _, _) in &rows {
        // Nothing half-applied: every stored instance has its task and its timer.
        let history = tokio.block_on(store.history(id)).unwrap();
        assert_eq!(history.len(), 1, "instance {id} has {} history rows", history.len());
    }
    assert_eq!(tokio.block_on(store.count(CountOf::Timers)).unwrap() as usize, rows.len());
    tokio.block_on(store.close());
    tokio.block_on(db.drop_db());
    let _ = std::fs::remove_dir_all(&dir);
    drop(exclusive);
}

/// A job for an external worker per instance.
const JOB_MODEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d" targetNamespace="urn:cluster">
  <bpmn:process id="jobs" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
    <bpmn:serviceTask id="work"><bpmn:extensionElements><zeebe:taskDefinition type="work" /></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>"#;

/// Three nodes hand 10,000 jobs to six workers (two per node) over the /v2 job API: each job is
/// activated once and completed once, none is lost, every instance completes.
#[test]
fn three_nodes_hand_each_of_ten_thousand_jobs_to_one_worker() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let db = tokio.block_on(TestDb::postgres());
    let dir = std::env::temp_dir().join(format!("reglament-cluster-jobs-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(dir.join("definitions")).unwrap();
    std::fs::write(dir.join("definitions/jobs.bpmn"), JOB_MODEL).unwrap();
    let store = tokio.block_on(Store::connect(&db.url, 8)).unwrap();
    let rt = tokio.block_on(Runtime::start(store.clone(), env(), crate::store::test_driver_config())).unwrap();
    tokio.block_on(rt.deploy(JOB_MODEL.as_bytes(), None)).unwrap();
    let n = 10_000u32;
    tokio.block_on(start_instances(&rt, n, "jobs", |i| json!({ "i": i })));
    let nodes: Vec<Server> = ["a", "b", "c"].iter().map(|name| Server::start(&dir, &node_env(&db.url, name))).collect();
    let token = add_user(&dir, &db.url, "bot", "job-workers");

    let activated = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let completed = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let addr = nodes[w % 3].addr.clone();
            let token = token.clone();
            let activated = activated.clone();
            let completed = completed.clone();
            std::thread::spawn(move || {
                let auth = format!("Bearer {token}");
                let body = json!({"type": "work", "worker": format!("w{w}"), "timeout": 300_000,
                                  "maxJobsToActivate": 50, "requestTimeout": 500})
                .to_string();
                let mut empty = 0;
                while empty < 4 && completed.load(std::sync::atomic::Ordering::Relaxed) < n {
                    let r = request(&addr, "POST", "/v2/jobs/activation", Some(&body), &[("Authorization", &auth)])
                        .expect("activation");
                    assert_eq!(r.status, 200, "{}", r.body);
                    let jobs = r.json()["jobs"].as_array().cloned().unwrap_or_default();
                    if jobs.is_empty() {
                        empty += 1;
                        continue;
                    }
                    empty = 0;
                    for job in jobs {
                        activated.lock().unwrap().push(job["elementInstanceKey"].as_str().unwrap().to_string());
                        let key = job["jobKey"].as_str().unwrap();
                        let done = json!({"variables": {"by": format!("w{w}")}}).to_string();
                        let path = format!("/v2/jobs/{key}/completion");
                        let r = request(&addr, "POST", &path, Some(&done), &[("Authorization", &auth)])
                            .expect("completion");
                        assert_eq!(r.status, 204, "{}", r.body);
                        completed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker failed");
    }
    let took = started.elapsed();
    let activated = activated.lock().unwrap().clone();
    let distinct: std::collections::BTreeSet<&String> = activated.iter().collect();
    assert_eq!(distinct.len(), activated.len(), "a job was handed to two workers");
    assert_eq!(activated.len(), n as usize, "every job was handed out once");
    eprintln!("{n} jobs activated and completed by 6 workers on 3 nodes in {:.1} s", took.as_secs_f64());
    // Every instance completed, none left with a pending job.
    let limit = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = tokio.block_on(async {
            let mut tx = store.begin().await.unwrap();
            let rows = tx.instances_summary().await.unwrap();
            tx.rollback().await.unwrap();
            rows
        });
        let open = rows.iter().filter(|(_, _, status)| status != "completed").count();
        if open == 0 {
            assert_eq!(rows.len(), n as usize);
            break;
        }
        assert!(Instant::now() < limit, "{open} instances never completed");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(nodes);
    tokio.block_on(store.close());
    tokio.block_on(db.drop_db());
    let _ = std::fs::remove_dir_all(&dir);
}
