//! The organisation directory: people, units with their heads, roles (see
//! [`reglament_store::directory`]). Anyone signed in reads it; admins replace it.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::auth::{ADMINS, CurrentUser};
use super::error::{ApiError, FieldError, Problem};
use super::extract::ApiJson;
use reglament_store::directory::{Directory, Person};

/// The directory with its people (the enabled users).
#[utoipa::path(
    get, path = "/api/directory", operation_id = "getDirectory", summary = "Справочник организации", tag = "users",
    responses(
        (status = 200, body = Directory),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(State(state): State<AppState>, _user: CurrentUser) -> Result<Json<Directory>, ApiError> {
    Ok(Json(read(&state).await?))
}

async fn read(state: &AppState) -> Result<Directory, ApiError> {
    let store = state.runtime.store();
    let mut directory = store.directory().await?;
    directory.people = store
        .users()
        .await?
        .into_iter()
        .filter(|u| !u.disabled)
        .map(|u| Person { login: u.login, name: u.name, email: u.email, groups: u.groups })
        .collect();
    Ok(directory)
}

/// Replaces the directory (admins only): people are created or updated, units, members and
/// roles replaced as a whole, in one transaction. Answers the directory as stored.
#[utoipa::path(
    put, path = "/api/directory", operation_id = "replaceDirectory", summary = "Заменить справочник организации",
    tag = "users",
    request_body = Directory,
    responses(
        (status = 200, body = Directory),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Справочник противоречив: каждая ошибка в errors", body = Problem,
         content_type = "application/problem+json"),
    )
)]
pub async fn replace(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    ApiJson(directory): ApiJson<Directory>,
) -> Result<Json<Directory>, ApiError> {
    user.require_group(ADMINS, "Заменять справочник организации")?;
    let problems = state.runtime.store().load_directory(&directory, state.runtime.now()).await?;
    if !problems.is_empty() {
        return Err(ApiError::Validation {
            detail: format!("Справочник не загружен: ошибок — {}", problems.len()),
            errors: problems.into_iter().map(|message| FieldError { field: None, message }).collect(),
        });
    }
    state.tokens.clear();
    let details = serde_json::to_value(&directory).unwrap_or_default();
    actor.record(&state, "directory.replace", None, details).await;
    Ok(Json(read(&state).await?))
}
