//! The audit log over HTTP: who did what, when and from where. Acts done through the driver
//! (starting, completing, cancelling, resolving, publishing) are written in their command's
//! transaction (`Op::Audited`); the others (claims, deployments, users, the directory, the
//! clock) right after the act succeeds. `GET /api/audit` lists them for admins and auditors.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json_;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, Problem};
use super::extract::ApiQuery;
use crate::access::{ADMINS, AUDITORS};
use crate::driver::Op;
use reglament_store::audit::{AuditEntry, AuditQuery};

/// Who acts, and from which address: the signed-in person of an API request.
#[derive(Debug, Clone)]
pub struct Actor {
    pub login: String,
    pub address: Option<String>,
}

impl Actor {
    /// The actor of a request whose person is `login`, reading the client address the
    /// listener put into the request (absent when the router is called in-process).
    pub fn of(login: &str, extensions: &axum::http::Extensions) -> Actor {
        let address = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        Actor { login: login.to_string(), address }
    }

    /// An entry for `action` on `target`; its time is set when it is written.
    pub fn entry(&self, action: &str, target: Option<&str>, instance: Option<&str>, details: Json_) -> AuditEntry {
        AuditEntry {
            at: Utc::now(),
            actor: self.login.clone(),
            address: self.address.clone(),
            action: action.to_string(),
            target: target.map(str::to_owned),
            instance_id: instance.map(str::to_owned),
            details,
        }
    }

    /// `op`, recorded as `action` in the audit log in its own transaction.
    pub fn audited(&self, op: Op, action: &str, target: Option<&str>, instance: Option<&str>, details: Json_) -> Op {
        Op::Audited { op: Box::new(op), entry: self.entry(action, target, instance, details) }
    }

    /// Records an act that is already done (not a driver command). A failure to record is
    /// logged as an error: the act stands, and the operator learns the log has a gap.
    pub async fn record(&self, state: &AppState, action: &str, target: Option<&str>, details: Json_) {
        self.record_on(state, action, target, None, details).await
    }

