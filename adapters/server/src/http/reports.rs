//! The SLA report: how deadlines were kept in a period, per definition (instance SLAs) or per
//! candidate group (user task due dates).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::CurrentUser;
use super::error::{ApiError, Problem};
use super::extract::ApiQuery;
use super::views::fmt_ts;
use super::{AppState, parse_instant};

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// Process instances started in the period, by definition key; deadline = the instance SLA.
    #[default]
    Definition,
    /// User tasks created in the period, by candidate group; deadline = the task's due date.
    Group,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct SlaParams {
    /// Start of the period (RFC 3339 or YYYY-MM-DD); default 30 days before `to`.
    pub from: Option<String>,
    /// End of the period, exclusive; default now.
    pub to: Option<String>,
    /// `definition` (default) or `group`.
    #[param(inline)]
    pub group_by: Option<GroupBy>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlaItem {
    /// The definition key or the group name.
    pub key: String,
    pub total: i64,
    pub completed: i64,
    /// Completed by the deadline.
    pub on_time: i64,
    /// Completed after the deadline, or still open past it.
    pub overdue: i64,
    /// on time / (on time + overdue), in percent; null when nothing had a deadline yet.
    pub on_time_percent: Option<f64>,
    /// Mean duration of the completed ones, in minutes.
    pub average_duration_minutes: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlaReport {
    pub from: String,
    pub to: String,
    #[schema(inline)]
    pub group_by: GroupBy,
    pub items: Vec<SlaItem>,
}

/// On-time percentage, overdue counts and average durations.
#[utoipa::path(
    get, path = "/api/reports/sla", operation_id = "slaReport", summary = "Отчёт о соблюдении сроков", tag = "reports",
    params(SlaParams),
    responses(
        (status = 200, body = SlaReport),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn sla(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiQuery(p): ApiQuery<SlaParams>,
) -> Result<Json<SlaReport>, ApiError> {
    let tz = state.runtime.default_tz();
    let now = state.runtime.now();
    let to = p.to.as_deref().map(|t| parse_instant(t, "to", tz)).transpose()?.unwrap_or(now);
    let from =
        p.from.as_deref().map(|t| parse_instant(t, "from", tz)).transpose()?.unwrap_or(to - chrono::Duration::days(30));
    if from >= to {
        return Err(ApiError::BadRequest("Начало периода (from) должно быть раньше конца (to)".into()));
    }
    let group_by = p.group_by.unwrap_or_default();
    let store = state.runtime.store();
    let rows = match group_by {
        GroupBy::Definition => store.sla_by_definition(from, to, now).await?,
        GroupBy::Group => store.sla_by_group(from, to, now).await?,
    };
    let items = rows
        .into_iter()
        .map(|r| {
            let judged = r.on_time + r.overdue;
            SlaItem {
                on_time_percent: (judged > 0).then(|| (r.on_time as f64 * 1000.0 / judged as f64).round() / 10.0),
                average_duration_minutes: r.average_ms.map(|ms| (ms / 60_000.0 * 10.0).round() / 10.0),
                key: r.key,
                total: r.total,
                completed: r.completed,
                on_time: r.on_time,
                overdue: r.overdue,
            }
        })
        .collect();
    Ok(Json(SlaReport { from: fmt_ts(from, tz), to: fmt_ts(to, tz), group_by, items }))
}
