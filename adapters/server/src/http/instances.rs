//! Process instances: start, inspect, history, cancel.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use reglament_engine::runtime::Command;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{ADMINS, CurrentUser, PROCESS_OWNERS};
use super::error::{ApiError, Problem, Resource};
use super::extract::{ApiJson, ApiQuery};
use super::history::{self, HistoryItem};
use super::views::InstanceView;
use crate::driver::{Op, Outcome};
use reglament_store::InstanceRow;
use reglament_store::codec;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartRequest {
    /// The definition key (BPMN process id); the latest version starts.
    pub definition_key: String,
    pub business_key: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, serde_json::Value>,
}

/// The audit history of an instance in the trace vocabulary (`at`, `event`, `element`, …).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryList {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<HistoryItem>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CancelQuery {
    /// Why the instance is cancelled (recorded in the history).
    pub reason: Option<String>,
}

/// An instance `user` may see ([`crate::access`]), with its definition; any other answers as an
/// instance that does not exist, so ids leak nothing.
pub(super) async fn load_visible(
    state: &AppState,
    user: &CurrentUser,
    id: &str,
) -> Result<(InstanceRow, std::sync::Arc<reglament_engine::runtime::ProcessDef>), ApiError> {
    let row = load(state, id).await?;
    let def = state.runtime.definition(&row.definition_key, row.version).await?;
    if crate::access::may_see_instance(state.runtime.store(), &user.0, &row, &def).await? {
        Ok((row, def))
    } else {
        Err(ApiError::NotFound(Resource::Instance, format!("Экземпляра процесса `{id}` нет")))
    }
}

/// Changing an instance (cancel, resolve an incident): admins, and the owners of its process.
pub(super) fn require_owner(
    user: &CurrentUser,
    def: &reglament_engine::runtime::ProcessDef,
    what: &str,
) -> Result<(), ApiError> {
    if user.0.in_group(ADMINS) || crate::access::owns(&user.0, def) {
        Ok(())
    } else if user.0.in_group(PROCESS_OWNERS) {
        Err(ApiError::Forbidden(format!(
            "{what} могут администраторы и владельцы процесса `{}`; владельцы названы в его модели (reglament:settings owners)",
            def.key()
        )))
    } else {
        Err(ApiError::Forbidden(format!("{what} могут только участники групп `{PROCESS_OWNERS}` и `{ADMINS}`")))
    }
}

pub(super) async fn load(state: &AppState, id: &str) -> Result<InstanceRow, ApiError> {
    // An id with a control character cannot exist (and PostgreSQL refuses NUL in a query).
    if !super::hygiene::plausible_id(id) {
        return Err(ApiError::NotFound(
            Resource::Instance,
            format!("Экземпляра процесса `{id}` нет", id = id.escape_debug()),
        ));
    }
    state
        .runtime
        .store()
        .instance(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(Resource::Instance, format!("Экземпляра процесса `{id}` нет")))
}

async fn view(state: &AppState, row: &InstanceRow) -> Result<InstanceView, ApiError> {
    let def = state.runtime.definition(&row.definition_key, row.version).await?;
    Ok(InstanceView::build(row, &def, state.runtime.env(), state.runtime.now(), &state.base_url))
}

/// Whether `user` may start `key`: anyone, unless the process names its starters
/// (`reglament:settings starters`); then their members, the process's owners and admins.
async fn may_start(state: &AppState, user: &CurrentUser, key: &str) -> Result<(), ApiError> {
    let Some(version) = state.runtime.store().latest_version(key).await? else {
        return Ok(()); // the command answers 404 for an unknown key
    };
    let def = state.runtime.definition(key, version).await?;
    let starters = &def.process().settings.starters;
    if starters.is_empty()
        || starters.iter().any(|g| user.0.in_group(g))
        || user.0.in_group(crate::access::ADMINS)
        || crate::access::owns(&user.0, &def)
    {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "Процесс «{}» запускают только участники групп: {}",
        def.process().name.as_deref().unwrap_or(key),
        starters.join(", ")
    )))
}

