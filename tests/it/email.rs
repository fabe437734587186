//! Email (issue 6) against a real SMTP server on loopback: `tests/smtp/server.py` (aiosmtpd),
//! started as a child process, storing each message it accepts as an `.eml` file.
//!
//! - what arrives: recipients from the directory rules, the subject, Cyrillic bodies and
//!   headers as received, the stable Message-ID, an HTML part and a CSV attachment;
//! - reminders and escalations modelled with non-interrupting boundary timers;
//! - the SMTP server down (and killed and restarted): work goes on, emails wait, then each is
//!   delivered exactly once (PostgreSQL);
//! - the engine killed with SIGKILL between commit and send, and while sending (the real binary);
//! - a permanent rejection: an incident in the API and in /metrics, resolved with a corrected
//!   address, then delivered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reglament_server::driver::{DriverConfig, Op, Outcome, Runtime};
use reglament_server::email::{EmailConfig, Transport};
use reglament_store::Store;
use reglament_store::auth::UserRecord;
use reglament_store::directory::{Directory, Unit};
use serde_json::{Value, json};

use crate::mail::{Received, Smtp, smtp_url, temp_dir, wait_for};
use crate::server::{Server, add_user, call, free_port, request};
use crate::store::{TestDb, env, test_driver_config, vars};
use crate::support::repo_root;

/// Polls `check` until it gives a value, or fails after `limit` saying what was awaited.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- models and the directory ---------------------------------------------------------------

const NS: &str = r#"xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d" targetNamespace="urn:email""#;

/// A registration notice sent while the review task waits (parallel branches).
fn notice_model() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions {NS}>
  <bpmn:process id="notice" name="Регистрация заявки" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="fork" />
    <bpmn:parallelGateway id="fork" />
    <bpmn:sequenceFlow id="f2" sourceRef="fork" targetRef="review" />
    <bpmn:sequenceFlow id="f3" sourceRef="fork" targetRef="notify" />
    <bpmn:userTask id="review" name="Рассмотреть заявку">
      <bpmn:extensionElements><zeebe:assignmentDefinition assignee="=clerk" /></bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:sendTask id="notify" name="Уведомить о регистрации">
      <bpmn:extensionElements>
        <zeebe:taskDefinition type="email" />
        <zeebe:taskHeaders>
          <zeebe:header key="to" value="initiator" />
          <zeebe:header key="recipients" value="group:unit-heads, head-of:=unitId; user:petrov" />
          <zeebe:header key="cc" value="assignee-of:review" />
          <zeebe:header key="subject" value='="Заявка " + requestNo' />
          <zeebe:header key="template" value="registered" />
          <zeebe:header key="task" value="review" />
          <zeebe:header key="attachment" value="=reportFile" />
        </zeebe:taskHeaders>
      </bpmn:extensionElements>
    </bpmn:sendTask>
    <bpmn:sequenceFlow id="f4" sourceRef="review" targetRef="end1" />
    <bpmn:sequenceFlow id="f5" sourceRef="notify" targetRef="end2" />
    <bpmn:endEvent id="end1" />
    <bpmn:endEvent id="end2" />
  </bpmn:process>
</bpmn:definitions>"#
    )
}

/// A draft with a reminder after 1 s and an escalation to the head of the assignee's unit
/// after 2 s (non-interrupting boundary timers: the task stays open).
fn escalation_model() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions {NS}>
  <bpmn:process id="cur_draft" name="Комментарий для ЦУР" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="draft" />
    <bpmn:userTask id="draft" name="Подготовить проект комментария">
      <bpmn:extensionElements><zeebe:assignmentDefinition assignee="=clerk" /></bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:boundaryEvent id="soon" attachedToRef="draft" cancelActivity="false">
      <bpmn:timerEventDefinition><bpmn:timeDuration>PT1S</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:boundaryEvent id="late" attachedToRef="draft" cancelActivity="false">
      <bpmn:timerEventDefinition><bpmn:timeDuration>PT2S</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="soon" targetRef="remind" />
    <bpmn:sequenceFlow id="f3" sourceRef="late" targetRef="escalate" />
    <bpmn:sendTask id="remind" name="Напомнить исполнителю">
      <bpmn:extensionElements>
        <zeebe:taskDefinition type="email" />
        <zeebe:taskHeaders>
          <zeebe:header key="to" value="assignee-of:draft" />
          <zeebe:header key="template" value="task-reminder" />
          <zeebe:header key="task" value="draft" />
        </zeebe:taskHeaders>
      </bpmn:extensionElements>
    </bpmn:sendTask>
    <bpmn:sendTask id="escalate" name="Сообщить руководителю">
      <bpmn:extensionElements>
        <zeebe:taskDefinition type="email" />
        <zeebe:taskHeaders>
          <zeebe:header key="to" value="head-of:assignee-of:draft" />
          <zeebe:header key="cc" value="head-of:=unitId" />
          <zeebe:header key="template" value="task-escalation" />
          <zeebe:header key="task" value="draft" />
        </zeebe:taskHeaders>
      </bpmn:extensionElements>
    </bpmn:sendTask>
    <bpmn:sequenceFlow id="f4" sourceRef="remind" targetRef="e1" />
    <bpmn:sequenceFlow id="f5" sourceRef="escalate" targetRef="e2" />
    <bpmn:sequenceFlow id="f6" sourceRef="draft" targetRef="e3" />
    <bpmn:endEvent id="e1" />
    <bpmn:endEvent id="e2" />
    <bpmn:endEvent id="e3" />
  </bpmn:process>
