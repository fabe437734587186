//! `GET /login`, `POST /login`, `POST /logout` (DESIGN §6, "Web pages").
//!
//! Failed sign-ins are counted per login and per address; past
//! [`identity::FREE_FAILURES_PER_LOGIN`] (or the address's allowance) each attempt must wait a
//! doubling time, and an attempt made too early is refused without looking at the password.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use super::pages::{csrf_refused, render, server_error};
use super::session::{self, CSRF_COOKIE, SESSION_COOKIE, WebUser, cookie, safe_next, same_token, set_cookie};
use crate::http::AppState;
use crate::identity::{self, Provider};
use reglament_store::Ts;

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    pub next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub login: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub csrf: String,
    pub next: Option<String>,
}

/// The sign-in form with a fresh CSRF cookie.
fn form_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    login: &str,
    error: Option<&str>,
) -> Response {
    let csrf = session::random_token();
    let mut response = render(status, "login.html", context! { csrf => &csrf, next, login, error });
    let cookie = set_cookie(CSRF_COOKIE, &csrf, 3600, session::secure(state, headers));
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: Result<WebUser, Response>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if user.is_ok() {
        return Redirect::to(&next).into_response();
    }
    form_page(&state, &headers, StatusCode::OK, &next, "", None)
}

/// "через 30 секунд", "через 2 минуты", …
fn wait_text(seconds: i64) -> String {
    if seconds < 60 {
        let s = seconds.max(1);
        format!("через {s} {}", super::format::plural(s, "секунду", "секунды", "секунд"))
    } else {
        let m = (seconds + 59) / 60;
        format!("через {m} {}", super::format::plural(m, "минуту", "минуты", "минут"))
    }
}

/// The earliest time the next attempt for this login from this address may be made.
async fn locked_until(state: &AppState, login: &str, address: &str) -> Result<Option<Ts>, reglament_store::StoreError> {
    let store = state.runtime.store();
    let mut until = None;
    for (key, free) in [
        (identity::login_key(login), identity::FREE_FAILURES_PER_LOGIN),
        (identity::address_key(address), identity::FREE_FAILURES_PER_ADDRESS),
    ] {
        if let Some(f) = store.sign_in_failures(&key).await?
            && let Some(at) = identity::next_attempt_at(f.count, f.last_at, free)
        {
            until = until.max(Some(at));
        }
    }
    Ok(until)
}

pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let token_ok = cookie(&headers, CSRF_COOKIE).is_some_and(|c| same_token(c, &form.csrf));
    if session::cross_site(&state, &headers) || !token_ok {
        return csrf_refused();
    }
    let login = form.login.trim().to_string();
    if login.is_empty() || form.password.is_empty() || form.password.len() > identity::MAX_PASSWORD_BYTES {
        let error = "Введите логин и пароль.";
        return form_page(&state, &headers, StatusCode::UNPROCESSABLE_ENTITY, &next, &login, Some(error));
    }
    // A login no account can have (control characters, which PostgreSQL refuses in text) is
    // refused as such, before any lookup.
    if !crate::http::hygiene::plausible_id(&login) {
        let error = "Логин содержит недопустимые символы.";
        return form_page(&state, &headers, StatusCode::UNPROCESSABLE_ENTITY, &next, "", Some(error));
    }
    let address =
        extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_else(|| "unknown".into());
    let now = state.runtime.now();
    match locked_until(&state, &login, &address).await {
        Ok(Some(until)) if until > now => {
            let error = format!(
                "Слишком много неудачных попыток входа. Повторите {}.",
                wait_text((until - now).num_seconds() + 1)
            );
            tracing::warn!(login = %login, address = %address, "sign-in refused: too many failures");
            return form_page(&state, &headers, StatusCode::TOO_MANY_REQUESTS, &next, &login, Some(&error));
        }
        Ok(_) => {}
        Err(e) => return server_error(&e.to_string()),
    }
    let store = state.runtime.store();
    match identity::verify_password(store, &login, &form.password).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(login = %login, address = %address, "sign-in failed");
            for key in [identity::login_key(&login), identity::address_key(&address)] {
                if let Err(e) = store.record_sign_in_failure(&key, now).await {
                    return server_error(&e.to_string());
                }
            }
            let error = "Неверный логин или пароль.";
            return form_page(&state, &headers, StatusCode::UNAUTHORIZED, &next, &login, Some(error));
        }
        Err(e) => return server_error(&e.to_string()),
    }
    if let Err(e) = store.clear_sign_in_failures(&identity::login_key(&login)).await {
        return server_error(&e.to_string());
    }
    let cookie = match session::open(&state, &headers, &login, Provider::Password, now).await {
        Ok(cookie) => cookie,
        Err(e) => return server_error(&e.to_string()),
    };
    tracing::info!(login = %login, "signed in");
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(CSRF_COOKIE, "", 0, session::secure(&state, &headers)));
    response
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: WebUser,
    Form(form): Form<CsrfForm>,
) -> Response {
    if session::cross_site(&state, &headers) || !same_token(&form.csrf, &user.csrf) {
        return csrf_refused();
    }
    if let Err(e) = state.runtime.store().delete_session(&user.session_hash).await {
        return server_error(&e.to_string());
    }
    let mut response = Redirect::to("/login").into_response();
    let cleared: HeaderValue = set_cookie(SESSION_COOKIE, "", 0, session::secure(&state, &headers));
    response.headers_mut().append(header::SET_COOKIE, cleared);
    response
}
