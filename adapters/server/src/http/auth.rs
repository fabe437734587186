//! Authentication (`Authorization: Bearer <token>`) and the access rules of DESIGN §6.
//!
//! Tokens are `rgl_` + 32 random bytes from the OS (base64url); only their SHA-256 is stored.
//! The middleware resolves the token once per request and leaves the user in the request's
//! extensions, where handlers (through [`CurrentUser`]) and the idempotency layer find it.
//! Every request looks its token up in the database (one indexed read), so a disabled user, a
//! revoked or expired token, or changed groups take effect at once on every node.

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

/// Unknown tokens presented per client address: past [`FREE_TOKEN_FAILURES`] in a row, each
/// further refusal is answered later and later (100 ms doubling up to 5 s), so guessing from
/// one address slows to a crawl while valid tokens are never held up. Per node, in memory.
#[derive(Debug, Default)]
pub struct TokenFailures {
    by_address: Mutex<HashMap<String, (u32, Instant)>>,
    /// Refused tokens since start, for /metrics.
    pub total: std::sync::atomic::AtomicU64,
}

/// Unknown tokens an address may present before its refusals are slowed down.
pub const FREE_TOKEN_FAILURES: u32 = 20;
/// An address's count is forgotten after this long without a failure.
const TOKEN_FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
const TOKEN_FAILURE_ADDRESSES: usize = 100_000;

impl TokenFailures {
    /// Counts a refusal from `address`; answers how long to hold the answer back.
    pub fn failed(&self, address: &str) -> Duration {
        self.total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.by_address.lock().expect("token failures");
        if map.len() >= TOKEN_FAILURE_ADDRESSES {
            map.retain(|_, (_, at)| at.elapsed() < TOKEN_FAILURE_WINDOW);
            if map.len() >= TOKEN_FAILURE_ADDRESSES {
                map.clear();
            }
        }
        let entry = map.entry(address.to_string()).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= TOKEN_FAILURE_WINDOW {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = Instant::now();
        let n = entry.0;
        if n == FREE_TOKEN_FAILURES + 1 {
            tracing::warn!(
                address,
                failures = n,
                "repeated unknown API tokens from one address; answers are slowed down"
            );
        }
        delay_after(n)
    }

    /// A valid token from `address`: its count starts again.
    pub fn succeeded(&self, address: &str) {
        self.by_address.lock().expect("token failures").remove(address);
    }
}

/// How long the `n`-th refusal in a row from one address is held back.
fn delay_after(n: u32) -> Duration {
    if n <= FREE_TOKEN_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (n - FREE_TOKEN_FAILURES - 1).min(6);
    (Duration::from_millis(100) * 2u32.pow(doublings)).min(Duration::from_secs(5))
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

/// The address of requests that come without a connection (the router called in-process, as
/// tests and embedders do): their refusals are counted, never held back (there is no client to
/// slow down).
const IN_PROCESS: &str = "in-process";

/// Resolves the bearer token; no token or an unknown one is 401.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let header = req.headers().get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized(
            "Нет заголовка `Authorization: Bearer <токен>`; токен выдаёт `reglament users add`".into(),
        )
    })?;
    let address = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| IN_PROCESS.into());
    let value = header.to_str().unwrap_or("");
    // HTTP Basic (login and password), as Camunda's clients send it to the /v2 job API.
    if let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) {
        let user = basic_user(&state, encoded.trim()).await?;
        let Some(user) = user else {
            let hold = state.token_failures.failed(&address);
            if !hold.is_zero() && address != IN_PROCESS {
                tokio::time::sleep(hold).await;
            }
            return Err(ApiError::Unauthorized("Неверный логин или пароль, либо пользователь отключён".into()));
        };
        state.token_failures.succeeded(&address);
        req.extensions_mut().insert(CurrentUser(user));
        return Ok(next.run(req).await);
    }
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "Заголовок Authorization должен иметь вид `Bearer <токен>` (или `Basic …` с логином и паролем)".into(),
            )
        })?;
    let hash = hash_token(token);
    let user = match state.runtime.store().user_by_token_hash(&hash, chrono::Utc::now()).await? {
        Some(user) => {
            state.token_failures.succeeded(&address);
            user
        }
        None => {
            let hold = state.token_failures.failed(&address);
            if !hold.is_zero() && address != IN_PROCESS {
                tokio::time::sleep(hold).await;
            }
            return Err(ApiError::Unauthorized(
                "Токен недействителен, отозван или истёк, либо пользователь отключён; новый выдаёт администратор"
                    .into(),
            ));
        }
    };
    req.extensions_mut().insert(CurrentUser(user));
    Ok(next.run(req).await)
}

/// The enabled user of `Basic` credentials (base64 of `login:password`), if they match.
async fn basic_user(state: &AppState, encoded: &str) -> Result<Option<UserRecord>, ApiError> {
    use base64::Engine;
    let Some((login, password)) = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.split_once(':').map(|(l, p)| (l.to_string(), p.to_string())))
    else {
        return Ok(None);
    };
    if !super::hygiene::plausible_id(&login) {
        return Ok(None);
    }
    let store = state.runtime.store();
    if !crate::identity::verify_password(store, &login, &password).await? {
        return Ok(None);
    }
    Ok(store.user(&login).await?.filter(|u| !u.disabled))
}

#[cfg(test)]
mod failure_tests {
    use super::*;

    #[test]
    fn refusals_past_the_free_ones_are_held_back_longer_and_longer() {
        let f = TokenFailures::default();
        for _ in 0..FREE_TOKEN_FAILURES {
            assert_eq!(f.failed("10.0.0.1"), Duration::ZERO);
        }
        assert_eq!(f.failed("10.0.0.1"), Duration::from_millis(100));
        assert_eq!(f.failed("10.0.0.1"), Duration::from_millis(200));
        assert_eq!(f.failed("10.0.0.2"), Duration::ZERO, "per address");
        for _ in 0..20 {
            f.failed("10.0.0.1");
        }
        assert_eq!(f.failed("10.0.0.1"), Duration::from_secs(5), "at most 5 s");
        f.succeeded("10.0.0.1");
        assert_eq!(f.failed("10.0.0.1"), Duration::ZERO, "a valid token starts the count again");
        assert_eq!(f.total.load(std::sync::atomic::Ordering::Relaxed), FREE_TOKEN_FAILURES as u64 + 25);
    }
}
