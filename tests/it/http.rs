//! The HTTP API through the real router and the real store (DESIGN §6): every endpoint, every
//! access rule, bad input with the exact status and problem type, idempotency, cursor paging,
//! and the OpenAPI document (validated by PyPI's `openapi-spec-validator`, and matched against
//! the routes).

use std::collections::BTreeSet;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use reglament_server::driver::Runtime;
use reglament_server::http::{self, AppState};
use reglament_store::CountOf;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::store::{TestDb, runtime};

/// A user task with a form, a working-day deadline, an instance SLA and registry fields.
pub(crate) const APPROVAL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:reglament="urn:reglament:bpmn:1.0" id="d_approval" targetNamespace="urn:test">
  <bpmn:process id="approval" name="Согласование заявки" isExecutable="true">
    <bpmn:extensionElements>
      <reglament:settings timeZone="Europe/Astrakhan" calendar="ru" />
      <reglament:sla duration="P10D" time="working" />
      <reglament:registry>
        <reglament:service>Рассмотрение заявок</reglament:service>
        <reglament:act>Приказ № 1, "общий"</reglament:act>
        <reglament:owner>Отдел анализа</reglament:owner>
        <reglament:reengineering>Не требуется</reglament:reengineering>
        <reglament:digital>цифровой</reglament:digital>
      </reglament:registry>
    </bpmn:extensionElements>
    <bpmn:startEvent id="start" name="Заявка поступила" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="review" />
    <bpmn:userTask id="review" name="Рассмотреть заявку">
      <bpmn:extensionElements>
        <zeebe:assignmentDefinition candidateGroups="reviewers" />
        <zeebe:priorityDefinition priority="=if priority = null then 50 else priority" />
        <reglament:deadline duration="P5D" time="working" />
        <reglament:form>
          <reglament:field id="decision" label="Решение" type="enum" required="true">
            <reglament:option value="approve" label="Согласовать" />
            <reglament:option value="reject" label="Отклонить" />
          </reglament:field>
          <reglament:field id="comment" label="Комментарий" type="text" />
        </reglament:form>
      </bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="decide" />
    <bpmn:exclusiveGateway id="decide" name="Согласовано?" default="f_rejected" />
    <bpmn:sequenceFlow id="f_approved" sourceRef="decide" targetRef="approved">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">=decision = "approve"</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_rejected" sourceRef="decide" targetRef="rejected" />
    <bpmn:endEvent id="approved" name="Согласовано" />
    <bpmn:endEvent id="rejected" name="Отклонено" />
  </bpmn:process>
</bpmn:definitions>"#;

/// Waits for a message correlated by `requestId`.
pub(crate) const WAITER: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d_waiter" targetNamespace="urn:test">
  <bpmn:message id="m_reply" name="reply"><bpmn:extensionElements><zeebe:subscription correlationKey="=requestId" /></bpmn:extensionElements></bpmn:message>
  <bpmn:process id="waiter" isExecutable="true">
    <bpmn:startEvent id="s" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="wait" />
    <bpmn:intermediateCatchEvent id="wait" name="Ждём ответа"><bpmn:messageEventDefinition messageRef="m_reply" /></bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="e" />
    <bpmn:endEvent id="e" />
  </bpmn:process>
</bpmn:definitions>"#;

/// Not executable as written: a gateway splits without conditions.
const BROKEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d_broken" targetNamespace="urn:test">
  <bpmn:process id="broken" isExecutable="true">
    <bpmn:startEvent id="s" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="g" />
    <bpmn:exclusiveGateway id="g" />
    <bpmn:sequenceFlow id="f2" sourceRef="g" targetRef="a" />
    <bpmn:sequenceFlow id="f3" sourceRef="g" targetRef="b" />
    <bpmn:endEvent id="a" />
    <bpmn:endEvent id="b" />
  </bpmn:process>
</bpmn:definitions>"#;

struct App {
    router: Router,
    rt: Runtime,
    db: Option<TestDb>,
    admin: String,
    owner: String,
    reviewer: String,
    reviewer2: String,
    outsider: String,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("UTF-8")
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
    }

    /// Asserts a problem document with this status and type.
    #[track_caller]
    fn problem(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.header("content-type"), "application/problem+json");
        let p = self.json();
        assert_eq!(p["type"], json!(kind), "{p}");
        assert_eq!(p["status"], json!(status));
        assert!(p["title"].as_str().is_some_and(|t| t.chars().any(|c| ('а'..='я').contains(&c))), "Russian title: {p}");
        assert!(p["detail"].is_string());
        p
    }

    #[track_caller]
    fn ok(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", String::from_utf8_lossy(&self.body));
        self.json()
    }
}

/// Adds a person with these groups and gives their new API token.
async fn person(store: &reglament_store::Store, login: &str, groups: &[&str]) -> String {
    let groups = groups.iter().map(|g| g.to_string()).collect();
    reglament::users_cmd::add(store, login, &format!("{login}@example.org"), groups, None).await.expect("user")
}

impl App {
    async fn new(db: TestDb) -> App {
        let rt = runtime(&db).await;
        let mut app = App::with_runtime(rt).await;
        app.db = Some(db);
        app
    }

    async fn with_runtime(rt: Runtime) -> App {
        let router = http::router(AppState::new(rt.clone(), "http://reglament.test/"));
        let store = rt.store();
        let add = |login: &'static str, groups: &'static [&'static str]| person(store, login, groups);
        App {
            admin: add("admin", &["admins"]).await,
            owner: add("owner", &["process-owners"]).await,
            reviewer: add("ivanov", &["reviewers"]).await,
            reviewer2: add("petrov", &["reviewers", "clerks"]).await,
            outsider: add("sidorov", &["clerks"]).await,
            router,
            rt,
            db: None,
        }
    }

    async fn finish(self) {
        if let Some(db) = self.db {
            db.drop_db().await;
        }
    }

    async fn send(&self, method: Method, uri: &str, token: Option<&str>, body: Body, headers: &[(&str, &str)]) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = self.router.clone().oneshot(req.body(body).unwrap()).await.expect("infallible");
        let (parts, body) = response.into_parts();
        Resp { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
    }

    async fn get(&self, uri: &str, token: &str) -> Resp {
        self.send(Method::GET, uri, Some(token), Body::empty(), &[]).await
    }

    async fn post(&self, uri: &str, token: &str, body: Value) -> Resp {
        self.send(Method::POST, uri, Some(token), Body::from(body.to_string()), &[("content-type", "application/json")])
            .await
    }

    async fn post_keyed(&self, uri: &str, token: &str, key: &str, body: String) -> Resp {
        let headers = [("content-type", "application/json"), ("idempotency-key", key)];
        self.send(Method::POST, uri, Some(token), Body::from(body), &headers).await
    }

    async fn post_empty(&self, uri: &str, token: &str) -> Resp {
        self.send(Method::POST, uri, Some(token), Body::empty(), &[]).await
    }

    async fn deploy(&self, xml: &str, token: &str) -> Resp {
        self.send(
            Method::POST,
            "/api/definitions",
            Some(token),
            Body::from(xml.to_string()),
            &[("content-type", "application/xml")],
        )
        .await
    }

    async fn start(&self, key: &str, token: &str, variables: Value) -> Value {
        self.post("/api/process-instances", token, json!({"definitionKey": key, "variables": variables})).await.ok(201)
    }

    /// The open task of an instance, as its reviewer sees it in the group inbox.
    async fn task_of(&self, instance: &str) -> Value {
        let page = self.get("/api/tasks?candidateGroup=reviewers&limit=500", &self.reviewer).await.ok(200);
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["processInstanceId"] == json!(instance))
            .cloned()
            .unwrap_or_else(|| panic!("no task of {instance} in {page}"))
    }
}

// ---- the main flow, on both backends --------------------------------------------------------

