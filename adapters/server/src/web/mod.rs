//! The web pages of DESIGN §6 ("Web pages"), in Russian, on the API's port: sign-in, the inbox,
//! the task page, the instance page. Server-rendered (minijinja templates compiled into the binary), forms that work
//! without JavaScript; `static/app.js` and `static/app.css` are the project's own, small, and
//! embedded with `include_str!`. No third-party browser code.
//!
//! Handlers are thin like the API's: they read the session ([`session::WebUser`]), call the same
//! store and driver operations as the API handlers (often the API handler itself), and render a
//! template. Every state-changing form carries the session's CSRF token ([`session`]).

pub mod format;

pub mod inbox;
pub mod instance;
pub mod login;
pub mod pages;
pub mod session;
pub mod task;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::http::AppState;

const APP_CSS: &str = include_str!("static/app.css");
const APP_JS: &str = include_str!("static/app.js");

/// The page routes; `serve` puts them under the API's layers with [`crate::http::router_with`].
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(inbox::page))
        .route("/login", get(login::show).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/instances/{id}", get(instance::page))
        .route("/tasks/{id}", get(task::page))
        .route("/tasks/{id}/claim", post(task::claim))
        .route("/tasks/{id}/unclaim", post(task::unclaim))
        .route("/tasks/{id}/assign", post(task::assign))
        .route("/tasks/{id}/complete", post(task::complete))
        .route("/static/app.css", get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }))
        .route("/static/app.js", get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
        ],
        body,
    )
        .into_response()
}
