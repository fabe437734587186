//! The job API under `/v2`: the paths, JSON shapes and error statuses of Camunda 8's
//! Orchestration Cluster REST API for job workers (DESIGN §6), so workers written for Camunda run
//! against Reglament unchanged.
//!
//! - `POST /v2/jobs/activation` hands up to `maxJobsToActivate` jobs of a type to a worker for
//!   `timeout` ms. Without jobs it waits (long polling) up to `requestTimeout` ms (0: 10 s; < 0:
//!   no wait), woken on this node when a command that creates jobs commits, and at the moment
//!   the next job becomes available (due, or a lease expiring); jobs created by other nodes are
//!   seen within 2 s. A long poll ends (empty) 2 s before the server's request time limit.
//! - Each activation gives the job a fresh `jobKey`: a worker whose lease expired can no longer
//!   complete, fail or update the job (404 once another worker holds it, 409 before), so a job is
//!   done once. Camunda keeps one key per job; this is the one difference in the job calls.
//! - `completion`, `failure` (retries left; at 0 an incident; `retryBackOff` ms before it is
//!   available again), `error` (a BPMN error caught by a boundary or event subprocess, else an
//!   incident), `PATCH` (retries, timeout).
//! - `topology`, `process-instances`, `messages/publication|correlation`: what worker
//!   applications call besides; the same rules as `/api` (starters, messageSenders, audit).
//!
//! Keys are strings: jobs and messages get decimal ones as in Camunda; process instances keep
//! their ids (UUIDs), so does a job's `elementInstanceKey` (the job's id), and
//! `processDefinitionKey` is `KEY:VERSION`. Who may use the job calls: members of `job-workers`
//! and admins (a job carries its instance's variables). Tenants are not supported: `tenantId` is
//! always `<default>`; neither are tags (`[]`), business ids or root instances (null). The
//! answers carry every field Camunda's OpenAPI document requires, so Camunda's JavaScript client
//! (`@camunda8/orchestration-cluster-api`, tested in `tests/it/workers.rs`) reads them; with its
//! response validation switched on it refuses only the UUID and `KEY:VERSION` keys.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json_, json};
use utoipa::ToSchema;

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, Problem, Resource};
use super::extract::{ApiJson, OptionalJson};
use crate::driver::{Op, Outcome};
use reglament_engine::runtime::Command;

/// The group whose members may activate and answer jobs.
pub const JOB_WORKERS: &str = "job-workers";
/// Camunda's default tenant.
const TENANT: &str = "<default>";
/// The default long poll; the longest ends 2 s before the server's request time limit.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a long poll looks for jobs that other nodes created.
const CROSS_NODE_CHECK: Duration = Duration::from_secs(2);

fn require_worker(user: &CurrentUser) -> Result<(), ApiError> {
    if user.0.in_group(JOB_WORKERS) || user.0.in_group(super::auth::ADMINS) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "Задания получают и выполняют только участники группы `{JOB_WORKERS}` (учётные записи обработчиков)"
        )))
    }
}

/// A fresh key below 2^53 (JavaScript clients read numbers exactly up to there), as a string
/// (message keys; job keys are made by the store in the activating statement).
fn new_key() -> Result<String, ApiError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(((u64::from_le_bytes(bytes) >> 11).max(1)).to_string())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobActivationRequest {
    /// The job type (`zeebe:taskDefinition type`).
    #[serde(rename = "type")]
    pub job_type: String,
    /// The worker's name, shown in the job.
    #[serde(default)]
    pub worker: Option<String>,
    /// How long the worker holds the jobs, in milliseconds.
    pub timeout: i64,
    /// At most this many jobs (1–1000).
    pub max_jobs_to_activate: i64,
    /// Only these variables (default: all the job sees).
    #[serde(default)]
    pub fetch_variable: Option<Vec<String>>,
    /// Long polling: wait up to this many milliseconds for a job (0: 10 s; below 0: no wait).
    #[serde(default)]
    pub request_timeout: Option<i64>,
    /// Accepted for compatibility; only `<default>` exists.
    #[serde(default)]
    pub tenant_ids: Option<Vec<String>>,
}