async fn main_flow(db: TestDb) {
    let app = App::new(db).await;
    let deployed = app.deploy(APPROVAL, &app.owner).await.ok(201);
    assert_eq!((deployed["key"].clone(), deployed["version"].clone()), (json!("approval"), json!(1)));
    assert_eq!(app.deploy(APPROVAL, &app.owner).await.ok(200)["created"], json!(false), "same XML: no new version");
    let changed = APPROVAL.replace("Рассмотреть заявку", "Рассмотреть заявку внимательно");
    assert_eq!(app.deploy(&changed, &app.owner).await.ok(201)["version"], json!(2));

    let list = app.get("/api/definitions", &app.reviewer).await.ok(200);
    assert_eq!(list["items"][0]["key"], json!("approval"));
    assert_eq!(list["items"][0]["version"], json!(2));
    assert_eq!(list["items"][0]["registry"]["owner"], json!("Отдел анализа"));
    assert_eq!(list["nextCursor"], Value::Null);
    let one = app.get("/api/definitions/approval?version=1", &app.reviewer).await.ok(200);
    assert_eq!((one["version"].clone(), one["name"].clone()), (json!(1), json!("Согласование заявки")));
    assert_eq!(one["deployedBy"], json!("owner"));
    let xml = app.get("/api/definitions/approval/xml?version=1", &app.reviewer).await;
    assert_eq!(xml.status, StatusCode::OK);
    assert!(xml.header("content-type").starts_with("application/xml"));
    assert_eq!(xml.text(), APPROVAL);
    let versions = app.get("/api/definitions/approval/versions", &app.reviewer).await.ok(200);
    assert_eq!(versions["items"].as_array().unwrap().len(), 2);

    // Any signed-in user starts an instance.
    let started = app
        .post(
            "/api/process-instances",
            &app.outsider,
            json!({"definitionKey": "approval", "businessKey": "REQ-1", "variables": {"applicant": "Иванова", "priority": 70}}),
        )
        .await;
    let instance = started.ok(201);
    let id = instance["id"].as_str().unwrap().to_string();
    assert_eq!(started.header("location"), format!("http://reglament.test/api/process-instances/{id}"));
    assert_eq!(instance["definitionKey"], json!("approval"));
    assert_eq!(instance["version"], json!(2));
    assert_eq!(instance["businessKey"], json!("REQ-1"));
    assert_eq!(instance["state"], json!("active"));
    assert_eq!(instance["variables"]["applicant"], json!("Иванова"));
    assert_eq!(
        instance["activeElements"],
        json!([{"elementId": "review", "name": "Рассмотреть заявку внимательно", "type": "userTask"}])
    );
    assert!(instance["deadline"].as_str().is_some_and(|d| d.ends_with("+04:00")), "{instance}");
    let left = instance["workingTimeLeft"].as_i64().expect("working time left");
    // The tests' clock starts on a Wednesday before working hours: the term runs from Thursday
    // (the day after the start), so today's whole working day comes on top of ten working days.
    assert_eq!(left, 11 * 8 * 60, "today and ten working days of 8 hours from {}", crate::support::TEST_EPOCH);
    assert_eq!(instance["history"], json!(format!("http://reglament.test/api/process-instances/{id}/history")));
    assert_eq!(app.get(&format!("/api/process-instances/{id}"), &app.reviewer).await.ok(200)["id"], json!(id));

    // The reviewer sees it in the group's inbox; the task carries its form.
    let task = app.task_of(&id).await;
    let task_id = task["id"].as_str().unwrap().to_string();
    assert_eq!(task["elementId"], json!("review"));
    assert_eq!(task["state"], json!("open"));
    assert_eq!(task["candidateGroups"], json!(["reviewers"]));
    assert_eq!(task["priority"], json!(70));
    assert!(task["due"].is_string() && task["createdAt"].is_string() && task["completedAt"].is_null());
    let full = app.get(&format!("/api/tasks/{task_id}"), &app.reviewer).await.ok(200);
    assert_eq!(full["form"][0]["id"], json!("decision"));
    assert_eq!(full["form"][0]["type"], json!("enum"));
    assert_eq!(full["form"][0]["required"], json!(true));
    assert_eq!(full["form"][0]["options"][1], json!({"value": "reject", "label": "Отклонить"}));

    let claimed = app.post_empty(&format!("/api/tasks/{task_id}/claim"), &app.reviewer).await.ok(200);
    assert_eq!(claimed["assignee"], json!("ivanov"));
    let mine = app.get("/api/tasks?assignee=me", &app.reviewer).await.ok(200);
    assert_eq!(mine["items"][0]["id"], json!(task_id));

    // A form that does not fit: 422 with the Russian message per field.
    let invalid = app
        .post(&format!("/api/tasks/{task_id}/complete"), &app.reviewer, json!({"variables": {"decision": "maybe"}}))
        .await;
    let p = invalid.problem(422, "/problems/validation");
    assert_eq!(p["errors"][0]["field"], json!("decision"));
    assert!(p["errors"][0]["message"].as_str().unwrap().contains("ожидается одно из значений: approve, reject"), "{p}");
    let missing = app.post(&format!("/api/tasks/{task_id}/complete"), &app.reviewer, json!({"variables": {}})).await;
    assert!(
        missing.problem(422, "/problems/validation")["errors"][0]["message"].as_str().unwrap().contains("обязательно")
    );

    let done = app
        .post(
            &format!("/api/tasks/{task_id}/complete"),
            &app.reviewer,
            json!({"variables": {"decision": "approve", "comment": "ok"}}),
        )
        .await
        .ok(200);
    assert_eq!((done["state"].clone(), done["completedBy"].clone()), (json!("completed"), json!("ivanov")));
    let twice = app
        .post(&format!("/api/tasks/{task_id}/complete"), &app.reviewer, json!({"variables": {"decision": "approve"}}))
        .await;
    twice.problem(409, "/problems/conflict");

    let finished = app.get(&format!("/api/process-instances/{id}"), &app.reviewer).await.ok(200);
    assert_eq!(finished["state"], json!("completed"));
    assert_eq!(finished["activeElements"], json!([]));
    assert_eq!(finished["variables"]["decision"], json!("approve"));
    assert!(finished["endedAt"].is_string() && finished["workingTimeLeft"].is_null());

    let history = app.get(&format!("/api/process-instances/{id}/history"), &app.reviewer).await.ok(200);
    let events: Vec<(String, String)> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["event"].as_str().unwrap().to_string(), i["element"].as_str().unwrap_or("").to_string()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("instance_started", ""),
        ("element_entered", "start"),
        ("element_completed", "start"),
        ("element_entered", "review"),
        ("task_created", "review"),
        ("task_completed", "review"),
        ("element_completed", "review"),
        ("element_entered", "decide"),
        ("element_completed", "decide"),
        ("element_entered", "approved"),
        ("element_completed", "approved"),
        ("instance_completed", ""),
    ]
    .iter()
    .map(|(e, el)| (e.to_string(), el.to_string()))
    .collect();
    assert_eq!(events, expected);
    let created = &history["items"][4];
    assert_eq!(created["task"], json!(task_id));
    assert_eq!(created["candidate_groups"], json!(["reviewers"]));
    assert!(history["items"][0]["at"].as_str().unwrap().ends_with("+04:00"));
    assert!(history["items"][0]["deadline"].is_string());
    // Who started it and who completed the task (from the audit log).
    assert_eq!(history["items"][0]["by"], json!("sidorov"), "{history}");
    assert_eq!(history["items"][5]["by"], json!("ivanov"), "{history}");
    assert!(history["items"][4].get("by").is_none());

    // The registry, as JSON and as the official form in CSV.
    let registry = app.get("/api/registry", &app.reviewer).await.ok(200);
    assert_eq!(registry["items"][0]["definitionKey"], json!("approval"));
    assert_eq!(registry["items"][0]["name"], json!("Согласование заявки"));
    assert_eq!(registry["items"][0]["act"], json!("Приказ № 1, \"общий\""));
    let csv = app.get("/api/registry?format=csv", &app.reviewer).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.header("content-type").starts_with("text/csv"));
    let text = csv.text();
    let mut lines = text.trim_start_matches('\u{feff}').lines();
    assert_eq!(
        lines.next().unwrap(),
        "\"Название услуги, функции, сервиса\",Регулирующий акт,Группа процессов,Название процесса,Ответственный за процесс,\
         Статус процесса (статус реинжиниринга),Клиент,Ценность для клиента,Данные на входе,Результат на выходе,\
         Связь с другими процессами,Вид процесса (цифровой/не цифровой),\
         \"Точка размещения в цифровом виде (ЕПГУ, РПГУ, сайт ведомства)\",Идентификатор процесса"
    );
    assert_eq!(
        lines.next().unwrap(),
        "Рассмотрение заявок,\"Приказ № 1, \"\"общий\"\"\",,Согласование заявки,Отдел анализа,Не требуется,,,,,,цифровой,,approval"
    );
    // Registry fields a spreadsheet would run as formulas are written as text (an apostrophe
    // first), whatever the model says.
    let formulas = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:reglament="urn:reglament:bpmn:1.0" id="d" targetNamespace="urn:t">
  <bpmn:process id="formulas" name="=1+2" isExecutable="true">
    <bpmn:extensionElements>
      <reglament:registry>
        <reglament:service>=HYPERLINK("http://evil.example","Открыть")</reglament:service>
        <reglament:act>+7 (8512) 00-00-00</reglament:act>
        <reglament:owner>@SUM(A1:A9)</reglament:owner>
        <reglament:reengineering>-1</reglament:reengineering>
      </reglament:registry>
    </bpmn:extensionElements>
    <bpmn:startEvent id="s" /><bpmn:sequenceFlow id="f" sourceRef="s" targetRef="e" /><bpmn:endEvent id="e" />
  </bpmn:process>
</bpmn:definitions>"#;
    app.deploy(formulas, &app.owner).await.ok(201);
    let text = app.get("/api/registry?format=csv", &app.reviewer).await.text();
    let line = text.lines().find(|l| l.ends_with(",formulas")).expect("the row of the new process");
    assert_eq!(
        line,
        "\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"Открыть\"\")\",'+7 (8512) 00-00-00,,'=1+2,'@SUM(A1:A9),'-1,,,,,,,,formulas"
    );

    // The SLA report: the instance finished within its SLA; the task within its due date.
    let by_definition = app.get("/api/reports/sla?groupBy=definition", &app.reviewer).await.ok(200);
    let row = &by_definition["items"][0];
    assert_eq!(
        (row["key"].clone(), row["total"].clone(), row["completed"].clone()),
        (json!("approval"), json!(1), json!(1))
    );
    assert_eq!(
        (row["onTime"].clone(), row["overdue"].clone(), row["onTimePercent"].clone()),
        (json!(1), json!(0), json!(100.0))
    );
    assert!(row["averageDurationMinutes"].is_number());
    let by_group = app.get("/api/reports/sla?groupBy=group&from=2020-01-01", &app.reviewer).await.ok(200);
    assert_eq!(by_group["items"][0]["key"], json!("reviewers"));
    assert_eq!(by_group["items"][0]["onTime"], json!(1));

    let metrics = app.send(Method::GET, "/metrics", None, Body::empty(), &[]).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let m = metrics.text();
    for needle in [
        "reglament_instances_started_total 1",
        "reglament_instances_completed_total 1",
        "reglament_tasks_open 0",
        "reglament_tasks_overdue 0",
        "reglament_timer_lag_seconds 0",
        "reglament_outbox_pending 0",
        "reglament_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/tasks/{id}/complete\",le=\"+Inf\"} 4",
        "reglament_http_responses_total{method=\"POST\",route=\"/api/tasks/{id}/complete\",status=\"409\"} 1",
    ] {
        assert!(m.contains(needle), "{needle} missing from\n{m}");
    }
    let health = app.send(Method::GET, "/healthz", None, Body::empty(), &[]).await.ok(200);
    assert_eq!(health, json!({"status": "ok", "database": "ok"}));
    app.finish().await;
}

// ---- access rules ---------------------------------------------------------------------------

