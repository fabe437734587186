//! The web pages through the real router and the real store, on both backends: sign-in with
//! its cookie, CSRF, throttling and `next`; the password API and CLI; the inbox and task pages'
//! HTML. (The same pages in a real Chromium: `browser.rs`.)

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use reglament_server::driver::Runtime;
use reglament_server::http::{self, AppState};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::store::{TestDb, runtime};

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("UTF-8")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
    }

    /// Every `Set-Cookie` of the answer.
    pub fn cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect()
    }

    /// The value a `Set-Cookie` gives `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies().iter().find_map(|c| {
            c.split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    /// The value of a hidden input of the page.
    pub fn hidden(&self, name: &str) -> String {
        let text = self.text();
        let marker = format!("name=\"{name}\" value=\"");
        let start = text.find(&marker).unwrap_or_else(|| panic!("no hidden {name} in {text}")) + marker.len();
        text[start..].split('"').next().unwrap().to_string()
    }
}

/// A browser-like client of the router: one cookie jar, forms sent urlencoded.
pub struct Web {
    pub router: Router,
    pub rt: Runtime,
    pub db: Option<TestDb>,
    pub admin_token: String,
}

/// A person's cookies.
#[derive(Debug, Default, Clone)]
pub struct Jar(pub Vec<(String, String)>);

impl Jar {
    fn header(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn take(&mut self, resp: &Resp) {
        for c in resp.cookies() {
            let (kv, attrs) = c.split_once(';').unwrap_or((&c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            self.0.retain(|(name, _)| name != k);
            if !attrs.contains("Max-Age=0") {
                self.0.push((k.to_string(), v.to_string()));
            }
        }
    }
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

impl Web {
    pub async fn new(db: TestDb, base_url: &str) -> Web {
        let rt = runtime(&db).await;
        let router = http::router_with(AppState::new(rt.clone(), base_url), reglament_server::web::router());
        let store = rt.store();
        let admin_token = reglament::users_cmd::add(store, "admin", "admin@example.org", vec!["admins".into()], None)
            .await
            .expect("admin");
        Web { router, rt, db: Some(db), admin_token }
    }

    pub async fn finish(self) {
        self.rt.store().close().await;
        if let Some(db) = self.db {
            db.drop_db().await;
        }
    }

    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        jar: &mut Jar,
        body: Option<String>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri).header("host", "reglament.test");
        if !jar.0.is_empty() {
            req = req.header("cookie", jar.header());
        }
        if body.is_some() {
            req = req.header("content-type", "application/x-www-form-urlencoded");
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let response =
            self.router.clone().oneshot(req.body(body.map(Body::from).unwrap_or_default()).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        let resp =
            Resp { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() };
        jar.take(&resp);
        resp
    }

    pub async fn get(&self, uri: &str, jar: &mut Jar) -> Resp {
        self.send(Method::GET, uri, jar, None, &[]).await
    }

    pub async fn post(&self, uri: &str, jar: &mut Jar, pairs: &[(&str, &str)]) -> Resp {
        self.send(Method::POST, uri, jar, Some(form(pairs)), &[]).await
    }

    /// An API call with a bearer token.
    pub async fn api(&self, method: Method, uri: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri).header("authorization", format!("Bearer {token}"));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let body = body.map(|b| Body::from(b.to_string())).unwrap_or_default();
        let response = self.router.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Creates a user with a password; answers their API token.
    pub async fn person(&self, login: &str, name: &str, groups: &[&str], password: &str) -> String {
        let groups = groups.iter().map(|g| g.to_string()).collect();
        let token = reglament::users_cmd::add(
            self.rt.store(),
            login,
            &format!("{login}@example.org"),
            groups,
            Some(name.into()),
        )
        .await
        .expect("user");
        let (status, body) = self
            .api(
                Method::PUT,
                &format!("/api/users/{login}/password"),
                &self.admin_token,
                Some(json!({"password": password})),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        token
    }

    /// Signs in through the form; answers the jar with the session.
    pub async fn sign_in(&self, login: &str, password: &str) -> Jar {
        let mut jar = Jar::default();
        let page = self.get("/login", &mut jar).await;
        let csrf = page.hidden("csrf");
        let resp = self
            .post("/login", &mut jar, &[("login", login), ("password", password), ("csrf", &csrf), ("next", "/")])
            .await;
        assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.text());
        jar
    }
}

async fn sign_in(db: TestDb) {
    let web = Web::new(db, "http://reglament.test/").await;
    let token = web.person("orlova", "Орлова Татьяна Михайловна", &["reception"], "верный-пароль").await;
    let mut jar = Jar::default();

    // No session: the inbox sends to the sign-in form, and back afterwards.
    let resp = web.get("/", &mut jar).await;
    assert_eq!((resp.status, resp.header("location")), (StatusCode::SEE_OTHER, "/login?next=%2F"));
    let resp = web.get("/tasks/x.1", &mut jar).await;
    assert_eq!(resp.header("location"), "/login?next=%2Ftasks%2Fx.1");
    let resp = web.post("/tasks/x.1/complete", &mut jar, &[]).await;
    assert_eq!(resp.header("location"), "/login?next=%2Ftasks%2Fx.1");

    // The form: login, password, a hidden CSRF field matching a cookie.
    let page = web.get("/login?next=/tasks/x.1", &mut jar).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    for part in [
        "name=\"login\"",
        "name=\"password\"",
        "type=\"password\"",
        "<label for=\"login\">Логин</label>",
        "lang=\"ru\"",
    ] {
        assert!(html.contains(part), "{part} in {html}");
    }
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(page.header("content-security-policy").contains("frame-ancestors 'none'"));
    let csrf = page.hidden("csrf");
    assert_eq!(page.cookie("rgl_csrf").as_deref(), Some(csrf.as_str()));
    assert_eq!(page.hidden("next"), "/tasks/x.1");

    // Without the CSRF token, or from another site: refused.
    let resp = web.post("/login", &mut jar, &[("login", "orlova"), ("password", "верный-пароль")]).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.text().contains("Запрос отклонён"));
    let pairs = [("login", "orlova"), ("password", "верный-пароль"), ("csrf", csrf.as_str())];
    let resp =
        web.send(Method::POST, "/login", &mut jar, Some(form(&pairs)), &[("origin", "https://evil.example")]).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);

    // A wrong password: the form again, with the login kept and a Russian message.
    let page = web.get("/login", &mut jar).await;
    let csrf = page.hidden("csrf");
    let resp = web.post("/login", &mut jar, &[("login", "orlova"), ("password", "неверный"), ("csrf", &csrf)]).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert!(resp.text().contains("Неверный логин или пароль.") && resp.text().contains("value=\"orlova\""));
    // An unknown login gets the same answer.
    let csrf = resp.hidden("csrf");
    let resp = web.post("/login", &mut jar, &[("login", "nobody"), ("password", "неверный"), ("csrf", &csrf)]).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);

    // The right one: 303 to `next` with the session cookie.
    let csrf = resp.hidden("csrf");
    let pairs = [("login", "orlova"), ("password", "верный-пароль"), ("csrf", csrf.as_str()), ("next", "/tasks/x.1")];
    let resp = web.post("/login", &mut jar, &pairs).await;
    assert_eq!((resp.status, resp.header("location")), (StatusCode::SEE_OTHER, "/tasks/x.1"));
    let set = resp.cookies().into_iter().find(|c| c.starts_with("rgl_session=")).expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    let resp = web.get("/", &mut jar).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.text().contains("Орлова Татьяна Михайловна"));
    // Signed in, the form sends on.
    assert_eq!(web.get("/login?next=/", &mut jar).await.status, StatusCode::SEE_OTHER);

