//! `PUT /api/users/{login}/password` (admins): sets or resets a person's sign-in password for
//! the web pages; their open browser sessions end. The CLI's `reglament users password` does
//! the same on the database directly.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::{ADMINS, CurrentUser};
use super::error::{ApiError, FieldError, Problem, Resource};
use super::extract::ApiJson;
use crate::identity::{SetPasswordError, set_password};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    /// The new password: at least 8 characters, no control characters.
    pub password: String,
}

/// Sets a user's sign-in password (admins only).
#[utoipa::path(
    put, path = "/api/users/{login}/password", operation_id = "setUserPassword", summary = "Задать пароль для входа", tag = "users",
    params(("login" = String, Path, description = "Логин пользователя")),
    request_body = PasswordRequest,
    responses(
        (status = 204, description = "Пароль задан; открытые сеансы пользователя завершены"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/user-not-found", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Пароль слишком короткий или содержит недопустимые символы", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    Path(login): Path<String>,
    ApiJson(req): ApiJson<PasswordRequest>,
) -> Result<StatusCode, ApiError> {
    user.require_group(ADMINS, "Задавать пароли")?;
    let missing = || ApiError::NotFound(Resource::User, format!("Пользователя `{}` нет", login.escape_debug()));
    if !super::hygiene::plausible_id(&login) {
        return Err(missing());
    }
    match set_password(state.runtime.store(), &login, &req.password, state.runtime.now()).await {
        Ok(true) => {
            // Never the password itself.
            actor.record(&state, "user.password", Some(&login), serde_json::json!({})).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(false) => Err(missing()),
        Err(SetPasswordError::Weak(message)) => Err(ApiError::Validation {
            detail: message.clone(),
            errors: vec![FieldError { field: Some("password".into()), message }],
        }),
        Err(SetPasswordError::Store(e)) => Err(e.into()),
        Err(SetPasswordError::Hash(e)) => Err(ApiError::Internal(e)),
    }
}