async fn access_rules(db: TestDb) {
    let app = App::new(db).await;
    app.deploy(APPROVAL, &app.owner).await.ok(201);

    // Every /api and /v2 route: no token, a malformed header, an unknown token → 401.
    let doc = app.send(Method::GET, "/openapi.json", None, Body::empty(), &[]).await.ok(200);
    for (path, item) in
        doc["paths"].as_object().unwrap().iter().filter(|(p, _)| p.starts_with("/api") || p.starts_with("/v2"))
    {
        for method in item.as_object().unwrap().keys() {
            let uri = path
                .replace("{key}", "approval")
                .replace("{id}", "x")
                .replace("{login}", "admin")
                .replace("{jobKey}", "1");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            app.send(m.clone(), &uri, None, Body::empty(), &[]).await.problem(401, "/problems/unauthorized");
            app.send(m.clone(), &uri, Some("rgl_unknown"), Body::empty(), &[])
                .await
                .problem(401, "/problems/unauthorized");
            app.send(m, &uri, None, Body::empty(), &[("authorization", "Basic YTpi")])
                .await
                .problem(401, "/problems/unauthorized");
        }
    }
    let no_token = app.send(Method::GET, "/api/tasks", None, Body::empty(), &[]).await;
    assert_eq!(no_token.header("www-authenticate"), "Bearer");

    // Deploying needs process-owners; admin endpoints need admins.
    app.deploy(APPROVAL, &app.reviewer).await.problem(403, "/problems/forbidden");
    app.deploy(APPROVAL, &app.admin).await.problem(403, "/problems/forbidden");
    app.get("/api/users", &app.owner).await.problem(403, "/problems/forbidden");
    app.get("/api/groups", &app.reviewer).await.problem(403, "/problems/forbidden");
    app.post("/api/users", &app.owner, json!({"login": "x", "email": "x@example.org"}))
        .await
        .problem(403, "/problems/forbidden");
    app.post("/api/users/ivanov/tokens", &app.reviewer, json!({})).await.problem(403, "/problems/forbidden");

    // Admins manage users and tokens; a new token works at once.
    let users = app.get("/api/users", &app.admin).await.ok(200);
    assert_eq!(users["items"].as_array().unwrap().len(), 5);
    let created = app
        .post(
            "/api/users",
            &app.admin,
            json!({"login": "kuznetsova", "email": "k@example.org", "name": "Кузнецова", "groups": ["reviewers"]}),
        )
        .await;
    assert_eq!(created.ok(201)["groups"], json!(["reviewers"]));
    app.post("/api/users", &app.admin, json!({"login": "kuznetsova", "email": "k@example.org"}))
        .await
        .problem(409, "/problems/conflict");
    app.post("/api/users", &app.admin, json!({"login": "bad login", "email": "k@example.org"}))
        .await
        .problem(422, "/problems/validation");
    // CR/LF or NUL in a name, an address or a group would reach email headers and pages.
    for (field, user) in [
        ("name", json!({"login": "k2", "email": "k@example.org", "name": "Кузнецова\r\nBcc: all@example.org"})),
        ("email", json!({"login": "k2", "email": "k\r\n@example.org"})),
        ("groups", json!({"login": "k2", "email": "k@example.org", "groups": ["re\u{0}viewers"]})),
    ] {
        let p = app.post("/api/users", &app.admin, user).await.problem(422, "/problems/validation");
        assert_eq!(p["errors"][0]["field"], json!(field), "{p}");
    }
    let token = app.post("/api/users/kuznetsova/tokens", &app.admin, json!({"label": "тест"})).await.ok(201);
    let token = token["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("rgl_") && token.len() > 40);
    let me = app.get("/api/me", &token).await.ok(200);
    assert_eq!((me["login"].clone(), me["name"].clone()), (json!("kuznetsova"), json!("Кузнецова")));
    app.post("/api/users/nobody/tokens", &app.admin, json!({})).await.problem(404, "/problems/user-not-found");
    let groups = app.get("/api/groups", &app.admin).await.ok(200);
    assert!(groups["items"].as_array().unwrap().contains(&json!({"name": "reviewers", "members": 3})), "{groups}");

    // Tasks: only for the assignee and the candidate groups.
    let id = app.start("approval", &app.outsider, json!({})).await["id"].as_str().unwrap().to_string();
    let task = app.task_of(&id).await;
    let tid = task["id"].as_str().unwrap();
    // The outsider started the instance: they read its task, but may not act on it.
    app.get(&format!("/api/tasks/{tid}"), &app.outsider).await.ok(200);
    app.post_empty(&format!("/api/tasks/{tid}/claim"), &app.outsider).await.problem(403, "/problems/forbidden");
    app.post(&format!("/api/tasks/{tid}/complete"), &app.outsider, json!({"variables": {"decision": "approve"}}))
        .await
        .problem(403, "/problems/forbidden");
    app.post(&format!("/api/tasks/{tid}/assign"), &app.outsider, json!({"user": "sidorov"}))
        .await
        .problem(403, "/problems/forbidden");
    app.get("/api/tasks?candidateGroup=reviewers", &app.outsider).await.problem(403, "/problems/forbidden");
    app.get("/api/tasks?assignee=ivanov", &app.outsider).await.problem(403, "/problems/forbidden");
    assert_eq!(app.get("/api/tasks", &app.outsider).await.ok(200)["items"], json!([]), "nothing of theirs");
    assert_eq!(app.get("/api/tasks", &app.reviewer).await.ok(200)["items"][0]["id"], json!(tid));

    // Someone else's claimed task.
    app.post_empty(&format!("/api/tasks/{tid}/claim"), &app.reviewer).await.ok(200);
    app.post_empty(&format!("/api/tasks/{tid}/claim"), &app.reviewer).await.ok(200);
    app.post_empty(&format!("/api/tasks/{tid}/claim"), &app.reviewer2).await.problem(409, "/problems/conflict");
    app.post_empty(&format!("/api/tasks/{tid}/unclaim"), &app.reviewer2).await.problem(403, "/problems/forbidden");
    app.post(&format!("/api/tasks/{tid}/complete"), &app.reviewer2, json!({"variables": {"decision": "approve"}}))
        .await
        .problem(403, "/problems/forbidden");
    app.post(&format!("/api/tasks/{tid}/assign"), &app.reviewer2, json!({"user": "petrov"}))
        .await
        .problem(403, "/problems/forbidden");
    // The assignee hands it over; the new assignee sees it, the old one no longer acts on it.
    app.post(&format!("/api/tasks/{tid}/assign"), &app.reviewer, json!({"user": "nobody"}))
        .await
        .problem(422, "/problems/validation");
    let assigned =
        app.post(&format!("/api/tasks/{tid}/assign"), &app.reviewer, json!({"user": "sidorov"})).await.ok(200);
    assert_eq!(assigned["assignee"], json!("sidorov"));
    assert_eq!(app.get(&format!("/api/tasks/{tid}"), &app.outsider).await.ok(200)["assignee"], json!("sidorov"));
    app.post_empty(&format!("/api/tasks/{tid}/unclaim"), &app.reviewer).await.problem(403, "/problems/forbidden");
    let unclaimed = app.post_empty(&format!("/api/tasks/{tid}/unclaim"), &app.outsider).await.ok(200);
    assert_eq!(unclaimed["assignee"], Value::Null);
    // They started the instance: they still read the task, and may no longer act on it.
    app.get(&format!("/api/tasks/{tid}"), &app.outsider).await.ok(200);
    app.post_empty(&format!("/api/tasks/{tid}/claim"), &app.outsider).await.problem(403, "/problems/forbidden");

    // Cancelling needs process-owners (or admins); an ended instance cannot be cancelled again.
    app.send(Method::DELETE, &format!("/api/process-instances/{id}"), Some(&app.reviewer), Body::empty(), &[])
        .await
        .problem(403, "/problems/forbidden");
    let cancelled = app
        .send(
            Method::DELETE,
            &format!("/api/process-instances/{id}?reason=дубль"),
            Some(&app.owner),
            Body::empty(),
            &[],
        )
        .await
        .ok(200);
    assert_eq!(cancelled["state"], json!("cancelled"));
    app.send(Method::DELETE, &format!("/api/process-instances/{id}"), Some(&app.admin), Body::empty(), &[])
        .await
        .problem(409, "/problems/conflict");
    let history = app.get(&format!("/api/process-instances/{id}/history"), &app.reviewer).await.ok(200);
    let last = history["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["event"].clone(), last["reason"].clone()), (json!("instance_cancelled"), json!("дубль")));
    assert_eq!(app.get(&format!("/api/tasks/{tid}"), &app.reviewer).await.ok(200)["state"], json!("cancelled"));
    app.post(&format!("/api/tasks/{tid}/complete"), &app.reviewer, json!({"variables": {"decision": "approve"}}))
        .await
        .problem(409, "/problems/conflict");
    app.finish().await;
}

// ---- bad input ------------------------------------------------------------------------------

/// Keys, names and ids with control characters, bidirectional overrides or excessive length get
/// the same clear answer on both backends (PostgreSQL refuses NUL in text), and nothing is stored.
/// API answers carry personal data: never cached, never framed, never sniffed into a page; the
/// headers are on successes and on problems alike.
async fn security_headers(db: TestDb) {
    let app = App::new(db).await;
    for resp in [app.get("/api/definitions", &app.owner).await, app.get("/api/tasks/nope.1", &app.owner).await] {
        assert_eq!(resp.header("cache-control"), "no-store");
        assert_eq!(resp.header("x-content-type-options"), "nosniff");
        assert_eq!(resp.header("x-frame-options"), "DENY");
        assert_eq!(resp.header("content-security-policy"), "default-src 'none'; frame-ancestors 'none'");
    }
    let health = app.send(Method::GET, "/healthz", None, Body::empty(), &[]).await;
    assert_eq!(health.header("x-content-type-options"), "nosniff");
    assert_eq!(health.header("cache-control"), "", "only API answers are no-store");
    app.finish().await;
}

async fn hostile_keys(db: TestDb) {
    let app = App::new(db).await;
    app.deploy(APPROVAL, &app.owner).await.ok(201);
    let start = |body: Value| app.post("/api/process-instances", &app.reviewer, body);
    let p = start(json!({"definitionKey": "approval", "businessKey": "REQ\u{0}1"}))
        .await
        .problem(422, "/problems/validation");
    assert_eq!(p["errors"][0]["field"], json!("businessKey"));
    assert!(p["errors"][0]["message"].as_str().unwrap().contains("U+0000"), "{p}");
    let p = start(json!({"definitionKey": "approval", "businessKey": "\u{202E}777-З"}))
        .await
        .problem(422, "/problems/validation");
    assert!(p["errors"][0]["message"].as_str().unwrap().contains("U+202E"), "{p}");
    start(json!({"definitionKey": "approval", "businessKey": "З".repeat(256)}))
        .await
        .problem(422, "/problems/validation");
    let p = start(json!({"definitionKey": "appr\u{0}oval"})).await.problem(422, "/problems/validation");
    assert_eq!(p["errors"][0]["field"], json!("definitionKey"));
    let p = start(json!({"definitionKey": "approval", "variables": {"a\r\nb": 1}}))
        .await
        .problem(422, "/problems/validation");
    assert_eq!(p["errors"][0]["field"], json!("variables.a\\r\\nb"));
    let p = app
        .post("/api/messages", &app.reviewer, json!({"name": "reply\u{0}", "correlationKey": "k\nx"}))
        .await
        .problem(422, "/problems/validation");
    assert_eq!(p["errors"].as_array().unwrap().len(), 2, "{p}");
    app.get("/api/tasks/t%00x", &app.reviewer).await.problem(404, "/problems/task-not-found");
    app.get("/api/process-instances/i%00x", &app.reviewer).await.problem(404, "/problems/instance-not-found");
    let none = app.get("/api/tasks?candidateGroup=reviewers", &app.reviewer).await.ok(200);
    assert_eq!(none["items"], json!([]), "nothing was started");
    // What the fuzzer over /openapi.json found answering 500 on PostgreSQL (tests/it/fuzz.rs).
    for path in ["", "/xml", "/versions", "/forms/f"] {
        app.get(&format!("/api/definitions/appr%00oval{path}"), &app.reviewer)
            .await
            .problem(404, "/problems/definition-not-found");
    }
    let p = app.get("/api/audit?actor=a%00b", &app.admin).await.problem(400, "/problems/bad-request");
    assert!(p["detail"].as_str().unwrap().contains("`actor`"), "{p}");
    let p = app
        .post("/api/users/ivanov/tokens", &app.admin, json!({"label": "CI\u{0}"}))
        .await
        .problem(422, "/problems/validation");
    assert_eq!(p["errors"][0]["field"], json!("label"));
    // A cursor of the right shape whose task id has a NUL: as broken as any forged cursor.
    let forged = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        r#"{"sort":"due","key":1,"id":"a\u0000b"}"#,
    );
    app.get(&format!("/api/tasks?cursor={forged}"), &app.reviewer).await.problem(400, "/problems/bad-request");
    let json_headers = [("content-type", "application/json")];
    let password = Body::from(json!({"password": "длинный пароль"}).to_string());
    app.send(Method::PUT, "/api/users/iva%00nov/password", Some(&app.admin), password, &json_headers)
        .await
        .problem(404, "/problems/user-not-found");
    let id = app.start("approval", &app.reviewer, json!({})).await["id"].as_str().unwrap().to_string();
    let tid = app.task_of(&id).await["id"].as_str().unwrap().to_string();
    let p = app
        .post(&format!("/api/tasks/{tid}/assign"), &app.reviewer, json!({"user": "iva\u{0}nov"}))
        .await
        .problem(422, "/problems/validation");
    assert_eq!(p["errors"][0]["field"], json!("user"));
    app.finish().await;
}

async fn bad_input(db: TestDb) {
    let app = App::new(db).await;
    app.deploy(APPROVAL, &app.owner).await.ok(201);
    let json_headers = [("content-type", "application/json")];
    let send_json = |body: &'static str| {
        app.send(Method::POST, "/api/process-instances", Some(&app.reviewer), Body::from(body), &json_headers)
    };
    let cut = send_json("{\"definitionKey\": ").await;
    // Said in Russian, with the place, not in serde's English.
    assert_eq!(
        cut.problem(400, "/problems/bad-request")["detail"],
        json!("Тело запроса — не корректный JSON: JSON обрывается (строка 1, позиция 18)")
    );
    send_json("not json").await.problem(400, "/problems/bad-request");
    let wrong = send_json("{\"definitionKey\": \"approval\", \"variables\": 5}").await;
    assert_eq!(wrong.problem(422, "/problems/validation")["errors"][0]["field"], json!("variables"));
    let typed = send_json("{\"definitionKey\": 7}").await;
    let p = typed.problem(422, "/problems/validation");
    assert_eq!(p["errors"][0]["field"], json!("definitionKey"));
    assert!(
        p["detail"].as_str().unwrap().starts_with(
            "Поля запроса не соответствуют схеме: поле `definitionKey`: неверный тип значения: целое число `7`, а ожидается строка"
        ),
        "{p}"
    );
    send_json("{\"variables\": {}}").await.problem(422, "/problems/validation");
    send_json("{\"definitionKey\": \"approval\", \"surprise\": 1}").await.problem(422, "/problems/validation");
    app.send(Method::POST, "/api/process-instances", Some(&app.reviewer), Body::from("{}"), &[])
        .await
        .problem(415, "/problems/unsupported-media-type");

    // Unknown ids.
    app.post("/api/process-instances", &app.reviewer, json!({"definitionKey": "nope"}))
        .await
        .problem(404, "/problems/definition-not-found");
    app.get("/api/definitions/nope", &app.reviewer).await.problem(404, "/problems/definition-not-found");
    app.get("/api/definitions/approval?version=9", &app.reviewer).await.problem(404, "/problems/definition-not-found");
    // A version that no deployment has — zero or negative too — is the same 404 on every route
    // (the XML route once gave the latest version for `-1`).
    for version in ["9", "0", "-1"] {
        for route in ["", "/xml", "/forms/any"] {
            let p = app
                .get(&format!("/api/definitions/approval{route}?version={version}"), &app.reviewer)
                .await
                .problem(404, "/problems/definition-not-found");
            assert_eq!(p["detail"], json!(format!("У определения `approval` нет версии {version}")), "{route}");
        }
    }
    let p = app
        .get("/api/definitions/approval/xml?version=last", &app.reviewer)
        .await
        .problem(400, "/problems/bad-request");
    assert_eq!(p["detail"], json!("Параметр запроса `version` задан неверно: ожидается целое число"));
    app.get("/api/definitions/nope/xml", &app.reviewer).await.problem(404, "/problems/definition-not-found");
    app.get("/api/definitions/nope/versions", &app.reviewer).await.problem(404, "/problems/definition-not-found");
    app.get("/api/process-instances/nope", &app.reviewer).await.problem(404, "/problems/instance-not-found");
    app.get("/api/process-instances/nope/history", &app.reviewer).await.problem(404, "/problems/instance-not-found");
    app.send(Method::DELETE, "/api/process-instances/nope", Some(&app.owner), Body::empty(), &[])
        .await
        .problem(404, "/problems/instance-not-found");
    for uri in ["/api/tasks/nope", "/api/tasks/nope.1"] {
        app.get(uri, &app.reviewer).await.problem(404, "/problems/task-not-found");
    }
    app.post_empty("/api/tasks/nope.1/claim", &app.reviewer).await.problem(404, "/problems/task-not-found");
    app.post_empty("/api/tasks/nope.1/unclaim", &app.reviewer).await.problem(404, "/problems/task-not-found");
    app.post("/api/tasks/nope.1/assign", &app.reviewer, json!({"user": "ivanov"}))
        .await
        .problem(404, "/problems/task-not-found");
    app.post("/api/tasks/nope.1/complete", &app.reviewer, json!({})).await.problem(404, "/problems/task-not-found");
    app.get("/api/nowhere", &app.reviewer).await.problem(404, "/problems/route-not-found");
    app.send(Method::PUT, "/api/tasks", Some(&app.reviewer), Body::empty(), &[])
        .await
        .problem(405, "/problems/method-not-allowed");

    // Bad query parameters.
    app.get("/api/tasks?cursor=%%%", &app.reviewer).await.problem(400, "/problems/bad-request");
    app.get("/api/tasks?cursor=bm90IGpzb24", &app.reviewer).await.problem(400, "/problems/bad-request");
    app.get("/api/tasks?sort=sideways", &app.reviewer).await.problem(400, "/problems/bad-request");
    app.get("/api/tasks?limit=0", &app.reviewer).await.problem(400, "/problems/bad-request");
    app.get("/api/tasks?limit=many", &app.reviewer).await.problem(400, "/problems/bad-request");
    app.get("/api/tasks?dueBefore=tomorrow", &app.reviewer).await.problem(400, "/problems/bad-request");
    app.get("/api/tasks?state=lost", &app.reviewer).await.problem(400, "/problems/bad-request");
    app.get("/api/reports/sla?from=2026-02-01&to=2026-01-01", &app.reviewer)
        .await
        .problem(400, "/problems/bad-request");
    app.get("/api/reports/sla?groupBy=planet", &app.reviewer).await.problem(400, "/problems/bad-request");
    app.get("/api/registry?format=xls", &app.reviewer).await.problem(400, "/problems/bad-request");

    // Oversized bodies: JSON over 2 MiB, BPMN over 16 MiB.
    let big = format!("{{\"definitionKey\": \"approval\", \"variables\": {{\"blob\": \"{}\"}}}}", "я".repeat(1 << 20));
    app.send(Method::POST, "/api/process-instances", Some(&app.reviewer), Body::from(big), &json_headers)
        .await
        .problem(413, "/problems/payload-too-large");
    let huge = format!("{}<!--{}-->", APPROVAL, "x".repeat(16 << 20));
    app.deploy(&huge, &app.owner).await.problem(413, "/problems/payload-too-large");
    let fits = format!("{}<!--{}-->", APPROVAL, "x".repeat(3 << 20));
    app.deploy(&fits, &app.owner).await.ok(201);

    // Invalid BPMN: every diagnostic with its position, element and code.
    let invalid = app.deploy(BROKEN, &app.owner).await;
    let p = invalid.problem(422, "/problems/invalid-model");
    let first = &p["errors"][0];
    assert_eq!((first["line"].clone(), first["element"].clone()), (json!(6), json!("g")));
    assert_eq!(
        (first["severity"].clone(), first["code"].clone()),
        (json!("error"), json!("gateway-without-conditions"))
    );
    assert!(first["column"].as_u64().unwrap() > 0 && first["message"].is_string());
    let garbage = app.deploy("<bpmn:definitions", &app.owner).await;
    assert_eq!(garbage.problem(422, "/problems/invalid-model")["errors"][0]["code"], json!("malformed-xml"));
    app.get("/api/definitions/broken", &app.reviewer).await.problem(404, "/problems/definition-not-found");

    // Email templates are checked at deploy, not when the first email is due: a path is not a
    // template name, and a template that is not in the folder is named.
    let with_template = |template: &str| {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d" targetNamespace="urn:t">
  <bpmn:process id="lettered" isExecutable="true">
    <bpmn:startEvent id="s" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="mail" />
    <bpmn:sendTask id="mail">
      <bpmn:extensionElements>
        <zeebe:taskDefinition type="email" />
        <zeebe:taskHeaders><zeebe:header key="to" value="user:ivanov" /><zeebe:header key="subject" value="Письмо" /><zeebe:header key="template" value="{template}" /></zeebe:taskHeaders>
      </bpmn:extensionElements>
    </bpmn:sendTask>
    <bpmn:sequenceFlow id="f2" sourceRef="mail" targetRef="e" />
    <bpmn:endEvent id="e" />
  </bpmn:process>
</bpmn:definitions>"#
        )
    };
    for (template, says) in [("../../etc/passwd", "is not a file name"), ("no-such-letter", "is not in")] {
        let p = app.deploy(&with_template(template), &app.owner).await.problem(422, "/problems/invalid-model");
        let e = &p["errors"][0];
        assert_eq!((e["element"].clone(), e["code"].clone()), (json!("mail"), json!("bad-value")), "{p}");
        assert!(e["message"].as_str().unwrap().contains(says) && e["line"].as_u64().unwrap() > 0, "{p}");
    }
    app.get("/api/definitions/lettered", &app.reviewer).await.problem(404, "/problems/definition-not-found");
    app.deploy(&with_template("task-reminder"), &app.owner).await.ok(201);

    // Messages: correlated, buffered with a time to live, or nobody to receive them.
    app.deploy(WAITER, &app.owner).await.ok(201);
    let waiting = app.start("waiter", &app.reviewer, json!({"requestId": "R-1"})).await;
    assert_eq!(waiting["activeElements"][0]["elementId"], json!("wait"));
    let correlated = app
        .post(
            "/api/messages",
            &app.reviewer,
            json!({"name": "reply", "correlationKey": "R-1", "variables": {"answer": 42}}),
        )
        .await
        .ok(200);
    assert_eq!(correlated, json!({"result": "correlated", "processInstanceId": waiting["id"]}));
    let done =
        app.get(&format!("/api/process-instances/{}", waiting["id"].as_str().unwrap()), &app.reviewer).await.ok(200);
    assert_eq!((done["state"].clone(), done["variables"]["answer"].clone()), (json!("completed"), json!(42)));
    app.post("/api/messages", &app.reviewer, json!({"name": "reply", "correlationKey": "R-2"}))
        .await
        .problem(404, "/problems/no-receiver");
    let buffered = app
        .post("/api/messages", &app.reviewer, json!({"name": "reply", "correlationKey": "R-2", "timeToLive": "PT1H"}))
        .await;
    assert_eq!(buffered.ok(202)["result"], json!("buffered"));
    let later = app.start("waiter", &app.reviewer, json!({"requestId": "R-2"})).await;
    assert_eq!(later["state"], json!("completed"), "the buffered message was waiting for it");
    app.post("/api/messages", &app.reviewer, json!({"name": "reply", "timeToLive": "soon"}))
        .await
        .problem(422, "/problems/validation");

    // An idempotency key that is not a header value we accept.
    let long_key = "k".repeat(300);
    app.send(
        Method::POST,
        "/api/messages",
        Some(&app.reviewer),
        Body::from("{}"),
        &[("content-type", "application/json"), ("idempotency-key", &long_key)],
    )
    .await
    .problem(400, "/problems/bad-request");

    app.finish().await;
}

