//! The page templates (minijinja, compiled into the binary) and the headers every page gets.
//!
//! Templates live in `templates/`; `.html` names are auto-escaped. Pages carry personal data,
//! so they are never cached (`Cache-Control: no-store`); the Content-Security-Policy lets them
//! load only this server's own CSS and JS and no one frame them.

use std::sync::OnceLock;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::{AutoEscape, Environment, Value, context};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("message.html", include_str!("templates/message.html")),
    ("inbox.html", include_str!("templates/inbox.html")),
    ("task.html", include_str!("templates/task.html")),
    ("instance.html", include_str!("templates/instance.html")),
    ("timeline.html", include_str!("templates/timeline.html")),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // minijinja's HTML escaping also turns `/` into `&#x2f;`; `&<>"'` are what HTML needs,
        // and links stay readable in the page source.
        env.set_formatter(|out, state, value| match (state.auto_escape(), value.as_str()) {
            (AutoEscape::Html, Some(text)) if !value.is_safe() => out
                .write_str(&escape_html(text))
                .map_err(|_| minijinja::Error::from(minijinja::ErrorKind::WriteFailure)),
            _ => minijinja::escape_formatter(out, state, value),
        });
        for (name, source) in TEMPLATES {
            env.add_template(name, source).unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        env
    })
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The headers of every HTML page.
pub fn page_headers() -> [(HeaderName, HeaderValue); 6] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::REFERRER_POLICY, HeaderValue::from_static("same-origin")),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ]
}

/// Renders a page with a status.
pub fn render(status: StatusCode, name: &str, ctx: Value) -> Response {
    match env().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => (status, page_headers(), html).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "a page cannot be rendered");
            (StatusCode::INTERNAL_SERVER_ERROR, page_headers(), FALLBACK_ERROR).into_response()
        }
    }
}

const FALLBACK_ERROR: &str = "<!doctype html><html lang=\"ru\"><meta charset=\"utf-8\"><title>Ошибка</title>\
<p>Внутренняя ошибка сервера. Повторите попытку позже; если ошибка повторится, сообщите администратору.</p></html>";

/// A page that only says something (an error, a refusal), with a link onward.
pub fn message(status: StatusCode, title: &str, text: &str, user: Option<&super::session::WebUser>) -> Response {
    render(
        status,
        "message.html",
        context! {
            title,
            text,
            user_name => user.map(|u| u.display_name().to_string()),
            csrf => user.map(|u| u.csrf.clone()),
        },
    )
}

/// 500, cause logged, never shown.
pub fn server_error(cause: &str) -> Response {
    tracing::error!(error = cause, "a page failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Внутренняя ошибка",
        "Сервер не смог выполнить запрос. Повторите попытку позже; если ошибка повторится, сообщите администратору.",
        None,
    )
}

/// 403 for a form without a valid CSRF token or sent from another site.
pub fn csrf_refused() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Запрос отклонён",
        "Форма отправлена не со страницы системы или устарела. Откройте страницу заново и повторите действие.",
        None,
    )
}
