//! The store and driver contract, run on both backends: SQLite (a fresh file) and PostgreSQL
//! (a fresh database on 127.0.0.1:5432, or `REGLAMENT_TEST_PG_URL`). PostgreSQL is never
//! skipped: if it is not reachable the PostgreSQL half fails, so CI notices.

use reglament_engine::runtime::{Command, Env, Rejection};
use reglament_server::driver::{DriverConfig, DriverError, Op, Outcome, Runtime, task_id};
use reglament_store::{CountOf, InboxQuery, InboxSort, Store};
use serde_json::json;

use crate::support::repo_root;

/// A database for one test; dropped (PostgreSQL) or deleted (SQLite) afterwards.
pub struct TestDb {
    pub url: String,
    admin: Option<(String, String)>,
    file: Option<std::path::PathBuf>,
    /// Held while the database is in use, so the PostgreSQL restart test waits for other
    /// PostgreSQL tests (and they for it).
    _shared: Option<tokio::sync::RwLockReadGuard<'static, ()>>,
}

/// Taken for reading by every PostgreSQL test, for writing by the test that restarts the server.
pub static POSTGRES_SERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("reglament-test-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("test.db");
        TestDb { url: format!("sqlite://{}", file.display()), admin: None, file: Some(dir), _shared: None }
    }

    pub async fn postgres() -> TestDb {
        let shared = POSTGRES_SERVER.read().await;
        let mut db = TestDb::postgres_unlocked().await;
        db._shared = Some(shared);
        db
    }

    /// A fresh PostgreSQL database without taking the shared lock (for the test that holds the
    /// exclusive side).
    pub async fn postgres_unlocked() -> TestDb {
        let admin_url = std::env::var("REGLAMENT_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let name = format!("reglament_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin_url} is needed for this test (start it: pg_ctlcluster … main start): {e}")
        });
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
        let base = admin_url.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin_url.clone());
        TestDb { url: format!("{base}/{name}"), admin: Some((admin_url, name)), file: None, _shared: None }
    }

    pub async fn drop_db(self) {
        if let Some((admin, name)) = &self.admin
            && let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(admin).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
        }
        if let Some(dir) = &self.file {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn env() -> Env {
    Env {
        calendars: reglament_server::calendars::load(&[repo_root().join("definitions/calendars")]).expect("calendars"),
        ..Env::default()
    }
}

/// The driver's defaults on the tests' clock ([`crate::support::test_now`]).
pub fn test_driver_config() -> DriverConfig {
    DriverConfig {
        templates: Some(repo_root().join("definitions/templates")),
        ..DriverConfig::from_settings(
            &reglament_server::settings::Settings::defaults(),
            crate::support::test_clock(false),
        )
    }
}

pub async fn runtime(db: &TestDb) -> Runtime {
    let store = Store::connect(&db.url, 8).await.expect("connect and migrate");
    Runtime::start(store, env(), test_driver_config()).await.expect("driver")
}

pub fn bench_model(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("tests/scenarios/bench").join(name)).expect("model")
}

pub fn vars(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().expect("object").clone()
}

