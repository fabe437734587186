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
use axum::routing::{MethodRouter, get, post};

use crate::http::AppState;

const APP_CSS: &str = include_str!("static/app.css");
const APP_JS: &str = include_str!("static/app.js");

/// Every page route: its path, the methods it answers, its handlers. [`router`] serves
/// exactly these and [`routes`] lists them (the authorization test probes each one).
fn pages() -> Vec<(&'static str, &'static [&'static str], MethodRouter<AppState>)> {
    vec![
        ("/", &["get"], get(inbox::page)),
        ("/login", &["get", "post"], get(login::show).post(login::submit)),
        ("/logout", &["post"], post(login::logout)),
        ("/instances/{id}", &["get"], get(instance::page)),
        ("/tasks/{id}", &["get"], get(task::page)),
        ("/tasks/{id}/claim", &["post"], post(task::claim)),
        ("/tasks/{id}/unclaim", &["post"], post(task::unclaim)),
        ("/tasks/{id}/assign", &["post"], post(task::assign)),
        ("/tasks/{id}/complete", &["post"], post(task::complete)),
        ("/static/app.css", &["get"], get(|| async { asset(APP_CSS, "text/css; charset=utf-8") })),
        ("/static/app.js", &["get"], get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") })),
    ]
}

/// The page routes; `serve` puts them under the API's layers with [`crate::http::router_with`].
pub fn router() -> Router<AppState> {
    pages().into_iter().fold(Router::new(), |router, (path, _, handlers)| router.route(path, handlers))
}

/// Every page route as (method, path), e.g. `("post", "/tasks/{id}/claim")`.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    pages().into_iter().flat_map(|(path, methods, _)| methods.iter().map(move |m| (*m, path))).collect()
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
