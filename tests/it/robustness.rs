//! The real server against careless and hostile clients (the robustness issue): each case starts
//! `reglament serve` and checks it stays reachable for everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{Server, add_user, call, request};

fn temp_server_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("reglament-{name}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Silent and half-open connections (headers never finished) are closed after the header
/// timeout, and beyond the connection limit new clients wait instead of the server running out
/// of descriptors: /healthz answers while 120 such connections are open against a limit of 40.
#[test]
fn half_open_connections_cannot_take_the_server_offline() {
    let dir = temp_server_dir("half-open");
    let url = format!("sqlite://{}", dir.join("reglament.db").display());
    let server = Server::start(
        &dir,
        &[
            ("REGLAMENT_DATABASE_URL", url),
            ("REGLAMENT_MAX_CONNECTIONS", "40".into()),
            ("REGLAMENT_HEADER_TIMEOUT_SECONDS", "1".into()),
        ],
    );
    let mut idle: Vec<TcpStream> = Vec::new();
    for i in 0..120 {
        let mut stream = TcpStream::connect(&server.addr).expect("the kernel accepts into the backlog");
        if i % 2 == 0 {
            // Half a request: a request line and one header, never the blank line.
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").expect("write");
        }
        idle.push(stream);
    }
    let started = Instant::now();
    let health = request(&server.addr, "GET", "/healthz", None, &[]).expect("/healthz answers");
    assert_eq!(health.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "/healthz took {:?} behind 120 silent connections",
        started.elapsed()
    );
    // The server closed the silent ones: reading gets end of file (or a reset), not a hang.
    let first = &mut idle[0];
    first.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut buf = [0u8; 512];
    match first.read(&mut buf) {
        Ok(_) => {}
        Err(e) => assert!(
            !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            "a silent connection stayed open: {e}"
        ),
    }
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(log.contains("connection limit reached"), "the limit is logged:\n{log}");
    drop(idle);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A process that runs one script task: `expression` into `result`, then waits at a user task
/// (so an instance that got past the script stays active and visible).
fn script_model(key: &str, before: &str, expression: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d_{key}" targetNamespace="urn:robust">
  <bpmn:process id="{key}" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="{first}" />{before}
    <bpmn:scriptTask id="work"><bpmn:extensionElements><zeebe:script expression="{expression}" resultVariable="result" /></bpmn:extensionElements></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f3" sourceRef="work" targetRef="check" />
    <bpmn:userTask id="check"><bpmn:extensionElements><zeebe:assignmentDefinition candidateGroups="clerks" /></bpmn:extensionElements></bpmn:userTask>
    <bpmn:sequenceFlow id="f4" sourceRef="check" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>"#,
        first = if before.is_empty() { "work" } else { "pause" },
    )
}

/// A one-second timer in front of the script: the command that runs it is a timer's.
const BEHIND_A_TIMER: &str = r#"
    <bpmn:intermediateCatchEvent id="pause"><bpmn:timerEventDefinition><bpmn:timeDuration>PT1S</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="pause" targetRef="work" />"#;

/// A recursive FEEL function whose depth comes from the variable `n`.
const RECURSION: &str = "={f: function(k) if k &lt;= 0 then 0 else 1 + f(k - 1), r: f(n)}.r";

/// A server on a fresh SQLite database with `models` in its definitions folder, and a clerk's
/// token.
fn server_with(
    name: &str,
    models: &[(&str, String)],
    env: &[(&str, String)],
) -> (Server, std::path::PathBuf, Vec<(&'static str, String)>, String) {
    let dir = temp_server_dir(name);
    std::fs::create_dir_all(dir.join("definitions")).expect("definitions");
    for (file, xml) in models {
        std::fs::write(dir.join("definitions").join(file), xml).expect("model");
    }
    let url = format!("sqlite://{}", dir.join("reglament.db").display());
    let token = add_user(&dir, &url, "clerk", "clerks,admins");
    let mut all: Vec<(&'static str, String)> =
        vec![("REGLAMENT_DATABASE_URL", url), ("REGLAMENT_LEASE_SECONDS", "2".to_string())];
    for (k, v) in env {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        all.push((k, v.clone()));
    }
    let server = Server::start(&dir, &all);
    (server, dir, all, token)
}

fn instance(addr: &str, token: &str, id: &str) -> Value {
    let (status, body) = call(addr, token, "GET", &format!("/api/process-instances/{id}"), None);
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until the instance shows an incident and answers it.
fn wait_for_incident(addr: &str, token: &str, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let view = instance(addr, token, id);
        if view["state"] == "incident" {
            return view;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no incident after 30 s: {view}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn history_events(addr: &str, token: &str, id: &str, event: &str) -> usize {
    let (status, body) = call(addr, token, "GET", &format!("/api/process-instances/{id}/history"), None);
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().expect("items").iter().filter(|e| e["event"] == event).count()
}

/// The crash loop of the issue: a timer firing into a recursion whose depth comes from a
/// variable aborted the server with a stack overflow, and again after every restart when the
/// timer's lease expired. Now the server stays up, the instance shows an incident on the
/// script task, and a restart (after SIGKILL, so leases expire rather than being released)
/// neither crashes nor fires the timer again.
#[test]
fn a_timer_firing_into_a_deep_recursion_is_an_incident_and_survives_a_restart() {
    let model = script_model("loop_crash", BEHIND_A_TIMER, RECURSION);
    let (mut server, dir, env, token) = server_with("crash-loop", &[("crash.bpmn", model)], &[]);
    let (status, started) = call(
        &server.addr,
        &token,
        "POST",
        "/api/process-instances",
        Some(&json!({"definitionKey": "loop_crash", "variables": {"n": 1000}})),
    );
    assert_eq!(status, 201, "{started}");
    let id = started["id"].as_str().expect("id").to_string();
    let view = wait_for_incident(&server.addr, &token, &id);
    assert_eq!(view["incidents"][0]["elementId"], "work", "{view}");
    let message = view["incidents"][0]["message"].as_str().expect("message");
    assert!(message.contains("function calls nest deeper than the evaluation allows"), "{message}");
    assert_eq!(request(&server.addr, "GET", "/healthz", None, &[]).expect("up").status, 200);
    server.kill9();
    let server = Server::start(&dir, &env);
    // Longer than the 2 s lease a dead node's timers wait for.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(request(&server.addr, "GET", "/healthz", None, &[]).expect("up after restart").status, 200);
    let view = instance(&server.addr, &token, &id);
    assert_eq!(view["state"], "incident", "{view}");
    assert_eq!(history_events(&server.addr, &token, &id, "timer_fired"), 1, "the timer fired once, never again");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A recursive FEEL function whose depth comes from a start variable: the start answers with
/// the instance stopped by an incident naming the recursion; a shallow one runs.
#[test]
fn a_recursion_deep_from_a_start_variable_is_an_incident_on_the_script_task() {
    let model = script_model("recursion", "", RECURSION);
    let (server, dir, _, token) = server_with("recursion", &[("recursion.bpmn", model)], &[]);
    let start = |n: u64| {
        let body = json!({"definitionKey": "recursion", "variables": {"n": n}});
        let (status, view) = call(&server.addr, &token, "POST", "/api/process-instances", Some(&body));
        assert_eq!(status, 201, "{view}");
        view
    };
    let shallow = start(50);
    assert_eq!(shallow["state"], "active", "{shallow}");
    assert_eq!(shallow["variables"]["result"], 50);
    let deep = start(1000);
    assert_eq!(deep["state"], "incident", "{deep}");
    assert_eq!(deep["incidents"][0]["elementId"], "work");
    let message = deep["incidents"][0]["message"].as_str().expect("message");
    assert!(message.contains("the recursion is too deep"), "{message}");
    // Variables beyond 64 bits are refused rather than rounded; within 64 bits they are exact.
    let big = r#"{"definitionKey": "recursion", "variables": {"n": 1, "id": 9007199254740993, "huge": 100000000000000000000}}"#;
    let auth = format!("Bearer {token}");
    let r = request(&server.addr, "POST", "/api/process-instances", Some(big), &[("Authorization", auth.as_str())])
        .expect("answer");
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("variables.huge"), "{}", r.body);
    let exact =
        r#"{"definitionKey": "recursion", "variables": {"n": 1, "id": 9007199254740993, "max": 18446744073709551615}}"#;
    let r = request(&server.addr, "POST", "/api/process-instances", Some(exact), &[("Authorization", auth.as_str())])
        .expect("answer");
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        r.body.contains("\"id\":9007199254740993") && r.body.contains("\"max\":18446744073709551615"),
        "{}",
        r.body
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Done-when 2 of the issue: a 100,000-iteration FEEL loop on one instance (several in a row)
/// while another client starts instances: those starts keep answering within a second, none is
/// answered 503, no batch is run again, and each start made exactly one instance. The loop
/// itself completes, or (in a slow debug build) is stopped by the command time limit with an
/// incident: either way it holds the transaction no longer than the limit.
#[test]
fn a_long_feel_loop_does_not_hold_up_other_starts() {
    let looping = script_model("long_loop", "", "=count(for i in 1..(n) return i)");
    let quick = script_model("quick", "", "=1");
    // The limit an operator sets bounds how long the loop holds the transaction, and so how long
    // a start waits behind it; 250 ms leaves room for a debug build on a busy machine.
    let (server, dir, _, token) = server_with(
        "long-loop",
        &[("loop.bpmn", looping), ("quick.bpmn", quick)],
        &[("REGLAMENT_COMMAND_TIME_LIMIT_MS", "250".to_string())],
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looper = {
        let (addr, token, stop) = (server.addr.clone(), token.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut outcomes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && outcomes.len() < 6 {
                let body = json!({"definitionKey": "long_loop", "variables": {"n": 100_000}});
                let (status, view) = call(&addr, &token, "POST", "/api/process-instances", Some(&body));
                assert_eq!(status, 201, "{view}");
                outcomes.push(view);
            }
            outcomes
        })
    };
    let mut ids = std::collections::BTreeSet::new();
    let mut slowest = Duration::ZERO;
    let begun = Instant::now();
    while begun.elapsed() < Duration::from_secs(4) {
        let t = Instant::now();
        let body = json!({"definitionKey": "quick", "businessKey": format!("q-{}", ids.len())});
        let (status, view) = call(&server.addr, &token, "POST", "/api/process-instances", Some(&body));
        slowest = slowest.max(t.elapsed());
        assert_eq!(status, 201, "a start during the loop: {view}");
        assert!(ids.insert(view["id"].as_str().expect("id").to_string()), "a duplicate id");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let loops = looper.join().expect("the looping client");
    let states: Vec<&str> = loops.iter().filter_map(|v| v["state"].as_str()).collect();
    eprintln!("{} starts beside {} loops ({states:?}); the slowest took {slowest:?}", ids.len(), loops.len());
    assert!(slowest < Duration::from_secs(1), "a start took {slowest:?} while the loop ran");
    assert!(!loops.is_empty());
    for view in &loops {
        match view["state"].as_str() {
            Some("active") => assert_eq!(view["variables"]["result"], 100_000, "{view}"),
            Some("incident") => {
                let message = view["incidents"][0]["message"].as_str().expect("message");
                assert!(message.contains("time limit of 250 ms"), "{message}");
            }
            other => panic!("the loop instance is {other:?}: {view}"),
        }
    }
    let metrics = request(&server.addr, "GET", "/metrics", None, &[("Authorization", &format!("Bearer {token}"))])
        .expect("metrics");
    assert!(metrics.body.contains("reglament_batch_retries_total 0"), "a batch ran again:\n{}", metrics.body);
    let active = format!("reglament_instances_active {}", ids.len() + loops.len());
    assert!(metrics.body.contains(&active), "one instance per start ({active}):\n{}", metrics.body);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 503 is true: a start that waited longer than the queue timeout behind a long command is
/// withdrawn (`DriverError::Busy`) and never committed later, so retrying it makes no
/// duplicate. Through the driver, with a queue timeout of 50 ms behind a command that runs to
/// its 2 s time limit.
#[test]
fn a_start_withdrawn_after_waiting_is_never_committed() {
    use reglament_server::driver::{DriverConfig, DriverError, Op, Runtime};
    use reglament_store::{CountOf, Store};
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    tokio.block_on(async {
        let db = crate::store::TestDb::sqlite().await;
        let store = Store::connect(&db.url, 8).await.expect("connect");
        let config = DriverConfig {
            queue_timeout: Duration::from_millis(50),
            command_time_limit: Duration::from_secs(2),
            ..crate::store::test_driver_config()
        };
        // Steps enough for minutes: the time limit is what stops the loop, in any build.
        let mut env = crate::store::env();
        env.limits.steps = 1_000_000_000;
        let rt = Runtime::start(store.clone(), env, config).await.expect("driver");
        let looping = script_model("long_loop", "", "=count(for i in 1..(n) return count(for j in 1..(n) return j))");
        rt.deploy(looping.as_bytes(), None).await.expect("deploy");
        rt.deploy(script_model("quick", "", "=1").as_bytes(), None).await.expect("deploy");
        let start = |key: &str, variables: Value| Op::Start {
            definition: key.to_string(),
            business_key: None,
            variables: variables.as_object().cloned().unwrap_or_default(),
            start_event: None,
            by: None,
        };
        let long = {
            let rt = rt.clone();
            let op = start("long_loop", json!({"n": 100_000}));
            tokio::spawn(async move { rt.submit(op).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let waited = Instant::now();
        let busy = rt.submit(start("quick", json!({}))).await;
        assert!(matches!(busy, Err(DriverError::Busy)), "{busy:?}");
        assert!(waited.elapsed() < Duration::from_secs(1), "answered after {:?}", waited.elapsed());
        let stopped = Instant::now();
        long.await.expect("task").expect("the long command commits (with an incident)");
        assert!(stopped.elapsed() > Duration::from_millis(500), "the loop ran to its 2 s time limit");
        // The withdrawn start was dropped when its turn came; a retry starts exactly one.
        rt.submit(start("quick", json!({}))).await.expect("the retry");
        assert_eq!(store.count(CountOf::Instances).await.expect("count"), 2, "the loop and the retried start");
    });
}

/// A valid model of `tasks` user tasks written on one line, as some generators write them.
fn one_line_model(tasks: usize) -> String {
    let mut x = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d_wide" targetNamespace="urn:robust"><bpmn:process id="wide" name="Длинная строка" isExecutable="true"><bpmn:startEvent id="t0" />"#,
    );
    for i in 1..=tasks {
        x.push_str(&format!(
            r#"<bpmn:sequenceFlow id="f{i}" sourceRef="t{}" targetRef="t{i}" /><bpmn:userTask id="t{i}" name="Рассмотреть заявку номер {i} и подготовить ответ заявителю"><bpmn:extensionElements><zeebe:assignmentDefinition candidateGroups="clerks" /><zeebe:ioMapping><zeebe:output source="=decision" target="d{i}" /></zeebe:ioMapping></bpmn:extensionElements></bpmn:userTask>"#,
            i - 1
        ));
    }
    x.push_str(&format!(
        r#"<bpmn:sequenceFlow id="f_end" sourceRef="t{tasks}" targetRef="end" /><bpmn:endEvent id="end" /></bpmn:process></bpmn:definitions>"#
    ));
    assert!(!x.contains('\n'));
    x
}

/// Parsing was quadratic in the length of a line (column counting): a 9.4 MB one-line model
/// took five minutes and was never deployed, and two such deploys stopped /healthz. Now a
/// multi-megabyte one-line model deploys within the request time limit (a quadratic parse of it
/// would take minutes, and the request would be answered 503), and /healthz answers meanwhile.
#[test]
fn a_model_on_one_long_line_deploys_and_the_server_keeps_answering() {
    let (server, dir, all, _) = server_with("one-line", &[], &[]);
    let url = all.iter().find(|(k, _)| *k == "REGLAMENT_DATABASE_URL").expect("url").1.clone();
    let owner = add_user(&dir, &url, "owner", "process-owners");
    let model = one_line_model(12_000);
    assert!(model.len() > 4_000_000, "{} bytes", model.len());
    let addr = server.addr.clone();
    let deploy = std::thread::spawn(move || {
        let auth = format!("Bearer {owner}");
        request(
            &addr,
            "POST",
            "/api/definitions",
            Some(&model),
            &[("Authorization", auth.as_str()), ("Content-Type", "application/xml")],
        )
        .expect("the deploy is answered")
    });
    let mut answered = 0;
    while !deploy.is_finished() {
        let health = request(&server.addr, "GET", "/healthz", None, &[]).expect("/healthz answers during the deploy");
        assert_eq!(health.status, 200);
        answered += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let response = deploy.join().expect("the deploying thread");
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.json()["key"], json!("wide"), "{}", response.body);
    assert!(answered >= 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Models the server must refuse with a clear diagnostic, never a crash or an internal name:
/// the 20,000-term sum that once killed the server during the deploy request is refused with
/// the line, column and message `reglament validate` prints for it; malformed documents are
/// described in words, with a position. A range ending in a bare name (`1..n`) runs.
#[test]
fn deep_and_malformed_models_are_refused_at_deploy_as_validate_refuses_them() {
    let (server, dir, all, clerk) = server_with("refused", &[], &[]);
    let url = all.iter().find(|(k, _)| *k == "REGLAMENT_DATABASE_URL").expect("url").1.clone();
    let owner = add_user(&dir, &url, "owner", "process-owners");
    let auth = format!("Bearer {owner}");
    let deploy = |xml: &str| {
        let r = request(
            &server.addr,
            "POST",
            "/api/definitions",
            Some(xml),
            &[("Authorization", auth.as_str()), ("Content-Type", "application/xml")],
        )
        .expect("the deploy is answered");
        (r.status, r.json())
    };
    let cases = crate::support::repo_root().join("tests/validate");
    let deep = std::fs::read_to_string(cases.join("broken-feel-too-deep.bpmn")).expect("the validate case");
    let expected = std::fs::read_to_string(cases.join("broken-feel-too-deep.expected")).expect("its expectation");
    let (status, problem) = deploy(&deep);
    assert_eq!(status, 422, "{problem}");
    let e = &problem["errors"][0];
    let line = format!(
        "broken-feel-too-deep.bpmn:{}:{}: error: {} [{}]",
        e["line"],
        e["column"],
        e["message"].as_str().expect("message"),
        e["element"].as_str().expect("element")
    );
    assert_eq!(line, expected.trim_end(), "the server and validate say the same");
    assert_eq!(request(&server.addr, "GET", "/healthz", None, &[]).expect("up").status, 200);

    for bad in [
        "<bpmn:definitions",
        "<a x=\"<\"/>",
        "<?xml version=\"1.0\"?><a><b></a>",
        "<a>&unknown;</a>",
        "<a>&#xD800;</a>",
        "<a b=\"1\" b=\"2\"/>",
        "<a/><b/>",
        "\u{feff}\u{0}",
    ] {
        let (status, problem) = deploy(bad);
        assert_eq!(status, 422, "{bad}: {problem}");
        let e = &problem["errors"][0];
        let message = e["message"].as_str().expect("message");
        assert_eq!(e["code"], json!("malformed-xml"), "{bad}: {problem}");
        assert!(
            e["line"].as_u64().is_some_and(|l| l >= 1) && e["column"].as_u64().is_some_and(|c| c >= 1),
            "{problem}"
        );
        assert!(
            !message.contains("::") && !message.contains("Error(") && !message.contains("Error {"),
            "{bad}: the message names no library internals: {message}"
        );
    }

    let (status, d) = deploy(&script_model("ranges", "", "=count(for i in 1..n return i)"));
    assert_eq!(status, 201, "{d}");
    let (status, started) = call(
        &server.addr,
        &clerk,
        "POST",
        "/api/process-instances",
        Some(&json!({"definitionKey": "ranges", "variables": {"n": 7}})),
    );
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["variables"]["result"], json!(7), "{started}");
    let _ = std::fs::remove_dir_all(&dir);
}
