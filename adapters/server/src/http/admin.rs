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
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewTokenRequest {
    /// What the token is for (shown to admins only).
    pub label: Option<String>,
    /// When the token stops working (RFC 3339, in the future); absent: it works until revoked.
    #[schema(format = DateTime, example = "2027-03-31T18:00:00+03:00")]
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    pub login: String,
    /// The token; shown once, stored only as a hash.
    pub token: String,
    /// When it stops working; absent: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
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
    actor: super::audit::Actor,
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
    let details = serde_json::json!({"email": record.email, "name": record.name, "groups": record.groups});
    actor.record(&state, "user.create", Some(&record.login), details).await;
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
        (status = 422, description = "Метка с управляющими символами или длиннее 255 символов", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_token(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    Path(login): Path<String>,
    ApiJson(req): ApiJson<NewTokenRequest>,
) -> Result<(StatusCode, Json<TokenResponse>), ApiError> {
    admin(&user)?;
    existing(&state, &login).await?;
    if let Some(label) = &req.label {
        super::hygiene::Check::default().key("label", label, false).done()?;
    }
    let now = Utc::now();
    let expires = req.expires_at.as_deref().map(|text| token_expiry(text, now)).transpose()?;
    let token = new_token().map_err(ApiError::internal)?;
    state.runtime.store().insert_token(&hash_token(&token), &login, req.label.as_deref(), now, expires).await?;
    let expires_at = expires.map(|t| super::views::fmt_ts(t, state.runtime.default_tz()));
    actor
        .record(&state, "token.create", Some(&login), serde_json::json!({"label": req.label, "expiresAt": expires_at}))
        .await;
    Ok((StatusCode::CREATED, Json(TokenResponse { login, token, expires_at })))
}

/// A token's expiry as asked: an RFC 3339 instant after `now`.
fn token_expiry(text: &str, now: chrono::DateTime<Utc>) -> Result<chrono::DateTime<Utc>, ApiError> {
    let refuse = |message: String| ApiError::Validation {
        detail: message.clone(),
        errors: vec![FieldError { field: Some("expiresAt".into()), message }],
    };
    let at = chrono::DateTime::parse_from_rfc3339(text.trim())
        .map_err(|_| {
            refuse(format!("`{}` — не момент времени RFC 3339; пример: 2027-03-31T18:00:00+03:00", text.escape_debug()))
        })?
        .with_timezone(&Utc);
    if at <= now {
        return Err(refuse("Срок действия токена должен быть в будущем".into()));
    }
    Ok(at)
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

/// An API token as admins see it (never the token itself).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    /// The token's id: the first 16 hex digits of its SHA-256; `DELETE …/tokens/{tokenId}` revokes it.
    pub id: String,
    pub label: Option<String>,
    pub created_at: String,
    /// When it stops working; absent: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// True once the expiry has passed (the token is refused; revoke it to tidy up).
    pub expired: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenList {
    pub items: Vec<TokenView>,
    pub next_cursor: Option<String>,
}

async fn existing(state: &AppState, login: &str) -> Result<UserRecord, ApiError> {
    if !super::hygiene::plausible_id(login) {
        return Err(ApiError::NotFound(Resource::User, format!("Пользователя `{}` нет", login.escape_debug())));
    }
    state
        .runtime
        .store()
        .user(login)
        .await?
        .ok_or_else(|| ApiError::NotFound(Resource::User, format!("Пользователя `{login}` нет")))
}

/// Disables or enables a user: a disabled user's tokens and sessions are refused at once on
/// every node; their sessions end.
async fn set_disabled(
    state: &AppState,
    user: &CurrentUser,
    login: &str,
    disabled: bool,
) -> Result<Json<UserView>, ApiError> {
    admin(user)?;
    let mut record = existing(state, login).await?;
    if disabled && login == user.login() {
        return Err(ApiError::Conflict("Нельзя отключить самого себя: попросите другого администратора".into()));
    }
    let store = state.runtime.store();
    store.set_disabled(login, disabled).await?;
    if disabled {
        store.delete_sessions_of(login).await?;
    }
    tracing::warn!(login, by = user.login(), disabled, "user access changed");
    record.disabled = disabled;
    Ok(Json(UserView::build(&record, state.runtime.default_tz())))
}

/// Disables a user (admins only): their API tokens and sessions stop working; tasks and
/// history stay.
#[utoipa::path(
    post, path = "/api/users/{login}/disable", operation_id = "disableUser", summary = "Отключить пользователя", tag = "users",
    params(("login" = String, Path, description = "Логин")),
    responses(
        (status = 200, body = UserView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/user-not-found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Администратор отключает сам себя", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn disable(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    Path(login): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let view = set_disabled(&state, &user, &login, true).await?;
    actor.record(&state, "user.disable", Some(&login), serde_json::json!({})).await;
    Ok(view)
}

/// Enables a disabled user again (admins only); their tokens work again, a new sign-in is needed.
#[utoipa::path(
    post, path = "/api/users/{login}/enable", operation_id = "enableUser", summary = "Включить пользователя", tag = "users",
    params(("login" = String, Path, description = "Логин")),
    responses(
        (status = 200, body = UserView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/user-not-found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn enable(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    Path(login): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let view = set_disabled(&state, &user, &login, false).await?;
    actor.record(&state, "user.enable", Some(&login), serde_json::json!({})).await;
    Ok(view)
}

/// A user's API tokens (admins only): ids, labels, when issued — never the tokens.
#[utoipa::path(
    get, path = "/api/users/{login}/tokens", operation_id = "listTokens", summary = "API-токены пользователя", tag = "users",
    params(("login" = String, Path, description = "Логин")),
    responses(
        (status = 200, body = TokenList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/user-not-found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(login): Path<String>,
) -> Result<Json<TokenList>, ApiError> {
    admin(&user)?;
    existing(&state, &login).await?;
    let tz = state.runtime.default_tz();
    let now = Utc::now();
    let items = state
        .runtime
        .store()
        .tokens_of(&login)
        .await?
        .into_iter()
        .map(|t| TokenView {
            id: t.id,
            label: t.label,
            created_at: super::views::fmt_ts(t.created_at, tz),
            expires_at: t.expires_at.map(|e| super::views::fmt_ts(e, tz)),
            expired: t.expires_at.is_some_and(|e| e <= now),
        })
        .collect();
    Ok(Json(TokenList { items, next_cursor: None }))
}

/// Revokes one API token of a user (admins only); it is refused at once on every node.
#[utoipa::path(
    delete, path = "/api/users/{login}/tokens/{tokenId}", operation_id = "revokeToken", summary = "Отозвать API-токен", tag = "users",
    params(("login" = String, Path, description = "Логин"), ("tokenId" = String, Path, description = "Идентификатор токена из списка токенов")),
    responses(
        (status = 204, description = "Токен отозван"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Нет такого пользователя или токена", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    Path((login, token_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    admin(&user)?;
    existing(&state, &login).await?;
    if !state.runtime.store().revoke_token(&login, &token_id).await? {
        return Err(ApiError::NotFound(
            Resource::User,
            format!(
                "У пользователя `{login}` нет токена `{}`; список: GET /api/users/{login}/tokens",
                token_id.escape_debug()
            ),
        ));
    }
    tracing::warn!(login, token = token_id, by = user.login(), "API token revoked");
    actor.record(&state, "token.revoke", Some(&login), serde_json::json!({"tokenId": token_id})).await;
    Ok(StatusCode::NO_CONTENT)
}
