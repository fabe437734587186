//! Who may do what: every route of the API and every web page, probed as each role, against
//! the answer the access rules state (README "Who sees what", issue 19). The routes come from
//! the router itself — the OpenAPI document is generated from the API router, and the page
//! router is built from `web::routes()` — so a route added without a row here fails the test.
//!
//! Every probe runs on fresh data (its own instance, task, incident, target user), so a write
//! allowed to one role does not change what the next role meets.

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use reglament_server::driver::Runtime;
use reglament_server::http::{self, AppState};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::store::{TestDb, env, test_driver_config};

/// The roles, in the order of the answers in [`ROWS`].
const ROLES: [&str; 8] = ["none", "wrong", "disabled", "other", "participant", "owner", "auditor", "admin"];

/// A process with an owner group, a task for `reviewers`, a restricted message and a gateway
/// that stops (an incident) when started with `route = "stuck"`.
const CASEWORK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:reglament="urn:reglament:bpmn:1.0" id="d_casework" targetNamespace="urn:test">
  <bpmn:message id="m_ping" name="ping" />
  <bpmn:process id="casework" name="Рассмотрение обращений" isExecutable="true">
    <bpmn:extensionElements>
      <reglament:settings owners="legal" messageSenders="ping=reviewers" />
    </bpmn:extensionElements>
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="route" />
    <bpmn:exclusiveGateway id="route" />
    <bpmn:sequenceFlow id="f_review" sourceRef="route" targetRef="review">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">=route = "review"</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_done" sourceRef="route" targetRef="done">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">=route = "done"</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:userTask id="review" name="Рассмотреть обращение">
      <bpmn:extensionElements>
        <zeebe:assignmentDefinition candidateGroups="reviewers" />
        <reglament:form>
          <reglament:field id="decision" label="Решение" type="enum" required="true">
            <reglament:option value="approve" label="Согласовать" />
            <reglament:option value="reject" label="Отклонить" />
          </reglament:field>
        </reglament:form>
      </bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="done" />
    <bpmn:endEvent id="done" />
    <bpmn:startEvent id="pinged"><bpmn:messageEventDefinition messageRef="m_ping" /></bpmn:startEvent>
    <bpmn:sequenceFlow id="f3" sourceRef="pinged" targetRef="ping_done" />
    <bpmn:endEvent id="ping_done" />
  </bpmn:process>
</bpmn:definitions>"#;

