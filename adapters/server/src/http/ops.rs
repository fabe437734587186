//! For operators and clients: health, metrics, the OpenAPI document and its offline docs page.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, Problem};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`
    pub status: String,
    /// `ok`: the database answered.
    pub database: String,
}

/// Liveness and readiness: 200 when the database answers, 503 otherwise.
#[utoipa::path(
    get, path = "/healthz", operation_id = "health", summary = "Проверка работоспособности", tag = "operations", security(()),
    responses(
        (status = 200, body = Health),
        (status = 503, description = "/problems/unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    match state.runtime.store().ping().await {
        Ok(()) => Ok(Json(Health { status: "ok".into(), database: "ok".into() })),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            Err(ApiError::Unavailable("База данных не отвечает".into()))
        }
    }
}

/// Prometheus metrics (text format 0.0.4).
#[utoipa::path(
    get, path = "/metrics", operation_id = "metrics", summary = "Метрики Prometheus", tag = "operations", security(()),
    responses(
        (status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = super::metrics::render(&state).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(
    get, path = "/openapi.json", operation_id = "openapiDocument", summary = "Описание API (OpenAPI)", tag = "operations", security(()),
    responses((status = 200, description = "OpenAPI 3.1", body = Object))
)]
pub async fn openapi(Extension(doc): Extension<Arc<serde_json::Value>>) -> Json<serde_json::Value> {
    Json((*doc).clone())
}

const DOCS_HTML: &str = include_str!("docs.html");

/// A readable description of the API, rendered in the browser from `/openapi.json`; works
/// offline (no external assets).
#[utoipa::path(
    get, path = "/docs", operation_id = "docsPage", summary = "Эта страница", tag = "operations", security(()),
    responses((status = 200, description = "HTML", body = String, content_type = "text/html"))
)]
pub async fn docs() -> Html<&'static str> {
    Html(DOCS_HTML)
}
