//! Security headers on every response, set only where a handler did not set its own:
//! `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`, `Referrer-Policy: same-origin`;
//! API answers (`/api`, `/v2`) also get `Cache-Control: no-store` (they carry personal data
//! and tokens, which no shared or browser cache may keep) and a `Content-Security-Policy` that
//! lets nothing run, since JSON is never a page.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

pub async fn secure(req: Request, next: Next) -> Response {
    let api = {
        let path = req.uri().path();
        path == "/api" || path.starts_with("/api/") || path.starts_with("/v2/")
    };
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "same-origin");
    if api {
        set(header::CACHE_CONTROL, "no-store");
        set(header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'");
    }
    response
}
