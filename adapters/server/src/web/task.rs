//! `/tasks/{id}`: a task, its form, what the case already holds, and the instance's history as
//! a timeline; `POST /tasks/{id}/claim | unclaim | assign | complete`.
//!
//! The actions call the API's own handlers (`http::tasks::*`), so the access rules and the
//! engine's form check are the API's. The page only decodes the form (text to numbers, a
//! checkbox to a boolean) and puts each message next to its field, with the values kept.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use minijinja::value::Serde;
use reglament_engine::model::{FieldKind, FormField, NodeKind};
use reglament_engine::runtime::{ProcessDef, ROOT};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::format;
use super::pages::{csrf_refused, message, render, server_error};
use super::session::{WebUser, cross_site, same_token};
use crate::http::AppState;
use crate::http::audit::ClientAddress;
use crate::http::auth::CurrentUser;
use crate::http::error::ApiError;
use crate::http::extract::ApiJson;
use crate::http::task_facts::facts;
use crate::http::tasks::{AssignRequest, CompleteRequest};
use reglament_store::TaskRow;

/// A posted form: every name with its values, in order.
type Posted = Vec<(String, String)>;

/// One field as the template shows it.
#[derive(Debug, Serialize)]
struct FieldView {
    id: String,
    label: String,
    kind: &'static str,
    required: bool,
    hint: Option<String>,
    options: Vec<(String, String)>,
    value: String,
    /// The chosen values of a checklist.
    values: Vec<String>,
    /// Shown as context, not as an input: the case's value in words.
    readonly: bool,
    shown: Option<String>,
    /// A note's text, block by block: (a heading, the text).
    paragraphs: Vec<(bool, String)>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Fact {
    label: String,
    value: String,
}

fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Text => "text",
        FieldKind::Textarea => "textarea",
        FieldKind::Number => "number",
        FieldKind::Boolean => "boolean",
        FieldKind::Date => "date",
        FieldKind::Enum => "enum",
        FieldKind::Email => "email",
        FieldKind::Select => "select",
        FieldKind::Checklist => "checklist",
        FieldKind::Note => "note",
    }
}

/// The form of the task's element.
fn form_of<'d>(def: &'d ProcessDef, element: &str) -> &'d [FormField] {
    let process = def.process();
    match process.node_by_id(element).map(|n| &process.node(n).kind) {
        Some(NodeKind::Task(task)) => &task.form,
        _ => &[],
    }
}