/// What each role gets, per route: (method, path as the router names it, answers in the order
/// of [`ROLES`]). `none`: no credentials; `wrong`: an unknown token or cookie; `disabled`: a
/// disabled reviewer; `other`: staff of another group, involved in nothing; `participant`: a
/// reviewer (the task's candidate group); `owner`: a process owner the model names; `auditor`;
/// `admin`.
const ROWS: &[(&str, &str, [u16; 8])] = &[
    // Definitions: every signed-in person reads them; only the process's owners deploy it
    // (an admin who is no process owner does not: separation of duties).
    ("get", "/api/definitions", [401, 401, 401, 200, 200, 200, 200, 200]),
    ("post", "/api/definitions", [401, 401, 401, 403, 403, 201, 403, 403]),
    ("get", "/api/definitions/{key}", [401, 401, 401, 200, 200, 200, 200, 200]),
    ("get", "/api/definitions/{key}/xml", [401, 401, 401, 200, 200, 200, 200, 200]),
    ("get", "/api/definitions/{key}/versions", [401, 401, 401, 200, 200, 200, 200, 200]),
    ("get", "/api/definitions/{key}/forms/{formId}", [401, 401, 401, 200, 200, 200, 200, 200]),
    // Instances: anyone signed in starts one; only those the visibility rule names see it
    // (others: 404, as if it did not exist); owners and admins cancel and resolve. The stopped
    // instance has no task, so the reviewer does not see it.
    ("post", "/api/process-instances", [401, 401, 401, 201, 201, 201, 201, 201]),
    ("get", "/api/process-instances/{id}", [401, 401, 401, 404, 200, 200, 200, 200]),
    ("delete", "/api/process-instances/{id}", [401, 401, 401, 404, 403, 200, 403, 200]),
    ("get", "/api/process-instances/{id}/history", [401, 401, 401, 404, 200, 200, 200, 200]),
    ("get", "/api/process-instances/{id}/incidents", [401, 401, 401, 404, 200, 200, 200, 200]),
    // Open incidents across instances: everyone signed in, each seeing those they may see.
    ("get", "/api/incidents", [401, 401, 401, 200, 200, 200, 200, 200]),
    // The instance search: everyone signed in, each finding those they may see.
    ("get", "/api/process-instances", [401, 401, 401, 200, 200, 200, 200, 200]),
    ("post", "/api/process-instances/{id}/incidents/{key}/resolve", [401, 401, 401, 404, 404, 200, 403, 200]),
    // Tasks: seen by whoever sees the instance; taken and completed by the candidates (admins
    // may take one too); handed over or taken back also by the process's owners and admins.
    ("get", "/api/tasks", [401, 401, 401, 200, 200, 200, 200, 200]),
    ("get", "/api/tasks/{id}", [401, 401, 401, 404, 200, 200, 200, 200]),
    ("post", "/api/tasks/{id}/claim", [401, 401, 401, 404, 200, 403, 403, 200]),
    ("post", "/api/tasks/{id}/unclaim", [401, 401, 401, 404, 200, 200, 403, 200]),
    ("post", "/api/tasks/{id}/assign", [401, 401, 401, 404, 200, 200, 403, 200]),
    ("post", "/api/tasks/{id}/complete", [401, 401, 401, 404, 200, 403, 403, 403]),
    // A message the model restricts to reviewers.
    ("post", "/api/messages", [401, 401, 401, 403, 200, 403, 403, 200]),
    ("get", "/api/registry", [401, 401, 401, 200, 200, 200, 200, 200]),
    ("get", "/api/reports/sla", [401, 401, 401, 200, 200, 200, 200, 200]),
    // People: admins manage them; the audit log is for admins and auditors.
    ("get", "/api/me", [401, 401, 401, 200, 200, 200, 200, 200]),
    ("get", "/api/users", [401, 401, 401, 403, 403, 403, 403, 200]),
    ("post", "/api/users", [401, 401, 401, 403, 403, 403, 403, 201]),
    ("post", "/api/users/{login}/tokens", [401, 401, 401, 403, 403, 403, 403, 201]),
    ("get", "/api/users/{login}/tokens", [401, 401, 401, 403, 403, 403, 403, 200]),
    ("delete", "/api/users/{login}/tokens/{tokenId}", [401, 401, 401, 403, 403, 403, 403, 204]),
    ("post", "/api/users/{login}/disable", [401, 401, 401, 403, 403, 403, 403, 200]),
    ("post", "/api/users/{login}/enable", [401, 401, 401, 403, 403, 403, 403, 200]),
    ("put", "/api/users/{login}/password", [401, 401, 401, 403, 403, 403, 403, 204]),
    ("get", "/api/groups", [401, 401, 401, 403, 403, 403, 403, 200]),
    ("get", "/api/directory", [401, 401, 401, 200, 200, 200, 200, 200]),
    ("put", "/api/directory", [401, 401, 401, 403, 403, 403, 403, 200]),
    ("get", "/api/audit", [401, 401, 401, 403, 403, 403, 200, 200]),
    ("get", "/api/clock", [401, 401, 401, 200, 200, 200, 200, 200]),
    ("post", "/api/clock", [401, 401, 401, 403, 403, 403, 403, 200]),
    // The job API (/v2): jobs for `job-workers` and admins (the key here holds no job: past
    // the access check, 404); the calls worker applications make besides follow /api's rules.
    ("post", "/v2/jobs/activation", [401, 401, 401, 403, 403, 403, 403, 200]),
    ("post", "/v2/jobs/{jobKey}/completion", [401, 401, 401, 403, 403, 403, 403, 404]),
    ("post", "/v2/jobs/{jobKey}/failure", [401, 401, 401, 403, 403, 403, 403, 404]),
    ("post", "/v2/jobs/{jobKey}/error", [401, 401, 401, 403, 403, 403, 403, 404]),
    ("patch", "/v2/jobs/{jobKey}", [401, 401, 401, 403, 403, 403, 403, 404]),
    ("get", "/v2/topology", [401, 401, 401, 200, 200, 200, 200, 200]),
    ("post", "/v2/process-instances", [401, 401, 401, 200, 200, 200, 200, 200]),
    ("post", "/v2/messages/publication", [401, 401, 401, 403, 200, 403, 403, 200]),
    ("post", "/v2/messages/correlation", [401, 401, 401, 403, 200, 403, 403, 200]),
    // Operations: open.
    ("get", "/openapi.json", [200, 200, 200, 200, 200, 200, 200, 200]),
    ("get", "/docs", [200, 200, 200, 200, 200, 200, 200, 200]),
    ("get", "/metrics", [200, 200, 200, 200, 200, 200, 200, 200]),
    ("get", "/healthz", [200, 200, 200, 200, 200, 200, 200, 200]),
    // Pages: without a session, to the sign-in page (303); the same rules as the API, a
    // refused act shown as a page (403) or as not found (404).
    ("get", "/", [303, 303, 303, 200, 200, 200, 200, 200]),
    // Signed in, the sign-in page leads to the inbox; a sign-in without the form's own CSRF
    // cookie is refused.
    ("get", "/login", [200, 200, 200, 303, 303, 303, 303, 303]),
    ("post", "/login", [403, 403, 403, 403, 403, 403, 403, 403]),
    ("post", "/logout", [303, 303, 303, 303, 303, 303, 303, 303]),
    ("get", "/instances/{id}", [303, 303, 303, 404, 200, 200, 200, 200]),
    ("get", "/tasks/{id}", [303, 303, 303, 404, 200, 200, 200, 200]),
    ("post", "/tasks/{id}/claim", [303, 303, 303, 404, 303, 403, 403, 303]),
    ("post", "/tasks/{id}/unclaim", [303, 303, 303, 404, 303, 303, 403, 303]),
    ("post", "/tasks/{id}/assign", [303, 303, 303, 404, 303, 303, 403, 303]),
    ("post", "/tasks/{id}/complete", [303, 303, 303, 404, 303, 403, 403, 403]),
    ("get", "/static/app.css", [200, 200, 200, 200, 200, 200, 200, 200]),
    ("get", "/static/app.js", [200, 200, 200, 200, 200, 200, 200, 200]),
];

