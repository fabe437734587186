//! `Idempotency-Key` on writes (the IETF httpapi draft's rules): the first request with a key
//! runs and its response is stored per user; a retry with the same key and the same request
//! gets the stored response again (marked `Idempotency-Replayed: true`) and changes nothing; the
//! same key with a different request is 422; a retry while the first is still running is 409.
//!
//! The request runs in its own task, so a client that hangs up or a request timeout cannot
//! leave a started instance without its recorded response. Server errors (5xx) are not stored:
//! the key is released and a retry runs again.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AppState;
use super::auth::CurrentUser;
use super::error::ApiError;
use reglament_store::auth::IdempotencyStart;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED: &str = "idempotency-replayed";

/// The longest key taken (bytes).
pub const MAX_KEY_LEN: usize = 255;

/// The keys taken, for the OpenAPI document: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
pub fn key_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_KEY_LEN))
        .pattern(Some("^[!-~]+$"))
        .into()
}

/// What is stored for a finished request (in the `body` column).
#[derive(Serialize, Deserialize)]
struct Stored {
    /// SHA-256 of method, path and body: the same key must come with the same request.
    request: String,
    content_type: Option<String>,
    location: Option<String>,
    body: String,
}

pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let write = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    let (Some(key), Some(user), true) = (req.headers().get(HEADER), req.extensions().get::<CurrentUser>(), write)
    else {
        return Ok(next.run(req).await);
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .ok_or_else(|| {
            ApiError::BadRequest("Idempotency-Key должен быть непустой строкой ASCII до 255 символов".into())
        })?
        .to_string();
    let login = user.login().to_string();
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, state.limits.bpmn_body)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(format!("Тело запроса больше {} байт", state.limits.bpmn_body)))?;
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("").as_bytes());
    hasher.update(b"\n");
    hasher.update(&bytes);
    let fingerprint = format!("{:x}", hasher.finalize());

    let store = state.runtime.store().clone();
    let now = Utc::now();
    let abandoned_before = now - chrono::Duration::from_std(state.limits.request_timeout * 2).unwrap_or_default();
    match store.idempotency_begin(&login, &key, now, abandoned_before).await? {
        IdempotencyStart::InProgress => {
            Err(ApiError::Conflict("Запрос с этим Idempotency-Key ещё выполняется; повторите позже".into()))
        }
        IdempotencyStart::Done { status, body } => {
            let stored: Stored = serde_json::from_str(&body).map_err(ApiError::internal)?;
            if stored.request != fingerprint {
                return Err(ApiError::validation(
                    "Этот Idempotency-Key уже использован для другого запроса; возьмите новый ключ",
                ));
            }
            Ok(replay(status, stored))
        }
        IdempotencyStart::Fresh => {
            let req = Request::from_parts(parts, Body::from(bytes));
            let task = tokio::spawn(async move {
                let response = next.run(req).await;
                if response.status().is_server_error() {
                    store.idempotency_abandon(&login, &key).await?;
                    return Ok(response);
                }
                let (parts, body) = response.into_parts();
                let body = to_bytes(body, usize::MAX).await.map_err(ApiError::internal)?;
                let header_text =
                    |name| parts.headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
                let stored = Stored {
                    request: fingerprint,
                    content_type: header_text(header::CONTENT_TYPE),
                    location: header_text(header::LOCATION),
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let text = serde_json::to_string(&stored).expect("stored response serialises");
                store.idempotency_finish(&login, &key, parts.status.as_u16(), &text).await?;
                Ok::<_, ApiError>(Response::from_parts(parts, Body::from(body)))
            });
            task.await.map_err(ApiError::internal)?
        }
    }
}

fn replay(status: u16, stored: Stored) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    if let Some(ct) = stored.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    if let Some(location) = stored.location.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    response
}
