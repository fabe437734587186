//! Crash safety (issue 4): the real binary under a steady load of starts and task completions is
//! killed with SIGKILL at random moments, 20 times, and restarted on the same database. Every
//! acknowledged command must be reflected exactly once, no instance may be stuck, and every due
//! timer must fire exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reglament_engine::runtime::Event;
use serde_json::json;

use crate::server::{Server, add_user, request};

const MODEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d" targetNamespace="urn:crash">
  <bpmn:process id="crash" name="Проверка устойчивости" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="pause" />
    <bpmn:intermediateCatchEvent id="pause"><bpmn:timerEventDefinition><bpmn:timeDuration>PT1S</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="pause" targetRef="approve" />
    <bpmn:userTask id="approve" name="Согласовать"><bpmn:extensionElements><zeebe:assignmentDefinition candidateGroups="clerks" /></bpmn:extensionElements></bpmn:userTask>
    <bpmn:sequenceFlow id="f3" sourceRef="approve" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>"#;

/// What the clients saw acknowledged.
#[derive(Default)]
struct Ledger {
    /// business key → instance id, for starts answered 201.
    started: BTreeMap<String, String>,
    /// Starts sent but not answered (the server died): each may or may not have happened.
    unanswered_starts: BTreeSet<String>,
    /// Task ids whose completion was answered 204/200.
    completed: BTreeSet<String>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn client(
    addr: String,
    token: String,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    seed: u64,
) {
    let auth = format!("Bearer {token}");
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        if n % 2 == 1 {
            let key = format!("c{seed}-{n}");
            let body = json!({"definitionKey": "crash", "businessKey": key, "variables": {"n": n}}).to_string();
            let headers = [("Authorization", auth.as_str()), ("Idempotency-Key", key.as_str())];
            match request(&addr, "POST", "/api/process-instances", Some(&body), &headers) {
                Ok(r) if r.status == 201 => {
                    let id = r.json()["id"].as_str().expect("id").to_string();
                    ledger.lock().unwrap().started.insert(key, id);
                }
                Ok(r) if r.status >= 500 => {
                    ledger.lock().unwrap().unanswered_starts.insert(key);
                }
                Ok(r) => panic!("unexpected answer to a start: {} {}", r.status, r.body),
                Err(_) => {
                    ledger.lock().unwrap().unanswered_starts.insert(key);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        } else {
            let list = request(
                &addr,
                "GET",
                "/api/tasks?candidateGroup=clerks&state=open&limit=5",
                None,
                &[("Authorization", auth.as_str())],
            );
            let Ok(list) = list else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let Some(items) = list.json()["items"].as_array().cloned() else { continue };
            let Some(task) = items.get((seed as usize + n as usize) % items.len().max(1)) else { continue };
            let id = task["id"].as_str().expect("task id").to_string();
            let path = format!("/api/tasks/{id}/complete");
            match request(
                &addr,
                "POST",
                &path,
                Some(r#"{"variables":{"ok":true}}"#),
                &[("Authorization", auth.as_str())],
            ) {
                Ok(r) if r.status == 200 || r.status == 204 => {
                    ledger.lock().unwrap().completed.insert(id);
                }
                // Another client completed it first, or the server died before answering.
                Ok(r) if r.status == 409 || r.status >= 500 => {}
                Ok(r) => panic!("unexpected answer to a completion: {} {}", r.status, r.body),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

#[test]
fn kill_9_twenty_times_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("reglament-crash-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(dir.join("definitions")).unwrap();
    std::fs::write(dir.join("definitions/crash.bpmn"), MODEL).unwrap();
    let url = format!("sqlite://{}", dir.join("reglament.db").display());
    let token = add_user(&dir, &url, "clerk", "clerks");
    let env = [("REGLAMENT_DATABASE_URL", url.clone()), ("REGLAMENT_LEASE_SECONDS", "2".to_string())];
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = Rng(0x2026_1121);
    for round in 0..20u64 {
        let mut server = Server::start(&dir, &env);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let (addr, token, ledger, stop) = (server.addr.clone(), token.clone(), ledger.clone(), stop.clone());
                std::thread::spawn(move || client(addr, token, ledger, stop, round * 10 + c))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + rng.next() % 1200));
        server.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            c.join().expect("client thread");
        }
    }
    // Final run: let the due timers fire, then finish every open task.
    let server = Server::start(&dir, &env);
    let auth = format!("Bearer {token}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let store = tokio::runtime::Runtime::new().unwrap().block_on(reglament_store::Store::connect(&url, 2)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    loop {
        let timers = rt.block_on(store.count(reglament_store::CountOf::Timers)).unwrap();
        let list = request(
            &server.addr,
            "GET",
            "/api/tasks?candidateGroup=clerks&state=open&limit=100",
            None,
            &[("Authorization", auth.as_str())],
        )
        .expect("list tasks");
        let items = list.json()["items"].as_array().cloned().unwrap_or_default();
        for task in &items {
            let path = format!("/api/tasks/{}/complete", task["id"].as_str().unwrap());
            let r = request(&server.addr, "POST", &path, Some("{}"), &[("Authorization", auth.as_str())]).unwrap();
            assert!(matches!(r.status, 200 | 204 | 409), "{} {}", r.status, r.body);
        }
        if timers == 0 && items.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "instances are stuck: {timers} timers pending, {} tasks open", items.len());
        std::thread::sleep(Duration::from_millis(200));
    }
    // A graceful stop: in-flight work finishes, leases are released, exit status 0.
    let mut server = server;
    let status = server.terminate();
    assert!(status.success(), "graceful shutdown failed: {status}");

    let ledger = ledger.lock().unwrap();
    assert!(ledger.started.len() > 40, "the load was too light to mean anything: {} starts", ledger.started.len());
    let rows: Vec<(String, Option<String>, String)> = rt.block_on(async {
        let mut tx = store.begin().await.unwrap();
        let rows = tx.instances_summary().await.unwrap();
        tx.rollback().await.unwrap();
        rows
    });
    let mut by_key: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (id, key, status) in &rows {
        by_key.entry(key.clone().unwrap_or_default()).or_default().push((id.clone(), status.clone()));
    }
    for (key, id) in &ledger.started {
        let found = by_key.get(key).unwrap_or_else(|| panic!("acknowledged start {key} ({id}) is lost"));
        assert_eq!(found.len(), 1, "start {key} is reflected {} times", found.len());
        assert_eq!(&found[0].0, id, "start {key} answered {id} but stored {}", found[0].0);
    }
    for key in &ledger.unanswered_starts {
        assert!(by_key.get(key).is_none_or(|v| v.len() <= 1), "unanswered start {key} happened twice");
    }
    for (id, _, status) in &rows {
        assert_eq!(status, "completed", "instance {id} is stuck in {status}");
        let history = rt.block_on(store.history(id)).unwrap();
        let events: Vec<Event> =
            history.iter().flat_map(|(_, _, e)| reglament_store::codec::decode_events(e).unwrap()).collect();
        let fired = events.iter().filter(|e| matches!(e, Event::TimerFired { .. })).count();
        assert_eq!(fired, 1, "instance {id}: the timer fired {fired} times");
    }
    for task in &ledger.completed {
        let row = rt.block_on(store.task(task)).unwrap().expect("acknowledged task exists");
        assert_eq!(row.state, "completed", "acknowledged completion of {task} is lost");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