/// What a probe needs: one role's credentials.
struct Who {
    token: Option<String>,
    cookie: Option<String>,
    csrf: String,
    /// Whose session the cookie is.
    login: Option<&'static str>,
}

struct Table {
    router: Router,
    rt: Runtime,
    who: Vec<Who>,
    admin_token: String,
    probes: u32,
}

/// Fresh data for one probe.
struct Fixture {
    instance: String,
    task: String,
    stuck: String,
    incident: u32,
    target: String,
    token_id: String,
}

impl Table {
    async fn new(db: &TestDb) -> Table {
        let store = reglament_store::Store::connect(&db.url, 8).await.expect("connect and migrate");
        let config = reglament_server::driver::DriverConfig {
            clock: std::sync::Arc::new(crate::support::test_clock(true)),
            ..test_driver_config()
        };
        let rt = Runtime::start(store, env(), config).await.expect("driver");
        let router =
            http::router_with(AppState::new(rt.clone(), "http://reglament.test/"), reglament_server::web::router());
        let store = rt.store().clone();
        let person = |login: &'static str, groups: &'static [&'static str]| {
            let store = store.clone();
            async move {
                let groups = groups.iter().map(|g| g.to_string()).collect();
                reglament::users_cmd::add(&store, login, &format!("{login}@example.org"), groups, None)
                    .await
                    .expect("user")
            }
        };
        let admin_token = person("admin", &["admins"]).await;
        let disabled = person("gone", &["reviewers"]).await;
        let other = person("clerk", &["clerks"]).await;
        let participant = person("reviewer", &["reviewers"]).await;
        let owner = person("lawyer", &["process-owners", "legal"]).await;
        let auditor = person("auditor", &["auditors"]).await;
        person("reviewer2", &["reviewers"]).await;
        // A session for each signed-in role, as the sign-in form would make it.
        let mut who = vec![
            Who { token: None, cookie: None, csrf: String::new(), login: None },
            Who {
                token: Some("rgl_not_a_token".into()),
                cookie: Some("not-a-session".into()),
                csrf: "x".into(),
                login: None,
            },
        ];
        for (login, token) in [
            ("gone", disabled),
            ("clerk", other),
            ("reviewer", participant),
            ("lawyer", owner),
            ("auditor", auditor),
            ("admin", admin_token.clone()),
        ] {
            who.push(Who {
                token: Some(token),
                cookie: Some(format!("session-of-{login}")),
                csrf: format!("csrf-of-{login}"),
                login: Some(login),
            });
        }
        let table = Table { router, rt: rt.clone(), who, admin_token, probes: 0 };
        table.sign_in_again().await;
        assert!(store.set_disabled("gone", true).await.unwrap());
        let admin = store.user("admin").await.unwrap().unwrap();
        rt.deploy_as(CASEWORK.as_bytes(), Vec::new(), &admin).await.expect("deploy casework");
        let forms = crate::support::repo_root().join("tests/forms");
        let form = std::fs::read(forms.join("review-decision.form")).unwrap();
        let model = std::fs::read(forms.join("review-decision.bpmn")).unwrap();
        rt.deploy_with_forms(&model, vec![("review-decision.form".into(), form)], Some("admin")).await.expect("forms");
        table
    }