/// A stored value as text for a field of `kind`.
fn shown(value: &Json, field: &FormField) -> String {
    match (field.kind, value) {
        (FieldKind::Boolean, Json::Bool(b)) => if *b { "Да" } else { "Нет" }.into(),
        (FieldKind::Enum | FieldKind::Select, Json::String(s)) => label_of(field, s),
        (FieldKind::Checklist, Json::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(|s| label_of(field, s)).unwrap_or_else(|| i.to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        (FieldKind::Date, Json::String(s)) => {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map(format::date).unwrap_or_else(|_| s.clone())
        }
        (_, Json::String(s)) => s.clone(),
        (_, Json::Number(n)) => n.to_string().replace('.', ","),
        (_, other) => other.to_string(),
    }
}

/// The label of one of a field's options.
fn label_of(field: &FormField, value: &str) -> String {
    field.options.iter().find(|(v, _)| v == value).map(|(_, l)| l.clone()).unwrap_or_else(|| value.to_string())
}

/// The line of help under a field: its hint, and its rules in words.
fn hint_of(field: &FormField) -> Option<String> {
    let r = &field.rules;
    // «до», «не меньше», «не больше» take the genitive: 1 символа, 2 и 5 символов.
    let chars = |n: u64| if n % 10 == 1 && n % 100 != 11 { "символа" } else { "символов" };
    let number = |n: f64| n.to_string().replace('.', ",");
    let rule = match (r.min_length, r.max_length, r.min, r.max) {
        (Some(a), Some(b), ..) => Some(format!("От {a} до {b} {}.", chars(b))),
        (Some(a), None, ..) => Some(format!("Не меньше {a} {}.", chars(a))),
        (None, Some(b), ..) => Some(format!("Не больше {b} {}.", chars(b))),
        (_, _, Some(a), Some(b)) => Some(format!("Число от {} до {}.", number(a), number(b))),
        (_, _, Some(a), None) => Some(format!("Число не меньше {}.", number(a))),
        (_, _, None, Some(b)) => Some(format!("Число не больше {}.", number(b))),
        _ => None,
    };
    match (field.hint.clone(), rule) {
        (Some(h), Some(r)) => Some(format!("{h} {r}")),
        (h, r) => h.or(r),
    }
}

/// The value a field's input starts with.
fn input_value(value: &Json, kind: FieldKind) -> String {
    match (kind, value) {
        (FieldKind::Boolean, Json::Bool(true)) => "true".into(),
        (_, Json::String(s)) => s.clone(),
        (_, Json::Number(n)) => n.to_string().replace('.', ","),
        _ => String::new(),
    }
}

/// A note's text as blocks (heading or not, text): blank lines part them, a Markdown heading
/// (`## …`) is a heading, emphasis marks are dropped (the page shows plain text).
fn paragraphs(text: &str) -> Vec<(bool, String)> {
    text.split("\n\n")
        .map(|block| {
            let heading = block.trim_start().starts_with('#');
            let text = block
                .lines()
                .map(|l| l.trim().trim_start_matches('#').trim().replace("**", ""))
                .collect::<Vec<_>>()
                .join(" ");
            (heading, text)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect()
}

/// The fields of the process's other forms whose values the case already holds, read-only.
fn context_facts(def: &ProcessDef, element: &str, vars: &Map<String, Json>) -> Vec<Fact> {
    let own: Vec<&str> = form_of(def, element).iter().map(|f| f.id.as_str()).collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut facts = Vec::new();
    for node in &def.process().nodes {
        let NodeKind::Task(task) = &node.kind else { continue };
        for field in task.form.iter().filter(|f| f.kind != FieldKind::Note) {
            if own.contains(&field.id.as_str()) || !seen.insert(field.id.clone()) {
                continue;
            }
            match vars.get(&field.id) {
                None | Some(Json::Null) => {}
                Some(Json::String(s)) if s.is_empty() => {}
                Some(value) => facts.push(Fact { label: field.label.clone(), value: shown(value, field) }),
            }
        }
    }
    facts
}

/// Decodes a posted form against the task's fields: the variables, and the fields that cannot
/// be read (numbers).
fn decode(form: &[FormField], posted: &Posted) -> (Map<String, Json>, BTreeMap<String, String>) {
    let mut vars = Map::new();
    let mut errors = BTreeMap::new();
    for field in form.iter().filter(|f| !f.readonly && f.kind != FieldKind::Note) {
        let text = posted.iter().find(|(k, _)| *k == field.id).map(|(_, v)| v.trim()).unwrap_or("");
        let value = match field.kind {
            FieldKind::Boolean => Some(Json::Bool(text == "true")),
            FieldKind::Checklist => Some(Json::Array(
                posted.iter().filter(|(k, _)| *k == field.id).map(|(_, v)| Json::from(v.as_str())).collect(),
            )),
            _ if text.is_empty() => None,
            FieldKind::Number => {
                let normal = text.replace(' ', "").replace(',', ".");
                if let Ok(i) = normal.parse::<i64>() {
                    Some(Json::from(i))
                } else if let Some(n) = normal.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                    Some(Json::Number(n))
                } else {
                    errors.insert(field.id.clone(), "Введите число, например 12 или 3,5.".to_string());
                    None
                }
            }
            _ => Some(Json::String(text.to_string())),
        };
        if let Some(v) = value {
            vars.insert(field.id.clone(), v);
        }
    }
    (vars, errors)
}

/// The engine's message about a field, without the field's name (it stands next to it).
fn field_message(message: &str) -> String {
    if message.ends_with("обязательно") {
        return "Заполните это поле: оно обязательно.".into();
    }
    match message.split_once("): ожидается ") {
        Some((_, expected)) => format!("Ожидается {expected}."),
        None => message.to_string(),
    }
}

/// What the page says besides the stored state: posted values, field errors, an alert.
#[derive(Debug, Default)]
struct Feedback {
    values: Option<Posted>,
    errors: BTreeMap<String, String>,
    alert: Option<String>,
}

fn not_found(user: &WebUser) -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Задача не найдена",
        "Такой задачи нет или она вам недоступна: она не назначена вам и не предложена вашим группам.",
        Some(user),
    )
}

/// The API's message of an error, for the page.
fn api_message(e: &ApiError) -> String {
    match e {
        ApiError::Forbidden(m) | ApiError::Conflict(m) | ApiError::BadRequest(m) | ApiError::Unavailable(m) => {
            m.clone()
        }
        ApiError::NotFound(_, m) => m.clone(),
        ApiError::Validation { detail, .. } => detail.clone(),
        other => other.kind().1.to_string(),
    }
}

/// The task, when the user may see it by the rule the API keeps (`crate::access`): offered to
/// them or done by them, or of an instance they see; otherwise the not-found page.
async fn load_task(state: &AppState, user: &WebUser, id: &str) -> Result<TaskRow, Response> {
    match crate::http::tasks::load_visible(state, &CurrentUser(user.user.clone()), id).await {
        Ok(task) => Ok(task),
        Err(ApiError::NotFound(..)) => Err(not_found(user)),
        Err(e) => Err(server_error(&api_message(&e))),
    }
}

async fn show(state: &AppState, user: &WebUser, id: &str, status: StatusCode, feedback: Feedback) -> Response {
    let task = match load_task(state, user, id).await {
        Ok(task) => task,
        Err(page) => return page,
    };
    match build(state, user, &task, status, feedback).await {
        Ok(page) => page,
        Err(e) => server_error(&e),
    }
}

async fn build(
    state: &AppState,
    user: &WebUser,
    task: &TaskRow,
    status: StatusCode,
    feedback: Feedback,
) -> Result<Response, String> {
    let store = state.runtime.store();
    let instance =
        store.instance(&task.instance_id).await.map_err(|e| e.to_string())?.ok_or("the task's instance is gone")?;
    let def = state.runtime.definition(&instance.definition_key, instance.version).await.map_err(|e| e.to_string())?;
    let now = state.runtime.now();
    let tz = def.tz;
    let facts = facts(state, std::slice::from_ref(task), now).await.map_err(|e| e.to_string())?.remove(0);
    let vars = instance.state.vars(ROOT).cloned().unwrap_or_default();
    let users = store.users().await.map_err(|e| e.to_string())?;
    let names = format::names(&users);
    let name_of = |login: &str| names.get(login).copied().unwrap_or(login).to_string();

    let fields: Vec<FieldView> = form_of(&def, &task.element_id)
        .iter()
        .map(|f| {
            let stored = vars.get(&f.id).filter(|v| !v.is_null()).or(f.default.as_ref());
            let (value, values) = match &feedback.values {
                Some(posted) if !f.readonly => {
                    let mut mine = posted.iter().filter(|(k, _)| *k == f.id).map(|(_, v)| v.clone());
                    let first = mine.next().unwrap_or_default();
                    let values = std::iter::once(first.clone()).chain(mine).filter(|v| !v.is_empty()).collect();
                    (first, values)
                }
                _ => {
                    let values = match stored {
                        Some(Json::Array(items)) => {
                            items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect()
                        }
                        _ => Vec::new(),
                    };
                    (stored.map(|v| input_value(v, f.kind)).unwrap_or_default(), values)
                }
            };
            let note = f.kind == FieldKind::Note;
            FieldView {
                id: f.id.clone(),
                label: f.label.clone(),
                kind: kind_name(f.kind),
                required: f.required && !f.readonly,
                hint: if note { None } else { hint_of(f) },
                options: f.options.clone(),
                value,
                values,
                readonly: f.readonly && !note,
                shown: stored.map(|v| shown(v, f)).filter(|s| !s.is_empty()),
                paragraphs: if note { paragraphs(f.hint.as_deref().unwrap_or("")) } else { Vec::new() },
                error: feedback.errors.get(&f.id).cloned(),
            }
        })
        .collect();
    let mine = task.assignee.as_deref() == Some(user.user.login.as_str());
    let open = task.state == "open";
    // What this person may do here (the API decides; the page offers only that): take the task
    // when it is offered to them (admins too), hand it over or take it back when they oversee
    // the process (admins, its owners).
    let admin = user.user.in_group(crate::access::ADMINS);
    let may_take = admin || CurrentUser(user.user.clone()).may_see(task);
    let oversees = admin || crate::access::owns(&user.user, &def);
    let members: Vec<(String, String)> = users
        .iter()
        .filter(|u| !u.disabled && task.candidate_groups.iter().any(|g| u.in_group(g)))
        .map(|u| (u.login.clone(), u.name.clone().unwrap_or_else(|| u.login.clone())))
        .collect();
    let group_names = store.group_names().await.map_err(|e| e.to_string())?;
    let timeline = super::instance::timeline(state, user, &task.instance_id, &def, &name_of, &group_names).await?;
    let row = super::inbox::Row::build(task, &facts, tz);
    Ok(render(
        status,
        "task.html",
        context! {
            title => &row.name,
            user_name => user.display_name(),
            csrf => &user.csrf,
            task => Serde(&row),
            open,
            mine,
            may_take,
            oversees,
            assignee => task.assignee.as_deref().map(&name_of),
            groups => format::groups(task.candidate_groups.iter().map(String::as_str), &group_names),
            completed => task.completed_at.map(|t| format::date_time(t, tz)),
            completed_by => task.completed_by.as_deref().map(&name_of),
            fields => Serde(&fields),
            context_facts => Serde(&context_facts(&def, &task.element_id, &vars)),
            members => Serde(&members),
            timeline => Serde(&timeline),
            alert => feedback.alert,
            has_errors => !feedback.errors.is_empty(),
        },
    ))
}

pub async fn page(State(state): State<AppState>, user: WebUser, Path(id): Path<String>) -> Response {
    show(&state, &user, &id, StatusCode::OK, Feedback::default()).await
}

fn csrf_ok(state: &AppState, headers: &HeaderMap, user: &WebUser, posted: &Posted) -> bool {
    let token = posted.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str()).unwrap_or("");
    !cross_site(state, headers) && same_token(token, &user.csrf)
}

