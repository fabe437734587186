//! Camunda Forms end to end, through the real router and store on both backends: a model and
//! its `.form` file deployed together (multipart, and from a definitions folder), the task page
//! rendering the form's components, the server's check of required fields and rules with the
//! Russian message at the field and the values kept, and the completion. Mistakes in a form
//! are refused at deployment naming the file and the component.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::store::TestDb;
use crate::support::repo_root;
use crate::web::{Jar, Web};

const BOUNDARY: &str = "reglament-test-boundary";

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("tests/forms").join(name)).expect("sample file")
}

/// A `multipart/form-data` body of (part name, file name, bytes).
fn multipart(parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn deploy(web: &Web, token: &str, parts: &[(&str, &str, &[u8])]) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/definitions")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(Body::from(multipart(parts)))
        .unwrap();
    let resp = web.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn camunda_form_task(db: TestDb) {
    let web = Web::new(db, "http://reglament.test").await;
    let owner = web.person("owner", "Владелец процесса", &["process-owners"], "пароль-владельца").await;
    let lawyer = web.person("kuznetsov", "Кузнецов Олег Владимирович", &["lawyers"], "пароль-юриста").await;
    let model = sample("review-decision.bpmn");
    let form = sample("review-decision.form");

    // The model alone: its task's form is missing, named, and nothing is deployed.
    let (status, body) = deploy(&web, &owner, &[("model", "review-decision.bpmn", &model)]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["element"], "review");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("formId `review-decision` names no Camunda Form"));
    // A form the page cannot show: the file and the component are named.
    let broken =
        String::from_utf8(form.clone()).unwrap().replace("\"type\": \"checklist\"", "\"type\": \"filepicker\"");
    let (status, body) = deploy(
        &web,
        &owner,
        &[("model", "review-decision.bpmn", &model), ("form", "review-decision.form", broken.as_bytes())],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["file"], "review-decision.form");
    assert_eq!(body["errors"][0]["element"], "Field_6channels");
    assert_eq!(body["errors"][0]["line"], 62);
    // Two models, or a part of another kind, are refused as such.
    let (status, body) = deploy(&web, &owner, &[("a", "a.bpmn", &model), ("b", "b.bpmn", &model)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = deploy(&web, &owner, &[("form", "review-decision.form", &form)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Together: deployed; the same pair again is the same version, a changed form a new one.
    let pair = [("model", "review-decision.bpmn", model.as_slice()), ("form", "review-decision.form", form.as_slice())];
    let (status, body) = deploy(&web, &owner, &pair).await;
    assert_eq!(
        (status, body["key"].as_str(), body["version"].as_i64()),
        (StatusCode::CREATED, Some("review_decision"), Some(1))
    );
    let (status, body) = deploy(&web, &owner, &pair).await;
    assert_eq!((status, body["version"].as_i64()), (StatusCode::OK, Some(1)));
    let (status, stored) =
        web.api(Method::GET, "/api/definitions/review_decision/forms/review-decision", &owner, None).await;
    assert_eq!((status, stored["id"].as_str()), (StatusCode::OK, Some("review-decision")));
    let (status, _) = web.api(Method::GET, "/api/definitions/review_decision/forms/nope", &owner, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let changed = String::from_utf8(form.clone()).unwrap().replace("Листов в ответе", "Листов");
    let (status, body) = deploy(
        &web,
        &owner,
        &[("model", "review-decision.bpmn", &model), ("form", "review-decision.form", changed.as_bytes())],
    )
    .await;
    assert_eq!((status, body["version"].as_i64()), (StatusCode::CREATED, Some(2)), "{body}");
    let (_, v1) =
        web.api(Method::GET, "/api/definitions/review_decision/forms/review-decision?version=1", &owner, None).await;
    assert_eq!(v1["components"][4]["components"][2]["label"], "Листов в ответе");

    let start = json!({"definitionKey": "review_decision", "businessKey": "ЗИ-7", "variables": {"requester": "Иванов Иван Иванович"}});
    let (status, v) = web.api(Method::POST, "/api/process-instances", &owner, Some(start)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let instance = v["id"].as_str().unwrap().to_string();
    let (_, tasks) = web.api(Method::GET, "/api/tasks?candidateGroup=lawyers", &lawyer, None).await;
    let id = tasks["items"][0]["id"].as_str().unwrap().to_string();

    // The API's form schema is the Camunda form's.
    let (_, task) = web.api(Method::GET, &format!("/api/tasks/{id}"), &lawyer, None).await;
    let kinds: Vec<&str> = task["form"].as_array().unwrap().iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["note", "text", "enum", "textarea", "note", "select", "checklist", "number", "date", "boolean"]);
    assert_eq!(task["form"][3]["minLength"], 10);
    assert_eq!(task["form"][1]["readonly"], true);

    let mut jar: Jar = web.sign_in("kuznetsov", "пароль-юриста").await;
    let url = format!("/tasks/{id}");
    let page = web.get(&url, &mut jar).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    for part in [
        "<h3>Сведения об ответе</h3>",
        "<h3>Решение по обращению</h3>",
        "<p>Проверьте обращение и выберите решение.",
        "<span class=\"label\" id=\"label-requester\">Заявитель</span>",
        "Иванов Иван Иванович</p>",
        "<legend>Решение <span class=\"required\"",
        "> Предоставить информацию</label>",
        "id=\"hint-decision\">Отказ — только по основаниям ст. 20 Федерального закона № 8-ФЗ</p>",
        "id=\"hint-reason\">От 10 до 2000 символов.</p>",
        "<select id=\"in-unit\" name=\"unit\"",
        "<option value=\"legal\" selected>Правовой отдел</option>",
        "<input type=\"checkbox\" name=\"channels\" value=\"post\">",
        "id=\"hint-pages\">Число от 1 до 50.</p>",
        "<label for=\"in-answerDue\">Срок ответа</label>",
        "type=\"date\"",
        "> Проверено юристом <span class=\"required\"",
    ] {
        assert!(html.contains(part), "{part} in {html}");
    }
    assert!(!html.contains("name=\"requester\""), "a read-only field has no input");
    let csrf = page.hidden("csrf");
    let resp = web.post(&format!("{url}/claim"), &mut jar, &[("csrf", &csrf)]).await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);

    // Without the required fields, and a reason too short: Russian messages at the fields,
    // the values kept.
    let wrong = [
        ("csrf", csrf.as_str()),
        ("reason", "Коротко"),
        ("unit", "analysis"),
        ("pages", "3,5"),
        ("requester", "подмена"),
    ];
    let resp = web.post(&format!("{url}/complete"), &mut jar, &wrong).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text();
    for part in [
        "id=\"error-decision\">Заполните это поле: оно обязательно.</p>",
        "id=\"error-channels\">Заполните это поле: оно обязательно.</p>",
        "id=\"error-checkedByLawyer\">Заполните это поле: оно обязательно.</p>",
        "id=\"error-reason\">Ожидается не меньше 10 символов (сейчас 7).</p>",
        "id=\"error-pages\">Ожидается целое число.</p>",
        "class=\"field invalid\" id=\"field-decision\"",
        ">Коротко</textarea>",
        "<option value=\"analysis\" selected>",
        "value=\"3,5\"",
    ] {
        assert!(html.contains(part), "{part} in {html}");
    }

    // Right values: completed, the variables set as the form's keys say.
    let right = [
        ("csrf", csrf.as_str()),
        ("decision", "answer"),
        ("reason", "Информация относится к компетенции министерства"),
        ("unit", "analysis"),
        ("channels", "email"),
        ("channels", "post"),
        ("pages", "3"),
        ("answerDue", "2026-12-30"),
        ("checkedByLawyer", "true"),
    ];
    let resp = web.post(&format!("{url}/complete"), &mut jar, &right).await;
    assert_eq!((resp.status, resp.header("location")), (StatusCode::SEE_OTHER, "/?done=completed"), "{}", resp.text());
    let (_, v) = web.api(Method::GET, &format!("/api/process-instances/{instance}"), &owner, None).await;
    assert_eq!(v["state"], "completed");
    let vars = &v["variables"];
    assert_eq!(
        (&vars["decision"], &vars["channels"], &vars["pages"]),
        (&json!("answer"), &json!(["email", "post"]), &json!(3))
    );
    assert_eq!((&vars["requester"], &vars["checkedByLawyer"]), (&json!("Иванов Иван Иванович"), &json!(true)));
    web.finish().await;
}

/// `reglament serve`'s definitions folder: a `.form` beside the `.bpmn` goes with it.
async fn forms_in_the_definitions_folder(db: TestDb) {
    let web = Web::new(db, "http://reglament.test").await;
    let dir = tempfile_dir();
    for name in ["review-decision.bpmn", "review-decision.form"] {
        std::fs::write(dir.join(name), sample(name)).unwrap();
    }
    let deployed = reglament_server::serve::deploy_folder(&web.rt, &dir).await.expect("deployed");
    assert_eq!(deployed, 1);
    let forms = web.rt.store().definition_forms("review_decision", 1).await.unwrap();
    assert_eq!(forms.len(), 1);
    assert_eq!((forms[0].form_id.as_str(), forms[0].file_name.as_str()), ("review-decision", "review-decision.form"));
    let def = web.rt.definition("review_decision", 1).await.unwrap();
    let process = def.process();
    let review = process.node(process.node_by_id("review").unwrap());
    let reglament_engine::model::NodeKind::Task(task) = &review.kind else { panic!("a task") };
    assert_eq!(task.form.len(), 10);
    std::fs::remove_dir_all(&dir).ok();
    web.finish().await;
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = repo_root().join("target/tmp").join(format!("forms-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn camunda_form_task() {
        super::camunda_form_task(super::TestDb::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forms_in_the_definitions_folder() {
        super::forms_in_the_definitions_folder(super::TestDb::sqlite().await).await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn camunda_form_task() {
        super::camunda_form_task(super::TestDb::postgres().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forms_in_the_definitions_folder() {
        super::forms_in_the_definitions_folder(super::TestDb::postgres().await).await;
    }
}