</bpmn:definitions>"#
    )
}

/// An email on one branch, a user task on the other, joined: the instance ends when both are
/// done.
fn parallel_model() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions {NS}>
  <bpmn:process id="parallel" name="Письмо и работа" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="fork" />
    <bpmn:parallelGateway id="fork" />
    <bpmn:sequenceFlow id="f2" sourceRef="fork" targetRef="notify" />
    <bpmn:sequenceFlow id="f3" sourceRef="fork" targetRef="work" />
    <bpmn:sendTask id="notify" name="Уведомить">
      <bpmn:extensionElements>
        <zeebe:taskDefinition type="email" />
        <zeebe:taskHeaders>
          <zeebe:header key="to" value="=to" />
          <zeebe:header key="subject" value='="Уведомление № " + string(n)' />
          <zeebe:header key="body" value='="Здравствуйте! Это письмо № " + string(n) + "."' />
        </zeebe:taskHeaders>
      </bpmn:extensionElements>
    </bpmn:sendTask>
    <bpmn:userTask id="work" name="Работа">
      <bpmn:extensionElements><zeebe:assignmentDefinition candidateGroups="clerks" /></bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f4" sourceRef="notify" targetRef="join" />
    <bpmn:sequenceFlow id="f5" sourceRef="work" targetRef="join" />
    <bpmn:parallelGateway id="join" />
    <bpmn:sequenceFlow id="f6" sourceRef="join" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>"#
    )
}

/// Start → send task → end.
fn send_model() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions {NS}>
  <bpmn:process id="send" name="Ответ заявителю" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="notify" />
    <bpmn:sendTask id="notify" name="Направить ответ">
      <bpmn:extensionElements>
        <zeebe:taskDefinition type="email" />
        <zeebe:taskHeaders>
          <zeebe:header key="to" value="=recipient" />
          <zeebe:header key="subject" value='="Ответ на обращение № " + string(n)' />
          <zeebe:header key="body" value='="Ваше обращение № " + string(n) + " рассмотрено."' />
        </zeebe:taskHeaders>
      </bpmn:extensionElements>
    </bpmn:sendTask>
    <bpmn:sequenceFlow id="f2" sourceRef="notify" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>"#
    )
}

const REGISTERED_TXT: &str = "Subject: Заявка {{ requestNo }}: зарегистрирована\n\n\
Уважаемый {{ initiatorName }}!\n\n\
Ваша заявка «{{ title }}» зарегистрирована. Её рассмотрит {{ task.assignee }}\n\
Задача: {{ task_url }}\nХод рассмотрения: {{ instance_url }}\n";

const REGISTERED_HTML: &str = "<p>Уважаемый {{ initiatorName }}!</p>\n<p>Ваша заявка «{{ title }}» зарегистрирована.</p>\n\
<p><a href=\"{{ taskUrl }}\">Задача</a></p>\n";

async fn add_people(store: &Store) {
    let people = [
        ("ivanov", "Иванов Иван Иванович", &[][..]),
        ("petrov", "Петров Пётр", &[][..]),
        ("sidorova", "Сидорова Анна", &["unit-heads"][..]),
        ("kuznetsov", "Кузнецов Олег", &["unit-heads"][..]),
        ("smirnova", "Смирнова Мария", &["clerks"][..]),
        ("orlov", "Орлов Глеб", &[][..]),
    ];
    for (login, name, groups) in people {
        let user = UserRecord {
            login: login.into(),
            name: Some(name.into()),
            email: format!("{login}@example.org"),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            disabled: false,
            created_at: crate::support::test_now(),
        };
        assert!(store.create_user(&user).await.expect("create user"));
    }
    let directory = Directory {
        units: vec![
            Unit {
                id: "ministry".into(), name: "Министерство".into(), head: Some("orlov".into()), ..Unit::default()
            },
            Unit {
                id: "oapr".into(),
                name: "Отдел анализа и перспективного развития".into(),
                head: Some("sidorova".into()),
                parent: Some("ministry".into()),
                members: vec!["petrov".into(), "smirnova".into()],
            },
        ],
        roles: BTreeMap::from([("cur-contact".to_string(), vec!["smirnova".to_string()])]),
        people: Vec::new(),
        groups: BTreeMap::from([("lawyers".to_string(), "Юристы".to_string())]),
    };
    store.replace_directory(&directory, crate::support::test_now()).await.expect("directory");
    assert_eq!(store.directory().await.expect("read back"), directory);
}

