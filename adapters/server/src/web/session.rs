//! Browser sessions and CSRF protection.
//!
//! The session cookie `rgl_session` carries 32 random bytes; the database keeps only their
//! SHA-256 ([`crate::accounts::hash_token`]), with the login, the provider, the session's CSRF
//! token and the expiry. The cookie is `HttpOnly`, `SameSite=Lax`, `Path=/`, with `Max-Age`,
//! and `Secure` when the server's base URL is https or a proxy says the request came over https.
//!
//! Every state-changing form carries a hidden `csrf` field. With a session it must equal the
//! session's token; the sign-in form (no session yet) compares it with the `rgl_csrf` cookie
//! set when the form was shown (double submit). Besides, a POST whose `Origin` (or, failing
//! that, `Sec-Fetch-Site`) says another site sent it is refused whatever it carries.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;

use crate::accounts::hash_token;
use crate::http::AppState;
use crate::identity::Provider;
use reglament_store::Ts;
use reglament_store::auth::UserRecord;

pub const SESSION_COOKIE: &str = "rgl_session";
pub const CSRF_COOKIE: &str = "rgl_csrf";
/// How long a session lasts after sign-in (a working day with margin).
pub const SESSION_TTL: chrono::Duration = chrono::Duration::hours(12);

/// 32 random bytes from the operating system, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system gives random bytes");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of a cookie of the request.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether cookies must be `Secure`: the public base URL is https, or the proxy in front says so.
pub fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.base_url.starts_with("https://")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value.
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"))
        .expect("cookie values are base64url")
}

/// The signed-in person of a page request.
#[derive(Debug, Clone)]
pub struct WebUser {
    pub user: UserRecord,
    pub csrf: String,
    /// The stored hash of the session cookie.
    pub session_hash: String,
    pub provider: String,
}

impl WebUser {
    /// The name to show: the person's name, else the login.
    pub fn display_name(&self) -> &str {
        self.user.name.as_deref().unwrap_or(&self.user.login)
    }
}

/// Opens a session for a person a provider has identified; answers the `Set-Cookie` value.
pub async fn open(
    state: &AppState,
    headers: &HeaderMap,
    login: &str,
    provider: Provider,
    now: Ts,
) -> Result<HeaderValue, reglament_store::StoreError> {
    let token = random_token();
    let csrf = random_token();
    state
        .runtime
        .store()
        .create_session(&hash_token(&token), login, provider.as_str(), &csrf, now, now + SESSION_TTL)
        .await?;
    Ok(set_cookie(SESSION_COOKIE, &token, SESSION_TTL.num_seconds(), secure(state, headers)))
}

/// The path and query a page request was for, to come back to after sign-in.
fn here(parts: &Parts) -> String {
    parts.uri.path_and_query().map(|pq| pq.as_str().to_string()).unwrap_or_else(|| "/".into())
}

/// `/login?next=…` for a path of this server.
pub fn login_redirect(next: &str) -> Response {
    let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    Redirect::to(&format!("/login?next={next}")).into_response()
}

/// A `next` that stays on this server: an absolute path, not `//host` nor `/\host`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") && !n.contains(['\r', '\n']) => {
            n.to_string()
        }
        _ => "/".into(),
    }
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    /// No session, or an expired one: 303 to the sign-in page, back here afterwards (for a
    /// POST, back to the page the form was on).
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(user) = parts.extensions.get::<WebUser>() {
            return Ok(user.clone());
        }
        let back = if parts.method == axum::http::Method::GET {
            here(parts)
        } else {
            parts
                .uri
                .path()
                .rsplit_once('/')
                .map(|(page, _)| page.to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or("/".into())
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else { return Err(login_redirect(&back)) };
        let hash = hash_token(token);
        let now = state.runtime.now();
        match state.runtime.store().session(&hash, now).await {
            Ok(Some(s)) => {
                let user = WebUser { user: s.user, csrf: s.csrf, session_hash: hash, provider: s.provider };
                parts.extensions.insert(user.clone());
                Ok(user)
            }
            Ok(None) => Err(login_redirect(&back)),
            Err(e) => Err(super::pages::server_error(&e.to_string())),
        }
    }
}

/// Whether the request was sent by a page of another site (refused for every POST).
pub fn cross_site(state: &AppState, headers: &HeaderMap) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        if origin == "null" {
            return true;
        }
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
        return origin_host != host && origin.trim_end_matches('/') != state.base_url;
    }
    headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|s| s == "cross-site")
}

/// Compares two tokens in time that does not depend on where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next(Some("/tasks/a.1?x=1")), "/tasks/a.1?x=1");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; rgl_session=abc; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("abc", "ab"));
    }
}
