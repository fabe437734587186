//! The organisation directory: people, units with their heads, roles (see
//! [`reglament_store::directory`]). Anyone signed in reads it; admins replace it.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::auth::{ADMINS, CurrentUser};
use super::error::{ApiError, FieldError, Problem};
use super::extract::ApiJson;
use reglament_store::directory::{Directory, Person};

/// The directory with its people (the enabled users). Addresses are personal data (152-FZ):
/// admins see every person's, others their own and those of the people of their units.
#[utoipa::path(
    get, path = "/api/directory", operation_id = "getDirectory", summary = "Справочник организации", tag = "users",
    responses(
        (status = 200, body = Directory),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Directory>, ApiError> {
    let mut directory = read(&state).await?;
    if !user.0.in_group(ADMINS) {
        let me = user.login();
        let mine =
            |u: &reglament_store::directory::Unit| u.head.as_deref() == Some(me) || u.members.iter().any(|m| m == me);
        let colleagues: std::collections::BTreeSet<&str> = directory
            .units
            .iter()
            .filter(|u| mine(u))
            .flat_map(|u| u.members.iter().map(String::as_str).chain(u.head.as_deref()))
            .chain([me])
            .collect();
        let hidden: Vec<usize> = directory
            .people
            .iter()
            .enumerate()
            .filter(|(_, p)| !colleagues.contains(p.login.as_str()))
            .map(|(i, _)| i)
            .collect();
        for i in hidden {
            directory.people[i].email.clear();
        }
    }
    Ok(Json(directory))
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
    // Loading a directory disables the people it no longer lists: not the admin loading it.
    let me = user.login();
    if !directory.people.iter().any(|p| p.login == me) && state.runtime.store().in_directory(me).await? {
        let known = state.runtime.store().users().await?.into_iter().map(|u| u.login).collect();
        let mut errors: Vec<FieldError> =
            directory.problems(&known).into_iter().map(|message| FieldError { field: None, message }).collect();
        errors.push(FieldError {
            field: Some("people".into()),
            message: format!(
                "в справочнике нет вас (`{me}`): загрузка отключила бы вашу учётную запись; добавьте себя в people"
            ),
        });
        return Err(ApiError::Validation {
            detail: format!("Справочник не загружен: ошибок — {}", errors.len()),
            errors,
        });
    }
    let disabled = match state.runtime.store().load_directory_reporting(&directory, state.runtime.now()).await? {
        Ok(disabled) => disabled,
        Err(problems) => {
            return Err(ApiError::Validation {
                detail: format!("Справочник не загружен: ошибок — {}", problems.len()),
                errors: problems.into_iter().map(|message| FieldError { field: None, message }).collect(),
            });
        }
    };
    if !disabled.is_empty() {
        tracing::warn!(?disabled, by = user.login(), "people no longer in the directory are disabled");
    }
    let mut details = serde_json::to_value(&directory).unwrap_or_default();
    details["disabled"] = serde_json::json!(disabled);
    actor.record(&state, "directory.replace", None, details).await;
    Ok(Json(read(&state).await?))
}
