//! External job workers on the `/v2` job API (Camunda 8's paths and shapes), against the real
//! `reglament serve` over real HTTP: activation, completion, failure with retries down to an
//! incident, a BPMN error caught by a boundary, a lease that expires and passes the job to
//! another worker (the first one's answer refused), long polling woken by the commit, Basic and
//! Bearer authentication, and the calls worker applications make besides.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{Server, add_user, call, request};

/// A payment: the job of an external worker (type `payment`, two retries, a header); a
/// `NO_FUNDS` error ends it as refused.
const PAYMENT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d_payment" targetNamespace="urn:test">
  <bpmn:error id="err_funds" name="Нет средств" errorCode="NO_FUNDS" />
  <bpmn:process id="payment" name="Оплата пошлины" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="charge" />
    <bpmn:serviceTask id="charge" name="Списать пошлину">
      <bpmn:extensionElements>
        <zeebe:taskDefinition type="payment" retries="2" />
        <zeebe:taskHeaders><zeebe:header key="currency" value="RUB" /></zeebe:taskHeaders>
      </bpmn:extensionElements>
    </bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="charge" targetRef="paid" />
    <bpmn:endEvent id="paid" />
    <bpmn:boundaryEvent id="no_funds" attachedToRef="charge">
      <bpmn:errorEventDefinition errorRef="err_funds" />
    </bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="f3" sourceRef="no_funds" targetRef="refused" />
    <bpmn:endEvent id="refused" />
  </bpmn:process>
</bpmn:definitions>"#;

struct Site {
    server: Server,
    admin: String,
    worker: String,
    _dir: std::path::PathBuf,
}

impl Site {
    fn start(name: &str) -> Site {
        let dir = std::env::temp_dir().join(format!("reglament-workers-{name}-{}", uuid::Uuid::now_v7().simple()));
        let defs = dir.join("definitions");
        std::fs::create_dir_all(&defs).unwrap();
        std::fs::write(defs.join("payment.bpmn"), PAYMENT).unwrap();
        let url = "sqlite://w.db".to_string();
        let env = [
            ("REGLAMENT_DATABASE_URL", url.clone()),
            ("REGLAMENT_DEFINITIONS", defs.display().to_string()),
            ("REGLAMENT_DIRECTORY", dir.join("none.toml").display().to_string()),
        ];
        // The database exists once the server started; users are added beside it.
        let server = Server::start(&dir, &env);
        let admin = add_user(&dir, &url, "admin", "admins");
        let worker = add_user(&dir, &url, "payments-bot", "job-workers");
        add_user(&dir, &url, "clerk", "clerks");
        let (status, body) = call(
            &server.addr,
            &admin,
            "PUT",
            "/api/users/payments-bot/password",
            Some(&json!({"password": "пароль-обработчика"})),
        );
        assert_eq!(status, 204, "{body}");
        Site { server, admin, worker, _dir: dir }
    }

    fn v2(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        call(&self.server.addr, &self.worker, method, path, Some(&body))
    }

    fn start_payment(&self, amount: i64) -> String {
        let (status, body) = self.v2(
            "POST",
            "/v2/process-instances",
            json!({"processDefinitionId": "payment", "variables": {"amount": amount}}),
        );
        assert_eq!(status, 200, "{body}");
        body["processInstanceKey"].as_str().expect("a key").to_string()
    }

    fn activate(&self, worker: &str, timeout_ms: i64, request_timeout: i64) -> Vec<Value> {
        let (status, body) = self.v2(
            "POST",
            "/v2/jobs/activation",
            json!({"type": "payment", "worker": worker, "timeout": timeout_ms, "maxJobsToActivate": 10,
                   "requestTimeout": request_timeout}),
        );
        assert_eq!(status, 200, "{body}");
        body["jobs"].as_array().unwrap().clone()
    }

    fn instance(&self, id: &str) -> Value {
        let (status, body) = call(&self.server.addr, &self.admin, "GET", &format!("/api/process-instances/{id}"), None);
        assert_eq!(status, 200, "{body}");
        body
    }

