//! The shipped processes end to end (issue 7): for each, the real `reglament serve` with the
//! shipped `definitions/` (models, templates, the sample Astrakhan directory loaded on first
//! start), a real SMTP server on loopback, and officials working over HTTP with their own
//! tokens — the process is started (over HTTP, by a message from ЦУР, or by its timer), tasks
//! appear in the right people's inboxes, are completed with form data, the emails arrive, and the
//! registry changes where the process says so.
//!
//! Deadlines of hours and days, and timer starts on 15 January, are reached by moving the
//! server's controlled clock forward (`REGLAMENT_CLOCK_CONTROLLED=true`, `POST /api/clock`), as
//! a training stand would; the scenario tests cover the same deadlines date by date.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::mail::{Received, Smtp, temp_dir, wait_for};
use crate::server::{Server, add_user, call, free_port, request};
use crate::store::TestDb;
use crate::support::repo_root;

const LIMIT: Duration = Duration::from_secs(30);

/// A training stand: the server, its SMTP server, and the people's tokens.
pub struct Stand {
    pub dir: PathBuf,
    url: String,
    pub smtp: Smtp,
    pub server: Server,
    admin: String,
    tokens: BTreeMap<String, String>,
}

impl Stand {
    fn start(label: &str, database_url: Option<String>) -> Stand {
        Stand::start_with(label, database_url, None)
    }

    /// A stand whose links (base URL) point at the server itself, for a browser to follow.
    pub fn start_for_browser(label: &str) -> Stand {
        Stand::start_with(label, None, Some(free_port()))
    }

    fn start_with(label: &str, database_url: Option<String>, port: Option<u16>) -> Stand {
        let dir = temp_dir(&format!("process-{label}"));
        let smtp = Smtp::start(free_port(), &dir.join("smtp"));
        let url = database_url.unwrap_or_else(|| format!("sqlite://{}", dir.join("reglament.db").display()));
        // The admin exists before the first start; the directory loaded then adds everybody else.
        let admin = add_user(&dir, &url, "admin", "admins,process-owners");
        let env = [
            ("REGLAMENT_DATABASE_URL", url.clone()),
            ("REGLAMENT_SMTP_URL", smtp.url()),
            ("REGLAMENT_DEFINITIONS", repo_root().join("definitions").display().to_string()),
            ("REGLAMENT_CLOCK_CONTROLLED", "true".to_string()),
            (
                "REGLAMENT_BASE_URL",
                port.map_or("https://reglament.example.org".to_string(), |p| format!("http://127.0.0.1:{p}")),
            ),
        ];
        let server = match port {
            Some(port) => Server::start_at(&dir, &env, port),
            None => Server::start(&dir, &env),
        };
        Stand { dir, url, smtp, server, admin, tokens: BTreeMap::new() }
    }

    /// The API token of a person of the directory (issued by the admin on first use).
    pub fn token(&mut self, login: &str) -> String {
        if login == "admin" {
            return self.admin.clone();
        }
        if let Some(t) = self.tokens.get(login) {
            return t.clone();
        }
        let (status, body) =
            self.call_as(&self.admin.clone(), "POST", &format!("/api/users/{login}/tokens"), Some(&json!({})));
        assert_eq!(status, 201, "token for {login}: {body}");
        let token = body["token"].as_str().expect("token").to_string();
        self.tokens.insert(login.to_string(), token.clone());
        token
    }

    pub fn call_as(&self, token: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        call(&self.server.addr, token, method, path, body)
    }

    pub fn call(&mut self, login: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let token = self.token(login);
        self.call_as(&token, method, path, body)
    }

    pub fn start_instance(&mut self, login: &str, key: &str, variables: Value) -> String {
        let (status, body) = self.call(
            login,
            "POST",
            "/api/process-instances",
            Some(&json!({"definitionKey": key, "variables": variables})),
        );
        assert_eq!(status, 201, "start {key}: {body}");
        body["id"].as_str().expect("id").to_string()
    }

    pub fn instance(&mut self, id: &str) -> Value {
        let (status, body) = self.call("admin", "GET", &format!("/api/process-instances/{id}"), None);
        assert_eq!(status, 200, "instance {id}: {body}");
        body
    }

