//! Users, groups and API tokens. All but `/api/me` need the `admins` group.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{ADMINS, CurrentUser};
use super::error::{ApiError, FieldError, Problem, Resource};
use super::extract::ApiJson;
use super::views::UserView;
use crate::accounts::{self, hash_token, new_token};
use reglament_store::auth::UserRecord;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserList {
    pub items: Vec<UserView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    pub login: String,
    pub email: String,
    pub name: Option<String>,
    /// Groups; candidate groups of user tasks in the models refer to these names.
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// What the token is for (shown to admins only).
    pub label: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub login: String,
    /// The token; shown once, stored only as a hash.
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupView {
    pub name: String,
    pub members: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupList {
    pub items: Vec<GroupView>,
    pub next_cursor: Option<String>,
}

fn admin(user: &CurrentUser) -> Result<(), ApiError> {
    user.require_group(ADMINS, "Управлять пользователями и токенами")
}

/// The signed-in user.
#[utoipa::path(
    get, path = "/api/me", operation_id = "getCurrentUser", summary = "Текущий пользователь", tag = "users",
    responses((status = 200, body = UserView), (status = 401, body = Problem, content_type = "application/problem+json"))
)]
pub async fn me(State(state): State<AppState>, user: CurrentUser) -> Json<UserView> {
    Json(UserView::build(&user.0, state.runtime.default_tz()))
}

/// All users (admins only).
#[utoipa::path(
    get, path = "/api/users", operation_id = "listUsers", summary = "Список пользователей", tag = "users",
    responses(
        (status = 200, body = UserList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(State(state): State<AppState>, user: CurrentUser) -> Result<Json<UserList>, ApiError> {
    admin(&user)?;
    let tz = state.runtime.default_tz();
    let items = state.runtime.store().users().await?.iter().map(|u| UserView::build(u, tz)).collect();
    Ok(Json(UserList { items, next_cursor: None }))
}

/// Creates a user (admins only); a token is issued separately.
#[utoipa::path(
    post, path = "/api/users", operation_id = "createUser", summary = "Создать пользователя", tag = "users",
    request_body = NewUserRequest,
    responses(
        (status = 201, body = UserView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Такой логин уже есть", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(req): ApiJson<NewUserRequest>,
) -> Result<Response, ApiError> {
    admin(&user)?;
    let record = UserRecord {
        login: req.login,
        name: req.name,
        email: req.email,
        groups: req.groups,
        disabled: false,
        created_at: Utc::now(),
    };
    let record = accounts::normalise(record).map_err(|(field, message)| ApiError::Validation {
        detail: message.clone(),
        errors: vec![FieldError { field: Some(field.into()), message }],
    })?;
    if !state.runtime.store().create_user(&record).await? {
        return Err(ApiError::Conflict(format!("Пользователь `{}` уже есть", record.login)));
    }
    let location = format!("{}/api/users/{}", state.base_url, record.login);
    let body = UserView::build(&record, state.runtime.default_tz());
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(body)).into_response())
}

/// Issues a new API token for a user (admins only).
#[utoipa::path(
    post, path = "/api/users/{login}/tokens", operation_id = "createToken", summary = "Выпустить API-токен", tag = "users",
    params(("login" = String, Path, description = "Логин")),
    request_body = NewTokenRequest,
    responses(
        (status = 201, body = TokenResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/user-not-found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_token(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(login): Path<String>,
    ApiJson(req): ApiJson<NewTokenRequest>,
) -> Result<(StatusCode, Json<TokenResponse>), ApiError> {
    admin(&user)?;
    let store = state.runtime.store();
    if store.user(&login).await?.is_none() {
        return Err(ApiError::NotFound(Resource::User, format!("Пользователя `{login}` нет")));
    }
    let token = new_token().map_err(ApiError::internal)?;
    store.insert_token(&hash_token(&token), &login, req.label.as_deref(), Utc::now()).await?;
    Ok((StatusCode::CREATED, Json(TokenResponse { login, token })))
}

/// Groups with their member counts (admins only).
#[utoipa::path(
    get, path = "/api/groups", operation_id = "listGroups", summary = "Группы пользователей", tag = "users",
    responses(
        (status = 200, body = GroupList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn groups(State(state): State<AppState>, user: CurrentUser) -> Result<Json<GroupList>, ApiError> {
    admin(&user)?;
    let items =
        state.runtime.store().groups().await?.into_iter().map(|(name, members)| GroupView { name, members }).collect();
    Ok(Json(GroupList { items, next_cursor: None }))
}