/// One activated job, as Camunda gives it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivatedJobResult {
    #[serde(rename = "type")]
    pub job_type: String,
    pub process_definition_id: String,
    pub process_definition_version: i64,
    pub element_id: String,
    #[schema(value_type = Object)]
    pub custom_headers: Map<String, Json_>,
    pub worker: String,
    pub retries: i64,
    /// When the lease ends, in milliseconds since the epoch.
    pub deadline: i64,
    #[schema(value_type = Object)]
    pub variables: Map<String, Json_>,
    pub tenant_id: String,
    pub job_key: String,
    pub process_instance_key: String,
    pub process_definition_key: String,
    pub element_instance_key: String,
    pub kind: String,
    pub listener_event_type: String,
    /// The instance at the top of the call hierarchy: not tracked, null (as Camunda gives for
    /// instances from before 8.9).
    pub root_process_instance_key: Option<String>,
    /// Only for user task listener jobs, which Reglament does not hand out: always null.
    #[schema(value_type = Option<Object>)]
    pub user_task: Option<Json_>,
    /// Camunda's instance tags: none.
    pub tags: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobActivationResult {
    pub jobs: Vec<ActivatedJobResult>,
}

/// Activates jobs of a type for a worker (long polling).
#[utoipa::path(
    post, path = "/v2/jobs/activation", operation_id = "activateJobs", summary = "Получить задания обработчика", tag = "jobs",
    request_body = JobActivationRequest,
    responses(
        (status = 200, body = JobActivationResult),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn activate(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(req): ApiJson<JobActivationRequest>,
) -> Result<Json<JobActivationResult>, ApiError> {
    require_worker(&user)?;
    let bad = |m: String| Err(ApiError::BadRequest(m));
    if req.job_type.trim().is_empty() || req.job_type.chars().any(char::is_control) {
        return bad("type: укажите тип заданий (zeebe:taskDefinition type)".into());
    }
    if !(1..=1000).contains(&req.max_jobs_to_activate) {
        return bad(format!("maxJobsToActivate — от 1 до 1000, а не {}", req.max_jobs_to_activate));
    }
    if !(1..=86_400_000 * 7).contains(&req.timeout) {
        return bad(format!("timeout — от 1 мс до 7 суток, а не {}", req.timeout));
    }
    let worker = req.worker.clone().filter(|w| !w.trim().is_empty()).unwrap_or_else(|| user.login().to_string());
    if worker.chars().any(char::is_control) || worker.len() > 255 {
        return bad("worker: имя обработчика без управляющих символов, до 255 байт".into());
    }
    let wait = match req.request_timeout {
        None | Some(0) => DEFAULT_REQUEST_TIMEOUT,
        Some(ms) if ms < 0 => Duration::ZERO,
        Some(ms) => Duration::from_millis(ms as u64),
    };
    let wait = wait.min(state.limits.request_timeout.saturating_sub(Duration::from_secs(2)));
    let until = Instant::now() + wait;
    let store = state.runtime.store();
    loop {
        // Listen before looking, so a commit between the look and the wait is not missed.
        let woken = state.runtime.wakers().external_jobs.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let now = state.runtime.now();
        let lease = now + chrono::Duration::milliseconds(req.timeout);
        let jobs = store.activate_jobs(&req.job_type, &worker, now, lease, req.max_jobs_to_activate).await?;
        if !jobs.is_empty() {
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                out.push(view(&job, &worker, req.fetch_variable.as_deref()));
            }
            tracing::info!(job_type = %req.job_type, worker, jobs = out.len(), "jobs activated");
            return Ok(Json(JobActivationResult { jobs: out }));
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Json(JobActivationResult { jobs: Vec::new() }));
        }
        // Until the next job of the type becomes available here, or a commit wakes us.
        let next = match store.next_available_job(&req.job_type).await? {
            Some(at) => (at - state.runtime.now()).to_std().unwrap_or(Duration::ZERO),
            None => left,
        };
        let sleep = next.min(left).min(CROSS_NODE_CHECK).max(Duration::from_millis(5));
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

fn view(job: &reglament_store::jobs::ActivatedJob, worker: &str, fetch: Option<&[String]>) -> ActivatedJobResult {
    let payload: Json_ = serde_json::from_str(&job.payload).unwrap_or(Json_::Null);
    let custom_headers: Map<String, Json_> = payload["headers"]
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|p| Some((p[0].as_str()?.to_string(), Json_::String(p[1].as_str()?.to_string()))))
                .collect()
        })
        .unwrap_or_default();
    let mut variables = payload["variables"].as_object().cloned().unwrap_or_default();
    if let Some(names) = fetch {
        variables.retain(|name, _| names.iter().any(|n| n == name));
    }
    let key = payload["definitionKey"].as_str().unwrap_or_default().to_string();
    let version = payload["version"].as_i64().unwrap_or(0);
    ActivatedJobResult {
        job_type: job.job_type.clone(),
        process_definition_key: format!("{key}:{version}"),
        process_definition_id: key,
        process_definition_version: version,
        element_id: payload["element"].as_str().unwrap_or_default().to_string(),
        custom_headers,
        worker: worker.to_string(),
        retries: job.retries,
        deadline: job.deadline.timestamp_millis(),
        variables,
        tenant_id: TENANT.into(),
        job_key: job.activation_key.clone(),
        process_instance_key: job.instance_id.clone(),
        element_instance_key: job.id.clone(),
        kind: "BPMN_ELEMENT".into(),
        listener_event_type: "UNSPECIFIED".into(),
        root_process_instance_key: None,
        user_task: None,
        tags: Vec::new(),
    }
}

