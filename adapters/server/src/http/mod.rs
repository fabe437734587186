//! The HTTP API of DESIGN §6 (axum): definitions, process instances, the task inbox, messages,
//! the process registry, the SLA report, users and tokens; `/openapi.json`, `/docs`,
//! `/metrics`, `/healthz`.
//!
//! [`router`] builds everything; serving it is the caller's business (`reglament serve`).
//! Handlers are thin: extract, check the caller's rights, call the driver or the store, map the
//! result. Every failure is an [`error::ApiError`] (`application/problem+json`).
//!
//! Every route is declared once, with its OpenAPI description (`#[utoipa::path]`), and mounted
//! through `utoipa_axum`, so the document and the router cannot disagree; what the layers
//! answer is added to every operation by [`layer_responses`].
//!
//! Layers, outermost first: request log (tower-http `TraceLayer`), HTTP metrics, request
//! timeout; then for `/api`: authentication, `Idempotency-Key`, body size limits.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod definitions;
pub mod directory;
pub mod error;
pub mod extract;
pub mod headers;
pub mod history;
pub mod hygiene;
pub mod idempotency;
pub mod incidents;
pub mod instances;
pub mod layer_responses;
pub mod messages;
pub mod metrics;
pub mod ops;
pub mod passwords;
pub mod registry;
pub mod reports;
pub mod task_facts;
pub mod tasks;
pub mod v2;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use chrono::{NaiveDate, TimeZone};
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::error::ApiError;
use self::views::{DefinitionView, TaskView};
use crate::driver::Runtime;
use reglament_store::Ts;

/// Limits on requests.
#[derive(Debug, Clone)]
pub struct Limits {
    /// JSON bodies.
    pub json_body: usize,
    /// BPMN documents (`POST /api/definitions`).
    pub bpmn_body: usize,
    /// A request that takes longer is answered 503 `/problems/timeout`.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { json_body: 2 << 20, bpmn_body: 16 << 20, request_timeout: Duration::from_secs(30) }
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub runtime: Runtime,
    /// The public base URL (no trailing slash), for links in responses.
    pub base_url: String,
    pub limits: Limits,
    pub metrics: Arc<metrics::HttpMetrics>,
    /// Unknown tokens per client address (guessing is slowed down).
    pub token_failures: Arc<auth::TokenFailures>,
}