/// A request over the time limit is answered 503 with a problem document: here its body never
/// finishes arriving.
async fn slow_requests_time_out(db: TestDb) {
    let app = App::new(db).await;
    let limits = http::Limits { request_timeout: std::time::Duration::from_millis(200), ..http::Limits::default() };
    let impatient = http::router(AppState::new(app.rt.clone(), "http://reglament.test").with_limits(limits));
    let (_sender, never) = http_body_util::Channel::<Bytes, std::convert::Infallible>::new(1);
    let req = Request::post("/api/process-instances")
        .header("authorization", format!("Bearer {}", app.reviewer))
        .header("content-type", "application/json")
        .body(Body::new(never))
        .unwrap();
    let response = impatient.oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let slow = Resp { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() };
    slow.problem(503, "/problems/timeout");
    app.finish().await;
}

// ---- idempotency ----------------------------------------------------------------------------

async fn idempotent_writes(db: TestDb) {
    let app = App::new(db).await;
    app.deploy(APPROVAL, &app.owner).await.ok(201);
    let body = json!({"definitionKey": "approval", "businessKey": "REQ-7"}).to_string();
    let first = app.post_keyed("/api/process-instances", &app.reviewer, "key-1", body.clone()).await;
    let id = first.ok(201)["id"].clone();
    assert_eq!(first.header("idempotency-replayed"), "");
    let again = app.post_keyed("/api/process-instances", &app.reviewer, "key-1", body.clone()).await;
    assert_eq!(again.ok(201)["id"], id, "the stored response, not a second instance");
    assert_eq!(again.header("idempotency-replayed"), "true");
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(app.rt.store().count(CountOf::Instances).await.unwrap(), 1);
    // The same key for another request is refused; another user's key is their own.
    let other = json!({"definitionKey": "approval", "businessKey": "REQ-8"}).to_string();
    app.post_keyed("/api/process-instances", &app.reviewer, "key-1", other).await.problem(422, "/problems/validation");
    let theirs = app.post_keyed("/api/process-instances", &app.reviewer2, "key-1", body.clone()).await.ok(201);
    assert_ne!(theirs["id"], id);
    assert_eq!(app.rt.store().count(CountOf::Instances).await.unwrap(), 2);
    // Errors are replayed too (a 4xx is the answer to that request).
    let missing = json!({"definitionKey": "nope"}).to_string();
    app.post_keyed("/api/process-instances", &app.reviewer, "key-2", missing.clone())
        .await
        .problem(404, "/problems/definition-not-found");
    let replayed = app.post_keyed("/api/process-instances", &app.reviewer, "key-2", missing).await;
    replayed.problem(404, "/problems/definition-not-found");
    assert_eq!(replayed.header("idempotency-replayed"), "true");
    // Completing a task with a key: the retry does not hit "completed twice".
    let task = app.task_of(id.as_str().unwrap()).await;
    let uri = format!("/api/tasks/{}/complete", task["id"].as_str().unwrap());
    let complete = json!({"variables": {"decision": "reject"}}).to_string();
    let headers = [("content-type", "application/json"), ("idempotency-key", "complete-1")];
    let once = app.send(Method::POST, &uri, Some(&app.reviewer), Body::from(complete.clone()), &headers).await;
    once.ok(200);
    let retry = app.send(Method::POST, &uri, Some(&app.reviewer), Body::from(complete), &headers).await;
    assert_eq!(retry.ok(200)["state"], json!("completed"));
    app.finish().await;
}