fn test_config(smtp: String, templates: PathBuf) -> EmailConfig {
    EmailConfig {
        transport: Transport::Smtp { url: smtp },
        from: "Регламент Минпромторга <reglament@example.org>".into(),
        templates,
        base_url: "https://reglament.example.org".into(),
        lease: Duration::from_secs(10),
        batch: 64,
        connections: 4,
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(800),
        timeout: Duration::from_secs(5),
        max_sleep: Duration::from_millis(200),
        ..EmailConfig::from_settings(&reglament_server::settings::Settings::defaults())
    }
}

/// The engine and its dispatcher, in this process.
struct Engine {
    rt: Runtime,
    stop: tokio::sync::watch::Sender<bool>,
    mail: tokio::task::JoinHandle<()>,
}

impl Engine {
    async fn start(db: &TestDb, config: EmailConfig, models: &[String]) -> Engine {
        let store = reglament_store::Store::connect(&db.url, 8).await.expect("connect and migrate");
        let driver = DriverConfig { templates: Some(config.templates.clone()), ..test_driver_config() };
        let rt = Runtime::start(store, env(), driver).await.expect("driver");
        for model in models {
            rt.deploy(model.as_bytes(), Some("test")).await.expect("deploy");
        }
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mail = tokio::spawn(reglament_server::email::run(rt.clone(), config, stop_rx));
        Engine { rt, stop, mail }
    }

    async fn start_instance(&self, definition: &str, business_key: Option<&str>, variables: Value) -> String {
        let op = Op::Start {
            definition: definition.into(),
            business_key: business_key.map(str::to_owned),
            variables: vars(variables),
            start_event: None,
            by: None,
        };
        match self.rt.submit(op).await.expect("start") {
            Outcome::Started { id, .. } => id,
            other => panic!("expected a start, got {other:?}"),
        }
    }

    /// Completes the instance's `work` task.
    async fn complete_work(&self, id: &str) {
        let task = self.rt.store().task_of_element(id, "work").await.unwrap().expect("the work task");
        let done = self.rt.submit(Op::CompleteTask { task_id: task.id, variables: vars(json!({})), by: None }).await;
        assert!(done.is_ok(), "work goes on while the SMTP server is down: {done:?}");
    }

    async fn status(&self, id: &str) -> String {
        self.rt.store().instance(id).await.expect("read").expect("instance").status
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.mail.await.expect("the dispatcher stops");
    }
}

// ---- 1. what arrives --------------------------------------------------------------------------

