//! Incidents of a process instance: list them, and resolve one after fixing its cause — with
//! variables, e.g. a corrected email address. Resolving retries what the incident stopped: an
//! email task runs again (its recipients and subject are evaluated anew and a new email is
//! queued), a failed condition is evaluated again, and so on.

use axum::Json;
use axum::extract::{Path, State};
use reglament_engine::runtime::{Command, Retry};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, Problem};
use super::extract::ApiJson;
use super::instances::load;
use super::views::InstanceView;
use crate::driver::Op;

/// The open incidents of an instance, as the API shows them.
fn incident_items(
    row: &reglament_store::InstanceRow,
    def: &reglament_engine::runtime::ProcessDef,
) -> Vec<IncidentItem> {
    let process = def.process();
    row.state
        .incidents
        .iter()
        .map(|i| {
            let node = process.node(i.node);
            IncidentItem {
                key: i.key,
                element_id: node.id.clone(),
                element_name: node.name.clone(),
                message: i.message.clone(),
                retry: match i.retry {
                    Retry::Activate => "activate",
                    Retry::Boundaries => "boundaries",
                    Retry::Complete => "complete",
                    Retry::Reschedule { .. } => "reschedule",
                    Retry::Quarantine => "quarantine",
                }
                .to_string(),
            }
        })
        .collect()
}

/// An open incident.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncidentItem {
    /// The incident's key inside the instance; resolve it with this.
    pub key: u32,
    pub element_id: String,
    pub element_name: Option<String>,
    pub message: String,
    /// What resolving retries: `activate` (run the element again), `boundaries`, `complete`
    /// (leave the element again) or `reschedule` (a timer cycle).
    pub retry: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncidentList {
    pub items: Vec<IncidentItem>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResolveRequest {
    /// Variables to set before the retry (where they already live, else on the instance).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, serde_json::Value>,
}

/// The open incidents of an instance.
#[utoipa::path(
    get, path = "/api/process-instances/{id}/incidents", operation_id = "listIncidents", summary = "Инциденты экземпляра", tag = "process-instances",
    params(("id" = String, Path, description = "Идентификатор экземпляра")),
    responses(
        (status = 200, body = IncidentList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/instance-not-found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<IncidentList>, ApiError> {
    let (row, def) = super::instances::load_visible(&state, &user, &id).await?;
    let items = incident_items(&row, &def);
    Ok(Json(IncidentList { items, next_cursor: None }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenIncidentsQuery {
    /// Only instances of this process.
    pub definition_key: Option<String>,
    /// At most this many instances per page (1–500, default 100), each with all its incidents.
    pub limit: Option<i64>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// An open incident of some instance.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenIncident {
    pub process_instance_id: String,
    pub definition_key: String,
    pub version: i64,
    pub business_key: Option<String>,
    #[serde(flatten)]
    pub incident: IncidentItem,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenIncidentList {
    pub items: Vec<OpenIncident>,
    pub next_cursor: Option<String>,
}

/// The open incidents across instances (DESIGN §6), of the instances the caller may see, in
/// instance order; an instance's incidents stay on one page.
#[utoipa::path(
    get, path = "/api/incidents", operation_id = "listOpenIncidents", summary = "Открытые инциденты", tag = "process-instances",
    params(OpenIncidentsQuery),
    responses(
        (status = 200, body = OpenIncidentList),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn open(
    State(state): State<AppState>,
    user: CurrentUser,
    super::extract::ApiQuery(q): super::extract::ApiQuery<OpenIncidentsQuery>,
) -> Result<Json<OpenIncidentList>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit — от 1 до 500, а не {limit}")));
    }
    for (name, value) in [("definitionKey", &q.definition_key), ("cursor", &q.cursor)] {
        super::hygiene::query_filter(name, value.as_deref())?;
    }
    let store = state.runtime.store();
    let mut after = q.cursor.clone();
    let mut items = Vec::new();
    let mut instances = 0;
    let mut next_cursor = None;
    // Scan in id order, keeping the instances this person may see, until a page is full.
    'scan: loop {
        let rows = store.instances_with_incidents(q.definition_key.as_deref(), after.as_deref(), 200).await?;
        let exhausted = rows.len() < 200;
        for row in rows {
            after = Some(row.id.clone());
            let def = state.runtime.definition(&row.definition_key, row.version).await?;
            if !crate::access::may_see_instance(store, &user.0, &row, &def).await? {
                continue;
            }
            if instances == limit {
                next_cursor = items.last().map(|i: &OpenIncident| i.process_instance_id.clone());
                break 'scan;
            }
            instances += 1;
            for incident in incident_items(&row, &def) {
                items.push(OpenIncident {
                    process_instance_id: row.id.clone(),
                    definition_key: row.definition_key.clone(),
                    version: row.version,
                    business_key: row.business_key.clone(),
                    incident,
                });
            }
        }
        if exhausted {
            break;
        }
    }
    Ok(Json(OpenIncidentList { items, next_cursor }))
}

/// Resolves an incident: sets the variables, then retries what failed. Needs `process-owners`
/// or `admins`.
#[utoipa::path(
    post, path = "/api/process-instances/{id}/incidents/{key}/resolve", operation_id = "resolveIncident", summary = "Разрешить инцидент", tag = "process-instances",
    params(
        ("id" = String, Path, description = "Идентификатор экземпляра"),
        ("key" = u32, Path, description = "Ключ инцидента (из списка инцидентов)"),
        ("Idempotency-Key" = Option<String>, Header, description = "Повтор с тем же ключом вернёт тот же ответ"),
    ),
    request_body = ResolveRequest,
    responses(
        (status = 200, body = InstanceView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/instance-not-found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Инцидента нет: уже разрешён, или экземпляр не активен", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Имя переменной с управляющими символами или значение, которое нельзя сохранить", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn resolve(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    Path((id, key)): Path<(String, String)>,
    ApiJson(req): ApiJson<ResolveRequest>,
) -> Result<Json<InstanceView>, ApiError> {
    let (row, def) = super::instances::load_visible(&state, &user, &id).await?;
    super::instances::require_owner(&user, &def, "Разрешать инциденты")?;
    super::hygiene::Check::default().variable_names("variables", &req.variables).done()?;
    let key: u32 = key.parse().map_err(|_| {
        ApiError::BadRequest(format!("Ключ инцидента `{key}` — не число; ключи есть в списке инцидентов экземпляра"))
    })?;
    if !row.state.incidents.iter().any(|i| i.key == key) {
        return Err(ApiError::Conflict(format!(
            "У экземпляра `{id}` нет открытого инцидента {key}: он уже разрешён или не существовал"
        )));
    }
    let details = serde_json::json!({"incident": key, "variables": req.variables});
    let command = Command::ResolveIncident { incident: key, variables: req.variables };
    let op = Op::Instance { id: id.clone(), command };
    state.runtime.submit(actor.audited(op, "incident.resolve", Some(&id), Some(&id), details)).await?;
    let row = load(&state, &id).await?;
    let def = state.runtime.definition(&row.definition_key, row.version).await?;
    Ok(Json(InstanceView::build(&row, &def, state.runtime.env(), state.runtime.now(), &state.base_url)))
}