    fn wait_state(&self, id: &str, state: &str) -> Value {
        let limit = Instant::now() + Duration::from_secs(20);
        loop {
            let body = self.instance(id);
            if body["state"] == state {
                return body;
            }
            assert!(Instant::now() < limit, "instance {id} never reached {state}: {body}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_worker_activates_completes_fails_and_throws() {
    let site = Site::start("flow");
    let (status, topology) = site.v2("GET", "/v2/topology", Value::Null);
    assert_eq!((status, topology["brokers"][0]["partitions"][0]["role"].clone()), (200, json!("leader")));

    // Activate and complete: the job carries what Camunda's clients read.
    let id = site.start_payment(300);
    let jobs = site.activate("w1", 30_000, -1);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    assert_eq!(job["type"], "payment");
    assert_eq!(job["processInstanceKey"], json!(id));
    assert_eq!(job["processDefinitionId"], "payment");
    assert_eq!(job["elementId"], "charge");
    assert_eq!(job["retries"], 2);
    assert_eq!(job["customHeaders"], json!({"currency": "RUB"}));
    assert_eq!(job["variables"]["amount"], 300);
    assert_eq!(job["worker"], "w1");
    let key = job["jobKey"].as_str().unwrap().to_string();
    assert!(key.chars().all(|c| c.is_ascii_digit()), "a decimal key: {key}");
    assert!(site.activate("w2", 30_000, -1).is_empty(), "held by w1");
    let (status, body) =
        site.v2("POST", &format!("/v2/jobs/{key}/completion"), json!({"variables": {"receipt": "Ч-1"}}));
    assert_eq!(status, 204, "{body}");
    let done = site.wait_state(&id, "completed");
    assert_eq!(done["variables"]["receipt"], "Ч-1");
    // A second completion: the job is gone.
    let (status, body) = site.v2("POST", &format!("/v2/jobs/{key}/completion"), json!({}));
    assert_eq!((status, body["type"].clone()), (404, json!("/problems/job-not-found")), "{body}");

    // Failure with a retry left: offered again (after the back-off) under a new key; the old
    // key answers nothing; at zero retries an incident.
    let id = site.start_payment(500);
    let first = site.activate("w1", 30_000, -1).remove(0);
    let first_key = first["jobKey"].as_str().unwrap().to_string();
    let (status, body) = site.v2(
        "POST",
        &format!("/v2/jobs/{first_key}/failure"),
        json!({"retries": 1, "errorMessage": "банк не отвечает", "retryBackOff": 200}),
    );
    assert_eq!(status, 204, "{body}");
    let again = site.activate("w1", 30_000, 5_000);
    assert_eq!(again.len(), 1, "offered again after the back-off");
    assert_eq!(again[0]["retries"], 1);
    let second_key = again[0]["jobKey"].as_str().unwrap().to_string();
    assert_ne!(second_key, first_key);
    let (status, _) = site.v2("POST", &format!("/v2/jobs/{first_key}/completion"), json!({}));
    assert_eq!(status, 404, "the old key holds nothing");
    let (status, body) = site.v2(
        "POST",
        &format!("/v2/jobs/{second_key}/failure"),
        json!({"retries": 0, "errorMessage": "карта заблокирована"}),
    );
    assert_eq!(status, 204, "{body}");
    let stuck = site.wait_state(&id, "incident");
    let (_, incidents) =
        call(&site.server.addr, &site.admin, "GET", &format!("/api/process-instances/{id}/incidents"), None);
    assert!(incidents["items"][0]["message"].as_str().unwrap().contains("карта заблокирована"), "{incidents} {stuck}");

    // A BPMN error: caught by the boundary, the instance ends as refused.
    let id = site.start_payment(900);
    let job = site.activate("w1", 30_000, -1).remove(0);
    let key = job["jobKey"].as_str().unwrap();
    let (status, body) = site.v2(
        "POST",
        &format!("/v2/jobs/{key}/error"),
        json!({"errorCode": "NO_FUNDS", "errorMessage": "недостаточно средств", "variables": {"balance": 12}}),
    );
    assert_eq!(status, 204, "{body}");
    site.wait_state(&id, "completed");
    let (_, history) =
        call(&site.server.addr, &site.admin, "GET", &format!("/api/process-instances/{id}/history"), None);
    let items = history["items"].as_array().unwrap();
    assert!(items.iter().any(|i| i["element"] == "refused"), "{history}");
    assert!(!items.iter().any(|i| i["element"] == "paid"), "{history}");

    // The audit log names the worker's acts.
    let (_, audit) = call(&site.server.addr, &site.admin, "GET", "/api/audit?actor=payments-bot", None);
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|i| i["action"].as_str().unwrap()).collect();
    for action in ["instance.start", "job.complete", "job.fail", "job.error"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

#[test]
fn an_expired_lease_passes_the_job_on_and_long_polling_wakes_on_commit() {
    let site = Site::start("lease");
    // w1 takes the job for 300 ms and goes silent; after that its answer is refused, and w2
    // gets the job under another key.
    let id = site.start_payment(100);
    let held = site.activate("w1", 300, -1).remove(0);
    let stale = held["jobKey"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(450));
    let (status, body) = site.v2("POST", &format!("/v2/jobs/{stale}/completion"), json!({}));
    assert_eq!(status, 409, "expired: {body}");
    let taken = site.activate("w2", 30_000, 2_000);
    assert_eq!(taken.len(), 1);
    let key = taken[0]["jobKey"].as_str().unwrap().to_string();
    assert_ne!(key, stale);
    let (status, _) = site.v2("POST", &format!("/v2/jobs/{stale}/completion"), json!({}));
    assert_eq!(status, 404, "w1's key holds nothing now");
    // PATCH extends the lease; then w2 completes.
    let (status, body) =
        site.v2("PATCH", &format!("/v2/jobs/{key}"), json!({"changeset": {"timeout": 60_000, "retries": 5}}));
    assert_eq!(status, 204, "{body}");
    assert_eq!(site.v2("POST", &format!("/v2/jobs/{key}/completion"), json!({})).0, 204);
    site.wait_state(&id, "completed");

    // Long polling: a waiting activation returns as soon as an instance creates a job, well
    // before its 20-second request timeout.
    let addr = site.server.addr.clone();
    let worker = site.worker.clone();
    let poll = std::thread::spawn(move || {
        let body = json!({"type": "payment", "worker": "w3", "timeout": 30_000, "maxJobsToActivate": 1,
                          "requestTimeout": 20_000});
        let r = call(&addr, &worker, "POST", "/v2/jobs/activation", Some(&body));
        (r, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    site.start_payment(7);
    let ((status, body), answered) = poll.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1, "{body}");
    let latency = answered.saturating_duration_since(started);
    eprintln!("long poll answered {} ms after the start request was sent", latency.as_millis());
    assert!(latency < Duration::from_secs(5), "woken by the commit, not by its timeout: {latency:?}");
}

#[test]
fn workers_sign_in_with_basic_or_bearer_and_need_the_job_workers_group() {
    let site = Site::start("auth");
    use base64::Engine;
    let basic = |login: &str, password: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}")))
    };
    let body = json!({"type": "payment", "timeout": 1000, "maxJobsToActivate": 1, "requestTimeout": -1}).to_string();
    let post = |auth: &str| {
        request(&site.server.addr, "POST", "/v2/jobs/activation", Some(&body), &[("Authorization", auth)]).unwrap()
    };
    assert_eq!(post(&basic("payments-bot", "пароль-обработчика")).status, 200);
    assert_eq!(post(&basic("payments-bot", "не тот")).status, 401);
    assert_eq!(post(&basic("nobody", "x")).status, 401);
    assert_eq!(post("Basic %%%").status, 401);
    assert_eq!(post(&format!("Bearer {}", site.worker)).status, 200);
    // Staff outside `job-workers` may not take jobs (they carry the instance's variables).
    let clerk = add_user(site._dir.as_path(), "sqlite://w.db", "clerk2", "clerks");
    assert_eq!(post(&format!("Bearer {clerk}")).status, 403);
    // Messages: a publication nobody takes is not an error (as in Camunda); a correlation is.
    let (status, body) =
        site.v2("POST", "/v2/messages/publication", json!({"name": "nobody-waits", "correlationKey": "1"}));
    assert_eq!(status, 200, "{body}");
    assert!(body["messageKey"].as_str().is_some_and(|k| !k.is_empty()), "{body}");
    let (status, body) =
        site.v2("POST", "/v2/messages/correlation", json!({"name": "nobody-waits", "correlationKey": "1"}));
    assert_eq!(status, 404, "{body}");
}

/// Done-when 2 of issue 17: a worker written with Camunda's own JavaScript client
/// (`@camunda8/orchestration-cluster-api`, `tests/tools/js/worker.mjs`), given only the address
/// and a login and password, takes the jobs, starts instances and publishes a message.
#[test]
fn camundas_javascript_client_runs_unchanged() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let site = Site::start("js");
    let js = crate::tools::camunda_js();
    let log = site._dir.join("worker.log");
    let mut node = Command::new("node");
    node.arg(js.join("worker.mjs")).current_dir(&js);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CAMUNDA_") {
            node.env_remove(name);
        }
    }
    let node = node
        .env("CAMUNDA_REST_ADDRESS", format!("http://{}", site.server.addr))
        .env("CAMUNDA_AUTH_STRATEGY", "BASIC")
        .env("CAMUNDA_BASIC_AUTH_USERNAME", "payments-bot")
        .env("CAMUNDA_BASIC_AUTH_PASSWORD", "пароль-обработчика")
        .env("PAYMENT_AMOUNTS", "300,1500,13")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("`node` runs tests/tools/js/worker.mjs");
    // Killed on every way out, so a failed assertion leaves no worker behind.
    struct Worker(std::process::Child);
    impl Drop for Worker {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut node = Worker(node);
    let (lines, from_node) = std::sync::mpsc::channel::<Value>();
    let stdout = node.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(serde_json::from_str(&line).unwrap_or(Value::String(line)));
        }
    });
    let mut said = |what: &str| -> Value {
        match from_node.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => panic!(
                "the worker did not say {what} (it {}); its log:\n{}",
                match node.0.try_wait() {
                    Ok(Some(status)) => format!("exited with {status}"),
                    _ => "still runs".into(),
                },
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
    };

    // The client's own calls: topology, three instance starts, a publication; the worker's
    // lines (paid, refused, failed) come in between.
    let topology = said("the topology");
    assert_eq!(topology["topology"]["brokers"], 1, "{topology}");
    let (mut started, mut failed) = (Vec::new(), Vec::new());
    loop {
        let line = said("which instances it started and the message it published");
        if line.get("failed").is_some() {
            failed.push(line.clone());
        }
        if let Some(key) = line["started"].as_str() {
            assert_eq!(line["version"], 1, "{line}");
            started.push((key.to_string(), line["amount"].as_i64().unwrap()));
        }
        if line["published"].as_str().is_some_and(|k| !k.is_empty()) {
            break;
        }
    }
    assert_eq!(started.len(), 3, "{started:?}");
    // One more, started through the API by someone else: the worker takes its job too.
    started.push((site.start_payment(50), 50));

    for (id, amount) in &started {
        let done = site.wait_state(id, "completed");
        let (_, history) =
            call(&site.server.addr, &site.admin, "GET", &format!("/api/process-instances/{id}/history"), None);
        let reached = |element: &str| history["items"].as_array().unwrap().iter().any(|i| i["element"] == element);
        if *amount > 1000 {
            assert!(reached("refused") && !reached("paid"), "NO_FUNDS ends on the boundary's path: {history}");
            assert!(done["variables"].get("receipt").is_none(), "{done}");
        } else {
            assert!(reached("paid") && !reached("refused"), "{history}");
            assert_eq!(done["variables"]["receipt"], format!("R-{amount}"), "{done}");
        }
    }
    let (_, audit) = call(&site.server.addr, &site.admin, "GET", "/api/audit?actor=payments-bot", None);
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|i| i["action"].as_str().unwrap()).collect();
    for action in ["instance.start", "job.complete", "job.error", "job.fail"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    // The failed attempt at 13 (reported by the client's job.fail, two retries from the model)
    // was offered again and paid.
    while failed.is_empty() {
        let line = said("that it failed the first attempt at 13");
        if line.get("failed").is_some() {
            failed.push(line);
        }
    }
    assert_eq!((failed[0]["amount"].clone(), failed[0]["retries"].clone()), (json!(13), json!(2)), "{failed:?}");
    assert!(node.0.try_wait().unwrap().is_none(), "the worker still runs");
    // No call of the client was refused or failed on the way (it logs those as errors).
    let printed = std::fs::read_to_string(&log).unwrap();
    assert!(!printed.contains("[error]"), "the client logged errors:\n{printed}");
}