/// A process whose model says `uniqueBusinessKey="true"`: a request number starts one instance;
/// a second start — sequential or concurrent — is 409 naming the holder; starts without a number
/// and other processes are not affected.
async fn unique_business_keys(db: TestDb) {
    let app = App::new(db).await;
    app.deploy(APPROVAL, &app.owner).await.ok(201);
    let unique = APPROVAL
        .replace(r#"id="approval" name="Согласование заявки""#, r#"id="numbered" name="Заявка с номером""#)
        .replace(r#"calendar="ru" />"#, r#"calendar="ru" uniqueBusinessKey="true" />"#);
    app.deploy(&unique, &app.owner).await.ok(201);
    let start = |key: &'static str, number: Option<&'static str>| {
        let body = json!({"definitionKey": key, "businessKey": number});
        let app = &app;
        async move { app.post("/api/process-instances", &app.reviewer, body).await }
    };
    let first = start("numbered", Some("З-2026-777")).await.ok(201);
    let problem = start("numbered", Some("З-2026-777")).await.problem(409, "/problems/conflict");
    let id = first["id"].as_str().unwrap();
    assert!(problem["detail"].as_str().unwrap().contains(id), "the holder is named: {problem}");
    start("numbered", Some("З-2026-778")).await.ok(201);
    start("numbered", None).await.ok(201);
    start("numbered", None).await.ok(201);
    // Another process, without the setting, takes the same number as often as it is given.
    start("approval", Some("З-2026-777")).await.ok(201);
    start("approval", Some("З-2026-777")).await.ok(201);
    // Eight concurrent starts with one new number: exactly one instance.
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/api/process-instances")
            .header("authorization", format!("Bearer {}", app.reviewer))
            .header("content-type", "application/json")
            .body(Body::from(json!({"definitionKey": "numbered", "businessKey": "З-2026-900"}).to_string()))
            .unwrap();
        let router = app.router.clone();
        racers.spawn(async move { router.oneshot(req).await.expect("infallible").status().as_u16() });
    }
    let statuses: Vec<u16> = racers.join_all().await;
    let created = statuses.iter().filter(|s| **s == 201).count();
    assert_eq!((created, statuses.len() - created), (1, 7), "{statuses:?}");
    assert!(statuses.iter().all(|s| [201, 409].contains(s)), "{statuses:?}");
    app.finish().await;
}

// ---- paging ---------------------------------------------------------------------------------

async fn collect_pages(app: &App, query: &str, token: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let uri = match &cursor {
            Some(c) => format!("/api/tasks?{query}&limit={limit}&cursor={c}"),
            None => format!("/api/tasks?{query}&limit={limit}"),
        };
        let page = app.get(&uri, token).await.ok(200);
        let got = page["items"].as_array().unwrap().clone();
        assert!(got.len() <= limit);
        items.extend(got);
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return items,
        }
    }
    panic!("paging did not end");
}

async fn cursor_pagination(db: TestDb) {
    let app = App::new(db).await;
    app.deploy(APPROVAL, &app.owner).await.ok(201);
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            app.start("approval", &app.reviewer, json!({"priority": i * 10})).await["id"].as_str().unwrap().to_string(),
        );
    }
    let instance_ids = |items: &[Value]| -> Vec<String> {
        items.iter().map(|t| t["processInstanceId"].as_str().unwrap().to_string()).collect()
    };
    // The group's inbox (index path) in creation order, three at a time.
    let by_created = collect_pages(&app, "candidateGroup=reviewers&state=open&sort=created", &app.reviewer, 3).await;
    assert_eq!(instance_ids(&by_created), ids, "every task once, in creation order");
    // In due order (all have the same working-day deadline up to milliseconds): each once.
    let by_due = collect_pages(&app, "candidateGroup=reviewers&sort=due", &app.reviewer2, 2).await;
    assert_eq!(instance_ids(&by_due).into_iter().collect::<BTreeSet<_>>(), ids.iter().cloned().collect());
    assert_eq!(by_due.len(), 7);
    // Everything the reviewer may see, highest priority first.
    let by_priority = collect_pages(&app, "sort=priority", &app.reviewer, 3).await;
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(instance_ids(&by_priority), expected);
    // A cursor belongs to its sort order.
    let page = app.get("/api/tasks?sort=priority&limit=2", &app.reviewer).await.ok(200);
    let cursor = page["nextCursor"].as_str().unwrap();
    app.get(&format!("/api/tasks?sort=due&cursor={cursor}"), &app.reviewer).await.problem(400, "/problems/bad-request");
    // Filters: mine, overdue, due before.
    let first_task = by_created[0]["id"].as_str().unwrap();
    app.post_empty(&format!("/api/tasks/{first_task}/claim"), &app.reviewer).await.ok(200);
    let mine = collect_pages(&app, "assignee=me&sort=created", &app.reviewer, 50).await;
    assert_eq!(mine.len(), 1);
    let mine_in_group = collect_pages(&app, "assignee=me&candidateGroup=reviewers", &app.reviewer, 50).await;
    assert_eq!(mine_in_group.len(), 1);
    assert!(collect_pages(&app, "assignee=me", &app.reviewer2, 50).await.is_empty());
    assert!(collect_pages(&app, "overdue=true", &app.reviewer, 50).await.is_empty());
    assert!(collect_pages(&app, "candidateGroup=reviewers&overdue=true", &app.reviewer, 50).await.is_empty());
    assert_eq!(collect_pages(&app, "dueBefore=2999-01-01", &app.reviewer, 50).await.len(), 7);
    assert_eq!(
        collect_pages(&app, "candidateGroup=reviewers&dueBefore=2999-01-01T00:00:00Z", &app.reviewer, 4).await.len(),
        7
    );
    assert!(collect_pages(&app, "state=completed", &app.reviewer, 50).await.is_empty());
    app.finish().await;
}

// ---- the OpenAPI document, the docs page, the CLI command -----------------------------------