async fn recipients_subject_and_cyrillic_arrive_as_sent(db: TestDb) {
    let mail_dir = temp_dir("received");
    let templates = temp_dir("templates");
    std::fs::write(templates.join("registered.txt"), REGISTERED_TXT).unwrap();
    std::fs::write(templates.join("registered.html"), REGISTERED_HTML).unwrap();
    let smtp = Smtp::start(free_port(), &mail_dir);
    let engine = Engine::start(&db, test_config(smtp.url(), templates.clone()), &[notice_model()]).await;
    add_people(engine.rt.store()).await;

    let csv = "Показатель;Значение\nОбращений;12\n";
    let id = engine
        .start_instance(
            "notice",
            Some("REQ-7"),
            json!({
                "initiator": "ivanov", "initiatorName": "Иван Иванович", "clerk": "smirnova", "unitId": "oapr",
                "requestNo": "REQ-7", "title": "Изменение реестра процессов",
                "reportFile": {"name": "сводка.csv", "content": csv},
            }),
        )
        .await;
    let got = eventually(Duration::from_secs(30), "the registration email", || async {
        let r = smtp.received();
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(got.len(), 1);
    let mail = &got[0];

    // The envelope: To rules (initiator, group, head-of a unit from a variable — already in the
    // group, so once —, a user) and Cc (the review task's assignee).
    let rcpt: BTreeSet<&str> = mail.rcpt_tos.iter().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "ivanov@example.org",
        "kuznetsov@example.org",
        "petrov@example.org",
        "sidorova@example.org",
        "smirnova@example.org",
    ]
    .into();
    assert_eq!(rcpt, expected);
    assert_eq!(mail.rcpt_tos.len(), 5, "nobody twice: {:?}", mail.rcpt_tos);
    let to = mail.header("To");
    assert!(to.contains("Иванов Иван Иванович <ivanov@example.org>"), "{to}");
    assert!(to.contains("Сидорова Анна <sidorova@example.org>"), "{to}");
    assert_eq!(mail.header("Cc"), "Смирнова Мария <smirnova@example.org>");
    assert_eq!(mail.header("From"), "Регламент Минпромторга <reglament@example.org>");

    // Headers are RFC 2047 encoded words on the wire and decode to the Russian text.
    let raw_subject = mail.raw_header("Subject");
    assert!(raw_subject.to_ascii_lowercase().starts_with("=?utf-8?"), "{raw_subject}");
    assert!(raw_subject.is_ascii());
    assert_eq!(mail.header("Subject"), "Заявка REQ-7: зарегистрирована");
    assert!(mail.raw_header("From").is_ascii() && mail.raw_header("To").is_ascii());
    assert_eq!(mail.header("Auto-Submitted"), "auto-generated");

    // The stable Message-ID of the outbox row.
    let rows = engine.rt.store().outbox_of_instance(&id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(mail.message_id(), rows[0].message_id);
    assert_eq!(rows[0].message_id, format!("<{}@reglament>", rows[0].id));

    // multipart/mixed: (text/plain + text/html) and the CSV.
    let parsed = mail.parsed();
    assert_eq!(parsed.ctype.mimetype, "multipart/mixed");
    let alternative = &parsed.subparts[0];
    assert_eq!(alternative.ctype.mimetype, "multipart/alternative");
    let text = &alternative.subparts[0];
    assert_eq!(text.ctype.mimetype, "text/plain");
    assert_eq!(text.ctype.charset.to_ascii_lowercase(), "utf-8");
    let body = text.get_body().unwrap();
    let review = engine.rt.store().task_of_element(&id, "review").await.unwrap().expect("the review task");
    let task_url = format!("https://reglament.example.org/tasks/{}", review.id);
    assert!(body.contains("Уважаемый Иван Иванович!"), "{body}");
    assert!(
        body.contains("Ваша заявка «Изменение реестра процессов» зарегистрирована. Её рассмотрит smirnova"),
        "{body}"
    );
    assert!(body.contains(&format!("Задача: {task_url}")), "{body}");
    assert!(body.contains(&format!("Ход рассмотрения: https://reglament.example.org/instances/{id}")), "{body}");
    let html = &alternative.subparts[1];
    assert_eq!(html.ctype.mimetype, "text/html");
    let html = html.get_body().unwrap();
    assert!(html.contains(&format!("<a href=\"{task_url}\">Задача</a>")), "{html}");
    let file = &parsed.subparts[1];
    assert_eq!(file.ctype.mimetype, "text/csv");
    assert_eq!(file.get_content_disposition().params.get("filename").map(String::as_str), Some("сводка.csv"));
    // A byte order mark for spreadsheet programs; text travels with CRLF line ends (RFC 4180 too).
    let bytes = file.get_body_raw().unwrap();
    assert_eq!(String::from_utf8(bytes).unwrap(), format!("\u{feff}{}", csv.replace('\n', "\r\n")));

    // The send task waited for the server's acceptance, then moved on; the row is `sent`.
    let def = engine.rt.definition("notice", 1).await.unwrap();
    eventually(Duration::from_secs(10), "the send task to complete", || async {
        let row = engine.rt.store().outbox_row(&rows[0].id).await.unwrap().unwrap();
        let state = engine.rt.store().instance(&id).await.unwrap().unwrap().state;
        let waiting: Vec<&str> = state.elements.iter().map(|e| def.node_id(e.node)).collect();
        (row.state == "sent" && waiting == ["review"]).then_some(())
    })
    .await;
    let row = engine.rt.store().outbox_row(&rows[0].id).await.unwrap().unwrap();
    assert!(row.sent_at.is_some());
    assert_eq!(row.attempts, 1);
    engine.stop().await;
    db.drop_db().await;
}

async fn reminder_and_escalation_reach_the_assignee_and_the_head(db: TestDb) {
    let mail_dir = temp_dir("escalation");
    let smtp = Smtp::start(free_port(), &mail_dir);
    let templates = repo_root().join("definitions/templates");
    let engine = Engine::start(&db, test_config(smtp.url(), templates), &[escalation_model()]).await;
    add_people(engine.rt.store()).await;
    let scheduler = tokio::spawn(reglament_server::scheduler::run(
        engine.rt.clone(),
        reglament_server::scheduler::SchedulerConfig::from_settings(
            &reglament_server::settings::Settings::defaults(),
            false,
        ),
        engine.stop.subscribe(),
    ));

    let id =
        engine.start_instance("cur_draft", Some("ЦУР-15"), json!({"clerk": "smirnova", "unitId": "ministry"})).await;
    let got = eventually(Duration::from_secs(30), "the reminder and the escalation", || async {
        let r = smtp.received();
        (r.len() >= 2).then_some(r)
    })
    .await;
    let by_subject: BTreeMap<String, &Received> = got.iter().map(|m| (m.header("Subject"), m)).collect();
    let reminder = by_subject["Напоминание: Подготовить проект комментария (ЦУР-15)"];
    assert_eq!(reminder.rcpt_tos, vec!["smirnova@example.org"]);
    let text = reminder.parsed().get_body().unwrap();
    assert!(text.contains("Напоминаем о задаче «Подготовить проект комментария» по делу ЦУР-15."), "{text}");
    let draft = engine.rt.store().task_of_element(&id, "draft").await.unwrap().expect("the draft task");
    assert!(text.contains(&format!("Открыть задачу: https://reglament.example.org/tasks/{}", draft.id)), "{text}");

    // To: the head of the assignee's unit; Cc: the head of the unit named by a variable.
    let escalation = by_subject["Просрочена задача «Подготовить проект комментария» (ЦУР-15)"];
    assert_eq!(escalation.header("To"), "Сидорова Анна <sidorova@example.org>");
    assert_eq!(escalation.header("Cc"), "Орлов Глеб <orlov@example.org>");
    let parsed = escalation.parsed();
    assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
    let text = parsed.subparts[0].get_body().unwrap();
    assert!(text.contains("Исполнитель: Смирнова Мария."), "the full name, not the login: {text}");
    assert!(parsed.subparts[1].get_body().unwrap().contains("<b>«Подготовить проект комментария»</b>"));

    // The task is still open: notifications on their own paths hold nothing up.
    assert_eq!(engine.status(&id).await, "active");
    let task = engine.rt.store().task(&draft.id).await.unwrap().unwrap();
    assert_eq!(task.state, "open");
    engine.stop().await;
    let _ = scheduler.await;
    db.drop_db().await;
}

async fn a_rule_that_finds_nobody_is_an_incident(db: TestDb) {
    let mail_dir = temp_dir("nobody");
    let smtp = Smtp::start(free_port(), &mail_dir);
    let engine = Engine::start(&db, test_config(smtp.url(), temp_dir("t")), &[send_model()]).await;
    add_people(engine.rt.store()).await;
    let id = engine.start_instance("send", None, json!({"recipient": "user:nobody", "n": 1})).await;
    let row = engine.rt.store().instance(&id).await.unwrap().unwrap();
    assert_eq!(row.status, "active");
    let message = eventually(Duration::from_secs(20), "an incident", || async {
        let state = engine.rt.store().instance(&id).await.unwrap().unwrap().state;
        state.incidents.first().map(|i| i.message.clone())
    })
    .await;
    assert!(message.contains("there is no user `nobody` in the directory"), "{message}");
    assert!(smtp.received().is_empty());
    engine.stop().await;
    db.drop_db().await;
}

/// Addresses taken from variables reach only the domains the operator allows for the process
/// (`mail_variable_domains`): another is an incident, nothing is sent; an allowed one is sent.
async fn addresses_from_variables_stay_in_the_allowed_domains(db: TestDb) {
    let mail_dir = temp_dir("domains");
    let smtp = Smtp::start(free_port(), &mail_dir);
    let config = EmailConfig {
        variable_domains: "send=minprom.example.org; *=*".parse().unwrap(),
        ..test_config(smtp.url(), temp_dir("t"))
    };
    let engine = Engine::start(&db, config, &[send_model()]).await;
    let id = engine.start_instance("send", None, json!({"recipient": "attacker@evil.example.org", "n": 1})).await;
    let message = eventually(Duration::from_secs(20), "an incident", || async {
        let state = engine.rt.store().instance(&id).await.unwrap().unwrap().state;
        state.incidents.first().map(|i| i.message.clone())
    })
    .await;
    assert!(message.contains("attacker@evil.example.org") && message.contains("mail_variable_domains"), "{message}");
    let ok =
        engine.start_instance("send", None, json!({"recipient": "Петров <petrov@minprom.example.org>", "n": 2})).await;
    eventually(Duration::from_secs(20), "the allowed address to be sent to", || async {
        (engine.status(&ok).await == "completed").then_some(())
    })
    .await;
    let received = smtp.received();
    assert_eq!(received.len(), 1, "only the allowed address");
    assert_eq!(received[0].rcpt_tos, vec!["petrov@minprom.example.org".to_string()]);
    engine.stop().await;
    db.drop_db().await;
}

async fn a_temporary_refusal_is_retried_not_an_incident(db: TestDb) {
    let mail_dir = temp_dir("tempfail");
    let smtp = Smtp::start(free_port(), &mail_dir);
    let engine = Engine::start(&db, test_config(smtp.url(), temp_dir("t")), &[send_model()]).await;
    let id = engine.start_instance("send", None, json!({"recipient": "tempfail@example.org", "n": 3})).await;
    let row = eventually(Duration::from_secs(20), "three tries", || async {
        let rows = engine.rt.store().outbox_of_instance(&id).await.unwrap();
        rows.into_iter().find(|r| r.attempts >= 3)
    })
    .await;
    assert_eq!(row.state, "pending");
    assert!(row.last_error.as_deref().unwrap_or_default().contains("451"), "{row:?}");
    assert!(row.due > row.created_at, "the next try waits: {row:?}");
    let state = engine.rt.store().instance(&id).await.unwrap().unwrap();
    assert!(state.state.incidents.is_empty() && state.status == "active");
    assert!(smtp.received().is_empty());
    engine.stop().await;
    db.drop_db().await;
}

async fn without_smtp_emails_go_to_the_mail_folder(db: TestDb) {
    let folder = temp_dir("mail-out");
    let config = EmailConfig {
        transport: Transport::Files { dir: folder.clone() },
        ..test_config(String::new(), temp_dir("t"))
    };
    let engine = Engine::start(&db, config, &[send_model()]).await;
    let id = engine.start_instance("send", None, json!({"recipient": "Заявитель <a@example.org>", "n": 5})).await;
    eventually(Duration::from_secs(20), "the instance to complete", || async {
        (engine.status(&id).await == "completed").then_some(())
    })
    .await;
    // The row is marked sent after the instance heard of it (the mark is written in the
    // background), so it may still read "accepted" for a moment.
    let row = eventually(Duration::from_secs(20), "the outbox row to be marked sent", || async {
        let row = engine.rt.store().outbox_of_instance(&id).await.unwrap().remove(0);
        (row.state == "sent").then_some(row)
    })
    .await;
    let raw = std::fs::read(folder.join(format!("{}.eml", row.id))).expect("the file is named by the outbox row");
    let mail = Received { raw, rcpt_tos: Vec::new() };
    assert_eq!(mail.header("Subject"), "Ответ на обращение № 5");
    assert_eq!(mail.header("To"), "Заявитель <a@example.org>");
    assert_eq!(mail.message_id(), row.message_id);
    assert_eq!(row.state, "sent");
    engine.stop().await;
    db.drop_db().await;
}

// ---- 2. the SMTP server down ------------------------------------------------------------------

async fn smtp_down_work_goes_on_and_every_email_arrives_once(db: TestDb) {
    let mail_dir = temp_dir("down");
    let port = free_port();
    let engine = Engine::start(&db, test_config(smtp_url(port), temp_dir("t")), &[parallel_model()]).await;
    let store = engine.rt.store().clone();

    // The server is not there: instances start, their user tasks are done, emails wait.
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(
            engine.start_instance("parallel", None, json!({"to": format!("person{n}@example.org"), "n": n})).await,
        );
    }
    for id in &ids {
        engine.complete_work(id).await;
    }
    // While the server is down the dispatcher pauses (up to `retry_max`) after a refused
    // connection instead of failing every email of a round, so under load it may try only one
    // email per round: the limit leaves room for ten rounds on a busy machine.
    eventually(Duration::from_secs(45), "every email to have been tried and put back", || async {
        let mut tried = 0;
        for id in &ids {
            let rows = store.outbox_of_instance(id).await.unwrap();
            assert!(rows.iter().all(|r| r.state == "pending"), "{rows:?}");
            tried += rows.iter().filter(|r| r.attempts >= 1 && r.last_error.is_some()).count();
        }
        (tried == ids.len()).then_some(())
    })
    .await;
    for id in &ids {
        assert_eq!(engine.status(id).await, "active", "waits at the join for its email");
    }

    // The server comes up: each email arrives once and the instances finish.
    let mut smtp = Smtp::start(port, &mail_dir);
    eventually(Duration::from_secs(30), "the first ten instances to complete", || async {
        for id in &ids {
            if engine.status(id).await != "completed" {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert_eq!(smtp.received().len(), 10);

    // Killed and restarted while more emails are queued.
    smtp.kill();
    let mut more = Vec::new();
    for n in 10..20 {
        more.push(
            engine.start_instance("parallel", None, json!({"to": format!("person{n}@example.org"), "n": n})).await,
        );
    }
    // Queued, and the dispatcher has met the dead server: the restart below finds emails that
    // have already failed once beside emails never tried.
    eventually(Duration::from_secs(30), "a new email to have been tried", || async {
        let mut tried = 0;
        for id in &more {
            let rows = store.outbox_of_instance(id).await.unwrap();
            assert!(rows.iter().all(|r| r.state == "pending"), "nothing is sent while the server is down: {rows:?}");
            tried += rows.iter().filter(|r| r.attempts >= 1).count();
        }
        (tried >= 1).then_some(())
    })
    .await;
    for id in &more {
        engine.complete_work(id).await;
    }
    let smtp = Smtp::start(port, &mail_dir);
    ids.extend(more);
    eventually(Duration::from_secs(30), "all twenty instances to complete", || async {
        for id in &ids {
            if engine.status(id).await != "completed" {
                return None;
            }
        }
        Some(())
    })
    .await;

    let got = smtp.received();
    let mut expected = BTreeSet::new();
    for id in &ids {
        for row in store.outbox_of_instance(id).await.unwrap() {
            assert_eq!(row.state, "sent");
            expected.insert(row.message_id);
        }
    }
    let ids_received: Vec<String> = got.iter().map(Received::message_id).collect();
    assert_eq!(ids_received.len(), 20, "exactly once each: {ids_received:?}");
    assert_eq!(ids_received.iter().cloned().collect::<BTreeSet<_>>(), expected);
    let subjects: BTreeSet<String> = got.iter().map(|m| m.header("Subject")).collect();
    assert!(subjects.contains("Уведомление № 0") && subjects.contains("Уведомление № 19"));
    engine.stop().await;
    db.drop_db().await;
}

// ---- 3 and 4: the real binary -----------------------------------------------------------------

/// A folder with definitions, a database, and a user; `reglament serve` runs there.
struct Site {
    dir: PathBuf,
    url: String,
    token: String,
}

impl Site {
    fn new(label: &str, model: &str, groups: &str) -> Site {
        let dir = temp_dir(label);
        std::fs::create_dir_all(dir.join("definitions")).unwrap();
        std::fs::write(dir.join("definitions/model.bpmn"), model).unwrap();
        let url = format!("sqlite://{}", dir.join("reglament.db").display());
        let token = add_user(&dir, &url, "owner", groups);
        Site { dir, url, token }
    }

    fn serve(&self, smtp_port: u16) -> Server {
        Server::start(
            &self.dir,
            &[
                ("REGLAMENT_DATABASE_URL", self.url.clone()),
                ("REGLAMENT_SMTP_URL", smtp_url(smtp_port)),
                ("REGLAMENT_MAIL_RETRY_SECONDS", "0.2".into()),
                ("REGLAMENT_LEASE_SECONDS", "2".into()),
                ("REGLAMENT_BASE_URL", "https://reglament.example.org".into()),
            ],
        )
    }

    fn call(&self, server: &Server, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        call(&server.addr, &self.token, method, path, body)
    }

    fn start(&self, server: &Server, definition: &str, variables: Value) -> String {
        let (status, body) = self.call(
            server,
            "POST",
            "/api/process-instances",
            Some(&json!({"definitionKey": definition, "variables": variables})),
        );
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    fn outbox(&self) -> Vec<reglament_store::outbox::OutboxRow> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = Store::connect(&self.url, 1).await.unwrap();
            let mut rows = Vec::new();
            for id in self.instance_ids(&store).await {
                rows.extend(store.outbox_of_instance(&id).await.unwrap());
            }
            store.close().await;
            rows
        })
    }

    async fn instance_ids(&self, store: &Store) -> Vec<String> {
        let mut tx = store.begin().await.unwrap();
        let ids = tx.instances_summary().await.unwrap().into_iter().map(|(id, _, _)| id).collect();
        tx.rollback().await.unwrap();
        ids
    }
}

#[test]
fn engine_killed_between_commit_and_send_delivers_each_email_once() {
    let site = Site::new("kill", &send_model(), "clerks");
    let mail_dir = site.dir.join("received");
    let port = free_port();

    // Phase 1: the state changes commit (each start answers 201 with its email in the outbox),
    // nothing can be sent (no SMTP server yet), and the engine is killed with SIGKILL.
    let mut server = site.serve(port);
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(site.start(&server, "send", json!({"recipient": format!("person{n}@example.org"), "n": n})));
    }
    server.kill9();
    let pending = site.outbox();
    assert_eq!(pending.len(), 20);
    assert!(pending.iter().all(|r| r.state == "pending" && r.sent_at.is_none()), "{pending:?}");

    // Restarted with the SMTP server up: every email exactly once, every send task done.
    let smtp = Smtp::start(port, &mail_dir);
    let server = site.serve(port);
    wait_for(Duration::from_secs(60), "every instance to complete", || {
        ids.iter()
            .all(|id| {
                site.call(&server, "GET", &format!("/api/process-instances/{id}"), None).1["state"] == "completed"
            })
            .then_some(())
    });
    wait_for(Duration::from_secs(10), "every row to be marked sent", || {
        site.outbox().iter().all(|r| r.state == "sent").then_some(())
    });
    let got = smtp.received();
    let expected: BTreeSet<String> = site.outbox().into_iter().map(|r| r.message_id).collect();
    let message_ids: Vec<String> = got.iter().map(Received::message_id).collect();
    assert_eq!(message_ids.len(), 20, "each exactly once: {message_ids:?}");
    assert_eq!(message_ids.into_iter().collect::<BTreeSet<_>>(), expected);
    drop(server);

    // Phase 2: killed at a random moment while sending. Every email arrives; one the SMTP server
    // had accepted in the instant before the kill may arrive twice — with the same Message-ID.
    let mut server = site.serve(port);
    let mut more = Vec::new();
    for n in 20..80 {
        more.push(site.start(&server, "send", json!({"recipient": format!("person{n}@example.org"), "n": n})));
    }
    server.kill9();
    let server = site.serve(port);
    wait_for(Duration::from_secs(60), "the later instances to complete", || {
        more.iter()
            .all(|id| {
                site.call(&server, "GET", &format!("/api/process-instances/{id}"), None).1["state"] == "completed"
            })
            .then_some(())
    });
    wait_for(Duration::from_secs(10), "every row to be marked sent", || {
        site.outbox().iter().all(|r| r.state == "sent").then_some(())
    });
    let rows = site.outbox();
    let got: Vec<String> = smtp.received().iter().map(Received::message_id).collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &got {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    for row in &rows {
        assert!(counts.contains_key(row.message_id.as_str()), "{} was never delivered", row.message_id);
    }
    assert_eq!(counts.len(), 80, "no unknown messages");
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    assert!(duplicates <= 8, "at most the emails in flight at the kill (8 connections) are repeated: {duplicates}");
    eprintln!("kill while sending: 60 emails, {duplicates} repeated (same Message-ID)");
}

#[test]
fn permanent_rejection_is_an_incident_until_the_address_is_fixed() {
    let site = Site::new("reject", &send_model(), "process-owners");
    let smtp = Smtp::start(free_port(), &site.dir.join("received"));
    let server = site.serve(smtp.port);
    let id = site.start(&server, "send", json!({"recipient": "reject-me@example.org", "n": 42}));
    let path = format!("/api/process-instances/{id}");

    // The 550 becomes an incident on the send task, in the API …
    let instance = wait_for(Duration::from_secs(30), "the incident", || {
        let (_, body) = site.call(&server, "GET", &path, None);
        (body["state"] == "incident").then_some(body)
    });
    let incident = &instance["incidents"][0];
    assert_eq!(incident["elementId"], "notify");
    let message = incident["message"].as_str().unwrap();
    assert!(message.contains("550") && message.contains("reject-me@example.org"), "{message}");
    // … and in /metrics.
    let metrics = request(&server.addr, "GET", "/metrics", None, &[]).unwrap().body;
    assert!(metrics.contains("\nreglament_incidents_open 1\n"), "{metrics}");
    assert!(metrics.contains("reglament_outbox_emails{state=\"failed\"} 1"), "{metrics}");
    assert!(metrics.contains("\nreglament_emails_failed_total 1\n"), "{metrics}");

    // Resolved with the corrected address: the task runs again and the email goes out.
    let (status, list) = site.call(&server, "GET", &format!("{path}/incidents"), None);
    assert_eq!(status, 200, "{list}");
    let key = list["items"][0]["key"].as_u64().unwrap();
    assert_eq!(list["items"][0]["retry"], "activate");
    let (status, body) = site.call(
        &server,
        "POST",
        &format!("{path}/incidents/{key}/resolve"),
        Some(&json!({"variables": {"recipient": "Заявитель <fixed@example.org>"}})),
    );
    assert_eq!(status, 200, "{body}");
    wait_for(Duration::from_secs(30), "the instance to complete", || {
        (site.call(&server, "GET", &path, None).1["state"] == "completed").then_some(())
    });
    let got = smtp.received();
    assert_eq!(got.len(), 1, "the rejected attempt delivered nothing");
    assert_eq!(got[0].rcpt_tos, vec!["fixed@example.org"]);
    assert_eq!(got[0].header("To"), "Заявитель <fixed@example.org>");
    assert_eq!(got[0].header("Subject"), "Ответ на обращение № 42");
    assert_eq!(got[0].parsed().get_body().unwrap().trim_end(), "Ваше обращение № 42 рассмотрено.");
    let rows = site.outbox();
    let states: BTreeSet<&str> = rows.iter().map(|r| r.state.as_str()).collect();
    assert_eq!(states, BTreeSet::from(["failed", "sent"]));
    let metrics = request(&server.addr, "GET", "/metrics", None, &[]).unwrap().body;
    assert!(metrics.contains("\nreglament_incidents_open 0\n"), "{metrics}");
    assert!(metrics.contains("\nreglament_emails_sent_total 1\n"), "{metrics}");
    assert!(metrics.contains("reglament_outbox_emails{state=\"pending\"} 0"), "{metrics}");
    // Resolving again is a clear conflict, not a crash.
    let (status, _) = site.call(&server, "POST", &format!("{path}/incidents/{key}/resolve"), Some(&json!({})));
    assert_eq!(status, 409);
}

macro_rules! email_tests {
    ($db:ident: $($name:ident),* $(,)?) => {
        mod $db {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    tokio::time::timeout(Duration::from_secs(180), super::$name(super::TestDb::$db().await))
                        .await
                        .expect("finished in time");
                }
            )*
            use std::time::Duration;
        }
    };
}

email_tests!(sqlite:
    recipients_subject_and_cyrillic_arrive_as_sent,
    reminder_and_escalation_reach_the_assignee_and_the_head,
    a_rule_that_finds_nobody_is_an_incident,
    addresses_from_variables_stay_in_the_allowed_domains,
    a_temporary_refusal_is_retried_not_an_incident,
    without_smtp_emails_go_to_the_mail_folder,
);
email_tests!(postgres: smtp_down_work_goes_on_and_every_email_arrives_once);