    /// (Re)creates each signed-in role's session, as the sign-in form would make it (a probe
    /// of `/logout` ends them).
    async fn sign_in_again(&self) {
        let store = self.rt.store();
        let now = self.rt.now();
        for who in &self.who {
            if let (Some(login), Some(cookie)) = (who.login, &who.cookie) {
                let hash = reglament_server::accounts::hash_token(cookie);
                store.delete_session(&hash).await.unwrap();
                let until = now + chrono::Duration::hours(1);
                store.create_session(&hash, login, "password", &who.csrf, now, until).await.unwrap();
            }
        }
    }

    async fn send(&self, method: &str, uri: &str, who: &Who, body: Option<(&str, String)>, page: bool) -> StatusCode {
        let mut req = Request::builder().method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap()).uri(uri);
        if page {
            if let Some(cookie) = &who.cookie {
                req = req.header("cookie", format!("rgl_session={cookie}"));
            }
        } else if let Some(token) = &who.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some((content_type, text)) => {
                req = req.header("content-type", content_type);
                Body::from(text)
            }
            None => Body::empty(),
        };
        let response = self.router.clone().oneshot(req.body(body).unwrap()).await.expect("infallible");
        let status = response.status();
        // Drain the body, as a client would.
        response.into_body().collect().await.unwrap();
        status
    }

    async fn api(&self, method: &str, uri: &str, body: Value) -> Value {
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(uri)
            .header("authorization", format!("Bearer {}", self.admin_token))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = self.router.clone().oneshot(req).await.expect("infallible");
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert!(status.is_success(), "{method} {uri}: {status} {}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    /// Fresh data: an instance started by someone else with its open task, a stopped
    /// instance with its incident, a target user with a token.
    async fn fixture(&mut self) -> Fixture {
        self.probes += 1;
        let n = self.probes;
        let started = self.api(
            "POST",
            "/api/process-instances",
            json!({"definitionKey": "casework", "variables": {"route": "review"}}),
        );
        let instance = started.await["id"].as_str().unwrap().to_string();
        let tasks = self.rt.store().tasks_of_instance(&instance).await.unwrap();
        let task = tasks.first().expect("the review task").id.clone();
        let stuck = self.api(
            "POST",
            "/api/process-instances",
            json!({"definitionKey": "casework", "variables": {"route": "stuck"}}),
        );
        let stuck = stuck.await["id"].as_str().unwrap().to_string();
        let incidents = self.api("GET", &format!("/api/process-instances/{stuck}/incidents"), Value::Null).await;
        let incident = incidents["items"][0]["key"].as_u64().expect("an incident") as u32;
        let target = format!("target{n}");
        self.api("POST", "/api/users", json!({"login": target, "email": format!("{target}@example.org")})).await;
        self.api("POST", &format!("/api/users/{target}/tokens"), json!({})).await;
        let token_id = self.rt.store().tokens_of(&target).await.unwrap()[0].id.clone();
        Fixture { instance, task, stuck, incident, target, token_id }
    }

    /// The route's path with the fixture's ids, and the body a caller allowed to use it sends.
    fn request(&self, method: &str, path: &str, fx: &Fixture, who: &Who) -> (String, Option<(&'static str, String)>) {
        let uri = match path {
            "/api/definitions/{key}/forms/{formId}" => "/api/definitions/review_decision/forms/review-decision".into(),
            "/api/process-instances/{id}/incidents/{key}/resolve" => {
                format!("/api/process-instances/{}/incidents/{}/resolve", fx.stuck, fx.incident)
            }
            "/api/users/{login}/tokens/{tokenId}" => format!("/api/users/{}/tokens/{}", fx.target, fx.token_id),
            p if p.starts_with("/v2/jobs/") => p.replace("{jobKey}", "12345"),
            p if p.starts_with("/api/definitions/") => p.replace("{key}", "casework"),
            p if p.starts_with("/api/process-instances/") || p.starts_with("/instances/") => {
                p.replace("{id}", &fx.instance)
            }
            p if p.starts_with("/api/tasks/") || p.starts_with("/tasks/") => p.replace("{id}", &fx.task),
            p if p.starts_with("/api/users/") => p.replace("{login}", &fx.target),
            p => p.to_string(),
        };
        let json = |v: Value| Some(("application/json", v.to_string()));
        let form = |fields: &str| Some(("application/x-www-form-urlencoded", format!("csrf={}&{fields}", who.csrf)));
        let body = match (method, path) {
            ("post", "/api/definitions") => {
                Some(("application/xml", CASEWORK.replace("Рассмотрение обращений", "Рассмотрение обращений граждан")))
            }
            ("post", "/api/process-instances") => {
                json(json!({"definitionKey": "casework", "variables": {"route": "done"}}))
            }
            ("post", "/api/process-instances/{id}/incidents/{key}/resolve") => {
                json(json!({"variables": {"route": "done"}}))
            }
            ("post", "/api/tasks/{id}/assign") => json(json!({"user": "reviewer2"})),
            ("post", "/api/tasks/{id}/complete") => json(json!({"variables": {"decision": "approve"}})),
            ("post", "/api/messages") => json(json!({"name": "ping"})),
            ("post", "/api/users") => json(json!({"login": format!("{}-new", fx.target), "email": "new@example.org"})),
            ("post", "/api/users/{login}/tokens") => json(json!({"label": "проверка"})),
            ("put", "/api/users/{login}/password") => json(json!({"password": "длинный-пароль-1"})),
            ("put", "/api/directory") => {
                json(json!({"people": [{"login": "admin", "email": "admin@example.org", "groups": ["admins"]}]}))
            }
            ("post", "/api/clock") => json(json!({"advance": "PT1M"})),
            ("post", "/v2/jobs/activation") => {
                json(json!({"type": "nothing", "timeout": 1000, "maxJobsToActivate": 1, "requestTimeout": -1}))
            }
            ("post", "/v2/jobs/{jobKey}/error") => json(json!({"errorCode": "X"})),
            ("post", "/v2/jobs/{jobKey}/completion" | "/v2/jobs/{jobKey}/failure") => json(json!({})),
            ("patch", "/v2/jobs/{jobKey}") => json(json!({"changeset": {"retries": 2}})),
            ("post", "/v2/process-instances") => {
                json(json!({"processDefinitionId": "casework", "variables": {"route": "done"}}))
            }
            ("post", "/v2/messages/publication" | "/v2/messages/correlation") => json(json!({"name": "ping"})),
            ("post", "/login") => form("login=reviewer&password=wrong"),
            ("post", "/tasks/{id}/assign") => form("user=reviewer2"),
            ("post", "/tasks/{id}/complete") => form("decision=approve"),
            ("post", _) if !path.starts_with("/api/") => form(""),
            _ => None,
        };
        (uri, body)
    }

    /// Puts the task in the state its route acts on: claimed by the participant before an
    /// unclaim.
    async fn prepare(&self, path: &str, fx: &Fixture) {
        if path.ends_with("/unclaim") {
            let assign = format!("/api/tasks/{}/assign", fx.task);
            self.api("POST", &assign, json!({"user": "reviewer"})).await;
        }
    }
}

async fn every_route_answers_every_role_as_stated(db: TestDb) {
    let mut table = Table::new(&db).await;
    // Every route the router serves has a row, and every row is a route.
    let doc = table.api("GET", "/openapi.json", Value::Null).await;
    let mut served = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            served.insert((method.clone(), path.clone()));
        }
    }
    for (method, path) in reglament_server::web::routes() {
        served.insert((method.to_string(), path.to_string()));
    }
    let rows: BTreeSet<(String, String)> = ROWS.iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
    assert_eq!(rows.len(), ROWS.len(), "a route has two rows");
    let missing: Vec<_> = served.difference(&rows).collect();
    let extra: Vec<_> = rows.difference(&served).collect();
    assert!(missing.is_empty() && extra.is_empty(), "routes without a row: {missing:?}; rows of no route: {extra:?}");

    let mut wrong = Vec::new();
    for (method, path, expected) in ROWS {
        let page = !path.starts_with("/api/")
            && !path.starts_with("/v2/")
            && !matches!(*path, "/openapi.json" | "/docs" | "/metrics" | "/healthz");
        let mut got = [0u16; 8];
        for (i, answer) in got.iter_mut().enumerate() {
            let fx = table.fixture().await;
            table.prepare(path, &fx).await;
            let who = &table.who[i];
            let (uri, body) = table.request(method, path, &fx, who);
            *answer = table.send(method, &uri, who, body, page).await.as_u16();
            if *path == "/logout" {
                table.sign_in_again().await;
            }
        }
        if got != *expected {
            wrong.push(format!("{method} {path}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "roles {ROLES:?}:\n{}", wrong.join("\n"));
    table.rt.store().clone().close().await;
    db.drop_db().await;
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_route_answers_every_role_as_stated() {
        let db = super::TestDb::sqlite().await;
        tokio::time::timeout(std::time::Duration::from_secs(300), super::every_route_answers_every_role_as_stated(db))
            .await
            .expect("finished in time");
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_route_answers_every_role_as_stated() {
        let db = super::TestDb::postgres().await;
        tokio::time::timeout(std::time::Duration::from_secs(300), super::every_route_answers_every_role_as_stated(db))
            .await
            .expect("finished in time");
    }
}