    // The session is not an API credential, and tokens keep working for the API.
    let resp = web.get("/api/me", &mut jar).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    let (status, me) = web.api(Method::GET, "/api/me", &token, None).await;
    assert_eq!((status, me["login"].as_str()), (StatusCode::OK, Some("orlova")));

    // Logging out needs the token too; then the session is gone.
    let page = web.get("/", &mut jar).await;
    let csrf = page.hidden("csrf");
    assert_eq!(web.post("/logout", &mut jar, &[]).await.status, StatusCode::FORBIDDEN);
    let resp = web.post("/logout", &mut jar, &[("csrf", &csrf)]).await;
    assert_eq!((resp.status, resp.header("location")), (StatusCode::SEE_OTHER, "/login"));
    assert_eq!(web.get("/", &mut jar).await.status, StatusCode::SEE_OTHER);

    // `next` never leaves the server.
    let mut jar = Jar::default();
    let csrf = web.get("/login", &mut jar).await.hidden("csrf");
    let pairs =
        [("login", "orlova"), ("password", "верный-пароль"), ("csrf", csrf.as_str()), ("next", "//evil.example/")];
    assert_eq!(web.post("/login", &mut jar, &pairs).await.header("location"), "/");
    web.finish().await;
}

async fn sign_in_is_slowed_down(db: TestDb) {
    let web = Web::new(db, "https://reglament.example.org").await;
    web.person("kuznetsov", "Кузнецов Олег Владимирович", &["lawyers"], "пароль-юриста").await;
    web.person("sidorova", "Сидорова Мария Алексеевна", &["lawyers"], "пароль-начальника").await;
    let mut jar = Jar::default();
    for _ in 0..5 {
        let csrf = web.get("/login", &mut jar).await.hidden("csrf");
        let resp =
            web.post("/login", &mut jar, &[("login", "kuznetsov"), ("password", "подбор"), ("csrf", &csrf)]).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    }
    // The sixth attempt must wait, even with the right password.
    let csrf = web.get("/login", &mut jar).await.hidden("csrf");
    let resp =
        web.post("/login", &mut jar, &[("login", "kuznetsov"), ("password", "пароль-юриста"), ("csrf", &csrf)]).await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.text().contains("Слишком много неудачных попыток входа. Повторите через 3"), "{}", resp.text());
    // Another person is not locked out by it; behind https the cookie is Secure.
    let mut jar = Jar::default();
    let csrf = web.get("/login", &mut jar).await.hidden("csrf");
    let resp = web
        .post("/login", &mut jar, &[("login", "sidorova"), ("password", "пароль-начальника"), ("csrf", &csrf)])
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    assert!(resp.cookies().iter().any(|c| c.starts_with("rgl_session=") && c.contains("; Secure")));
    web.finish().await;
}