/// The routes of DESIGN §6 (plus the user administration of issue 5), with the /v2 job API.
const DESIGNED: &[(&str, &str)] = &[
    ("post", "/api/definitions"),
    ("get", "/api/definitions"),
    ("get", "/api/definitions/{key}"),
    ("get", "/api/definitions/{key}/xml"),
    ("get", "/api/definitions/{key}/versions"),
    ("get", "/api/definitions/{key}/forms/{formId}"),
    ("post", "/api/process-instances"),
    ("get", "/api/process-instances/{id}"),
    ("get", "/api/process-instances/{id}/history"),
    ("get", "/api/process-instances/{id}/incidents"),
    ("get", "/api/incidents"),
    ("get", "/api/process-instances"),
    ("post", "/api/process-instances/{id}/incidents/{key}/resolve"),
    ("delete", "/api/process-instances/{id}"),
    ("get", "/api/tasks"),
    ("get", "/api/tasks/{id}"),
    ("post", "/api/tasks/{id}/claim"),
    ("post", "/api/tasks/{id}/unclaim"),
    ("post", "/api/tasks/{id}/complete"),
    ("post", "/api/tasks/{id}/assign"),
    ("post", "/api/messages"),
    ("get", "/api/registry"),
    ("get", "/api/reports/sla"),
    ("get", "/api/me"),
    ("get", "/api/users"),
    ("post", "/api/users"),
    ("post", "/api/users/{login}/tokens"),
    ("get", "/api/users/{login}/tokens"),
    ("delete", "/api/users/{login}/tokens/{tokenId}"),
    ("post", "/api/users/{login}/disable"),
    ("post", "/api/users/{login}/enable"),
    ("get", "/api/groups"),
    ("get", "/api/directory"),
    ("put", "/api/directory"),
    ("put", "/api/users/{login}/password"),
    ("get", "/api/audit"),
    ("get", "/api/clock"),
    ("post", "/api/clock"),
    ("post", "/v2/jobs/activation"),
    ("post", "/v2/jobs/{jobKey}/completion"),
    ("post", "/v2/jobs/{jobKey}/failure"),
    ("post", "/v2/jobs/{jobKey}/error"),
    ("patch", "/v2/jobs/{jobKey}"),
    ("get", "/v2/topology"),
    ("post", "/v2/process-instances"),
    ("post", "/v2/messages/publication"),
    ("post", "/v2/messages/correlation"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
    ("get", "/metrics"),
    ("get", "/healthz"),
];

async fn openapi_document(db: TestDb) {
    let app = App::new(db).await;
    let doc = app.send(Method::GET, "/openapi.json", None, Body::empty(), &[]).await.ok(200);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let designed: BTreeSet<(String, String)> = DESIGNED.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, designed, "the document lists exactly the designed routes");
    // Every documented operation is routed (a handler answers, not the router's fallbacks), and
    // every route is documented: the router is built from the same declarations (utoipa-axum),
    // and nothing else answers.
    for (method, path) in &documented {
        let uri =
            path.replace("{key}", "approval").replace("{id}", "x").replace("{login}", "admin").replace("{jobKey}", "1");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app.send(m, &uri, Some(&app.admin), Body::empty(), &[]).await;
        if r.header("content-type") == "application/problem+json" {
            let kind = r.json()["type"].clone();
            assert!(
                kind != json!("/problems/route-not-found") && kind != json!("/problems/method-not-allowed"),
                "{method} {path}: {kind}"
            );
        }
    }
    for (method, path) in
        [("get", "/api/tasks/x/claim"), ("post", "/api/tasks"), ("get", "/openapi.yaml"), ("post", "/healthz")]
    {
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app.send(m, path, Some(&app.admin), Body::empty(), &[]).await;
        assert!(matches!(r.status.as_u16(), 404 | 405), "{method} {path} is not a route: {}", r.status);
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], json!("bearer"));
    assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([{}]), "public routes need no token");
    // A public validator accepts it.
    let file = std::env::temp_dir().join(format!("reglament-openapi-{}.json", uuid::Uuid::now_v7().simple()));
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = std::process::Command::new(crate::tools::python())
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("the venv's python runs openapi_spec_validator");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The docs page is self-contained: it loads nothing from elsewhere.
    let docs = app.send(Method::GET, "/docs", None, Body::empty(), &[]).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.header("content-type").starts_with("text/html"));
    let html = docs.text();
    assert!(html.contains("/openapi.json") && html.contains("<script>"), "renders the document in place");
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("@import"),
        "no external assets"
    );
    // The token typed into the page is not kept in the browser's storage.
    assert!(!html.contains("localStorage.setItem") && !html.contains("sessionStorage"), "the token is not stored");
    app.finish().await;
}

