//! `/instances/{id}`: where a case stands — its process, number, state, legal deadline, open
//! tasks with links to them, and the history as a timeline of who did what and when. Emails link
//! here (`instanceUrl`); the diagram with active elements comes with the owner's workspace.
//!
//! Who may open the page: admins, auditors and process owners, and anyone who holds, held or
//! may take one of the instance's tasks; everybody else gets the same 404 as for an unknown id,
//! so ids leak nothing.

use std::collections::{HashMap, VecDeque};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use minijinja::value::Serde;
use reglament_engine::runtime::ProcessDef;
use reglament_store::InstanceRow;
use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::format;
use super::pages::{message, render, server_error};
use super::session::WebUser;
use crate::http::AppState;
use crate::http::auth::CurrentUser;

/// One moment of the timeline.
#[derive(Debug, Serialize)]
pub struct Moment {
    pub at: String,
    pub text: String,
}

/// An open task as the instance page lists it.
#[derive(Debug, Serialize)]
struct OpenTask {
    id: String,
    name: String,
    assignee: Option<String>,
    groups: String,
    due: Option<String>,
}

fn not_found(user: &WebUser) -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Дело не найдено",
        "Такого экземпляра процесса нет или он вам недоступен: вы не участвуете в нём и не владеете его процессом.",
        Some(user),
    )
}

fn state_name(row: &InstanceRow) -> &'static str {
    match (row.status.as_str(), row.incident) {
        (_, true) => "Остановлен из-за ошибки",
        ("active", _) => "Выполняется",
        ("completed", _) => "Завершён",
        ("cancelled", _) => "Отменён",
        _ => "Неизвестно",
    }
}

pub async fn page(State(state): State<AppState>, user: WebUser, Path(id): Path<String>) -> Response {
    match build(&state, &user, &id).await {
        Ok(Some(page)) => page,
        Ok(None) => not_found(&user),
        Err(e) => server_error(&e),
    }
}

async fn build(state: &AppState, user: &WebUser, id: &str) -> Result<Option<Response>, String> {
    if !crate::http::hygiene::plausible_id(id) {
        return Ok(None);
    }
    let store = state.runtime.store();
    let Some(row) = store.instance(id).await.map_err(|e| e.to_string())? else { return Ok(None) };
    let tasks = store.tasks_of_instance(id).await.map_err(|e| e.to_string())?;
    let def = state.runtime.definition(&row.definition_key, row.version).await.map_err(|e| e.to_string())?;
    // The rule of the API (crate::access): the page of an instance one may not see is a 404.
    if !crate::access::may_see(&user.user, &row, &def, &tasks) {
        return Ok(None);
    }
    let tz = def.tz;
    let users = store.users().await.map_err(|e| e.to_string())?;
    let names = format::names(&users);
    let name_of = |login: &str| names.get(login).copied().unwrap_or(login).to_string();
    let group_names = store.group_names().await.map_err(|e| e.to_string())?;
    let open: Vec<OpenTask> = tasks
        .iter()
        .filter(|t| t.state == "open")
        .map(|t| OpenTask {
            id: t.id.clone(),
            name: t.name.clone().unwrap_or_else(|| t.element_id.clone()),
            assignee: t.assignee.as_deref().map(&name_of),
            groups: format::groups(t.candidate_groups.iter().map(String::as_str), &group_names),
            due: t.due.map(|d| format::date_time(d, tz)),
        })
        .collect();
    let timeline = timeline(state, user, id, &def, &name_of, &group_names).await?;
    let process = def.process().name.clone().unwrap_or_else(|| row.definition_key.clone());
    let overdue = row.status == "active" && row.deadline.is_some_and(|d| d < state.runtime.now());
    Ok(Some(render(
        StatusCode::OK,
        "instance.html",
        context! {
            title => match &row.business_key { Some(k) => format!("{process} — {k}"), None => process.clone() },
            user_name => user.display_name(),
            csrf => &user.csrf,
            process,
            version => row.version,
            business_key => &row.business_key,
            state => state_name(&row),
            active => row.status == "active",
            started => format::date_time(row.started_at, tz),
            ended => row.ended_at.map(|t| format::date_time(t, tz)),
            deadline => row.deadline.map(|t| format::date_time(t, tz)),
            overdue,
            open => Serde(&open),
            timeline => Serde(&timeline),
        },
    )))
}

/// The instance's history in Russian: who did what and when.
pub async fn timeline(
    state: &AppState,
    user: &WebUser,
    instance_id: &str,
    def: &ProcessDef,
    name_of: &(dyn Fn(&str) -> String + Sync),
    group_names: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<Moment>, String> {
    let items = crate::http::instances::history(
        State(state.clone()),
        CurrentUser(user.user.clone()),
        Path(instance_id.to_string()),
    )
    .await
    .map_err(|e| format!("history: {e:?}"))?
    .0
    .items;
    let completed = state.runtime.store().tasks_of_instance(instance_id).await.map_err(|e| e.to_string())?;
    let mut done_by: HashMap<String, VecDeque<Option<String>>> = HashMap::new();
    for t in completed.iter().filter(|t| t.state == "completed") {
        done_by.entry(t.element_id.clone()).or_default().push_back(t.completed_by.clone());
    }
    let process = def.process();
    let element_name = |item: &Map<String, Json>| {
        let id = item.get("element").and_then(Json::as_str).unwrap_or("");
        process.node_by_id(id).and_then(|n| process.node(n).name.clone()).unwrap_or_else(|| id.to_string())
    };
    let mut out = Vec::new();
    for item in &items {
        let text = match item.get("event").and_then(Json::as_str).unwrap_or("") {
            "instance_started" => "Процесс запущен".to_string(),
            "task_created" => {
                let groups = item
                    .get("candidate_groups")
                    .and_then(Json::as_array)
                    .map(|g| format::groups(g.iter().filter_map(Json::as_str), group_names));
                match groups.filter(|g| !g.is_empty()) {
                    Some(g) => format!("Создана задача «{}» для групп: {g}", element_name(item)),
                    None => format!("Создана задача «{}»", element_name(item)),
                }
            }
            "task_completed" => {
                let element = item.get("element").and_then(Json::as_str).unwrap_or("").to_string();
                let by = done_by.get_mut(&element).and_then(|q| q.pop_front()).flatten();
                match by {
                    Some(login) => format!("{} выполнил(а) задачу «{}»", name_of(&login), element_name(item)),
                    None => format!("Выполнена задача «{}»", element_name(item)),
                }
            }
            "email_queued" => {
                let subject = item.get("subject").and_then(Json::as_str).unwrap_or("");
                format!("Отправлено письмо «{subject}»")
            }
            "timer_fired" => format!("Наступил срок: «{}»", element_name(item)),
            "message_correlated" => format!("Получено сообщение: «{}»", element_name(item)),
            "incident" => format!(
                "Ошибка на шаге «{}»: {}",
                element_name(item),
                item.get("message").and_then(Json::as_str).unwrap_or("")
            ),
            "instance_completed" => "Процесс завершён".to_string(),
            "instance_cancelled" => "Процесс отменён".to_string(),
            _ => continue,
        };
        let at = item
            .get("at")
            .and_then(Json::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| format::date_time(t.to_utc(), def.tz))
            .unwrap_or_default();
        out.push(Moment { at, text });
    }
    Ok(out)
}