async fn password_api(db: TestDb) {
    let web = Web::new(db, "http://reglament.test").await;
    let token = web.person("petrov", "Петров Илья Андреевич", &["analysis-department"], "первый-пароль").await;
    let put = |login: &str, password: &str, token: &str| {
        let (uri, token, body) =
            (format!("/api/users/{login}/password"), token.to_string(), json!({"password": password}));
        let web = &web;
        async move { web.api(Method::PUT, &uri, &token, Some(body)).await }
    };
    let (status, problem) = put("petrov", "короче", &web.admin_token).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "password");
    assert!(problem["detail"].as_str().unwrap().contains("не короче 8"));
    assert_eq!(put("nobody", "длинный-пароль", &web.admin_token).await.0, StatusCode::NOT_FOUND);
    assert_eq!(put("petrov", "длинный-пароль", &token).await.0, StatusCode::FORBIDDEN);
    // A reset ends the person's sessions.
    let mut jar = web.sign_in("petrov", "первый-пароль").await;
    assert_eq!(web.get("/", &mut jar).await.status, StatusCode::OK);
    assert_eq!(put("petrov", "второй-пароль", &web.admin_token).await.0, StatusCode::NO_CONTENT);
    assert_eq!(web.get("/", &mut jar).await.status, StatusCode::SEE_OTHER);
    web.sign_in("petrov", "второй-пароль").await;
    // Stored as argon2id, never as given.
    let hash = web.rt.store().password_hash("petrov").await.unwrap().unwrap();
    assert!(hash.starts_with("$argon2id$") && !hash.contains("второй"));
    web.finish().await;
}