    pub fn history(&mut self, id: &str) -> Vec<Value> {
        let (status, body) = self.call("admin", "GET", &format!("/api/process-instances/{id}/history"), None);
        assert_eq!(status, 200, "history {id}: {body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// The person's open tasks (their inbox).
    pub fn inbox(&mut self, login: &str) -> Vec<Value> {
        let (status, body) = self.call(login, "GET", "/api/tasks?state=open&limit=200", None);
        assert_eq!(status, 200, "inbox of {login}: {body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until the task of `element` (in `instance`, when given) is in `login`'s inbox.
    pub fn wait_task(&mut self, login: &str, instance: Option<&str>, element: &str) -> Value {
        let start = std::time::Instant::now();
        loop {
            let found = self.inbox(login).into_iter().find(|t| {
                t["elementId"] == element && instance.is_none_or(|i| t["processInstanceId"].as_str() == Some(i))
            });
            if let Some(task) = found {
                return task;
            }
            assert!(
                start.elapsed() < LIMIT,
                "task `{element}` never reached {login}'s inbox; server log:\n{}",
                std::fs::read_to_string(&self.server.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `login` completes their task of `element` with the form's values.
    pub fn complete(&mut self, login: &str, instance: Option<&str>, element: &str, variables: Value) -> Value {
        let task = self.wait_task(login, instance, element);
        let id = task["id"].as_str().expect("task id").to_string();
        let (status, body) =
            self.call(login, "POST", &format!("/api/tasks/{id}/complete"), Some(&json!({"variables": variables})));
        assert_eq!(status, 200, "{login} completes {element}: {body}");
        task
    }

    /// Asserts that `login` does not see a task of `element`.
    pub fn not_in_inbox(&mut self, login: &str, element: &str) {
        let tasks = self.inbox(login);
        assert!(!tasks.iter().any(|t| t["elementId"] == element), "{login} should not see `{element}`: {tasks:?}");
    }

    pub fn wait_state(&mut self, id: &str, state: &str) -> Value {
        let start = std::time::Instant::now();
        loop {
            let inst = self.instance(id);
            if inst["state"] == state {
                return inst;
            }
            assert!(
                start.elapsed() < LIMIT,
                "instance {id} is `{}`, never `{state}`: {inst}\nserver log:\n{}",
                inst["state"],
                std::fs::read_to_string(&self.server.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Moves the server's clock to `to` (RFC 3339) or by `advance` (ISO 8601).
    pub fn clock(&mut self, change: Value) -> String {
        let (status, body) = self.call("admin", "POST", "/api/clock", Some(&change));
        assert_eq!(status, 200, "clock {change}: {body}");
        body["now"].as_str().expect("now").to_string()
    }

    /// Waits for an email to `to` whose subject contains `subject`.
    pub fn mail(&self, to: &str, subject: &str) -> Received {
        wait_for(LIMIT, &format!("an email to {to} about «{subject}»"), || {
            self.smtp
                .received()
                .into_iter()
                .find(|m| m.rcpt_tos.iter().any(|r| r == to) && m.header("Subject").contains(subject))
        })
    }
}

impl Drop for Stand {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The text of a message: its text/plain part, decoded.
pub fn text_of(m: &Received) -> String {
    let parsed = m.parsed();
    if parsed.subparts.is_empty() {
        return parsed.get_body().unwrap_or_default();
    }
    parsed
        .subparts
        .iter()
        .flat_map(|p| std::iter::once(p).chain(p.subparts.iter()))
        .find(|p| p.ctype.mimetype == "text/plain")
        .and_then(|p| p.get_body().ok())
        .unwrap_or_default()
}

fn attachment_of(m: &Received) -> Option<(String, String)> {
    let parsed = m.parsed();
    parsed.subparts.iter().find_map(|p| {
        let disposition = p.get_content_disposition();
        (disposition.disposition == mailparse::DispositionType::Attachment).then(|| {
            // Long names come folded as RFC 2231 parameters (`filename*0=…`).
            let name = disposition
                .params
                .get("filename")
                .or_else(|| disposition.params.get("filename*0"))
                .cloned()
                .unwrap_or_default();
            let bytes = p.get_body_raw().unwrap_or_default();
            (name, String::from_utf8_lossy(&bytes).to_string())
        })
    })
}

// ---- 1. registry change request -------------------------------------------------------------

#[test]
fn registry_change_deputy_review_registry_and_email_to_the_initiator() {
    // This one runs on PostgreSQL, the others on the default SQLite.
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let db = tokio.block_on(TestDb::postgres());
    let mut s = Stand::start("registry-change", Some(db.url.clone()));
    // The head of the IT unit asks for a new process; the deputy who supervises the unit agrees.
    let id = s.start_instance(
        "smirnov",
        "registry_change",
        json!({
            "requestNo": "РП-2026-41",
            "initiator": "smirnov@minprom.example.org",
            "initiatorName": "Смирнов П. Е.",
            "unitName": "Отдел информационно-технического обеспечения и организации государственных закупок",
            "changeDescription": "Добавить процесс закупки программного обеспечения",
            "deputy": "zam-industry",
            "deputyEmail": "zam-industry@minprom.example.org",
        }),
    );
    let inst = s.instance(&id);
    assert!(inst["deadline"].is_string(), "an SLA deadline of 10 working days: {inst}");
    // The deputy of another area does not see it; the analysis department does not yet.
    // The task is the supervising deputy's: the other deputy sees it (it is offered to the
    // group) but cannot complete it.
    let task = s.wait_task("zam-industry", Some(&id), "deputy_agreement");
    assert_eq!(task["assignee"], "zam-industry");
    let path = format!("/api/tasks/{}/complete", task["id"].as_str().unwrap());
    let (status, body) = s.call("zam-trade", "POST", &path, Some(&json!({"variables": {"deputyDecision": "reject"}})));
    assert_eq!(status, 403, "{body}");
    s.not_in_inbox("petrov", "review");
    s.complete("zam-industry", Some(&id), "deputy_agreement", json!({"deputyDecision": "agree"}));
    // A form without its required fields is refused with the field named, nothing changes.
    let task = s.wait_task("petrov", Some(&id), "review");
    let (status, body) = s.call(
        "petrov",
        "POST",
        &format!("/api/tasks/{}/complete", task["id"].as_str().unwrap()),
        Some(&json!({"variables": {"decision": "apply"}})),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("changeType"), "{body}");
    s.complete(
        "petrov",
        Some(&id),
        "review",
        json!({
            "decision": "apply",
            "changeType": "add",
            "registryProcessId": "software_procurement",
            "regName": "Закупка программного обеспечения",
            "regService": "Обеспечение деятельности министерства",
            "regAct": "Федеральный закон от 05.04.2013 № 44-ФЗ",
            "regGroup": "Обеспечивающие процессы",
            "regOwner": "Отдел информационно-технического обеспечения и организации государственных закупок",
            "regReengineering": "Действующий",
            "regClient": "Структурные подразделения министерства",
            "regValue": "Программное обеспечение приобретено в срок",
            "regInputs": "Заявка подразделения",
            "regOutputs": "Государственный контракт",
            "regLinks": "Планирование закупок",
            "regDigital": "digital",
            "regPlacement": "ЕИС в сфере закупок",
        }),
    );
    let done = s.wait_state(&id, "completed");
    assert!(done["variables"]["registryUpdatedAt"].is_string(), "{done}");
    // The initiator is told, with the deputy in copy.
    let mail = s.mail("smirnov@minprom.example.org", "РП-2026-41");
    assert!(mail.rcpt_tos.contains(&"zam-industry@minprom.example.org".to_string()), "{:?}", mail.rcpt_tos);
    // The registry has the new process with its columns, in JSON and in the form's CSV.
    let (status, registry) = s.call("ivanova", "GET", "/api/registry", None);
    assert_eq!(status, 200);
    let entry = registry["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["definitionKey"] == "software_procurement")
        .cloned()
        .unwrap_or_else(|| panic!("the registry lacks the new process: {registry}"));
    assert_eq!(entry["name"], "Закупка программного обеспечения");
    assert_eq!(entry["placement"], "ЕИС в сфере закупок");
    let auth = format!("Bearer {}", s.token("ivanova"));
    let csv = request(&s.server.addr, "GET", "/api/registry?format=csv", None, &[("Authorization", &auth)]).unwrap();
    assert!(csv.body.contains("Закупка программного обеспечения"), "{}", csv.body);
    // Another request is left alone: at its 10th working day the head of analysis is told.
    let late = s.start_instance(
        "sidorova",
        "registry_change",
        json!({"requestNo": "РП-2026-42", "initiator": "sidorova@minprom.example.org",
               "changeDescription": "Уточнить владельца процесса", "analysisHeadEmail": "ivanova@minprom.example.org"}),
    );
    s.wait_task("petrov", Some(&late), "review");
    let late_deadline = s.instance(&late)["deadline"].as_str().unwrap().to_string();
    s.clock(json!({"to": late_deadline}));
    s.clock(json!({"advance": "PT1M"}));
    let escalation = s.mail("ivanova@minprom.example.org", "РП-2026-42");
    assert!(text_of(&escalation).contains("РП-2026-42"), "{}", text_of(&escalation));
    // The first request ended before its deadline: no escalation in its history.
    let first = s.history(&id);
    assert!(first.iter().all(|e| e["element"] != "escalate"), "{first:?}");
    assert_eq!(s.instance(&late)["state"], "active", "the overdue request stays open for the review");
    drop(s);
    tokio.block_on(db.drop_db());
}

// ---- 2. registry actualization --------------------------------------------------------------

#[test]
fn registry_actualization_starts_on_15_january_collects_from_each_unit_and_informs_the_heads() {
    let mut s = Stand::start("registry-actualization", None);
    // Nothing runs before its time; on 15 January at 09:00 the timer starts the process. The
    // units and their heads come from the directory: one task for each head, assigned to them.
    s.clock(json!({"to": "2027-01-15T08:59:58+04:00"}));
    let task = s.wait_task("ivanova", None, "collect");
    let id = task["processInstanceId"].as_str().unwrap().to_string();
    let units = s.instance(&id)["variables"]["units"].clone();
    let ids: Vec<&str> = units.as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["analysis", "it-procurement", "legal"], "the ministry itself is not asked: {units}");
    for (head, changes) in [("ivanova", true), ("sidorova", false), ("smirnov", false)] {
        // A head sees the other units' tasks too (offered to unit-heads) but completes their own.
        let own: Vec<Value> =
            s.inbox(head).into_iter().filter(|t| t["elementId"] == "collect" && t["assignee"] == head).collect();
        assert_eq!(own.len(), 1, "{head}: {own:?}");
        let path = format!("/api/tasks/{}/complete", own[0]["id"].as_str().unwrap());
        let processes = if changes { "Изменён владелец процесса" } else { "" };
        let (status, body) = s.call(
            head,
            "POST",
            &path,
            Some(&json!({"variables": {"hasChanges": changes, "processesInfo": processes}})),
        );
        assert_eq!(status, 200, "{body}");
    }
    s.not_in_inbox("petrov", "collect");
    s.complete(
        "petrov",
        Some(&id),
        "process_info",
        json!({"processingSummary": "Сведения трёх подразделений обработаны", "changesCount": 1}),
    );
    s.complete(
        "ivanova",
        Some(&id),
        "approve_order",
        json!({"orderDecision": "signed", "orderNumber": "15-п", "orderDate": "2027-01-20"}),
    );
    let done = s.wait_state(&id, "completed");
    let actualized = done["variables"]["registryUpdatedAt"].as_str().expect("registryUpdatedAt").to_string();
    assert!(actualized.starts_with("2027-01-15"), "{done}");
    // Every entry of the registry — the seven shipped processes — is marked as actualized.
    let (_, registry) = s.call("ivanova", "GET", "/api/registry", None);
    let items = registry["items"].as_array().unwrap();
    assert!(items.len() >= 7, "{registry}");
    for item in items {
        assert!(item["updatedAt"].as_str().is_some_and(|t| t.starts_with("2027-01-15")), "{item}");
    }
    // Every unit head is informed.
    for head in ["ivanova", "sidorova", "smirnov"] {
        s.mail(&format!("{head}@minprom.example.org"), "Реестр процессов министерства актуализирован (приказ № 15-п");
    }
    let history = s.history(&id);
    assert!(history.iter().any(|e| e["event"] == "instance_started"), "{history:?}");
}

// ---- 3. information request (8-FZ) ----------------------------------------------------------

#[test]
fn information_request_extension_moves_the_sla_and_the_answer_goes_by_email() {
    let mut s = Stand::start("information-request", None);
    s.clock(json!({"to": "2027-04-01T11:00:00+04:00"}));
    let id = s.start_instance("orlova", "information_request", json!({"requestNo": "З-2027-116"}));
    let deadline = s.instance(&id)["deadline"].as_str().unwrap().to_string();
    // 30 calendar days from the registration on 01.04.2027: the 30th day is Saturday 01.05 (a
    // holiday), so the term ends on the next working day.
    assert!(deadline.starts_with("2027-05-"), "{deadline}");
    // A completion writes only the fields of the task's form: the request number and an
    // extension sent beside them are refused, each named, and nothing of it is stored.
    let card = s.wait_task("orlova", Some(&id), "record_card")["id"].as_str().unwrap().to_string();
    let forged = json!({"variables": {"channel": "email", "receivedOn": "2027-03-31", "requesterName": "ООО «Энерго»",
        "requesterKind": "organisation", "replyEmail": "office@energo.example.org", "requestText": "Перечень",
        "requestNo": "ПОДМЕНА", "extensionGranted": 90}});
    let (status, problem) = s.call("orlova", "POST", &format!("/api/tasks/{card}/complete"), Some(&forged));
    assert_eq!(status, 422, "{problem}");
    let mut named: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    named.sort();
    assert_eq!(named, ["extensionGranted", "requestNo"], "{problem}");
    assert_eq!(s.instance(&id)["variables"]["requestNo"], json!("З-2027-116"), "nothing was written");
    s.complete(
        "orlova",
        Some(&id),
        "record_card",
        json!({"channel": "email", "receivedOn": "2027-03-31", "requesterName": "ООО «Астраханские энергосети»",
               "requesterKind": "organisation", "replyEmail": "office@energo.example.org",
               "requestText": "Перечень объектов генерации, включённых в схему развития электроэнергетики"}),
    );
    s.not_in_inbox("orlova", "check_competence");
    s.complete(
        "kuznetsov",
        Some(&id),
        "check_competence",
        json!({"checkDecision": "extend", "extensionDays": 20, "extensionReason": "Сведения запрошены у сетевых организаций"}),
    );
    // The requester is told of the extension with the new date; the instance shows it.
    let notice = s.mail("office@energo.example.org", "отсрочке");
    let inst = s.instance(&id);
    let extended = inst["deadline"].as_str().unwrap().to_string();
    assert!(extended > deadline, "the SLA moved: {deadline} → {extended}");
    let shown = format!("{}.{}.{}", &extended[8..10], &extended[5..7], &extended[0..4]);
    assert!(text_of(&notice).contains(&shown), "the notice names {shown}:\n{}", text_of(&notice));
    assert_eq!(inst["variables"]["extensionGranted"], 15);
    s.complete(
        "sidorova",
        Some(&id),
        "prepare_answer",
        json!({"answerDecision": "answer", "answerText": "Перечень объектов прилагается."}),
    );
    s.wait_state(&id, "completed");
    let answer = s.mail("office@energo.example.org", "Ответ на запрос");
    assert!(text_of(&answer).contains("Перечень объектов прилагается."), "{}", text_of(&answer));

    // The audit log names every actor of the request and what each submitted, from where.
    let (status, log) = s.call("admin", "GET", &format!("/api/audit?instance={id}&action=task.complete"), None);
    assert_eq!(status, 200, "{log}");
    let acts: Vec<(String, String, Value)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["address"], json!("127.0.0.1"), "{i}");
            (
                i["actor"].as_str().unwrap().into(),
                i["details"]["element"].as_str().unwrap().into(),
                i["details"]["variables"].clone(),
            )
        })
        .collect();
    let who: Vec<(&str, &str)> = acts.iter().map(|(a, e, _)| (a.as_str(), e.as_str())).collect();
    assert_eq!(
        who,
        [("orlova", "record_card"), ("kuznetsov", "check_competence"), ("sidorova", "prepare_answer")],
        "{log}"
    );
    assert_eq!(acts[1].2["extensionDays"], json!(20), "{log}");
    assert_eq!(acts[2].2["answerText"], json!("Перечень объектов прилагается."), "{log}");
    let (_, started) = s.call("admin", "GET", "/api/audit?action=instance.start", None);
    assert!(
        started["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["actor"] == "orlova" && i["details"]["variables"]["requestNo"] == "З-2027-116"),
        "{started}"
    );
}

#[test]
fn information_request_outside_competence_is_redirected_with_a_notice() {
    let mut s = Stand::start("information-redirect", None);
    let id = s.start_instance("orlova", "information_request", json!({"requestNo": "З-2026-200"}));
    s.complete(
        "orlova",
        Some(&id),
        "record_card",
        json!({"channel": "site", "receivedOn": "2026-11-20", "requesterName": "Петрова Е. А.",
               "requesterKind": "citizen", "replyEmail": "petrova@mail.example.org",
               "requestText": "График вывоза твёрдых коммунальных отходов"}),
    );
    s.complete(
        "kuznetsov",
        Some(&id),
        "check_competence",
        json!({"checkDecision": "redirect", "competentBody": "Министерство ЖКХ Астраханской области",
               "competentBodyEmail": "gkh@astrobl.example.org"}),
    );
    s.wait_state(&id, "completed");
    let forwarded = s.mail("gkh@astrobl.example.org", "Направление запроса информации по компетенции (№ З-2026-200");
    assert!(text_of(&forwarded).contains("коммунальных отходов"), "{}", text_of(&forwarded));
    let notice = s.mail("petrova@mail.example.org", "З-2026-200");
    assert!(text_of(&notice).contains("Министерство ЖКХ Астраханской области"), "{}", text_of(&notice));
}

// ---- 4. ЦУР comment within 3 hours ----------------------------------------------------------

#[test]
fn cur_comment_from_a_cur_message_with_reminder_escalation_and_answer() {
    let mut s = Stand::start("cur-comment", None);
    // Only ЦУР's system account may send ЦУР's messages (the model's messageSenders): a member
    // of staff in no such group is refused and nothing starts.
    let forged = json!({"name": "cur_signal", "correlationKey": "INC-76", "variables": {
        "incidentId": "INC-76", "curEmail": "attacker@evil.example.org"}});
    let (status, body) = s.call("smirnova", "POST", "/api/messages", Some(&forged));
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("cur"), "{body}");
    // ЦУР reports inaccurate information: the message starts the process.
    let (status, body) = s.call(
        "cur-astrakhan",
        "POST",
        "/api/messages",
        Some(&json!({"name": "cur_signal", "correlationKey": "INC-77", "variables": {
            "incidentId": "INC-77", "incidentUrl": "https://vk.example.org/wall-1_77",
            "incidentText": "В соцсети сообщают об отключении электроэнергии по всему городу",
            "curEmail": "cur@cur30.example.org", "contactOfficial": "petrov",
            "contactEmail": "petrov@minprom.example.org", "headEmail": "ivanova@minprom.example.org"}})),
    );
    assert_eq!(status, 200, "{body}");
    let task = s.wait_task("petrov", None, "draft_comment");
    let id = task["processInstanceId"].as_str().unwrap().to_string();
    assert_eq!(task["assignee"], "petrov");
    s.not_in_inbox("smirnova", "draft_comment");
    // Two hours pass: a reminder; three hours: the head is told.
    s.clock(json!({"advance": "PT2H1M"}));
    s.mail("petrov@minprom.example.org", "Остался 1 час");
    assert!(
        !s.smtp.received().iter().any(|m| m.header("Subject").contains("Просрочен")),
        "no escalation before the third hour"
    );
    s.clock(json!({"advance": "PT1H"}));
    s.mail("ivanova@minprom.example.org", "Просрочен комментарий для ЦУР по инциденту INC-77");
    s.complete(
        "petrov",
        Some(&id),
        "draft_comment",
        json!({"responseType": "refutation", "commentText": "Плановое отключение одной подстанции, 2 часа."}),
    );
    s.complete("ivanova", Some(&id), "approve_comment", json!({"approvalDecision": "approve"}));
    s.wait_state(&id, "completed");
    let answer = s.mail("cur@cur30.example.org", "Проект официального комментария по инциденту INC-77");
    assert!(
        answer.rcpt_tos.contains(&"ivanova@minprom.example.org".to_string()),
        "head in copy: {:?}",
        answer.rcpt_tos
    );
    assert!(text_of(&answer).contains("Плановое отключение"), "{}", text_of(&answer));
    let history = s.history(&id);
    assert!(history.iter().filter(|e| e["event"] == "timer_fired").count() >= 2, "{history:?}");
}

// ---- 5. ЦУР quarterly report ----------------------------------------------------------------

#[test]
fn cur_quarterly_report_starts_by_timer_builds_the_statistics_and_sends_the_csv() {
    let mut s = Stand::start("cur-quarterly", None);
    // Work of the fourth quarter of 2026 the report counts: a contact update handled in time.
    let update = s.start_instance("ivanova", "cur_contact_update", json!({"curEmail": "cur@cur30.example.org"}));
    s.complete(
        "ivanova",
        Some(&update),
        "update_contact",
        json!({"contactRole": "contact", "contactFullName": "Смирнова Ольга Николаевна",
               "contactPosition": "главный специалист", "contactEmail": "smirnova@minprom.example.org",
               "contactPhone": "+7 8512 00-00-00", "effectiveDate": "2026-11-23"}),
    );
    s.wait_state(&update, "completed");
    // 1 January 2027, 09:00: the timer starts the report for the fourth quarter.
    s.clock(json!({"to": "2027-01-01T08:59:58+04:00"}));
    let task = s.wait_task("petrov", None, "review_report");
    let id = task["processInstanceId"].as_str().unwrap().to_string();
    let inst = s.instance(&id);
    assert_eq!(inst["variables"]["period"]["from"], "2026-10-01", "{inst}");
    let csv = inst["variables"]["reportFile"]["content"].as_str().unwrap_or_default().to_string();
    assert!(csv.contains("cur_contact_update,1,1,100"), "the report counts the quarter's work:\n{csv}");
    s.complete(
        "petrov",
        Some(&id),
        "review_report",
        json!({"reviewDecision": "send", "analyticsNote": "Без просрочек"}),
    );
    s.wait_state(&id, "completed");
    // Sent to ЦУР's address from the directory (the timer gave no curEmail), with the CSV.
    let mail = s.mail("cur@cur30.example.org", "Статистика");
    let (name, content) = attachment_of(&mail).expect("a CSV attachment");
    assert!(name.ends_with(".csv"), "{name}");
    assert!(content.contains("cur_contact_update"), "{content}");
}

// ---- 6. ЦУР contact update ------------------------------------------------------------------

#[test]
fn cur_contact_update_within_three_working_days_and_escalation_when_late() {
    let mut s = Stand::start("cur-contact", None);
    s.clock(json!({"to": "2027-04-29T10:00:00+04:00"}));
    let id = s.start_instance("ivanova", "cur_contact_update", json!({"headEmail": "minister@minprom.example.org"}));
    let task = s.wait_task("zam-industry", Some(&id), "update_contact");
    // Three working days from Thursday 29.04.2027 across the May holidays.
    let due = task["due"].as_str().unwrap_or_default().to_string();
    assert!(due.starts_with("2027-05-"), "{task}");
    s.not_in_inbox("petrov", "update_contact");
    s.clock(json!({"to": due}));
    s.clock(json!({"advance": "PT1M"}));
    s.mail("minister@minprom.example.org", "Просрочена актуализация контактного лица для ЦУР");
    s.complete(
        "zam-industry",
        Some(&id),
        "update_contact",
        json!({"contactRole": "contact", "contactFullName": "Смирнова Ольга Николаевна",
               "contactPosition": "главный специалист", "contactEmail": "smirnova@minprom.example.org",
               "contactPhone": "+7 8512 00-00-00", "effectiveDate": "2027-04-29"}),
    );
    s.wait_state(&id, "completed");
    let mail = s.mail("cur@cur30.example.org", "Министерство промышленности");
    assert!(mail.rcpt_tos.contains(&"smirnova@minprom.example.org".to_string()), "{:?}", mail.rcpt_tos);
    assert!(text_of(&mail).contains("Смирнова Ольга Николаевна"), "{}", text_of(&mail));
}

// ---- 7. annual satisfaction survey ----------------------------------------------------------

#[test]
fn satisfaction_survey_starts_on_1_october_collects_answers_and_sends_the_results() {
    let mut s = Stand::start("survey", None);
    s.clock(json!({"to": "2027-10-01T08:59:58+04:00"}));
    let task = s.wait_task("petrov", None, "publish_survey");
    let id = task["processInstanceId"].as_str().unwrap().to_string();
    s.complete(
        "petrov",
        Some(&id),
        "publish_survey",
        json!({"surveyUrl": "https://minprom.example.org/opros-2027", "publishedOnSite": true,
               "publishedOnVk": true, "closesOn": "2027-10-29"}),
    );
    let answers = [
        json!({"q1_site": true, "q3_site": "yes", "q4_site": "5", "finishCollection": false}),
        json!({"q1_vk": true, "q3_vk": "yes", "finishCollection": true}),
    ];
    for a in answers {
        s.complete("smirnova", Some(&id), "enter_response", a);
    }
    let analyse = s.wait_task("ivanova", Some(&id), "analyse");
    assert!(analyse["id"].is_string());
    let inst = s.instance(&id);
    assert_eq!(inst["variables"]["summary"]["respondents"], 2, "{inst}");
    s.complete("ivanova", Some(&id), "analyse", json!({"conclusions": "Информацию легко найти на сайте."}));
    s.wait_state(&id, "completed");
    for head in ["ivanova", "sidorova", "smirnov"] {
        let m =
            s.mail(&format!("{head}@minprom.example.org"), "Итоги мониторинга удовлетворённости клиентов за 2027 год");
        assert!(text_of(&m).contains("Информацию легко найти на сайте."), "{}", text_of(&m));
    }
}

// ---- the directory ---------------------------------------------------------------------------

#[test]
fn the_sample_directory_is_loaded_once_and_the_admin_replaces_it() {
    let mut s = Stand::start("directory", None);
    let (status, d) = s.call("petrov", "GET", "/api/directory", None);
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["units"].as_array().unwrap().len(), 4, "{d}");
    assert!(d["people"].as_array().unwrap().iter().any(|p| p["login"] == "ivanova"), "{d}");
    // Addresses are personal data: petrov sees those of his unit (analysis: its head ivanova,
    // smirnova) and his own, not the legal department's; an admin sees all.
    let email = |d: &Value, login: &str| {
        d["people"].as_array().unwrap().iter().find(|p| p["login"] == login).map(|p| p["email"].clone()).unwrap()
    };
    for login in ["petrov", "ivanova", "smirnova"] {
        assert_eq!(email(&d, login), json!(format!("{login}@minprom.example.org")), "{login}");
    }
    assert_eq!(email(&d, "kuznetsov"), Value::Null, "{d}");
    let (_, all) = s.call("admin", "GET", "/api/directory", None);
    assert_eq!(email(&all, "kuznetsov"), json!("kuznetsov@minprom.example.org"));
    // Only admins replace it; a directory naming unknown people is refused with every mistake.
    let admin =
        json!({"login": "admin", "name": "Администратор", "email": "admin@minprom.example.org", "groups": ["admins"]});
    let bad = json!({"people": [admin], "units": [{"id": "x", "name": "Отдел", "head": "nobody"}], "roles": {"cur": ["ghost"]}});
    assert_eq!(s.call("petrov", "PUT", "/api/directory", Some(&bad)).0, 403);
    let (status, problem) = s.call("admin", "PUT", "/api/directory", Some(&bad));
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2, "{problem}");
    // A name or an address with CR/LF would reach an email header: refused, each mistake said.
    let forged = json!({"people": [
        admin,
        {"login": "smirnova", "name": "Смирнова\r\nBcc: all@example.org", "email": "smirnova@minprom.example.org"},
        {"login": "orlov", "name": "Орлов", "email": "orlov\n@minprom.example.org"},
        {"login": "sokolov", "name": "Соколов", "email": "sokolov@minprom.example.org", "groups": ["a b"]}
    ]});
    let (status, problem) = s.call("admin", "PUT", "/api/directory", Some(&forged));
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"].as_array().unwrap().len(), 3, "{problem}");
    let (_, d) = s.call("petrov", "GET", "/api/directory", None);
    assert_eq!(d["units"].as_array().unwrap().len(), 4, "nothing of it was stored: {d}");
    // The directory loaded by an admin disables the people it no longer lists — never the
    // admin loading it.
    let kuznetsov = s.token("kuznetsov");
    assert_eq!(s.call_as(&kuznetsov, "GET", "/api/me", None).0, 200);
    let without_me =
        json!({"people": [{"login": "petrov", "name": "Петров И. А.", "email": "petrov@minprom.example.org"}]});
    let (status, problem) = s.call("admin", "PUT", "/api/directory", Some(&without_me));
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "people", "{problem}");
    let new = json!({
        "people": [
            {"login": "admin", "name": "Администратор", "email": "admin@minprom.example.org", "groups": ["admins"]},
            {"login": "petrov", "name": "Петров Илья Андреевич", "email": "petrov@minprom.example.org", "groups": ["analysis-department"]},
            {"login": "novikov", "name": "Новиков Н. Н.", "email": "novikov@minprom.example.org", "groups": ["unit-heads"]}
        ],
        "units": [{"id": "analysis", "name": "Отдел анализа и перспективного развития", "head": "novikov", "members": ["petrov"]}],
        "roles": {"cur": ["cur-astrakhan"]}
    });
    let (status, d) = s.call("admin", "PUT", "/api/directory", Some(&new));
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["units"][0]["head"], "novikov");
    assert_eq!(s.call_as(&kuznetsov, "GET", "/api/me", None).0, 401, "kuznetsov left the directory: disabled");
    assert!(!d["people"].as_array().unwrap().iter().any(|p| p["login"] == "kuznetsov"), "{d}");
    let (_, log) = s.call("admin", "GET", "/api/audit?action=directory.replace", None);
    let disabled = &log["items"].as_array().unwrap().last().unwrap()["details"]["disabled"];
    assert!(disabled.as_array().unwrap().contains(&json!("kuznetsov")), "{log}");
    // A restart does not load the sample over the admin's directory.
    s.server.terminate();
    let env = [
        ("REGLAMENT_DATABASE_URL", s.url.clone()),
        ("REGLAMENT_DEFINITIONS", repo_root().join("definitions").display().to_string()),
    ];
    s.server = Server::start(&s.dir, &env);
    let (_, d) = s.call("petrov", "GET", "/api/directory", None);
    assert_eq!(d["units"].as_array().unwrap().len(), 1, "{d}");
    // Without a controlled clock, nobody moves it.
    let (status, problem) = s.call("admin", "POST", "/api/clock", Some(&json!({"advance": "PT1H"})));
    assert_eq!(status, 409, "{problem}");
}
