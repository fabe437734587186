//! Publishing a message: to the instance waiting for it, else to a message start event, else
//! buffered for its time to live.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use reglament_engine::timer::IsoDuration;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, FieldError, Problem};
use super::extract::ApiJson;
use crate::driver::{Op, Outcome};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageRequest {
    /// The message name (`bpmn:message name`).
    pub name: String,
    /// The value the receiving subscription's correlation key must have.
    #[serde(default)]
    pub correlation_key: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, serde_json::Value>,
    /// ISO 8601 duration (`PT1H`): keep the message this long if nobody waits for it yet.
    pub time_to_live: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageResponse {
    /// `correlated` (a waiting instance took it), `started` (it started an instance) or
    /// `buffered` (kept for its time to live).
    pub result: String,
    pub process_instance_id: Option<String>,
}

/// Whether `user` may publish the message `name` from outside: admins may; otherwise every
/// deployed process (latest version) that lists senders for it in `reglament:settings
/// messageSenders` must name one of the user's groups or their login. A message no process
/// restricts may be published by anyone signed in, as in Camunda.
pub async fn may_publish(state: &AppState, user: &CurrentUser, name: &str) -> Result<(), ApiError> {
    if user.0.in_group(super::auth::ADMINS) {
        return Ok(());
    }
    for row in state.runtime.store().definitions().await? {
        let def = state.runtime.definition(&row.key, row.version).await?;
        if let Some(senders) = def.process().settings.message_senders.get(name)
            && !senders.iter().any(|s| s == user.login() || user.0.in_group(s))
        {
            return Err(ApiError::Forbidden(format!(
                "Сообщение `{name}` процесса «{}» могут отправлять только: {} (reglament:settings messageSenders)",
                def.process().name.as_deref().unwrap_or(&row.key),
                senders.join(", ")
            )));
        }
    }
    Ok(())
}

/// A message from outside, whichever route sends it (`/api` or `/v2`): the input checks, the
/// senders rule, then `ttl_ms` (checked after them), and the audited command.
pub(crate) async fn publish_as(
    state: &AppState,
    user: &CurrentUser,
    actor: &super::audit::Actor,
    (name, correlation_key, variables): (String, String, serde_json::Map<String, serde_json::Value>),
    ttl_ms: impl FnOnce(&AppState) -> Result<i64, ApiError>,
    via: Option<&str>,
) -> Result<Outcome, ApiError> {
    super::hygiene::Check::default()
        .key("name", &name, true)
        .key("correlationKey", &correlation_key, false)
        .variable_names("variables", &variables)
        .done()?;
    may_publish(state, user, &name).await?;
    let ttl_ms = ttl_ms(state)?;
    let mut details = serde_json::json!({"correlationKey": correlation_key, "variables": variables, "ttlMs": ttl_ms});
    if let Some(via) = via {
        details["via"] = via.into();
    }
    let target = name.clone();
    let op = Op::Message { name, correlation_key, variables, ttl_ms };
    Ok(state.runtime.submit(actor.audited(op, "message.publish", Some(&target), None, details)).await?)
}

/// Publishes a message.
#[utoipa::path(
    post, path = "/api/messages", operation_id = "publishMessage", summary = "Отправить сообщение", tag = "messages",
    request_body = MessageRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Повтор с тем же ключом вернёт тот же ответ")),
    responses(
        (status = 200, description = "Сообщение принято экземпляром или запустило новый", body = MessageResponse),
        (status = 202, description = "Сообщение сохранено на время timeToLive", body = MessageResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Модель разрешает это сообщение другим отправителям (`reglament:settings messageSenders`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "/problems/no-receiver: никто не ждёт сообщения и timeToLive не задан", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Сообщение запустило бы второй экземпляр с тем же номером, или экземпляр одновременно изменяется", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn publish(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    ApiJson(req): ApiJson<MessageRequest>,
) -> Result<(StatusCode, Json<MessageResponse>), ApiError> {
    let MessageRequest { name, correlation_key, variables, time_to_live } = req;
    let ttl = |state: &AppState| match &time_to_live {
        None => Ok(0),
        Some(text) => {
            let bad = |message: String| ApiError::Validation {
                detail: format!("timeToLive: {message}"),
                errors: vec![FieldError { field: Some("timeToLive".into()), message }],
            };
            let d = IsoDuration::parse(text).map_err(bad)?;
            let now = state.runtime.now();
            let until = d.add_to(now).ok_or_else(|| bad("слишком большой срок".into()))?;
            Ok((until - now).num_milliseconds())
        }
    };
    let outcome = publish_as(&state, &user, &actor, (name, correlation_key, variables), ttl, None).await?;
    let (status, result, id) = match outcome {
        Outcome::Applied { id } => (StatusCode::OK, "correlated", Some(id)),
        Outcome::Started { id, .. } => (StatusCode::OK, "started", Some(id)),
        Outcome::Buffered => (StatusCode::ACCEPTED, "buffered", None),
        Outcome::Stale => return Err(ApiError::internal("a message was answered as a stale timer")),
    };
    Ok((status, Json(MessageResponse { result: result.into(), process_instance_id: id })))
}