/// A start by a person, whichever route asks (`/api` or `/v2`): the input checks (refusals name
/// the route's field for the key), the starters rule, and the audited command. Answers the new
/// instance's id and version.
pub(crate) async fn start_as(
    state: &AppState,
    user: &CurrentUser,
    actor: &super::audit::Actor,
    (key_field, key): (&str, String),
    business_key: Option<String>,
    variables: serde_json::Map<String, serde_json::Value>,
    via: Option<&str>,
) -> Result<(String, i64), ApiError> {
    super::hygiene::Check::default()
        .key(key_field, &key, true)
        .key("businessKey", business_key.as_deref().unwrap_or(""), false)
        .variable_names("variables", &variables)
        .done()?;
    may_start(state, user, &key).await?;
    let mut details = serde_json::json!({"businessKey": business_key, "variables": variables});
    if let Some(via) = via {
        details["via"] = via.into();
    }
    let op = Op::Start {
        definition: key.clone(),
        business_key,
        variables,
        start_event: None,
        by: Some(user.login().to_string()),
    };
    match state.runtime.submit(actor.audited(op, "instance.start", Some(&key), None, details)).await? {
        Outcome::Started { id, version, .. } => Ok((id, version)),
        other => Err(ApiError::internal(format!("start answered {other:?}"))),
    }
}

/// Starts an instance of the latest version of a definition: any signed-in user, or, when the
/// process names its starters, their members (and its owners, admins).
#[utoipa::path(
    post, path = "/api/process-instances", operation_id = "startInstance", summary = "Запустить экземпляр процесса", tag = "process-instances",
    request_body = StartRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Повтор с тем же ключом вернёт тот же ответ и не запустит второй экземпляр")),
    responses(
        (status = 201, body = InstanceView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Процесс запускают только группы из reglament:settings starters", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/definition-not-found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Процесс требует единственного номера (uniqueBusinessKey), и этот номер уже занят экземпляром, названным в detail", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "/problems/unavailable: the instance was not started and will not be; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn start(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    ApiJson(req): ApiJson<StartRequest>,
) -> Result<Response, ApiError> {
    let (id, _) =
        start_as(&state, &user, &actor, ("definitionKey", req.definition_key), req.business_key, req.variables, None)
            .await?;
    let row = load(&state, &id).await?;
    let body = view(&state, &row).await?;
    let location = format!("{}/api/process-instances/{id}", state.base_url);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(body)).into_response())
}