    /// [`Actor::record`] of an act on an instance (a claim, an assignment).
    pub async fn record_on(
        &self,
        state: &AppState,
        action: &str,
        target: Option<&str>,
        instance: Option<&str>,
        details: Json_,
    ) {
        let mut entry = self.entry(action, target, instance, details);
        entry.at = state.runtime.now();
        if let Err(e) = state.runtime.store().record_audit(&entry).await {
            tracing::error!(actor = %self.login, action, error = %e, "the act is done but the audit log did not record it");
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        Ok(Actor::of(user.login(), &parts.extensions))
    }
}

/// The client's IP address, as the listener recorded it (none when the router is called
/// in-process); pages build their [`Actor`] from it and the signed-in person.
#[derive(Debug, Clone)]
pub struct ClientAddress(pub Option<String>);

impl ClientAddress {
    pub fn actor(&self, login: &str) -> Actor {
        Actor { login: login.to_string(), address: self.0.clone() }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string())))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditFilter {
    /// Only the acts of this login.
    pub actor: Option<String>,
    /// Only this kind of act (`task.complete`, `instance.cancel`, `definition.deploy`, …).
    pub action: Option<String>,
    /// Only acts on this target (a task id, a login, a definition key).
    pub target: Option<String>,
    /// Only acts concerning this instance.
    pub instance: Option<String>,
    /// Acts at or after this instant (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Acts before this instant (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// At most this many (1–1000, default 100).
    pub limit: Option<i64>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// `json` (default, paged) or `csv`: every matching act (up to 100,000; narrow with
    /// `from`/`to` for more), for archiving or a spreadsheet.
    #[param(inline)]
    pub format: Option<AuditFormat>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditFormat {
    Json,
    Csv,
}

/// The most acts one CSV export holds.
const CSV_MAX: i64 = 100_000;

/// The acts as CSV (RFC 4180, UTF-8 with a byte-order mark), Russian headers.
fn to_csv(rows: &[reglament_store::audit::AuditRow], tz: chrono_tz::Tz) -> String {
    use crate::csv::cell;
    let mut out = String::from('\u{feff}');
    out.push_str("Номер,Время,Кто,Адрес,Действие,Объект,Экземпляр,Подробности\r\n");
    for r in rows {
        let e = &r.entry;
        let cells = [
            r.seq.to_string(),
            e.at.with_timezone(&tz).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            e.actor.clone(),
            e.address.clone().unwrap_or_default(),
            e.action.clone(),
            e.target.clone().unwrap_or_default(),
            e.instance_id.clone().unwrap_or_default(),
            e.details.to_string(),
        ];
        out.push_str(&cells.iter().map(|c| cell(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// One recorded act.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditItem {
    /// Its place in the log (increasing).
    pub seq: i64,
    pub at: DateTime<chrono::FixedOffset>,
    pub actor: String,
    /// The client's IP address.
    pub address: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub instance_id: Option<String>,
    /// What was submitted or changed.
    #[schema(value_type = Object)]
    pub details: Json_,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditList {
    pub items: Vec<AuditItem>,
    pub next_cursor: Option<String>,
}

/// The audit log, oldest first: every act of a person, append-only. For `admins` and
/// `auditors`.
#[utoipa::path(
    get, path = "/api/audit", operation_id = "listAudit", summary = "Журнал действий", tag = "operations",
    params(AuditFilter),
    responses(
        (status = 200, description = "JSON по страницам или CSV целиком", content(
            (AuditList = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<AuditFilter>,
) -> Result<Response, ApiError> {
    if !user.0.in_group(ADMINS) && !user.0.in_group(AUDITORS) {
        return Err(ApiError::Forbidden(format!(
            "Журнал действий видят только участники групп `{ADMINS}` и `{AUDITORS}`"
        )));
    }
    for (param, value) in [("actor", &q.actor), ("action", &q.action), ("target", &q.target), ("instance", &q.instance)]
    {
        super::hygiene::query_filter(param, value.as_deref())?;
    }
    let csv = matches!(q.format, Some(AuditFormat::Csv));
    if csv && (q.limit.is_some() || q.cursor.is_some()) {
        return Err(ApiError::BadRequest(
            "format=csv выгружает всё, что подходит под фильтры: уберите limit и cursor".into(),
        ));
    }
    let limit = if csv { CSV_MAX } else { q.limit.unwrap_or(100) };
    if !csv && !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit — от 1 до 1000, а не {limit}")));
    }
    let after = match &q.cursor {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            ApiError::BadRequest(format!("Курсор `{c}` не из этого журнала: возьмите nextCursor предыдущей страницы"))
        })?),
    };
    let query = AuditQuery {
        actor: q.actor,
        action: q.action,
        target: q.target,
        instance_id: q.instance,
        from: q.from,
        to: q.to,
        after,
        limit: limit + 1,
    };
    let mut rows = state.runtime.store().audit(&query).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let tz = state.runtime.default_tz();
    if csv {
        if more {
            return Err(ApiError::BadRequest(format!(
                "Под фильтры подходит больше {CSV_MAX} записей: выгрузите журнал частями по времени (from, to)"
            )));
        }
        let headers = [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"audit.csv\""),
        ];
        return Ok((headers, to_csv(&rows, tz)).into_response());
    }
    let next_cursor = more.then(|| rows.last().map(|r| r.seq.to_string())).flatten();
    let items = rows
        .into_iter()
        .map(|r| AuditItem {
            seq: r.seq,
            at: r.entry.at.with_timezone(&tz).fixed_offset(),
            actor: r.entry.actor,
            address: r.entry.address,
            action: r.entry.action,
            target: r.entry.target,
            instance_id: r.entry.instance_id,
            details: r.entry.details,
        })
        .collect();
    Ok(Json(AuditList { items, next_cursor }).into_response())
}
