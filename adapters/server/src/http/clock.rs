//! The server's clock (see [`crate::clock`]): anyone signed in reads it; on a server started
//! with `REGLAMENT_CLOCK_CONTROLLED=true` admins move it forward, and the timers that fall due
//! fire at once.

use axum::Json;
use axum::extract::State;
use reglament_engine::timer::IsoDuration;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{ADMINS, CurrentUser};
use super::error::{ApiError, FieldError, Problem};
use super::extract::ApiJson;
use crate::clock::ClockError;

/// The server's time.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClockView {
    /// Now, in the server's time zone.
    pub now: String,
    /// Whether admins may move the clock.
    pub controlled: bool,
    /// How far the clock is ahead of the system clock, in seconds.
    pub offset_seconds: i64,
}

/// Moves the clock forward: give exactly one of `advance` and `to`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClockChange {
    /// An ISO 8601 duration (`PT3H`, `P10D`, `P1M`).
    pub advance: Option<String>,
    /// An RFC 3339 instant with offset (`2027-01-15T08:59:55+04:00`).
    pub to: Option<String>,
}

fn view(state: &AppState) -> ClockView {
    let clock = state.runtime.clock();
    ClockView {
        now: clock.now().with_timezone(&state.runtime.default_tz()).to_rfc3339(),
        controlled: clock.is_controlled(),
        offset_seconds: clock.offset().num_seconds(),
    }
}

/// The server's time.
#[utoipa::path(
    get, path = "/api/clock", operation_id = "getClock", summary = "Время сервера", tag = "operations",
    responses((status = 200, body = ClockView), (status = 401, body = Problem, content_type = "application/problem+json"))
)]
pub async fn get(State(state): State<AppState>, _user: CurrentUser) -> Json<ClockView> {
    Json(view(&state))
}

/// Moves the clock forward (admins only; the server must run with a controlled clock — test and
/// training stands). Timers, reminders and escalations that fall due fire at once.
#[utoipa::path(
    post, path = "/api/clock", operation_id = "moveClock", summary = "Перевести часы вперёд (учебный стенд)",
    tag = "operations",
    request_body = ClockChange,
    responses(
        (status = 200, body = ClockView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Часы сервера не управляемые", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn change(
    State(state): State<AppState>,
    user: CurrentUser,
    actor: super::audit::Actor,
    ApiJson(req): ApiJson<ClockChange>,
) -> Result<Json<ClockView>, ApiError> {
    user.require_group(ADMINS, "Переводить часы сервера")?;
    let invalid = |field: &str, message: String| ApiError::Validation {
        detail: message.clone(),
        errors: vec![FieldError { field: Some(field.into()), message }],
    };
    let clock = state.runtime.clock();
    let moved = match (&req.advance, &req.to) {
        (Some(text), None) => {
            let d = IsoDuration::parse(text)
                .map_err(|e| invalid("advance", format!("Длительность `{text}` не в формате ISO 8601: {e}")))?;
            let now = clock.now();
            let target = d
                .add_to(now)
                .ok_or_else(|| invalid("advance", format!("Длительность `{text}` выводит за пределы календаря")))?;
            clock.set(target)
        }
        (None, Some(text)) => {
            let target = chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| invalid("to", format!("Время `{text}` не в формате RFC 3339 со смещением: {e}")))?;
            clock.set(target.to_utc())
        }
        _ => return Err(invalid("advance", "Укажите ровно одно из полей: advance или to".into())),
    };
    match moved {
        Ok(now) => {
            tracing::warn!(now = %now, by = %user.0.login, "clock moved forward");
            let details = serde_json::json!({"advance": req.advance, "to": req.to, "now": now.to_rfc3339()});
            actor.record(&state, "clock.move", None, details).await;
            let wakers = state.runtime.wakers();
            wakers.scheduler.notify_one();
            wakers.outbox.notify_one();
            wakers.jobs.notify_one();
            Ok(Json(view(&state)))
        }
        Err(ClockError::NotControlled) => Err(ApiError::Conflict(
            "Часы сервера не управляемые: перевод времени возможен только на учебном стенде, запущенном с \
             REGLAMENT_CLOCK_CONTROLLED=true"
                .into(),
        )),
        Err(ClockError::Backwards { now, requested }) => {
            Err(invalid("to", format!("Часы идут только вперёд: сейчас {now}, а {requested} уже прошло")))
        }
    }
}