async fn users_command(db: TestDb) {
    let store = reglament_store::Store::connect(&db.url, 2).await.unwrap();
    let token = reglament::users_cmd::add(
        &store,
        "ivanov",
        "ivanov@example.org",
        vec!["b".into(), "a".into(), "a".into()],
        Some("Иванов И.И.".into()),
    )
    .await
    .unwrap();
    let user = store
        .user_by_token_hash(&reglament_server::accounts::hash_token(&token), chrono::Utc::now())
        .await
        .unwrap()
        .expect("the token signs in");
    assert_eq!(
        (user.groups.clone(), user.name.clone()),
        (vec!["a".to_string(), "b".to_string()], Some("Иванов И.И.".to_string()))
    );
    // Adding again updates the user and issues another token; both work.
    let second = reglament::users_cmd::add(&store, "ivanov", "i@example.org", vec!["c".into()], None).await.unwrap();
    assert_ne!(token, second);
    let user = store
        .user_by_token_hash(&reglament_server::accounts::hash_token(&token), chrono::Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((user.email.as_str(), user.groups.clone()), ("i@example.org", vec!["c".to_string()]));
    assert!(
        store
            .user_by_token_hash(&reglament_server::accounts::hash_token(&second), chrono::Utc::now())
            .await
            .unwrap()
            .is_some()
    );
    // A new token for an existing person, with only the email given (as directory.toml
    // suggests), keeps their name and groups.
    reglament::users_cmd::add(&store, "ivanov", "i@example.org", vec![], None).await.unwrap();
    let user = store.user("ivanov").await.unwrap().unwrap();
    assert_eq!(user.groups, vec!["c".to_string()]);
    assert_eq!(user.name.as_deref(), Some("Иванов И.И."));
    // Only hashes are stored.
    let rows = store.users().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(reglament::users_cmd::add(&store, "bad login", "x@example.org", vec![], None).await.is_err());
    assert!(reglament::users_cmd::add(&store, "x", "not-an-email", vec![], None).await.is_err());
    store.close().await;
    db.drop_db().await;
}

/// The history uses the simulator's vocabulary: the same model and steps give the same
/// (event, element) sequence through the API as through `reglament simulate`, with the same
/// fields, plus `by` where a person acted.
async fn history_matches_the_simulator(db: TestDb) {
    let app = App::new(db).await;
    app.deploy(APPROVAL, &app.owner).await.ok(201);
    let id = app.start("approval", &app.reviewer, json!({})).await["id"].as_str().unwrap().to_string();
    let task = app.task_of(&id).await;
    app.post(
        &format!("/api/tasks/{}/complete", task["id"].as_str().unwrap()),
        &app.reviewer,
        json!({"variables": {"decision": "reject"}}),
    )
    .await
    .ok(200);
    let history = app.get(&format!("/api/process-instances/{id}/history"), &app.reviewer).await.ok(200);

    let (defs, _) = reglament_engine::parse_definitions(APPROVAL.as_bytes());
    let scenario = reglament_engine::sim::parse_scenario(
        "definition = \"x.bpmn\"\n[start]\nat = \"2026-03-02T10:00:00+04:00\"\n[[step]]\ncomplete = \"review\"\nvariables = { decision = \"reject\" }\n",
    )
    .unwrap();
    let (trace, error) = reglament_engine::sim::run(std::sync::Arc::new(defs), &crate::store::env(), &scenario);
    assert!(error.is_none(), "{error:?}");
    let shape = |items: Vec<Value>| -> Vec<Vec<String>> {
        items
            .iter()
            .map(|i| {
                // `by` (who did it) is the server's: the simulator has no people.
                let mut keys: Vec<String> = i.as_object().unwrap().keys().filter(|k| *k != "by").cloned().collect();
                keys.sort();
                let mut line =
                    vec![i["event"].as_str().unwrap().to_string(), i["element"].as_str().unwrap_or("").to_string()];
                line.extend(keys);
                line
            })
            .collect()
    };
    let trace: Vec<Value> = trace.into_iter().map(Value::Object).collect();
    assert_eq!(shape(history["items"].as_array().unwrap().clone()), shape(trace));
    app.finish().await;
}

/// The visibility rules (README, `access.rs`): an instance is seen by whoever started it, whoever
/// holds, held or may take one of its tasks, the owners of its process, auditors and admins.
/// Everyone else gets 404 on every route that names it, exactly as for an id that does not
/// exist; seeing is not changing (auditors, starters).
async fn visibility_rules(db: TestDb) {
    let app = App::new(db).await;
    let add = |login: &'static str, groups: &'static [&'static str]| person(app.rt.store(), login, groups);
    let stranger = add("kozlov", &["accountants"]).await;
    let auditor = add("orlova", &["auditors"]).await;
    let lawyer = add("belova", &["process-owners", "legal"]).await;
    app.deploy(APPROVAL, &app.owner).await.ok(201);
    let id = app.start("approval", &app.outsider, json!({})).await["id"].as_str().unwrap().to_string();
    let tid = app.task_of(&id).await["id"].as_str().unwrap().to_string();
    let reads = [
        format!("/api/process-instances/{id}"),
        format!("/api/process-instances/{id}/history"),
        format!("/api/process-instances/{id}/incidents"),
        format!("/api/tasks/{tid}"),
    ];
    for who in [&app.outsider, &app.reviewer, &app.owner, &auditor, &app.admin, &lawyer] {
        for uri in &reads {
            app.get(uri, who).await.ok(200);
        }
    }
    let missing = app
        .get("/api/process-instances/no-such-instance", &stranger)
        .await
        .problem(404, "/problems/instance-not-found");
    for uri in &reads[..3] {
        let p = app.get(uri, &stranger).await.problem(404, "/problems/instance-not-found");
        assert_eq!(p["title"], missing["title"], "nothing tells a hidden instance from a missing one");
    }
    app.get(&reads[3], &stranger).await.problem(404, "/problems/task-not-found");
    app.post_empty(&format!("/api/tasks/{tid}/claim"), &stranger).await.problem(404, "/problems/task-not-found");
    app.post(&format!("/api/tasks/{tid}/complete"), &stranger, json!({"variables": {"decision": "approve"}}))
        .await
        .problem(404, "/problems/task-not-found");
    app.send(Method::DELETE, &format!("/api/process-instances/{id}"), Some(&stranger), Body::empty(), &[])
        .await
        .problem(404, "/problems/instance-not-found");
    // Seeing is not changing.
    for who in [&auditor, &app.outsider] {
        app.send(Method::DELETE, &format!("/api/process-instances/{id}"), Some(who), Body::empty(), &[])
            .await
            .problem(403, "/problems/forbidden");
        app.post_empty(&format!("/api/tasks/{tid}/claim"), who).await.problem(403, "/problems/forbidden");
    }

    // A process that names its owners: other process owners neither see its instances nor
    // deploy over it.
    let owned = APPROVAL
        .replace(r#"id="approval" name="Согласование заявки""#, r#"id="legal_review" name="Правовая экспертиза""#)
        .replace(r#"calendar="ru" />"#, r#"calendar="ru" owners="legal" />"#);
    assert!(owned.contains(r#"owners="legal""#));
    app.deploy(&owned, &lawyer).await.ok(201);
    let legal = app.start("legal_review", &app.outsider, json!({})).await["id"].as_str().unwrap().to_string();
    app.get(&format!("/api/process-instances/{legal}"), &lawyer).await.ok(200);
    app.get(&format!("/api/process-instances/{legal}"), &app.owner).await.problem(404, "/problems/instance-not-found");
    app.get(&format!("/api/process-instances/{legal}"), &app.admin).await.ok(200);
    let p = app
        .deploy(&owned.replace("Правовая экспертиза", "Экспертиза"), &app.owner)
        .await
        .problem(403, "/problems/forbidden");
    assert!(p["detail"].as_str().unwrap().contains("legal_review"), "{p}");
    app.deploy(&owned.replace("Правовая экспертиза", "Экспертиза"), &lawyer).await.ok(201);
    app.send(Method::DELETE, &format!("/api/process-instances/{legal}"), Some(&app.owner), Body::empty(), &[])
        .await
        .problem(404, "/problems/instance-not-found");
    app.send(Method::DELETE, &format!("/api/process-instances/{legal}"), Some(&lawyer), Body::empty(), &[])
        .await
        .ok(200);
    app.finish().await;
}

/// The audit log: every act of a person with who, when and what they submitted, listed for
/// admins and auditors only, filtered and paged; rows cannot be changed or deleted, whoever
/// asks the database.
async fn audit_trail(db: TestDb) {
    let app = App::new(db).await;
    let auditor = person(app.rt.store(), "orlova", &["auditors"]).await;
    app.deploy(APPROVAL, &app.owner).await.ok(201);
    let id = app.start("approval", &app.outsider, json!({"amount": 7})).await["id"].as_str().unwrap().to_string();
    let tid = app.task_of(&id).await["id"].as_str().unwrap().to_string();
    app.post_empty(&format!("/api/tasks/{tid}/claim"), &app.reviewer).await.ok(200);
    app.post(
        &format!("/api/tasks/{tid}/complete"),
        &app.reviewer,
        json!({"variables": {"decision": "approve", "comment": "Согласовано"}}),
    )
    .await
    .ok(200);
    // A refused completion is no act: nothing is recorded for it.
    app.post(&format!("/api/tasks/{tid}/complete"), &app.reviewer, json!({"variables": {}}))
        .await
        .problem(409, "/problems/conflict");

    app.get("/api/audit", &app.reviewer).await.problem(403, "/problems/forbidden");
    let all = app.get("/api/audit", &auditor).await.ok(200);
    // The people of the test were added with `users add`: acts of `cli:` and the system user.
    let items: Vec<Value> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| !i["actor"].as_str().unwrap().starts_with("cli:"))
        .cloned()
        .collect();
    assert!(all["items"][0]["actor"].as_str().unwrap().starts_with("cli:") && all["items"][0]["action"] == "user.add");
    let acts: Vec<(String, String)> = items
        .iter()
        .map(|i| (i["actor"].as_str().unwrap().to_string(), i["action"].as_str().unwrap().to_string()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("owner", "definition.deploy"),
        ("sidorov", "instance.start"),
        ("ivanov", "task.claim"),
        ("ivanov", "task.complete"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(acts, expected, "{all}");
    let completed = &items[3];
    assert_eq!(completed["target"], json!(tid));
    assert_eq!(completed["instanceId"], json!(id));
    assert_eq!(completed["details"]["variables"], json!({"decision": "approve", "comment": "Согласовано"}));
    assert!(completed["at"].as_str().unwrap().ends_with("+04:00"), "{completed}");
    assert_eq!(items[1]["details"]["variables"], json!({"amount": 7}));
    assert_eq!(items[2]["instanceId"], json!(id), "a claim names its instance");
    // Filters and pages.
    let mine = app.get("/api/audit?actor=ivanov", &app.admin).await.ok(200);
    assert_eq!(mine["items"].as_array().unwrap().len(), 2);
    let of_instance = app.get(&format!("/api/audit?instance={id}&action=task.complete"), &app.admin).await.ok(200);
    assert_eq!(of_instance["items"].as_array().unwrap().len(), 1);
    let first = app.get("/api/audit?actor=ivanov&limit=1", &auditor).await.ok(200);
    assert_eq!(first["items"][0]["action"], json!("task.claim"));
    let cursor = first["nextCursor"].as_str().expect("a next page").to_string();
    let rest = app.get(&format!("/api/audit?actor=ivanov&limit=1&cursor={cursor}"), &auditor).await.ok(200);
    assert_eq!(rest["items"][0]["action"], json!("task.complete"));
    assert_eq!(rest["nextCursor"], Value::Null);
    app.get("/api/audit?limit=0", &auditor).await.problem(400, "/problems/bad-request");
    // Exported whole as CSV: a row per act, the same acts as the JSON, formulas neutralised.
    let csv = app.get("/api/audit?format=csv&actor=ivanov", &auditor).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.header("content-type"), "text/csv; charset=utf-8");
    let text = csv.text();
    let lines: Vec<&str> = text.trim_end().split("\r\n").collect();
    assert_eq!(lines[0], "\u{feff}Номер,Время,Кто,Адрес,Действие,Объект,Экземпляр,Подробности");
    assert_eq!(lines.len() - 1, mine["items"].as_array().unwrap().len(), "{text}");
    assert!(lines[1..].iter().all(|l| l.contains(",ivanov,")), "{text}");
    assert!(text.contains("task.complete") && text.contains(&tid), "{text}");
    app.get("/api/audit?format=csv&limit=5", &auditor).await.problem(400, "/problems/bad-request");
    app.get("/api/audit?format=csv", &app.reviewer).await.problem(403, "/problems/forbidden");

    // Append-only in the database itself.
    for sql in ["UPDATE audit_log SET actor = 'nobody'", "DELETE FROM audit_log"] {
        let mut tx = app.rt.store().begin().await.unwrap();
        let refused = tx.execute_sql(sql).await;
        assert!(refused.is_err(), "{sql} was allowed");
        assert!(format!("{:?}", refused.unwrap_err()).contains("append-only"), "{sql}");
        let _ = tx.rollback().await;
    }
    assert_eq!(app.get("/api/audit", &auditor).await.ok(200)["items"], all["items"], "nothing changed");
    app.finish().await;
}

/// Unknown tokens are counted (the metric) and, past twenty in a row from one address, answered
/// slower and slower; a valid token is never held up and starts the count again.
async fn token_guessing_is_counted(db: TestDb) {
    let app = App::new(db).await;
    for i in 0..23 {
        app.get("/api/me", &format!("rgl_guess{i}")).await.problem(401, "/problems/unauthorized");
    }
    app.get("/api/me", &app.reviewer).await.ok(200);
    let metrics = app.send(Method::GET, "/metrics", None, Body::empty(), &[]).await.text();
    assert!(metrics.contains("\nreglament_api_token_failures_total 23\n"), "{metrics}");
    app.finish().await;
}

/// Messages from outside: a message a model lists in `messageSenders` only from those groups
/// or logins (and admins); nothing is delivered on a refusal; other messages from anyone.
async fn message_senders(db: TestDb) {
    let app = App::new(db).await;
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:reglament="urn:reglament:bpmn:1.0" id="d" targetNamespace="urn:test">
  <bpmn:process id="signals" name="Сигналы ЦУР" isExecutable="true">
    <bpmn:extensionElements><reglament:settings messageSenders="cur_signal=clerks,ivanov" /></bpmn:extensionElements>
    <bpmn:startEvent id="s1"><bpmn:messageEventDefinition id="m1" messageRef="M1" /></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="s1" targetRef="e1" />
    <bpmn:endEvent id="e1" />
    <bpmn:startEvent id="s2"><bpmn:messageEventDefinition id="m2" messageRef="M2" /></bpmn:startEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="s2" targetRef="e2" />
    <bpmn:endEvent id="e2" />
  </bpmn:process>
  <bpmn:message id="M1" name="cur_signal" />
  <bpmn:message id="M2" name="open_message" />
</bpmn:definitions>"#;
    app.deploy(xml, &app.owner).await.ok(201);
    let signal = json!({"name": "cur_signal", "variables": {"text": "подмена"}});
    // The owner (process-owners only) may not send it: 403 names who may, nothing starts.
    let p = app.post("/api/messages", &app.owner, signal.clone()).await.problem(403, "/problems/forbidden");
    assert!(p["detail"].as_str().unwrap().contains("clerks, ivanov"), "{p}");
    let instances = || async {
        let mut tx = app.rt.store().begin().await.unwrap();
        let n = tx.instances_summary().await.unwrap().len();
        tx.rollback().await.unwrap();
        n
    };
    assert_eq!(instances().await, 0, "nothing delivered");
    // A member of `clerks`, the login `ivanov`, and an admin may.
    for token in [&app.outsider, &app.reviewer, &app.admin] {
        assert_eq!(app.post("/api/messages", token, signal.clone()).await.ok(200)["result"], json!("started"));
    }
    assert_eq!(instances().await, 3);
    // A message no model restricts: anyone signed in.
    let open = app.post("/api/messages", &app.owner, json!({"name": "open_message"})).await.ok(200);
    assert_eq!(open["result"], json!("started"));
    app.finish().await;
}

/// A process that names its starters: only their members (and its owners, admins) start it,
/// and its tasks offered to nobody are offered to them — not to everyone signed in.
async fn starters(db: TestDb) {
    let app = App::new(db).await;
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:reglament="urn:reglament:bpmn:1.0" id="d" targetNamespace="urn:test">
  <bpmn:process id="intake" name="Приём заявлений" isExecutable="true">
    <bpmn:extensionElements><reglament:settings starters="reviewers" /></bpmn:extensionElements>
    <bpmn:startEvent id="s" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="t" />
    <bpmn:userTask id="t" name="Разобрать заявление" />
    <bpmn:sequenceFlow id="f2" sourceRef="t" targetRef="e" />
    <bpmn:endEvent id="e" />
  </bpmn:process>
</bpmn:definitions>"#;
    app.deploy(xml, &app.owner).await.ok(201);
    let start = json!({"definitionKey": "intake"});
    let p = app.post("/api/process-instances", &app.outsider, start.clone()).await.problem(403, "/problems/forbidden");
    assert!(p["detail"].as_str().unwrap().contains("reviewers"), "{p}");
    let id = app.post("/api/process-instances", &app.reviewer, start.clone()).await.ok(201)["id"].clone();
    app.post("/api/process-instances", &app.admin, start.clone()).await.ok(201);
    app.post("/api/process-instances", &app.owner, start).await.ok(201);
    // The task the model offers to nobody: the starters' members see and take it, others not.
    let task = app.task_of(id.as_str().unwrap()).await;
    assert_eq!(task["candidateGroups"], json!(["reviewers"]), "{task}");
    let tid = task["id"].as_str().unwrap();
    app.get(&format!("/api/tasks/{tid}"), &app.outsider).await.problem(404, "/problems/task-not-found");
    assert_eq!(app.get("/api/tasks", &app.outsider).await.ok(200)["items"], json!([]));
    app.post_empty(&format!("/api/tasks/{tid}/claim"), &app.reviewer2).await.ok(200);
    app.finish().await;
}

/// A process owned by `owners` that stops on an incident at its gateway unless the variable
/// `route` is `"done"`.
fn routing_model(key: &str, owners: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:reglament="urn:reglament:bpmn:1.0" id="d_{key}" targetNamespace="urn:test">
  <bpmn:process id="{key}" name="Маршрут {key}" isExecutable="true">
    <bpmn:extensionElements><reglament:settings owners="{owners}" /></bpmn:extensionElements>
    <bpmn:startEvent id="s" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="route" />
    <bpmn:exclusiveGateway id="route" name="Куда направить" />
    <bpmn:sequenceFlow id="f2" sourceRef="route" targetRef="e">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">=route = "done"</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:endEvent id="e" />
  </bpmn:process>
</bpmn:definitions>"#
    )
}

/// Open incidents across instances: the ones the caller may see, filtered by process, paged by
/// instance.
async fn open_incidents(db: TestDb) {
    let app = App::new(db).await;
    let owner_login = "owner";
    app.deploy(&routing_model("route_a", owner_login), &app.owner).await.ok(201);
    app.deploy(&routing_model("route_b", owner_login), &app.owner).await.ok(201);
    let mut ids = Vec::new();
    for key in ["route_a", "route_a", "route_b"] {
        ids.push(app.start(key, &app.reviewer, json!({"route": "nowhere"})).await["id"].as_str().unwrap().to_string());
    }
    app.start("route_a", &app.reviewer, json!({"route": "done"})).await;
    ids.sort();
    let all = app.get("/api/incidents", &app.admin).await.ok(200);
    let listed: Vec<&str> =
        all["items"].as_array().unwrap().iter().map(|i| i["processInstanceId"].as_str().unwrap()).collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>(), "{all}");
    assert_eq!(all["items"][0]["elementId"], json!("route"));
    assert_eq!(all["items"][0]["elementName"], json!("Куда направить"));
    assert!(all["items"][0]["key"].is_u64() && all["items"][0]["message"].is_string(), "{all}");
    // By process; paged by instance.
    let b = app.get("/api/incidents?definitionKey=route_b", &app.owner).await.ok(200);
    assert_eq!(b["items"].as_array().unwrap().len(), 1, "{b}");
    let first = app.get("/api/incidents?limit=2", &app.admin).await.ok(200);
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["nextCursor"].as_str().expect("more").to_string();
    let rest = app.get(&format!("/api/incidents?limit=2&cursor={cursor}"), &app.admin).await.ok(200);
    assert_eq!(rest["items"][0]["processInstanceId"], json!(ids[2]));
    assert_eq!(rest["nextCursor"], Value::Null);
    // The starter sees theirs; someone involved in nothing sees none.
    assert_eq!(app.get("/api/incidents", &app.reviewer).await.ok(200)["items"].as_array().unwrap().len(), 3);
    assert_eq!(app.get("/api/incidents", &app.outsider).await.ok(200)["items"], json!([]));
    app.get("/api/incidents?limit=0", &app.admin).await.problem(400, "/problems/bad-request");
    app.finish().await;
}

/// The instance search: filters, newest first, keyset cursor paging, visibility, bad input.
async fn instance_search(db: TestDb) {
    let app = App::new(db).await;
    app.deploy(&routing_model("find_a", "owner"), &app.owner).await.ok(201);
    app.deploy(&routing_model("find_b", "owner"), &app.owner).await.ok(201);
    let mut started = Vec::new();
    for (i, (key, route)) in
        [("find_a", "nowhere"), ("find_a", "done"), ("find_b", "done"), ("find_a", "done")].into_iter().enumerate()
    {
        let body =
            json!({"definitionKey": key, "businessKey": format!("REQ-{i}"), "variables": {"route": route, "n": i}});
        started.push(
            app.post("/api/process-instances", &app.reviewer, body).await.ok(201)["id"].as_str().unwrap().to_string(),
        );
    }
    let ids = |page: &Value| -> Vec<String> {
        page["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
    };
    // Newest first (the test clock may give equal start times: then by id, descending).
    let all = app.get("/api/process-instances", &app.admin).await.ok(200);
    assert_eq!(all["items"].as_array().unwrap().len(), 4, "{all}");
    assert_eq!(all["nextCursor"], Value::Null);
    let stamps: Vec<(String, String)> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["startedAt"].as_str().unwrap().to_string(), i["id"].as_str().unwrap().to_string()))
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(stamps, sorted, "{all}");
    let item = &all["items"].as_array().unwrap().iter().find(|i| i["id"] == json!(started[0])).unwrap().clone();
    assert_eq!(item["state"], json!("incident"), "{item}");
    assert_eq!(item["definitionKey"], json!("find_a"));
    assert_eq!(item["version"], json!(1));
    assert_eq!(item["businessKey"], json!("REQ-0"));
    assert_eq!(item["overdue"], json!(false));
    // Filters.
    let one = |q: &str| {
        let q = q.to_string();
        let app = &app;
        async move { app.get(&format!("/api/process-instances?{q}"), &app.admin).await.ok(200) }
    };
    assert_eq!(ids(&one("businessKey=REQ-2").await), vec![started[2].clone()]);
    assert_eq!(ids(&one("definitionKey=find_b").await), vec![started[2].clone()]);
    assert_eq!(ids(&one("definitionKey=find_a&state=incident").await), vec![started[0].clone()]);
    assert_eq!(one("definitionKey=find_a&state=completed").await["items"].as_array().unwrap().len(), 2);
    assert_eq!(one("state=active").await["items"], json!([]));
    assert_eq!(one("definitionKey=find_a&version=1").await["items"].as_array().unwrap().len(), 3);
    assert_eq!(one("definitionKey=find_a&version=2").await["items"], json!([]));
    assert_eq!(ids(&one("variable=n:3").await), vec![started[3].clone()]);
    assert_eq!(ids(&one("variable=route:nowhere").await), vec![started[0].clone()]);
    assert_eq!(ids(&one("variable=route:%22nowhere%22").await), vec![started[0].clone()]);
    assert_eq!(one("variable=n:%223%22").await["items"], json!([]), "a JSON string is not the number");
    assert_eq!(one("startedAfter=2999-01-01").await["items"], json!([]));
    assert_eq!(one("startedBefore=2999-01-01").await["items"].as_array().unwrap().len(), 4);
    assert_eq!(one("overdue=true").await["items"], json!([]), "no deadlines in these models");
    // Keyset paging walks every instance once, newest first.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/process-instances?limit=1&cursor={}", urlencode(c)),
            None => "/api/process-instances?limit=1".to_string(),
        };
        let page = app.get(&q, &app.admin).await.ok(200);
        walked.extend(ids(&page));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(walked, ids(&all));
    // Visibility: the starter sees theirs; someone involved in nothing sees none.
    assert_eq!(app.get("/api/process-instances", &app.reviewer).await.ok(200)["items"].as_array().unwrap().len(), 4);
    assert_eq!(app.get("/api/process-instances", &app.outsider).await.ok(200)["items"], json!([]));
    // Bad parameters: 400 problems naming the parameter.
    for bad in [
        "limit=0",
        "limit=501",
        "version=x",
        "version=0",
        "state=running",
        "overdue=yes",
        "startedAfter=yesterday",
        "variable=novalue",
        "variable=:1",
        "cursor=garbage",
        "unknown=1",
    ] {
        app.get(&format!("/api/process-instances?{bad}"), &app.admin).await.problem(400, "/problems/bad-request");
    }
    app.finish().await;
}

/// Percent-encodes a query value (the cursors hold `:` and ids).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Tokens may carry an expiry: past it they are refused (and listed as expired); an expiry in
/// the past or not a time is refused when the token is issued.
async fn token_expiry(db: TestDb) {
    let app = App::new(db).await;
    let soon = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let issued = app.post("/api/users/ivanov/tokens", &app.admin, json!({"label": "квартал", "expiresAt": soon})).await;
    let issued = issued.ok(201);
    assert!(issued["expiresAt"].is_string(), "{issued}");
    let token = issued["token"].as_str().unwrap().to_string();
    assert_eq!(app.get("/api/me", &token).await.ok(200)["login"], json!("ivanov"));
    for bad in [json!("вчера"), json!("2020-01-01T00:00:00Z")] {
        let p = app.post("/api/users/ivanov/tokens", &app.admin, json!({"expiresAt": bad})).await;
        let p = p.problem(422, "/problems/validation");
        assert_eq!(p["errors"][0]["field"], json!("expiresAt"), "{p}");
    }
    // A token whose expiry has passed (issued with one a second ahead, as the store allows).
    let store = app.rt.store();
    let old = "rgl_expired_for_the_test";
    let now = chrono::Utc::now();
    let hash = reglament_server::accounts::hash_token(old);
    store
        .insert_token(&hash, "ivanov", Some("старый"), now, Some(now + chrono::Duration::milliseconds(300)))
        .await
        .unwrap();
    assert_eq!(app.get("/api/me", old).await.ok(200)["login"], json!("ivanov"), "works until it expires");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let p = app.get("/api/me", old).await.problem(401, "/problems/unauthorized");
    assert!(p["detail"].as_str().unwrap().contains("истёк"), "{p}");
    let list = app.get("/api/users/ivanov/tokens", &app.admin).await.ok(200);
    let by_label = |label: &str| list["items"].as_array().unwrap().iter().find(|t| t["label"] == json!(label)).cloned();
    assert_eq!(by_label("старый").unwrap()["expired"], json!(true), "{list}");
    assert_eq!(by_label("квартал").unwrap()["expired"], json!(false), "{list}");
    assert!(by_label("квартал").unwrap()["expiresAt"].is_string(), "{list}");
    assert!(by_label("users add").unwrap().get("expiresAt").is_none(), "no expiry: {list}");
    app.get("/api/me", &token).await.ok(200);
    app.finish().await;
}

/// The directory file seeds a database once: a directory an admin emptied stays empty after
/// a restart, and the sample admin does not get their groups back.
async fn directory_seeds_once(db: TestDb) {
    let app = App::new(db).await;
    let dir = std::env::temp_dir().join(format!("reglament-seed-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("directory.toml");
    std::fs::write(
        &file,
        r#"
[[people]]
login = "admin"
email = "admin@example.org"
groups = ["admins", "process-owners"]

[[units]]
id = "oapr"
name = "Отдел анализа"
members = ["admin"]
"#,
    )
    .unwrap();
    reglament_server::serve::load_directory_on_first_start(&app.rt, &file).await.unwrap();
    let loaded = app.get("/api/directory", &app.admin).await.ok(200);
    assert_eq!(loaded["units"][0]["id"], json!("oapr"), "{loaded}");
    let groups_of_admin = |users: Value| {
        users["items"].as_array().unwrap().iter().find(|u| u["login"] == json!("admin")).unwrap()["groups"].clone()
    };
    let users = app.get("/api/users", &app.admin).await.ok(200);
    assert_eq!(groups_of_admin(users), json!(["admins", "process-owners"]));
    // The admin empties it, keeping only themself, out of `process-owners`.
    let emptied = json!({"people": [{"login": "admin", "email": "admin@example.org", "groups": ["admins"]}]});
    app.send(
        Method::PUT,
        "/api/directory",
        Some(&app.admin),
        Body::from(emptied.to_string()),
        &[("content-type", "application/json")],
    )
    .await
    .ok(200);
    // A restart reads the file again: nothing changes.
    reglament_server::serve::load_directory_on_first_start(&app.rt, &file).await.unwrap();
    let after = app.get("/api/directory", &app.admin).await.ok(200);
    assert_eq!(after["units"], json!([]), "the emptied directory stays empty: {after}");
    let users = app.get("/api/users", &app.admin).await.ok(200);
    assert_eq!(groups_of_admin(users), json!(["admins"]), "no groups given back");
    assert!(!app.rt.store().directory_never_loaded().await.unwrap());
    std::fs::remove_dir_all(dir).ok();
    app.finish().await;
}

macro_rules! on_sqlite {
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
    };
}

macro_rules! on_postgres {
    ($($name:ident),* $(,)?) => {
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

on_sqlite!(
    main_flow,
    access_rules,
    bad_input,
    idempotent_writes,
    cursor_pagination,
    openapi_document,
    users_command,
    history_matches_the_simulator,
    slow_requests_time_out,
    hostile_keys,
    security_headers,
    unique_business_keys,
    visibility_rules,
    audit_trail,
    token_guessing_is_counted,
    token_expiry,
    directory_seeds_once,
    message_senders,
    starters,
    open_incidents,
    instance_search,
);
on_postgres!(
    main_flow,
    access_rules,
    idempotent_writes,
    cursor_pagination,
    hostile_keys,
    unique_business_keys,
    visibility_rules,
    audit_trail,
    token_expiry,
    directory_seeds_once,
    message_senders,
    starters,
    open_incidents,
    instance_search,
);