/// After an action: back to the task page, or the page again with the API's message.
async fn after(state: &AppState, user: &WebUser, id: &str, result: Result<(), ApiError>, done: &str) -> Response {
    match result {
        Ok(()) => Redirect::to(done).into_response(),
        Err(ApiError::Internal(cause)) => server_error(&cause),
        Err(e) => {
            let alert = Some(api_message(&e));
            show(state, user, id, e.status(), Feedback { alert, ..Feedback::default() }).await
        }
    }
}

/// A posted action on a task: the CSRF check, then `action` as the signed-in user, then the
/// page of its outcome (`done` on success).
async fn act<Fut>(
    state: &AppState,
    headers: &HeaderMap,
    user: &WebUser,
    posted: &Posted,
    id: &str,
    done: &str,
    action: impl FnOnce(CurrentUser) -> Fut,
) -> Response
where
    Fut: std::future::Future<Output = Result<(), ApiError>>,
{
    if !csrf_ok(state, headers, user, posted) {
        return csrf_refused();
    }
    let result = action(CurrentUser(user.user.clone())).await;
    after(state, user, id, result, done).await
}

pub async fn claim(
    State(state): State<AppState>,
    headers: HeaderMap,
    address: ClientAddress,
    user: WebUser,
    Path(id): Path<String>,
    Form(posted): Form<Posted>,
) -> Response {
    let done = format!("/tasks/{id}");
    let actor = address.actor(&user.user.login);
    act(&state, &headers, &user, &posted, &id, &done, |me| async {
        crate::http::tasks::claim(State(state.clone()), me, actor, Path(id.clone())).await.map(|_| ())
    })
    .await
}

