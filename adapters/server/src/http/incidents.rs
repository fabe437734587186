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
    let process = def.process();
    let items = row
        .state
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
        .collect();
    Ok(Json(IncidentList { items, next_cursor: None }))
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