/// The job `key` names, while its worker's lease holds.
async fn held(state: &AppState, key: &str) -> Result<reglament_store::jobs::HeldJob, ApiError> {
    let missing = || {
        ApiError::NotFound(
            Resource::Job,
            format!(
                "Задания с ключом `{}` нет: оно выполнено, отменено или его взял другой обработчик",
                key.escape_debug()
            ),
        )
    };
    if !super::hygiene::plausible_id(key) {
        return Err(missing());
    }
    let job = state.runtime.store().job_by_activation(key).await?.ok_or_else(missing)?;
    if job.state != "pending" {
        return Err(missing());
    }
    match job.lease_until {
        Some(until) if until >= state.runtime.now() => Ok(job),
        _ => Err(ApiError::Conflict(format!(
            "Срок, на который обработчик взял задание `{key}`, истёк: оно снова доступно другим; получите его заново"
        ))),
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobCompletionRequest {
    /// Variables the job returns (set where the task's output mappings or scope put them).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: Option<Map<String, Json_>>,
}

/// Completes a job with its result.
#[utoipa::path(
    post, path = "/v2/jobs/{jobKey}/completion", operation_id = "completeJob", summary = "Завершить задание", tag = "jobs",
    params(("jobKey" = String, Path, description = "Ключ задания из активации")),
    request_body = JobCompletionRequest,
    responses(
        (status = 204, description = "Задание выполнено"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/job-not-found: нет такого задания или его держит другой обработчик", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Срок аренды задания истёк", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn complete(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    Path(key): Path<String>,
    OptionalJson(body): OptionalJson<JobCompletionRequest>,
) -> Result<StatusCode, ApiError> {
    require_worker(&user)?;
    let variables = body.variables.unwrap_or_default();
    super::hygiene::Check::default().variable_names("variables", &variables).done()?;
    let job = held(&state, &key).await?;
    let details = json!({"jobKey": key, "variables": variables});
    let op =
        Op::Instance { id: job.instance_id.clone(), command: Command::CompleteJob { job: job.job_key, variables } };
    submit_for_job(&state, actor.audited(op, "job.complete", Some(&job.id), Some(&job.instance_id), details), &key)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A job command; the engine's "no such job" (finished meanwhile) is the API's 404.
async fn submit_for_job(state: &AppState, op: Op, key: &str) -> Result<(), ApiError> {
    match state.runtime.submit(op).await {
        Ok(_) => Ok(()),
        Err(crate::driver::DriverError::Rejected(reglament_engine::runtime::Rejection::NoSuchJob(_))) => {
            Err(ApiError::NotFound(Resource::Job, format!("Задание `{key}` уже выполнено или отменено")))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobFailRequest {
    /// The retries left (the worker counts down); at 0 the job becomes an incident.
    #[serde(default)]
    pub retries: Option<i64>,
    pub error_message: Option<String>,
    /// Milliseconds before the job is available again.
    #[serde(default)]
    pub retry_back_off: Option<i64>,
    /// Not supported (Camunda sets them on the task): must be absent or empty.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: Option<Map<String, Json_>>,
}

/// Reports a failed attempt: retried later while retries are left, else an incident.
#[utoipa::path(
    post, path = "/v2/jobs/{jobKey}/failure", operation_id = "failJob", summary = "Сообщить о неудаче задания", tag = "jobs",
    params(("jobKey" = String, Path, description = "Ключ задания из активации")),
    request_body = JobFailRequest,
    responses(
        (status = 204, description = "Неудача учтена"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/job-not-found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Срок аренды задания истёк", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn fail(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    Path(key): Path<String>,
    OptionalJson(req): OptionalJson<JobFailRequest>,
) -> Result<StatusCode, ApiError> {
    require_worker(&user)?;
    if req.variables.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::BadRequest(
            "variables при неудаче задания не поддерживаются: верните их при завершении".into(),
        ));
    }
    let job = held(&state, &key).await?;
    let retries = req.retries.unwrap_or(job.retries - 1).max(0);
    let message =
        req.error_message.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| "обработчик сообщил о неудаче".into());
    if retries == 0 {
        let details = json!({"jobKey": key, "retries": 0, "errorMessage": message});
        let command = Command::FailJob { job: job.job_key, message: message.clone(), retryable: false };
        let op = Op::Instance { id: job.instance_id.clone(), command };
        let op = actor.audited(op, "job.fail", Some(&job.id), Some(&job.instance_id), details);
        submit_for_job(&state, op, &key).await?;
        tracing::warn!(job = %job.id, error = %message, "job failed with no retries left; the task gets an incident");
        return Ok(StatusCode::NO_CONTENT);
    }
    let back_off = req.retry_back_off.unwrap_or(0).clamp(0, 86_400_000 * 30);
    let due = state.runtime.now() + chrono::Duration::milliseconds(back_off);
    if !state.runtime.store().release_failed_job(&key, retries, due, &message).await? {
        return Err(ApiError::NotFound(Resource::Job, format!("Задание `{key}` уже выполнено или отменено")));
    }
    tracing::info!(job = %job.id, retries, back_off, error = %message, "job failed; it will be offered again");
    let details = json!({"jobKey": key, "retries": retries, "errorMessage": message, "retryBackOff": back_off});
    actor.record_on(&state, "job.fail", Some(&job.id), Some(&job.instance_id), details).await;
    if back_off == 0 {
        state.runtime.wakers().external_jobs.notify_waiters();
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobErrorRequest {
    /// The BPMN error code a boundary or event subprocess catches.
    pub error_code: String,
    #[serde(default)]
    pub error_message: Option<String>,
    /// Variables that go with the error to the catching event.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: Option<Map<String, Json_>>,
}

/// Throws a BPMN error from the job's task.
#[utoipa::path(
    post, path = "/v2/jobs/{jobKey}/error", operation_id = "throwJobError", summary = "Бросить ошибку BPMN из задания", tag = "jobs",
    params(("jobKey" = String, Path, description = "Ключ задания из активации")),
    request_body = JobErrorRequest,
    responses(
        (status = 204, description = "Ошибка передана процессу"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/job-not-found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Срок аренды задания истёк", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn throw_error(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    Path(key): Path<String>,
    ApiJson(req): ApiJson<JobErrorRequest>,
) -> Result<StatusCode, ApiError> {
    require_worker(&user)?;
    if req.error_code.trim().is_empty() || req.error_code.chars().any(char::is_control) {
        return Err(ApiError::BadRequest("errorCode: укажите код ошибки BPMN".into()));
    }
    let variables = req.variables.unwrap_or_default();
    super::hygiene::Check::default().variable_names("variables", &variables).done()?;
    let job = held(&state, &key).await?;
    let message = req.error_message.unwrap_or_default();
    let details = json!({"jobKey": key, "errorCode": req.error_code, "errorMessage": message, "variables": variables});
    let command = Command::ThrowJobError { job: job.job_key, code: req.error_code, message, variables };
    let op = Op::Instance { id: job.instance_id.clone(), command };
    submit_for_job(&state, actor.audited(op, "job.error", Some(&job.id), Some(&job.instance_id), details), &key)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobChangeset {
    pub retries: Option<i64>,
    /// A new lease: this many milliseconds from now.
    pub timeout: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct JobUpdateRequest {
    pub changeset: JobChangeset,
}

/// Changes a held job's retries or lease.
#[utoipa::path(
    patch, path = "/v2/jobs/{jobKey}", operation_id = "updateJob", summary = "Изменить задание", tag = "jobs",
    params(("jobKey" = String, Path, description = "Ключ задания из активации")),
    request_body = JobUpdateRequest,
    responses(
        (status = 204, description = "Задание изменено"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/job-not-found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Срок аренды задания истёк", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(key): Path<String>,
    ApiJson(req): ApiJson<JobUpdateRequest>,
) -> Result<StatusCode, ApiError> {
    require_worker(&user)?;
    let JobChangeset { retries, timeout } = req.changeset;
    if retries.is_some_and(|r| r < 1) || timeout.is_some_and(|t| !(1..=86_400_000 * 7).contains(&t)) {
        return Err(ApiError::BadRequest("changeset: retries не меньше 1, timeout от 1 мс до 7 суток".into()));
    }
    held(&state, &key).await?;
    let lease = timeout.map(|t| state.runtime.now() + chrono::Duration::milliseconds(t));
    if !state.runtime.store().update_held_job(&key, retries, lease).await? {
        return Err(ApiError::NotFound(Resource::Job, format!("Задание `{key}` уже выполнено или отменено")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Partition {
    pub partition_id: i64,
    pub role: String,
    pub health: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Broker {
    pub node_id: i64,
    pub host: String,
    pub port: i64,
    pub partitions: Vec<Partition>,
    pub version: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopologyResponse {
    pub brokers: Vec<Broker>,
    pub cluster_size: i64,
    pub partitions_count: i64,
    pub replication_factor: i64,
    pub gateway_version: String,
    /// No cluster id: null.
    pub cluster_id: Option<String>,
    /// The cluster's membership never changes: `-1`, Camunda's "no change yet".
    pub last_completed_change_id: String,
}

/// The cluster as a Camunda client sees it: this node, one partition.
#[utoipa::path(
    get, path = "/v2/topology", operation_id = "getTopology", summary = "Топология (для клиентов Camunda)", tag = "jobs",
    responses(
        (status = 200, body = TopologyResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn topology(State(state): State<AppState>, _user: CurrentUser) -> Json<TopologyResponse> {
    let url = url::Url::parse(&state.base_url).ok();
    let host = url.as_ref().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_else(|| "localhost".into());
    let port = url.as_ref().and_then(|u| u.port_or_known_default()).map(i64::from).unwrap_or(80);
    let version = env!("CARGO_PKG_VERSION").to_string();
    Json(TopologyResponse {
        brokers: vec![Broker {
            node_id: 0,
            host,
            port,
            partitions: vec![Partition { partition_id: 1, role: "leader".into(), health: "healthy".into() }],
            version: version.clone(),
        }],
        cluster_size: 1,
        partitions_count: 1,
        replication_factor: 1,
        gateway_version: version,
        cluster_id: None,
        last_completed_change_id: "-1".into(),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateInstanceRequest {
    /// The process id (`bpmn:process id`): its latest version starts.
    pub process_definition_id: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: Option<Map<String, Json_>>,
    /// Accepted for compatibility; only `<default>` exists.
    #[serde(default)]
    pub tenant_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateInstanceResult {
    pub process_definition_id: String,
    pub process_definition_version: i64,
    pub process_definition_key: String,
    pub process_instance_key: String,
    pub tenant_id: String,
    /// As in Camunda without `awaitCompletion` (not supported): empty.
    #[schema(value_type = Object)]
    pub variables: Map<String, Json_>,
    /// Camunda's instance tags: none.
    pub tags: Vec<String>,
    /// Camunda's business id: null (Reglament's business keys are set through `/api`).
    pub business_id: Option<String>,
}

/// Starts an instance (as `POST /api/process-instances`).
#[utoipa::path(
    post, path = "/v2/process-instances", operation_id = "createProcessInstanceV2", summary = "Запустить экземпляр (для клиентов Camunda)", tag = "jobs",
    request_body = CreateInstanceRequest,
    responses(
        (status = 200, body = CreateInstanceResult),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/definition-not-found", body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_instance(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    ApiJson(req): ApiJson<CreateInstanceRequest>,
) -> Result<Json<CreateInstanceResult>, ApiError> {
    let variables = req.variables.unwrap_or_default();
    let key = ("processDefinitionId", req.process_definition_id.clone());
    let (id, version) = super::instances::start_as(&state, &user, &actor, key, None, variables, Some("/v2")).await?;
    Ok(Json(CreateInstanceResult {
        process_definition_key: format!("{}:{version}", req.process_definition_id),
        process_definition_id: req.process_definition_id,
        process_definition_version: version,
        process_instance_key: id,
        tenant_id: TENANT.into(),
        variables: Map::new(),
        tags: Vec::new(),
        business_id: None,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageV2Request {
    pub name: String,
    #[serde(default)]
    pub correlation_key: Option<String>,
    /// Milliseconds to keep the message for a receiver that comes later (publication only).
    #[serde(default)]
    pub time_to_live: Option<i64>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: Option<Map<String, Json_>>,
    /// Accepted for compatibility.
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagePublicationResult {
    pub message_key: String,
    pub tenant_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageCorrelationResult {
    pub message_key: String,
    pub tenant_id: String,
    pub process_instance_key: String,
}

/// The message of a `/v2` call, through the rules `/api/messages` keeps.
async fn message(
    state: &AppState,
    user: &CurrentUser,
    actor: &super::audit::Actor,
    req: MessageV2Request,
    ttl_ms: i64,
) -> Result<Outcome, ApiError> {
    let message = (req.name, req.correlation_key.unwrap_or_default(), req.variables.unwrap_or_default());
    super::messages::publish_as(state, user, actor, message, |_| Ok(ttl_ms), Some("/v2")).await
}

/// Publishes a message: delivered to a waiting instance or a message start, else kept for
/// `timeToLive` ms (without one, dropped — as in Camunda, not an error).
#[utoipa::path(
    post, path = "/v2/messages/publication", operation_id = "publishMessageV2", summary = "Опубликовать сообщение (для клиентов Camunda)", tag = "jobs",
    request_body = MessageV2Request,
    responses(
        (status = 200, body = MessagePublicationResult),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn publish(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    ApiJson(req): ApiJson<MessageV2Request>,
) -> Result<Json<MessagePublicationResult>, ApiError> {
    let ttl = req.time_to_live.unwrap_or(0);
    if !(0..=86_400_000 * 365).contains(&ttl) {
        return Err(ApiError::BadRequest(format!("timeToLive — от 0 до года в миллисекундах, а не {ttl}")));
    }
    match message(&state, &user, &actor, req, ttl).await {
        Ok(_) | Err(ApiError::NotFound(Resource::Subscription, _)) => {
            Ok(Json(MessagePublicationResult { message_key: new_key()?, tenant_id: TENANT.into() }))
        }
        Err(e) => Err(e),
    }
}

/// Correlates a message to a waiting instance or a message start at once (404 when nobody
/// takes it).
#[utoipa::path(
    post, path = "/v2/messages/correlation", operation_id = "correlateMessageV2", summary = "Передать сообщение экземпляру (для клиентов Camunda)", tag = "jobs",
    request_body = MessageV2Request,
    responses(
        (status = 200, body = MessageCorrelationResult),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/no-receiver", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn correlate(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    ApiJson(req): ApiJson<MessageV2Request>,
) -> Result<Json<MessageCorrelationResult>, ApiError> {
    let id = match message(&state, &user, &actor, req, 0).await? {
        Outcome::Applied { id } | Outcome::Started { id, .. } => id,
        other => return Err(ApiError::internal(format!("a correlation answered {other:?}"))),
    };
    Ok(Json(MessageCorrelationResult { message_key: new_key()?, tenant_id: TENANT.into(), process_instance_key: id }))
}