const TIMER_AND_MESSAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d" targetNamespace="urn:t">
  <bpmn:message id="m_reply" name="reply"><bpmn:extensionElements><zeebe:subscription correlationKey="=requestId" /></bpmn:extensionElements></bpmn:message>
  <bpmn:message id="m_new" name="new_request" />
  <bpmn:process id="waits" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait" />
    <bpmn:intermediateCatchEvent id="wait"><bpmn:timerEventDefinition><bpmn:timeDuration>PT0S</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="reply" />
    <bpmn:intermediateCatchEvent id="reply"><bpmn:messageEventDefinition messageRef="m_reply" /></bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f3" sourceRef="reply" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
  <bpmn:process id="by_message" isExecutable="true">
    <bpmn:startEvent id="ms"><bpmn:messageEventDefinition messageRef="m_new" /></bpmn:startEvent>
    <bpmn:sequenceFlow id="g1" sourceRef="ms" targetRef="call" />
    <bpmn:callActivity id="call"><bpmn:extensionElements><zeebe:calledElement processId="child" /></bpmn:extensionElements></bpmn:callActivity>
    <bpmn:sequenceFlow id="g2" sourceRef="call" targetRef="e2" />
    <bpmn:endEvent id="e2" />
  </bpmn:process>
  <bpmn:process id="child" isExecutable="true">
    <bpmn:startEvent id="cs" />
    <bpmn:sequenceFlow id="h1" sourceRef="cs" targetRef="ct" />
    <bpmn:scriptTask id="ct"><bpmn:extensionElements><zeebe:script expression="=&quot;done by child&quot;" resultVariable="childResult" /></bpmn:extensionElements></bpmn:scriptTask>
    <bpmn:sequenceFlow id="h2" sourceRef="ct" targetRef="ce" />
    <bpmn:endEvent id="ce" />
  </bpmn:process>
</bpmn:definitions>"#;

async fn started(rt: &Runtime, definition: &str, variables: serde_json::Value) -> String {
    match rt
        .submit(Op::Start {
            definition: definition.into(),
            business_key: None,
            variables: vars(variables),
            start_event: None,
            by: None,
        })
        .await
        .expect("start")
    {
        Outcome::Started { id, .. } => id,
        other => panic!("expected a start, got {other:?}"),
    }
}

async fn deploys_new_versions_only_when_the_model_changes(db: TestDb) {
    let rt = runtime(&db).await;
    let xml = bench_model("b_user_task.bpmn");
    let first = rt.deploy(&xml, Some("owner")).await.expect("deploy");
    assert_eq!((first[0].version, first[0].created), (1, true));
    let again = rt.deploy(&xml, Some("owner")).await.expect("deploy again");
    assert_eq!((again[0].version, again[0].created), (1, false), "same XML: no new version");
    let id = started(&rt, "b_user_task", json!({})).await;
    let changed = String::from_utf8(xml).unwrap().replace("Review request", "Review the request");
    let second = rt.deploy(changed.as_bytes(), None).await.expect("deploy changed");
    assert_eq!((second[0].version, second[0].created), (2, true));
    let row = rt.store().instance(&id).await.unwrap().expect("instance");
    assert_eq!(row.version, 1, "a running instance stays on its version");
    let newer = started(&rt, "b_user_task", json!({})).await;
    assert_eq!(rt.store().instance(&newer).await.unwrap().unwrap().version, 2);
    let bad = rt.deploy(b"<bpmn:definitions", None).await;
    assert!(matches!(bad, Err(reglament_server::driver::DeployError::Invalid(d)) if !d.is_empty()));
    db.drop_db().await;
}