impl AppState {
    pub fn new(runtime: Runtime, base_url: impl Into<String>) -> AppState {
        let base_url = base_url.into().trim_end_matches('/').to_string();
        AppState {
            runtime,
            base_url,
            limits: Limits::default(),
            metrics: Arc::default(),
            token_failures: Arc::default(),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> AppState {
        self.limits = limits;
        self
    }
}

/// A page of definitions.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionList {
    pub items: Vec<DefinitionView>,
    pub next_cursor: Option<String>,
}

/// A page of tasks; pass `nextCursor` as `cursor` for the next one (null: no more).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskList {
    pub items: Vec<TaskView>,
    pub next_cursor: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Reglament API",
        description = "Исполнение регламентов: определения процессов, экземпляры, задачи сотрудников, \
                       сообщения, реестр процессов, отчёт о соблюдении сроков. Ошибки — application/problem+json. \
                       Ответ 503 на запись означает, что команда не выполнена и не будет выполнена позже: \
                       её можно безопасно повторить.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "definitions", description = "Определения процессов (BPMN)"),
        (name = "process-instances", description = "Экземпляры процессов"),
        (name = "tasks", description = "Задачи сотрудников"),
        (name = "messages", description = "Сообщения процессам"),
        (name = "registry", description = "Реестр процессов"),
        (name = "reports", description = "Отчёты"),
        (name = "users", description = "Пользователи, группы, API-токены"),
        (name = "operations", description = "Эксплуатация: здоровье, метрики, описание API"),
        (name = "jobs", description = "Внешние обработчики заданий: пути и форма Camunda 8 Orchestration Cluster REST API под /v2"),
    ),
    components(schemas(error::Problem, error::FieldError, error::ModelError))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        openapi.security =
            Some(vec![utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

/// The API alone (no web pages).
pub fn router(state: AppState) -> axum::Router {
    router_with(state, axum::Router::new())
}

/// The whole application: the API with `pages` (the web pages' routes, `web::router`) under
/// the same layers — request log, metrics, security headers, timeout — and the problem+json
/// fallbacks.
pub fn router_with(state: AppState, pages: axum::Router<AppState>) -> axum::Router {
    let json_routes = OpenApiRouter::new()
        .routes(routes!(definitions::list))
        .routes(routes!(definitions::get))
        .routes(routes!(definitions::xml))
        .routes(routes!(definitions::versions))
        .routes(routes!(definitions::form))
        .routes(routes!(instances::start, instances::search))
        .routes(routes!(instances::get, instances::cancel))
        .routes(routes!(instances::history))
        .routes(routes!(incidents::list))
        .routes(routes!(incidents::open))
        .routes(routes!(incidents::resolve))
        .routes(routes!(tasks::inbox))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::claim))
        .routes(routes!(tasks::unclaim))
        .routes(routes!(tasks::assign))
        .routes(routes!(tasks::complete))
        .routes(routes!(messages::publish))
        .routes(routes!(registry::registry))
        .routes(routes!(reports::sla))
        .routes(routes!(admin::me))
        .routes(routes!(admin::list, admin::create))
        .routes(routes!(admin::create_token, admin::list_tokens))
        .routes(routes!(admin::revoke_token))
        .routes(routes!(admin::disable))
        .routes(routes!(admin::enable))
        .routes(routes!(passwords::set))
        .routes(routes!(admin::groups))
        .routes(routes!(directory::get, directory::replace))
        .routes(routes!(clock::get, clock::change))
        .routes(routes!(audit::list))
        .routes(routes!(v2::activate))
        .routes(routes!(v2::complete))
        .routes(routes!(v2::fail))
        .routes(routes!(v2::throw_error))
        .routes(routes!(v2::update))
        .routes(routes!(v2::topology))
        .routes(routes!(v2::create_instance))
        .routes(routes!(v2::publish))
        .routes(routes!(v2::correlate))
        .layer(DefaultBodyLimit::max(state.limits.json_body));
    let bpmn_routes =
        OpenApiRouter::new().routes(routes!(definitions::deploy)).layer(DefaultBodyLimit::max(state.limits.bpmn_body));
    let api = json_routes
        .merge(bpmn_routes)
        .layer(from_fn_with_state(state.clone(), idempotency::idempotency))
        .layer(from_fn_with_state(state.clone(), auth::authenticate));
    let public = OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        .routes(routes!(ops::docs));
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(api).merge(public).split_for_parts();
    layer_responses::add(&mut doc);
    let doc = Arc::new(serde_json::to_value(&doc).expect("the OpenAPI document serialises"));
    router
        .merge(pages)
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(Extension(doc))
        .layer(from_fn_with_state(state.clone(), timeout))
        .layer(axum::middleware::from_fn(headers::secure))
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO))
                .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .with_state(state)
}

/// Answers 503 `/problems/timeout` when a request takes longer than the limit. (tower-http's
/// `TimeoutLayer` answers with an empty body; every error here is a problem document.)
async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    tokio::time::timeout(state.limits.request_timeout, next.run(req)).await.map_err(|_| ApiError::Timeout)
}

/// An instant in a query: RFC 3339, or a date (its start, in `tz`).
pub(crate) fn parse_instant(text: &str, param: &str, tz: chrono_tz::Tz) -> Result<Ts, ApiError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(t) = tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight")).earliest()
    {
        return Ok(t.to_utc());
    }
    Err(ApiError::BadRequest(format!("{param}: `{text}` — не дата и время RFC 3339 и не дата ГГГГ-ММ-ДД")))
}