/// An admin disables a person: their token and their session stop at once, sign-in is refused;
/// enabled again, the token works. Tokens are listed (never shown) and revoked one by one.
async fn people_are_disabled_and_tokens_revoked(db: TestDb) {
    let web = Web::new(db, "http://reglament.test").await;
    let token = web.person("orlova", "Орлова Татьяна Михайловна", &["reception"], "пароль-приёмной").await;
    let admin = web.admin_token.clone();
    let mut jar = web.sign_in("orlova", "пароль-приёмной").await;
    assert_eq!(web.api(Method::GET, "/api/me", &token, None).await.0, StatusCode::OK);

    // Only admins; an admin cannot lock themselves out; unknown logins are 404.
    assert_eq!(web.api(Method::POST, "/api/users/orlova/disable", &token, None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(web.api(Method::POST, "/api/users/admin/disable", &admin, None).await.0, StatusCode::CONFLICT);
    assert_eq!(web.api(Method::POST, "/api/users/nobody/disable", &admin, None).await.0, StatusCode::NOT_FOUND);

    let (status, view) = web.api(Method::POST, "/api/users/orlova/disable", &admin, None).await;
    assert_eq!((status, view["disabled"].clone()), (StatusCode::OK, json!(true)), "{view}");
    assert_eq!(web.api(Method::GET, "/api/me", &token, None).await.0, StatusCode::UNAUTHORIZED);
    let resp = web.get("/", &mut jar).await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "the session ended");
    let mut fresh = Jar::default();
    let csrf = web.get("/login", &mut fresh).await.hidden("csrf");
    let resp =
        web.post("/login", &mut fresh, &[("login", "orlova"), ("password", "пароль-приёмной"), ("csrf", &csrf)]).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "a disabled person cannot sign in");

    let (status, view) = web.api(Method::POST, "/api/users/orlova/enable", &admin, None).await;
    assert_eq!((status, view["disabled"].clone()), (StatusCode::OK, json!(false)));
    assert_eq!(web.api(Method::GET, "/api/me", &token, None).await.0, StatusCode::OK);

    // A second token; list both, revoke the first: it stops, the second works.
    let (status, second) =
        web.api(Method::POST, "/api/users/orlova/tokens", &admin, Some(json!({"label": "скрипт приёмной"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let second = second["token"].as_str().unwrap().to_string();
    let (status, list) = web.api(Method::GET, "/api/users/orlova/tokens", &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    assert_eq!(items[1]["label"], "скрипт приёмной");
    assert!(!list.to_string().contains(&token) && !list.to_string().contains(&second), "tokens are never shown");
    let first = items[0]["id"].as_str().unwrap().to_string();
    assert_eq!(web.api(Method::GET, "/api/users/orlova/tokens", &token, None).await.0, StatusCode::FORBIDDEN);
    let uri = format!("/api/users/orlova/tokens/{first}");
    assert_eq!(web.api(Method::DELETE, &uri, &admin, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(web.api(Method::DELETE, &uri, &admin, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(web.api(Method::GET, "/api/me", &token, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(web.api(Method::GET, "/api/me", &second, None).await.0, StatusCode::OK);
    web.finish().await;
}

/// `reglament users update | disable | enable LOGIN` on a database file.
#[test]
fn users_update_disable_enable_commands() {
    use std::process::Command;
    let dir = crate::browser::tempdir("users-cmd");
    let url = format!("sqlite://{}", dir.join("u.db").display());
    let token = crate::server::add_user(&dir, &url, "orlova", "reception");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_reglament"))
            .arg("users")
            .args(args)
            .env("REGLAMENT_DATABASE_URL", &url)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, _) = run(&["update", "orlova", "--name", "Орлова Татьяна Михайловна"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("Орлова Татьяна Михайловна") && out.contains("reception"), "groups kept: {out}");
    let (code, _, err) = run(&["update", "orlova"]);
    assert!(code == Some(2) && err.contains("нечего менять"), "{err}");
    let (code, _, err) = run(&["disable", "nobody"]);
    assert!(code == Some(2) && err.contains("пользователя `nobody` нет"), "{err}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let resolves = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let store = reglament_store::Store::connect(&url, 2).await.unwrap();
            let user = store
                .user_by_token_hash(&reglament_server::accounts::hash_token(&token), chrono::Utc::now())
                .await
                .unwrap();
            store.close().await;
            user.map(|u| (u.name, u.groups))
        })
    };
    assert_eq!(run(&["disable", "orlova"]).0, Some(0));
    assert_eq!(resolves(&rt), None, "a disabled user's token resolves to nobody");
    assert_eq!(run(&["enable", "orlova"]).0, Some(0));
    assert_eq!(resolves(&rt), Some((Some("Орлова Татьяна Михайловна".into()), vec!["reception".to_string()])));
    // Each change made on the command line is in the audit log, by `cli:` and the OS user.
    let acts = rt.block_on(async {
        let store = reglament_store::Store::connect(&url, 2).await.unwrap();
        let q = reglament_store::audit::AuditQuery { target: Some("orlova".into()), limit: 100, ..Default::default() };
        let rows = store.audit(&q).await.unwrap();
        store.close().await;
        rows
    });
    let actions: Vec<&str> = acts.iter().map(|r| r.entry.action.as_str()).collect();
    assert!(actions.ends_with(&["user.disable", "user.enable"]), "{actions:?}");
    assert!(actions.contains(&"user.update") && acts.iter().all(|r| r.entry.actor.starts_with("cli:")), "{acts:?}");
}

/// `reglament users password LOGIN --password-stdin` on a database file.
#[test]
fn password_command() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = crate::browser::tempdir("password-cmd");
    let url = format!("sqlite://{}", dir.join("p.db").display());
    crate::server::add_user(&dir, &url, "orlova", "reception");
    let set = |login: &str, input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_reglament"))
            .args(["users", "password", login, "--password-stdin"])
            .env("REGLAMENT_DATABASE_URL", &url)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    assert_eq!(set("orlova", "пароль-приёмной\n").0, Some(0));
    let (code, err) = set("nobody", "пароль-приёмной\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("пользователя `nobody` нет"), "{err}");
    let (code, err) = set("orlova", "коротко\n");
    assert!(code == Some(2) && err.contains("не короче 8"), "{err}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let hash = rt.block_on(async {
        let store = reglament_store::Store::connect(&url, 2).await.unwrap();
        store.password_hash("orlova").await.unwrap()
    });
    assert!(reglament_server::identity::password_matches("пароль-приёмной", &hash.expect("a hash")));
}

macro_rules! on_both {
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

on_both!(sign_in, sign_in_is_slowed_down, password_api, people_are_disabled_and_tokens_revoked);

mod inbox {
    use super::*;
    on_both!(inbox_page, inbox_counts_and_search, task_page);
}

/// A reception task with a working-day deadline and a form, and a task offered to nobody.
pub const INBOX_MODEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" xmlns:reglament="urn:reglament:bpmn:1.0" id="d_letters" targetNamespace="urn:test">
  <bpmn:process id="letters" name="Регистрация обращения" isExecutable="true">
    <bpmn:extensionElements><reglament:settings timeZone="Europe/Astrakhan" calendar="ru" /></bpmn:extensionElements>
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="split" />
    <bpmn:parallelGateway id="split" />
    <bpmn:sequenceFlow id="f2" sourceRef="split" targetRef="register" />
    <bpmn:sequenceFlow id="f3" sourceRef="split" targetRef="archive" />
    <bpmn:userTask id="register" name="Зарегистрировать обращение">
      <bpmn:extensionElements>
        <zeebe:assignmentDefinition candidateGroups="reception" />
        <reglament:deadline duration="P3D" time="working" />
        <reglament:form>
          <reglament:field id="channel" label="Канал поступления" type="enum" required="true" hint="Как поступило обращение">
            <reglament:option value="letter" label="Письмо" />
            <reglament:option value="email" label="Электронная почта" />
          </reglament:field>
          <reglament:field id="replyEmail" label="Адрес для ответа" type="email" />
          <reglament:field id="pages" label="Листов" type="number" />
          <reglament:field id="urgent" label="Срочное" type="boolean" />
          <reglament:field id="summary" label="Краткое содержание" type="textarea" required="true" />
        </reglament:form>
      </bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:userTask id="archive" name="Сдать в архив" />
    <bpmn:sequenceFlow id="f4" sourceRef="register" targetRef="review" />
    <bpmn:userTask id="review" name="Рассмотреть обращение">
      <bpmn:extensionElements><zeebe:assignmentDefinition candidateGroups="lawyers" /></bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f5" sourceRef="review" targetRef="join" />
    <bpmn:sequenceFlow id="f6" sourceRef="archive" targetRef="join" />
    <bpmn:parallelGateway id="join" />
    <bpmn:sequenceFlow id="f7" sourceRef="join" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>"#;

impl Web {
    /// Deploys [`INBOX_MODEL`] and starts one instance per business key; answers the tokens of
    /// orlova (reception) and kuznetsov (lawyers).
    pub async fn letters(&self, keys: &[&str]) -> (String, String) {
        let owner = self.person("owner", "Владелец процесса", &["process-owners"], "пароль-владельца").await;
        let orlova = self.person("orlova", "Орлова Татьяна Михайловна", &["reception"], "пароль-приёмной").await;
        let kuznetsov = self.person("kuznetsov", "Кузнецов Олег Владимирович", &["lawyers"], "пароль-юриста").await;
        let req = Request::builder()
            .method(Method::POST)
            .uri("/api/definitions")
            .header("authorization", format!("Bearer {owner}"))
            .header("content-type", "application/xml")
            .body(Body::from(INBOX_MODEL))
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        for key in keys {
            let body = json!({"definitionKey": "letters", "businessKey": key, "variables": {}});
            let (status, v) = self.api(Method::POST, "/api/process-instances", &owner, Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{v}");
        }
        (orlova, kuznetsov)
    }
}

/// The ids of the task rows of an inbox page, in order.
pub fn row_ids(html: &str) -> Vec<String> {
    html.split("data-task=\"").skip(1).map(|s| s.split('"').next().unwrap().to_string()).collect()
}

fn count(html: &str, view: &str) -> i64 {
    let marker = format!("id=\"count-{view}\">");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no count of {view}")) + marker.len();
    html[start..].split('<').next().unwrap().parse().unwrap()
}

async fn inbox_page(db: TestDb) {
    let web = Web::new(db, "http://reglament.test").await;
    let keys: Vec<String> = (1..=27).map(|i| format!("ЗИ-{i:03}")).collect();
    let (orlova, kuznetsov) = web.letters(&keys.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut jar = web.sign_in("orlova", "пароль-приёмной").await;

    // Nothing assigned yet; the groups' view holds the 27 reception tasks and the 27 offered to
    // nobody, a page of 25 at a time in due order (no due date last).
    let page = web.get("/", &mut jar).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("У вас нет задач в работе"), "{html}");
    assert_eq!((count(&html, "mine"), count(&html, "groups")), (0, 54));
    let page = web.get("/?view=groups", &mut jar).await.text();
    let first = row_ids(&page);
    assert_eq!(first.len(), 25);
    assert!(page.contains("Зарегистрировать обращение") && page.contains("Регистрация обращения"));
    assert!(page.contains("до 7 декабря 2026 г., 18:00"), "{page}");
    assert!(page.contains("осталось 3 раб. дня"), "{page}");
    let next = page.split("after=").nth(1).unwrap().split('"').next().unwrap().to_string();
    let second = row_ids(&web.get(&format!("/?view=groups&after={next}"), &mut jar).await.text());
    assert_eq!(second.len(), 25);
    assert!(second.iter().all(|id| !first.contains(id)));

    // The lawyer sees only the tasks offered to nobody.
    let mut lawyer = web.sign_in("kuznetsov", "пароль-юриста").await;
    let html = web.get("/?view=groups", &mut lawyer).await.text();
    assert_eq!(count(&html, "groups"), 27);
    assert!(!html.contains("Зарегистрировать обращение") && html.contains("Сдать в архив"));

    // A claimed task moves to «Мои задачи»; filters by request number, process, overdue, date.
    let (_, tasks) = web.api(Method::GET, "/api/tasks?candidateGroup=reception&limit=500", &orlova, None).await;
    let task = tasks["items"].as_array().unwrap().iter().find(|t| t["businessKey"] == "ЗИ-005").unwrap().clone();
    assert_eq!(task["processName"], "Регистрация обращения");
    assert_eq!((task["overdue"].clone(), task["workingDaysLeft"].clone()), (json!(false), json!(3)));
    let id = task["id"].as_str().unwrap();
    let (status, _) = web.api(Method::POST, &format!("/api/tasks/{id}/claim"), &orlova, None).await;
    assert_eq!(status, StatusCode::OK);
    let html = web.get("/", &mut jar).await.text();
    assert_eq!(row_ids(&html), vec![id.to_string()]);
    assert_eq!((count(&html, "mine"), count(&html, "groups")), (1, 53));
    let html = web.get("/?view=groups&q=%D0%97%D0%98-01", &mut jar).await.text();
    assert_eq!(count(&html, "groups"), 20, "ЗИ-010…ЗИ-019, twice");
    assert_eq!(row_ids(&html).len(), 20);
    assert_eq!(count(&web.get("/?view=groups&process=letters", &mut jar).await.text(), "groups"), 53);
    assert_eq!(count(&web.get("/?view=groups&process=other", &mut jar).await.text(), "groups"), 0);
    let html = web.get("/?view=groups&overdue=1", &mut jar).await.text();
    assert_eq!(count(&html, "groups"), 0);
    assert!(html.contains("с такими условиями отбора"));
    assert_eq!(count(&web.get("/?view=groups&due_before=2026-12-07", &mut jar).await.text(), "groups"), 26);
    assert_eq!(count(&web.get("/?view=groups&due_before=2026-12-06", &mut jar).await.text(), "groups"), 0);
    assert_eq!(web.get("/?due_before=7.12.2026", &mut jar).await.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Anyone may take a task offered to nobody (API and page alike).
    let (_, open) = web.api(Method::GET, "/api/tasks?limit=500", &kuznetsov, None).await;
    let free = open["items"].as_array().unwrap().iter().find(|t| t["name"] == "Сдать в архив").unwrap().clone();
    let (status, claimed) =
        web.api(Method::POST, &format!("/api/tasks/{}/claim", free["id"].as_str().unwrap()), &kuznetsov, None).await;
    assert_eq!((status, claimed["assignee"].as_str()), (StatusCode::OK, Some("kuznetsov")));
    web.finish().await;
}

/// Writes instance, task and task-group rows (SQL `VALUES` tuples) in one transaction: the API
/// would take minutes for the thousands a count test needs.
async fn insert_rows(web: &Web, instances: &[String], tasks: &[String], groups: &[String]) {
    let mut tx = web.rt.store().begin().await.unwrap();
    let mut statements = vec![
        format!(
            "INSERT INTO instances (id, definition_key, version, business_key, status, rev, state, started_at, \
             history_len) VALUES {}",
            instances.join(", ")
        ),
        format!(
            "INSERT INTO tasks (id, instance_id, task_key, definition_key, element_id, name, state, assignee, \
             candidate_groups, candidate_users, due, created_at) VALUES {}",
            tasks.join(", ")
        ),
    ];
    if !groups.is_empty() {
        statements.push(format!(
            "INSERT INTO task_groups (group_name, task_id, state, due_sort, created_at) VALUES {}",
            groups.join(", ")
        ));
    }
    for sql in statements {
        tx.execute_sql(&sql).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Counts stop at [`COUNT_CAP`] («1000+», said in the title); a search lists the instances of
/// its request numbers from the trigram index (in any case; `%` and `_` are plain characters; a
/// part too short for trigrams still matches), or past 1,000 numbers checks each task as the
/// view is walked; paging is the same either way.
async fn inbox_counts_and_search(db: TestDb) {
    use reglament_store::web::COUNT_CAP;
    let web = Web::new(db, "http://reglament.test").await;
    web.person("orlova", "Орлова Татьяна Михайловна", &["reception"], "пароль-приёмной").await;
    // 1,003 tasks offered to reception (due one minute apart, in number order) and two of
    // orlova's own, written as rows: the API would take minutes for so many.
    let due0 = crate::support::test_now().timestamp_millis() + 86_400_000;
    let mut rows: Vec<(String, String, Option<&str>, &str)> =
        (1..=1003).map(|i| (format!("vx-{i:04}"), format!("ВХД-{i:04}"), None, "reception")).collect();
    rows.push(("ab-7".into(), "AB_7".into(), Some("orlova"), ""));
    rows.push(("ab-8".into(), "AB-8".into(), Some("orlova"), ""));
    let mut instances = Vec::new();
    let mut tasks = Vec::new();
    let mut groups = Vec::new();
    for (n, (id, key, assignee, group)) in rows.iter().enumerate() {
        let due = due0 + n as i64 * 60_000;
        instances.push(format!("('{id}', 'bulk', 1, '{key}', 'active', 1, '{{}}', {due0}, 1)"));
        let assignee = assignee.map(|a| format!("'{a}'")).unwrap_or("NULL".into());
        tasks.push(format!(
            "('{id}.2', '{id}', 2, 'bulk', 'review', 'Рассмотреть', 'open', {assignee}, '{group}', '', {due}, {due0})"
        ));
        if !group.is_empty() {
            groups.push(format!("('{group}', '{id}.2', 'open', {due}, {due0})"));
        }
    }
    insert_rows(&web, &instances, &tasks, &groups).await;
    let mut jar = web.sign_in("orlova", "пароль-приёмной").await;
    let counts = |html: &str| {
        let text = |view: &str| {
            let marker = format!("id=\"count-{view}\"");
            let rest = &html[html.find(&marker).unwrap_or_else(|| panic!("no count of {view}"))..];
            rest[rest.find('>').unwrap() + 1..].split('<').next().unwrap().to_string()
        };
        (text("mine"), text("groups"))
    };

    let html = web.get("/", &mut jar).await.text();
    assert_eq!(counts(&html), ("2".into(), format!("{COUNT_CAP}+")));
    assert!(html.contains(&format!(" title=\"Задач больше {COUNT_CAP}; уточните отбор\">{COUNT_CAP}+<")), "{html}");
    assert_eq!(row_ids(&html), vec!["ab-7.2", "ab-8.2"]);
    let with_zeros = rows.iter().filter(|r| r.1.contains("00") && r.2.is_none()).count();
    assert_eq!(with_zeros, 112);
    let with_zeros = with_zeros.to_string();
    for (q, mine, groups) in [
        ("_", "1", "0"),
        ("%", "0", "0"),
        ("ab-8", "1", "0"),
        ("ВХД-100", "0", "4"),
        ("вхд-100", "0", "4"),
        ("00", "0", with_zeros.as_str()),
        ("ВХД-0", "0", "999"),
        ("ВХД-1003", "0", "1"),
        ("нет-такого", "0", "0"),
    ] {
        let q_url: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
        let html = web.get(&format!("/?view=groups&q={q_url}"), &mut jar).await.text();
        assert_eq!(counts(&html), (mine.to_string(), groups.to_string()), "q={q}");
    }

    // «ВХД» is in every number: past the listed limit the view is walked, the count capped,
    // and the next page follows the first in due order.
    let html = web.get("/?view=groups&q=%D0%92%D0%A5%D0%94", &mut jar).await.text();
    assert_eq!(counts(&html).1, format!("{COUNT_CAP}+"));
    let first = row_ids(&html);
    let expected: Vec<String> = (1..=50).map(|i| format!("vx-{i:04}.2")).collect();
    assert_eq!(first, expected[..25]);
    let next = html.split("after=").nth(1).unwrap().split('"').next().unwrap().to_string();
    let html = web.get(&format!("/?view=groups&q=%D0%92%D0%A5%D0%94&after={next}"), &mut jar).await.text();
    assert_eq!(row_ids(&html), expected[25..]);

    // 1,100 other tasks due before them: a broad search counts among the first tasks of the
    // view only («900+», the title says so) and the page still finds the matching ones.
    let early = due0 - 86_400_000;
    let ids: Vec<String> = (1..=1100).map(|i| format!("ps-{i:04}")).collect();
    let instances: Vec<String> =
        ids.iter().map(|id| format!("('{id}', 'bulk', 1, 'ПСМ-{id}', 'active', 1, '{{}}', {due0}, 1)")).collect();
    let tasks: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let due = early + n as i64 * 1000;
            format!(
                "('{id}.2', '{id}', 2, 'bulk', 'review', 'Рассмотреть', 'open', NULL, 'reception', '', {due}, {due0})"
            )
        })
        .collect();
    insert_rows(&web, &instances, &tasks, &[]).await;
    let html = web.get("/?view=groups&q=%D0%92%D0%A5%D0%94", &mut jar).await.text();
    let scan = reglament_store::web::BROAD_SCAN;
    assert_eq!(counts(&html).1, format!("{}+", scan - 1100));
    assert!(html.contains(&format!("title=\"Найдено среди первых {scan} задач по сроку;")), "{html}");
    assert_eq!(row_ids(&html), expected[..25]);
    web.finish().await;
}

async fn task_page(db: TestDb) {
    let web = Web::new(db, "http://reglament.test").await;
    let (orlova, _) = web.letters(&["ЗИ-100"]).await;
    let mut jar = web.sign_in("orlova", "пароль-приёмной").await;
    let (_, tasks) = web.api(Method::GET, "/api/tasks?candidateGroup=reception", &orlova, None).await;
    let id = tasks["items"][0]["id"].as_str().unwrap().to_string();
    let url = format!("/tasks/{id}");

    // Not yet taken: the form is shown disabled, with a claim button.
    let page = web.get(&url, &mut jar).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    for part in [
        "<h1 id=\"task-title\">Зарегистрировать обращение</h1>",
        "ЗИ-100",
        "до 7 декабря 2026 г., 18:00",
        "<legend>Канал поступления <span class=\"required\"",
        "value=\"letter\"",
        "> Электронная почта</label>",
        "<p class=\"hint\" id=\"hint-channel\">Как поступило обращение</p>",
        "<label for=\"in-summary\">Краткое содержание <span class=\"required\"",
        "type=\"email\"",
        "type=\"checkbox\" name=\"urgent\"",
        "id=\"claim\"",
        "<fieldset disabled>",
        "Процесс запущен",
        "Создана задача «Зарегистрировать обращение» для групп: reception",
    ] {
        assert!(html.contains(part), "{part} in {html}");
    }
    let csrf = page.hidden("csrf");
    // A form sent without the token (another site's) changes nothing.
    assert_eq!(web.post(&format!("{url}/claim"), &mut jar, &[]).await.status, StatusCode::FORBIDDEN);
    let resp = web
        .send(
            Method::POST,
            &format!("{url}/claim"),
            &mut jar,
            Some(form(&[("csrf", &csrf)])),
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    let resp = web.post(&format!("{url}/claim"), &mut jar, &[("csrf", &csrf)]).await;
    assert_eq!((resp.status, resp.header("location")), (StatusCode::SEE_OTHER, url.as_str()));
    let html = web.get(&url, &mut jar).await.text();
    assert!(html.contains("id=\"complete\"") && !html.contains("<fieldset disabled>"));
    assert!(html.contains("<dd id=\"assignee\">Орлова Татьяна Михайловна</dd>"));

    // A number that is not one: the page's own message at the field, every value kept.
    let wrong = [
        ("csrf", csrf.as_str()),
        ("channel", "email"),
        ("replyEmail", "не почта"),
        ("pages", "много"),
        ("summary", ""),
    ];
    let resp = web.post(&format!("{url}/complete"), &mut jar, &wrong).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text();
    assert!(
        html.contains("<p class=\"field-error\" id=\"error-pages\">Введите число, например 12 или 3,5.</p>"),
        "{html}"
    );
    assert!(html.contains("value=\"не почта\"") && html.contains("value=\"много\""));
    assert!(html.contains("value=\"email\" checked"));
    // The engine's check: each message next to its field, in Russian.
    let wrong =
        [("csrf", csrf.as_str()), ("channel", "email"), ("replyEmail", "не почта"), ("pages", "3"), ("summary", "")];
    let html = web.post(&format!("{url}/complete"), &mut jar, &wrong).await.text();
    assert!(html.contains("id=\"error-replyEmail\">Ожидается адрес электронной почты.</p>"), "{html}");
    assert!(html.contains("id=\"error-summary\">Заполните это поле: оно обязательно.</p>"), "{html}");
    assert!(html.contains("class=\"field invalid\" id=\"field-summary\""));
    assert!(!html.contains("id=\"error-pages\""));

    // Right values: done, back to the inbox; the lawyers' task is next, with the case's facts.
    let right = [
        ("csrf", csrf.as_str()),
        ("channel", "email"),
        ("replyEmail", "ivanov@example.org"),
        ("pages", "3,5"),
        ("urgent", "true"),
        ("summary", "Прошу сообщить график приёма"),
    ];
    let resp = web.post(&format!("{url}/complete"), &mut jar, &right).await;
    assert_eq!((resp.status, resp.header("location")), (StatusCode::SEE_OTHER, "/?done=completed"));
    assert!(web.get("/?done=completed", &mut jar).await.text().contains("Задача выполнена."));
    let (_, instance) = web
        .api(
            Method::GET,
            &format!("/api/process-instances/{}", tasks["items"][0]["processInstanceId"].as_str().unwrap()),
            &orlova,
            None,
        )
        .await;
    assert_eq!(instance["variables"]["pages"], json!(3.5));
    assert_eq!(instance["variables"]["urgent"], json!(true));
    let mut lawyer = web.sign_in("kuznetsov", "пароль-юриста").await;
    let html = web.get("/?view=groups", &mut lawyer).await.text();
    let review = row_ids(&html)
        .into_iter()
        .find(|t| html.contains(&format!("href=\"/tasks/{t}\">Рассмотреть обращение")))
        .expect("the review task");
    let html = web.get(&format!("/tasks/{review}"), &mut lawyer).await.text();
    assert!(html.contains("<dt>Краткое содержание</dt><dd>Прошу сообщить график приёма</dd>"), "{html}");
    assert!(html.contains("<dt>Канал поступления</dt><dd>Электронная почта</dd>"));
    assert!(html.contains("<dt>Листов</dt><dd>3,5</dd>") && html.contains("<dt>Срочное</dt><dd>Да</dd>"));
    assert!(html.contains("Орлова Татьяна Михайловна выполнил(а) задачу «Зарегистрировать обращение»"), "{html}");
    // The lawyer sees the instance (a task of it is theirs), so also the reception's completed
    // task, as the API shows it — read-only.
    let seen = web.get(&url, &mut lawyer).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(!seen.text().contains("/complete\""), "no completing someone else's done task");
    assert_eq!(web.get("/tasks/no-such.1", &mut lawyer).await.status, StatusCode::NOT_FOUND);

    // Claim and give back; a completed task says who did it.
    let csrf = web.get("/", &mut lawyer).await.hidden("csrf");
    web.post(&format!("/tasks/{review}/claim"), &mut lawyer, &[("csrf", &csrf)]).await;
    let resp = web.post(&format!("/tasks/{review}/unclaim"), &mut lawyer, &[("csrf", &csrf)]).await;
    assert_eq!(resp.header("location"), "/?done=unclaimed");
    let html = web.get(&url, &mut jar).await.text();
    assert!(
        html.contains("Задача выполнена 2 декабря 2026 г.") && html.contains("(Орлова Татьяна Михайловна)"),
        "{html}"
    );

    // The case page (emails link to it): state, open tasks with their links, the timeline.
    assert!(html.contains("<a href=\"/instances/"), "the task page links to its case");
    let instance_id = tasks["items"][0]["processInstanceId"].as_str().unwrap();
    let page = web.get(&format!("/instances/{instance_id}"), &mut lawyer).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    for part in [
        "<h1 id=\"instance-title\">Регистрация обращения — ЗИ-100</h1>",
        "<dd id=\"instance-state\">Выполняется</dd>",
        &format!("<a href=\"/tasks/{review}\">Рассмотреть обращение</a> — предложена группам: lawyers"),
        "Орлова Татьяна Михайловна выполнил(а) задачу «Зарегистрировать обращение»",
    ] {
        assert!(html.contains(part), "{part} in {html}");
    }
    let page = web.get("/instances/no-such", &mut lawyer).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.text().contains("Дело не найдено"));
    web.finish().await;
}