async fn runs_a_user_task_through_the_inbox(db: TestDb) {
    let rt = runtime(&db).await;
    rt.deploy(&bench_model("b_user_task.bpmn"), None).await.unwrap();
    let id = started(&rt, "b_user_task", json!({"initiator": "ivanov@example.org"})).await;
    let query = InboxQuery {
        group: Some("reviewers".into()),
        assignee: None,
        state: "open".into(),
        sort: InboxSort::Due,
        due_before: None,
        cursor: None,
        limit: 50,
    };
    let inbox = rt.store().inbox(&query).await.unwrap();
    assert_eq!(inbox.len(), 1);
    let task = &inbox[0];
    assert_eq!((task.element_id.as_str(), task.instance_id.as_str()), ("review", id.as_str()));
    assert_eq!(task.name.as_deref(), Some("Review request"));
    let complete = Op::CompleteTask {
        task_id: task.id.clone(),
        variables: vars(json!({"decision": "approve"})),
        by: Some("petrov".into()),
    };
    rt.submit(complete.clone()).await.expect("complete");
    let twice = rt.submit(complete).await;
    assert!(matches!(twice, Err(DriverError::Rejected(Rejection::NoSuchTask(_)))), "{twice:?}");
    let row = rt.store().instance(&id).await.unwrap().unwrap();
    assert_eq!(row.status, "completed");
    assert_eq!(row.state.vars(0).unwrap()["decision"], json!("approve"));
    let stored = rt.store().task(&task.id).await.unwrap().unwrap();
    assert_eq!((stored.state.as_str(), stored.completed_by.as_deref()), ("completed", Some("petrov")));
    assert!(rt.store().inbox(&query).await.unwrap().is_empty());
    let history = rt.store().history(&id).await.unwrap();
    assert_eq!(history.len(), 2, "one history row per committed command");
    let events: Vec<_> =
        history.iter().flat_map(|(_, _, e)| reglament_store::codec::decode_events(e).unwrap()).collect();
    assert!(events.iter().any(|e| matches!(e, reglament_engine::runtime::Event::InstanceCompleted)));
    let unknown =
        rt.submit(Op::CompleteTask { task_id: "nope.1".into(), variables: Default::default(), by: None }).await;
    assert!(matches!(unknown, Err(DriverError::NotFound(_))), "{unknown:?}");
    db.drop_db().await;
}

async fn timers_fire_once_and_messages_correlate(db: TestDb) {
    let rt = runtime(&db).await;
    rt.deploy(TIMER_AND_MESSAGE.as_bytes(), None).await.unwrap();
    let id = started(&rt, "waits", json!({"requestId": "R-7"})).await;
    // The PT0S timer is due at once; lease it as the scheduler would.
    let now = crate::support::test_now() + chrono::Duration::seconds(1);
    let leased = rt.store().lease_due_timers("n1", now, now + chrono::Duration::seconds(30), 100).await.unwrap();
    assert_eq!(leased.len(), 1);
    let again = rt.store().lease_due_timers("n2", now, now + chrono::Duration::seconds(30), 100).await.unwrap();
    assert!(again.is_empty(), "a leased timer is not handed out twice");
    let (instance, key) = leased[0].clone();
    assert_eq!(
        rt.submit(Op::FireTimer { instance: instance.clone(), key }).await.unwrap(),
        Outcome::Applied { id: id.clone() }
    );
    assert_eq!(rt.submit(Op::FireTimer { instance, key }).await.unwrap(), Outcome::Stale, "fires exactly once");
    assert_eq!(rt.store().count(CountOf::Timers).await.unwrap(), 0);
    // A message for another key is buffered with a TTL, not delivered here.
    let other = Op::Message {
        name: "reply".into(),
        correlation_key: "R-8".into(),
        variables: Default::default(),
        ttl_ms: 60_000,
    };
    assert_eq!(rt.submit(other).await.unwrap(), Outcome::Buffered);
    let no_ttl =
        Op::Message { name: "reply".into(), correlation_key: "R-9".into(), variables: Default::default(), ttl_ms: 0 };
    assert!(matches!(rt.submit(no_ttl).await, Err(DriverError::NotFound(_))));
    let reply = Op::Message {
        name: "reply".into(),
        correlation_key: "R-7".into(),
        variables: vars(json!({"answer": 42})),
        ttl_ms: 0,
    };
    rt.submit(reply).await.expect("correlate");
    let row = rt.store().instance(&id).await.unwrap().unwrap();
    assert_eq!(row.status, "completed");
    assert_eq!(row.state.vars(0).unwrap()["answer"], json!(42));
    // A buffered message meets the subscription of a later instance.
    let later = started(&rt, "waits", json!({"requestId": "R-8"})).await;
    let now = crate::support::test_now() + chrono::Duration::seconds(1);
    for (instance, key) in rt.store().lease_due_timers("n1", now, now, 100).await.unwrap() {
        rt.submit(Op::FireTimer { instance, key }).await.unwrap();
    }
    assert_eq!(rt.store().instance(&later).await.unwrap().unwrap().status, "completed");
    // A message start event starts an instance, whose call activity runs a child in the same transaction.
    let started_by_message = Op::Message {
        name: "new_request".into(),
        correlation_key: "".into(),
        variables: Default::default(),
        ttl_ms: 0,
    };
    let Outcome::Started { id: parent, .. } = rt.submit(started_by_message).await.unwrap() else {
        panic!("not started")
    };
    let row = rt.store().instance(&parent).await.unwrap().unwrap();
    assert_eq!(row.status, "completed");
    assert_eq!(row.state.vars(0).unwrap()["childResult"], json!("done by child"));
    db.drop_db().await;
}