/// An instance: state, active elements, variables, SLA deadline and working time left.
#[utoipa::path(
    get, path = "/api/process-instances/{id}", operation_id = "getInstance", summary = "Экземпляр процесса", tag = "process-instances",
    params(("id" = String, Path, description = "Идентификатор экземпляра")),
    responses(
        (status = 200, body = InstanceView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/instance-not-found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<InstanceView>, ApiError> {
    let (row, _) = load_visible(&state, &user, &id).await?;
    Ok(Json(view(&state, &row).await?))
}

/// The audit history of an instance, oldest first.
#[utoipa::path(
    get, path = "/api/process-instances/{id}/history", operation_id = "getInstanceHistory", summary = "История экземпляра", tag = "process-instances",
    params(("id" = String, Path, description = "Идентификатор экземпляра")),
    responses(
        (status = 200, body = HistoryList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn history(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<HistoryList>, ApiError> {
    let (row, def) = load_visible(&state, &user, &id).await?;
    let final_vars = row.state.vars(reglament_engine::runtime::ROOT).cloned().unwrap_or_default();
    let mut items = Vec::new();
    for (_, at, events) in state.runtime.store().history(&id).await? {
        for event in codec::decode_events(&events)? {
            items.extend(history::render(&id, &def, &event, at, &final_vars));
        }
    }
    // Who did it, from the audit log: the person who started the instance, and who completed
    // each task (the n-th completion of an element is its n-th `task.complete`).
    let query = reglament_store::audit::AuditQuery {
        instance_id: Some(id.clone()),
        action: Some("task.complete".into()),
        limit: 1_000_000,
        ..Default::default()
    };
    let mut completions: std::collections::HashMap<String, std::collections::VecDeque<String>> = Default::default();
    for r in state.runtime.store().audit(&query).await? {
        if let Some(element) = r.entry.details.get("element").and_then(|e| e.as_str()) {
            completions.entry(element.to_string()).or_default().push_back(r.entry.actor);
        }
    }
    for item in &mut items {
        let by = match item.get("event").and_then(|e| e.as_str()) {
            Some("instance_started") => row.started_by.clone(),
            Some("task_completed") => item
                .get("element")
                .and_then(|e| e.as_str())
                .and_then(|element| completions.get_mut(element))
                .and_then(|q| q.pop_front()),
            _ => None,
        };
        if let Some(by) = by {
            item.insert("by".into(), serde_json::Value::String(by));
        }
    }
    Ok(Json(HistoryList { items, next_cursor: None }))
}

/// Cancels an active instance (its open tasks close as cancelled). Needs `process-owners` or
/// `admins`.
#[utoipa::path(
    delete, path = "/api/process-instances/{id}", operation_id = "cancelInstance", summary = "Отменить экземпляр", tag = "process-instances",
    params(("id" = String, Path, description = "Идентификатор экземпляра"), CancelQuery),
    responses(
        (status = 200, body = InstanceView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Экземпляр уже завершён или отменён", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<CancelQuery>,
) -> Result<Json<InstanceView>, ApiError> {
    let (_, def) = load_visible(&state, &user, &id).await?;
    require_owner(&user, &def, "Отменять экземпляры")?;
    let reason =
        q.reason.filter(|r| !r.trim().is_empty()).unwrap_or_else(|| format!("отменён пользователем {}", user.login()));
    let details = serde_json::json!({"reason": reason});
    let op = Op::Instance { id: id.clone(), command: Command::Cancel { reason } };
    state.runtime.submit(actor.audited(op, "instance.cancel", Some(&id), Some(&id), details)).await?;
    let row = load(&state, &id).await?;
    Ok(Json(view(&state, &row).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SearchQuery {
    /// Only instances of this process (definition key).
    pub definition_key: Option<String>,
    /// Only this version of the process.
    pub version: Option<String>,
    /// `active` (running, no incident), `incident` (running, stopped by an incident),
    /// `completed` or `cancelled`.
    pub state: Option<String>,
    /// Only the instance with this business key (request number).
    pub business_key: Option<String>,
    /// Started at or after this instant (RFC 3339, or a date: its start in the server's zone).
    pub started_after: Option<String>,
    /// Started before this instant (RFC 3339, or a date: its start in the server's zone).
    pub started_before: Option<String>,
    /// `true`: only running instances past their SLA deadline; `false` or absent: no filter.
    pub overdue: Option<String>,
    /// `NAME:VALUE`: only instances whose top-level (root scope) variable `NAME` equals `VALUE`.
    /// `VALUE` is read as JSON when it is JSON (`amount:100`, `ok:true`, `city:"Москва"`), else
    /// as a string (`city:Москва`). Not indexed: combine it with other filters on large stores.
    pub variable: Option<String>,
    /// At most this many items (1–500, default 50).
    pub limit: Option<i64>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A process instance in search results.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSummary {
    pub id: String,
    pub definition_key: String,
    pub version: i64,
    pub business_key: Option<String>,
    /// `active`, `incident`, `completed` or `cancelled`, as in the instance itself.
    pub state: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// The SLA deadline, when the definition declares one.
    pub deadline: Option<String>,
    /// Running and past its deadline.
    pub overdue: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSearchPage {
    pub items: Vec<InstanceSummary>,
    /// Pass as `cursor` for the next page; `null` when there is none. A page may hold fewer than
    /// `limit` items (even none) while `nextCursor` is not `null`: keep going.
    pub next_cursor: Option<String>,
}

/// How many stored rows one search request reads at most before it answers with a cursor.
const SEARCH_SCAN: usize = 5_000;

/// Parses `NAME:VALUE` of the `variable` parameter.
fn variable_filter(text: &str) -> Result<(String, serde_json::Value), ApiError> {
    let Some((name, value)) = text.split_once(':').filter(|(n, _)| !n.is_empty()) else {
        return Err(ApiError::BadRequest(format!(
            "variable: `{text}` — не в виде ИМЯ:ЗНАЧЕНИЕ, например `amount:100` или `city:Москва`"
        )));
    };
    let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
    Ok((name.to_string(), value))
}

/// Parses a search cursor: `{start millis}:{id}`.
fn search_cursor(text: &str) -> Result<(i64, String), ApiError> {
    text.split_once(':')
        .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())))
        .filter(|(_, id): &(i64, String)| !id.is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "cursor: `{text}` — не курсор этого списка; передайте nextCursor предыдущей страницы"
            ))
        })
}

/// Searches the instances the caller may see ([`crate::access`]), newest first (by start, then
/// id), with keyset cursor paging.
#[utoipa::path(
    get, path = "/api/process-instances", operation_id = "searchProcessInstances", summary = "Поиск экземпляров", tag = "process-instances",
    params(SearchQuery),
    responses(
        (status = 200, body = InstanceSearchPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<InstanceSearchPage>, ApiError> {
    for (name, value) in [
        ("definitionKey", &q.definition_key),
        ("businessKey", &q.business_key),
        ("variable", &q.variable),
        ("cursor", &q.cursor),
    ] {
        super::hygiene::query_filter(name, value.as_deref())?;
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit — от 1 до 500, а не {limit}")));
    }
    let version = match q.version.as_deref() {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 => Some(n),
            _ => return Err(ApiError::BadRequest(format!("version: `{v}` — не номер версии (целое от 1)"))),
        },
    };
    let (status, incident) = match q.state.as_deref() {
        None => (None, None),
        Some("active") => (Some("active"), Some(false)),
        Some("incident") => (Some("active"), Some(true)),
        Some(s @ ("completed" | "cancelled")) => (Some(s), None),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "state: `{other}` — не состояние; допустимы active, incident, completed, cancelled"
            )));
        }
    };
    let overdue = match q.overdue.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::BadRequest(format!("overdue: `{other}` — допустимы true и false"))),
    };
    let tz = state.runtime.default_tz();
    let started_after = q.started_after.as_deref().map(|t| super::parse_instant(t, "startedAfter", tz)).transpose()?;
    let started_before =
        q.started_before.as_deref().map(|t| super::parse_instant(t, "startedBefore", tz)).transpose()?;
    let variable = q.variable.as_deref().map(variable_filter).transpose()?;
    let mut after = q.cursor.as_deref().map(search_cursor).transpose()?;
    let now = state.runtime.now();
    let filter = reglament_store::InstanceSearch {
        definition_key: q.definition_key.clone(),
        version,
        status: status.map(str::to_string),
        incident,
        business_key: q.business_key.clone(),
        started_after,
        started_before,
        overdue_at: overdue.then_some(now),
    };
    let store = state.runtime.store();
    let limit = usize::try_from(limit).expect("1..=500");
    let mut items = Vec::new();
    let mut scanned = 0;
    let mut next_cursor = None;
    // Scan newest first, keeping the instances this person may see, until a page is full (or
    // the scan budget is spent: then the cursor says where to go on).
    'scan: loop {
        let batch = if variable.is_some() { 500 } else { (limit + 1).max(50) };
        let rows = store.search_instances(&filter, after.clone(), i64::try_from(batch).expect("small")).await?;
        let exhausted = rows.len() < batch;
        for row in rows {
            if items.len() == limit {
                next_cursor = after.as_ref().map(|(at, id)| format!("{at}:{id}"));
                break 'scan;
            }
            after = Some((row.started_at.timestamp_millis(), row.id.clone()));
            scanned += 1;
            if let Some((name, value)) = &variable
                && row.state.vars(reglament_engine::runtime::ROOT).and_then(|v| v.get(name)) != Some(value)
            {
                continue;
            }
            let def = state.runtime.definition(&row.definition_key, row.version).await?;
            if !crate::access::may_see_instance(store, &user.0, &row, &def).await? {
                continue;
            }
            items.push(summary(&row, &def, now));
        }
        if exhausted {
            break;
        }
        if scanned >= SEARCH_SCAN {
            next_cursor = after.as_ref().map(|(at, id)| format!("{at}:{id}"));
            break;
        }
    }
    Ok(Json(InstanceSearchPage { items, next_cursor }))
}

fn summary(
    row: &InstanceRow,
    def: &reglament_engine::runtime::ProcessDef,
    now: reglament_store::Ts,
) -> InstanceSummary {
    use reglament_engine::runtime::Status;
    let s = &row.state;
    let state = super::views::state_name(s);
    let fmt = |t| super::views::fmt_ts(t, def.tz);
    InstanceSummary {
        id: row.id.clone(),
        definition_key: row.definition_key.clone(),
        version: row.version,
        business_key: row.business_key.clone(),
        state: state.to_string(),
        started_at: fmt(row.started_at),
        ended_at: row.ended_at.map(fmt),
        deadline: row.deadline.map(fmt),
        overdue: s.status == Status::Active && row.deadline.is_some_and(|d| d < now),
    }
}
