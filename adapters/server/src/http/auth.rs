//! Authentication (`Authorization: Bearer <token>`) and the access rules of DESIGN §6.
//!
//! Tokens are `rgl_` + 32 random bytes from the OS (base64url); only their SHA-256 is stored.
//! The middleware resolves the token once per request and leaves the user in the request's
//! extensions, where handlers (through [`CurrentUser`]) and the idempotency layer find it.
//! Resolved tokens are remembered for [`TOKEN_CACHE_TTL`], so a busy client costs no lookups;
//! a change to a user's groups takes effect within that time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use crate::accounts::hash_token;

use super::AppState;
use super::error::ApiError;
use reglament_store::TaskRow;
use reglament_store::auth::UserRecord;

/// The group whose members may manage users and tokens.
pub use crate::access::ADMINS;
/// The group whose members may deploy definitions.
pub use crate::access::PROCESS_OWNERS;

/// How long a resolved token is trusted without asking the database again.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);
const TOKEN_CACHE_MAX: usize = 10_000;

/// Token hash → the user it resolved to, and when.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (UserRecord, Instant)>>,
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<UserRecord> {
        let entries = self.entries.lock().expect("token cache");
        entries.get(hash).filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL).map(|(user, _)| user.clone())
    }

    fn put(&self, hash: String, user: UserRecord) {
        let mut entries = self.entries.lock().expect("token cache");
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
            if entries.len() >= TOKEN_CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(hash, (user, Instant::now()));
    }

    /// Forgets every resolved token (groups changed).
    pub fn clear(&self) {
        self.entries.lock().expect("token cache").clear();
    }
}

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub UserRecord);

impl CurrentUser {
    pub fn login(&self) -> &str {
        &self.0.login
    }

    pub fn require_group(&self, group: &str, action: &str) -> Result<(), ApiError> {
        if self.0.in_group(group) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("{action} могут только участники группы `{group}`")))
        }
    }

    /// Whether the task is the user's: assigned to them, or offered to them or to one of their
    /// groups; an unassigned task with no candidates is everyone's (DESIGN §6, as in Camunda).
    pub fn may_see(&self, task: &TaskRow) -> bool {
        crate::access::may_see_task(&self.0, task)
    }

    pub fn require_task(&self, task: &TaskRow) -> Result<(), ApiError> {
        if self.may_see(task) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "Задача `{}` не назначена вам и не предложена вашим группам: её можно смотреть, но не выполнять",
                task.id
            )))
        }
    }

    /// Acting on a task: visible, and not claimed by someone else.
    pub fn require_task_action(&self, task: &TaskRow) -> Result<(), ApiError> {
        self.require_task(task)?;
        match task.assignee.as_deref() {
            Some(other) if other != self.login() && task.state == "open" => {
                Err(ApiError::Forbidden(format!("Задачу `{}` взял в работу другой сотрудник ({other})", task.id)))
            }
            _ => Ok(()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("Запрос без API-токена".into()))
    }
}

/// Resolves the bearer token; no token or an unknown one is 401.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let header = req.headers().get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized(
            "Нет заголовка `Authorization: Bearer <токен>`; токен выдаёт `reglament users add`".into(),
        )
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("Заголовок Authorization должен иметь вид `Bearer <токен>`".into()))?;
    let hash = hash_token(token);
    let user =
        match state.tokens.get(&hash) {
            Some(user) => user,
            None => {
                let user =
                    state.runtime.store().user_by_token_hash(&hash).await?.ok_or_else(|| {
                        ApiError::Unauthorized("Токен недействителен или пользователь отключён".into())
                    })?;
                state.tokens.put(hash, user.clone());
                user
            }
        };
    req.extensions_mut().insert(CurrentUser(user));
    Ok(next.run(req).await)
}