async fn inbox_pages_with_a_keyset_cursor(db: TestDb) {
    let rt = runtime(&db).await;
    rt.deploy(&bench_model("b_user_task.bpmn"), None).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(started(&rt, "b_user_task", json!({})).await);
    }
    let mut query = InboxQuery {
        group: Some("reviewers".into()),
        assignee: None,
        state: "open".into(),
        sort: InboxSort::Created,
        due_before: None,
        cursor: None,
        limit: 3,
    };
    let mut seen = Vec::new();
    loop {
        let page = rt.store().inbox(&query).await.unwrap();
        if page.is_empty() {
            break;
        }
        let last = page.last().unwrap();
        query.cursor = Some((last.sort_key(InboxSort::Created), last.id.clone()));
        seen.extend(page.into_iter().map(|t| t.instance_id));
    }
    assert_eq!(seen, ids, "every task once, in creation order");
    db.drop_db().await;
}

async fn concurrent_nodes_never_lose_a_command(db: TestDb) {
    // Two runtimes on one database act as two nodes; both complete tasks of the same instances.
    let a = runtime(&db).await;
    let b = runtime(&db).await;
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d" targetNamespace="urn:t">
  <process id="two" isExecutable="true">
    <startEvent id="s" /><sequenceFlow id="f0" sourceRef="s" targetRef="split" />
    <parallelGateway id="split" />
    <sequenceFlow id="f1" sourceRef="split" targetRef="t1" /><sequenceFlow id="f2" sourceRef="split" targetRef="t2" />
    <userTask id="t1"><extensionElements><zeebe:assignmentDefinition candidateGroups="g" /></extensionElements></userTask>
    <userTask id="t2"><extensionElements><zeebe:assignmentDefinition candidateGroups="g" /></extensionElements></userTask>
    <sequenceFlow id="f3" sourceRef="t1" targetRef="join" /><sequenceFlow id="f4" sourceRef="t2" targetRef="join" />
    <parallelGateway id="join" /><sequenceFlow id="f5" sourceRef="join" targetRef="e" /><endEvent id="e" />
  </process>
</definitions>"#;
    a.deploy(xml.as_bytes(), None).await.unwrap();
    let mut instances = Vec::new();
    for _ in 0..20 {
        instances.push(started(&a, "two", json!({})).await);
    }
    let mut handles = Vec::new();
    for id in &instances {
        let state = a.store().instance(id).await.unwrap().unwrap().state;
        let keys: Vec<u32> = state.open_tasks().map(|(key, _, _)| key).collect();
        assert_eq!(keys.len(), 2);
        for (rt, key) in [(a.clone(), keys[0]), (b.clone(), keys[1])] {
            let op = Op::CompleteTask { task_id: task_id(id, key), variables: Default::default(), by: None };
            handles.push(tokio::spawn(async move { rt.submit(op).await }));
        }
    }
    for h in handles {
        h.await.unwrap().expect("each completion is applied despite conflicts");
    }
    for id in &instances {
        let row = a.store().instance(id).await.unwrap().unwrap();
        assert_eq!(row.status, "completed", "both branches arrived at the join");
    }
    db.drop_db().await;
}