pub async fn unclaim(
    State(state): State<AppState>,
    headers: HeaderMap,
    address: ClientAddress,
    user: WebUser,
    Path(id): Path<String>,
    Form(posted): Form<Posted>,
) -> Response {
    let actor = address.actor(&user.user.login);
    act(&state, &headers, &user, &posted, &id, "/?done=unclaimed", |me| async {
        crate::http::tasks::unclaim(State(state.clone()), me, actor, Path(id.clone())).await.map(|_| ())
    })
    .await
}

pub async fn assign(
    State(state): State<AppState>,
    headers: HeaderMap,
    address: ClientAddress,
    user: WebUser,
    Path(id): Path<String>,
    Form(posted): Form<Posted>,
) -> Response {
    let to = posted.iter().find(|(k, _)| k == "user").map(|(_, v)| v.clone()).unwrap_or_default();
    let done = format!("/tasks/{id}");
    let actor = address.actor(&user.user.login);
    act(&state, &headers, &user, &posted, &id, &done, |me| async {
        let request = ApiJson(AssignRequest { user: to });
        crate::http::tasks::assign(State(state.clone()), me, actor, Path(id.clone()), request).await.map(|_| ())
    })
    .await
}

pub async fn complete(
    State(state): State<AppState>,
    headers: HeaderMap,
    address: ClientAddress,
    user: WebUser,
    Path(id): Path<String>,
    Form(posted): Form<Posted>,
) -> Response {
    if !csrf_ok(&state, &headers, &user, &posted) {
        return csrf_refused();
    }
    let task = match load_task(&state, &user, &id).await {
        Ok(task) => task,
        Err(page) => return page,
    };
    let def = match state.runtime.store().instance(&task.instance_id).await {
        Ok(Some(i)) => match state.runtime.definition(&i.definition_key, i.version).await {
            Ok(def) => def,
            Err(e) => return server_error(&e.to_string()),
        },
        Ok(None) => return not_found(&user),
        Err(e) => return server_error(&e.to_string()),
    };
    let (variables, errors) = decode(form_of(&def, &task.element_id), &posted);
    let invalid = |errors, alert| Feedback { values: Some(posted.clone()), errors, alert: Some(alert) };
    if !errors.is_empty() {
        let alert = "Форма заполнена неверно: исправьте отмеченные поля.".to_string();
        return show(&state, &user, &id, StatusCode::UNPROCESSABLE_ENTITY, invalid(errors, alert)).await;
    }
    let me = CurrentUser(user.user.clone());
    let actor = address.actor(&user.user.login);
    let request = ApiJson(CompleteRequest { variables });
    match crate::http::tasks::complete(State(state.clone()), me, actor, Path(id.clone()), request).await {
        Ok(_) => Redirect::to("/?done=completed").into_response(),
        Err(ApiError::Validation { errors, .. }) => {
            let by_field: BTreeMap<String, String> =
                errors.iter().filter_map(|e| Some((e.field.clone()?, field_message(&e.message)))).collect();
            let alert = "Форма заполнена неверно: исправьте отмеченные поля.".to_string();
            show(&state, &user, &id, StatusCode::UNPROCESSABLE_ENTITY, invalid(by_field, alert)).await
        }
        Err(e) => after(&state, &user, &id, Err(e), "").await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(id: &str, kind: FieldKind) -> FormField {
        FormField {
            id: id.into(),
            label: id.into(),
            kind,
            required: false,
            hint: None,
            options: vec![],
            readonly: false,
            default: None,
            rules: Default::default(),
            pos: Default::default(),
        }
    }

    #[test]
    fn posted_forms_decode_by_field_kind() {
        let form = [field("n", FieldKind::Number), field("b", FieldKind::Boolean), field("t", FieldKind::Text)];
        let posted: Posted =
            vec![("n".into(), "3,5".into()), ("t".into(), "  текст ".into()), ("x".into(), "1".into())];
        let (vars, errors) = decode(&form, &posted);
        assert!(errors.is_empty());
        assert_eq!(Json::Object(vars), serde_json::json!({"n": 3.5, "b": false, "t": "текст"}));
        let (_, errors) = decode(&form, &vec![("n".into(), "много".into())]);
        assert_eq!(errors["n"], "Введите число, например 12 или 3,5.");
    }

    #[test]
    fn checklists_decode_to_lists_and_read_only_fields_are_not_submitted() {
        let mut shown = field("who", FieldKind::Text);
        shown.readonly = true;
        let form = [field("ch", FieldKind::Checklist), shown, field("note", FieldKind::Note)];
        let posted: Posted =
            vec![("ch".into(), "a".into()), ("who".into(), "подмена".into()), ("ch".into(), "b".into())];
        let (vars, errors) = decode(&form, &posted);
        assert!(errors.is_empty());
        assert_eq!(Json::Object(vars), serde_json::json!({"ch": ["a", "b"]}));
    }

    #[test]
    fn rules_are_told_in_the_hint() {
        let mut f = field("c", FieldKind::Textarea);
        f.hint = Some("Коротко.".into());
        f.rules.min_length = Some(5);
        f.rules.max_length = Some(21);
        assert_eq!(hint_of(&f).as_deref(), Some("Коротко. От 5 до 21 символа."));
        let mut n = field("n", FieldKind::Number);
        n.rules.min = Some(1.5);
        assert_eq!(hint_of(&n).as_deref(), Some("Число не меньше 1,5."));
        assert_eq!(
            paragraphs("# Заголовок\n\nПервый **абзац**\nпродолжение"),
            [(true, "Заголовок".to_string()), (false, "Первый абзац продолжение".to_string())]
        );
    }

    #[test]
    fn engine_messages_lose_the_field_name() {
        assert_eq!(field_message("поле «Решение» (decision) обязательно"), "Заполните это поле: оно обязательно.");
        assert_eq!(
            field_message("поле «Адрес» (replyEmail): ожидается адрес электронной почты"),
            "Ожидается адрес электронной почты."
        );
    }
}