async fn stale_revisions_are_refused(db: TestDb) {
    let rt = runtime(&db).await;
    rt.deploy(&bench_model("b_user_task.bpmn"), None).await.unwrap();
    let id = started(&rt, "b_user_task", json!({})).await;
    let row = rt.store().instance(&id).await.unwrap().unwrap();
    let write = |rev_state: &reglament_engine::runtime::Instance| reglament_store::InstanceWrite {
        id: &id,
        definition_key: "b_user_task",
        version: 1,
        business_key: None,
        status: "active",
        incident: false,
        state: reglament_store::codec::encode_state(rev_state),
        parent_id: None,
        started_at: row.started_at,
        ended_at: None,
        deadline: None,
        history_len: row.history_len,
    };
    let mut tx = rt.store().begin().await.unwrap();
    assert!(tx.update_instance(&write(&row.state), row.rev).await.unwrap());
    assert!(!tx.update_instance(&write(&row.state), row.rev).await.unwrap(), "the old revision is gone");
    tx.commit().await.unwrap();
    let cancel = rt.submit(Op::Instance { id: id.clone(), command: Command::Cancel { reason: "test".into() } }).await;
    assert!(cancel.is_ok(), "the driver reloads the fresh revision: {cancel:?}");
    assert_eq!(rt.store().instance(&id).await.unwrap().unwrap().status, "cancelled");
    assert_eq!(rt.store().count(CountOf::OpenTasks).await.unwrap(), 0, "cancelling closes the task");
    db.drop_db().await;
}

async fn a_late_timer_start_event_fires_once_and_counts_the_missed(db: TestDb) {
    let rt = runtime(&db).await;
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="urn:t">
  <process id="hourly" isExecutable="true">
    <startEvent id="tick"><timerEventDefinition><timeCycle>R/PT1H</timeCycle></timerEventDefinition></startEvent>
    <sequenceFlow id="f" sourceRef="tick" targetRef="e" /><endEvent id="e" />
  </process>
</definitions>"#;
    rt.deploy(xml.as_bytes(), None).await.unwrap();
    // The engine was down for three and a half hours: the timer is long overdue.
    let late = reglament_store::ms(crate::support::test_now() - chrono::Duration::minutes(210));
    let mut tx = rt.store().begin().await.unwrap();
    tx.execute_sql(&format!("UPDATE start_timers SET due = {late}")).await.unwrap();
    tx.commit().await.unwrap();
    let fired = rt.submit(Op::FireStartTimer { definition: "hourly".into(), element: "tick".into() }).await.unwrap();
    assert!(matches!(fired, Outcome::Started { .. }), "{fired:?}");
    let again = rt.submit(Op::FireStartTimer { definition: "hourly".into(), element: "tick".into() }).await.unwrap();
    assert_eq!(again, Outcome::Stale, "fired once, not once per missed hour");
    let mut tx = rt.store().begin().await.unwrap();
    let (_, due, fired) = tx.start_timer("hourly", "tick").await.unwrap().expect("the cycle goes on");
    tx.rollback().await.unwrap();
    assert!(due > crate::support::test_now(), "the next firing is after now: {due}");
    assert_eq!(fired, 1);
    assert_eq!(rt.store().count(CountOf::Instances).await.unwrap(), 1);
    db.drop_db().await;
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    tokio::time::timeout(std::time::Duration::from_secs(120), super::$name(super::TestDb::sqlite().await))
                        .await
                        .expect("finished in time");
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    tokio::time::timeout(std::time::Duration::from_secs(120), super::$name(super::TestDb::postgres().await))
                        .await
                        .expect("finished in time");
                }
            )*
        }
    };
}

contract!(
    deploys_new_versions_only_when_the_model_changes,
    runs_a_user_task_through_the_inbox,
    timers_fire_once_and_messages_correlate,
    inbox_pages_with_a_keyset_cursor,
    concurrent_nodes_never_lose_a_command,
    stale_revisions_are_refused,
    a_late_timer_start_event_fires_once_and_counts_the_missed,
);
