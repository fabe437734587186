//! The worker for built-in service task types (DESIGN §3), other than `email` (see `email/`):
//!
//! - `registry-update` applies an approved change to the process registry. It reads the
//!   variable named by header `change` (default `change`): `{processId, action:
//!   add|modify|remove|actualize, fields: {service, act, group, name, owner, reengineering,
//!   client, value, inputs, outputs, links, digital, placement}}`, and returns
//!   `registryUpdated = true`. Empty columns leave the registry's value. `actualize` (the
//!   six-monthly actualization) applies the optional `entries` (a list of such changes) and
//!   marks every registry entry as actualized now.
//! - `directory-units` gives the units of the organisation directory with their heads
//!   (`directoryUnits = [{id, name, head, headEmail}]`).
//! - `report` builds the statistics of instances started in a period (variables `from`, `to`:
//!   dates or date-times; default the previous quarter): per process, the number handled, on
//!   time %, overdue, average duration in working days. It returns `reportSummary = {total,
//!   onTime, onTimePercent, overdue, avgWorkingDays, byProcess: [...]}` and `reportFile = {name,
//!   content}` with the same figures as CSV (Russian headers), for an email attachment.
//!
//! Jobs are leased like timers, so several nodes share them; the outcome reaches the instance
//! as `CompleteJob` (or `FailJob`, which raises an incident) through the driver. A failure of
//! the database is temporary: the job is retried with backoff.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Datelike, NaiveDate, TimeZone};
use reglament_engine::runtime::Command;
use serde_json::{Value as Json, json};
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use crate::driver::{Op, Runtime};
use reglament_store::jobs::LeasedJob;
use reglament_store::{StoreError, Ts};

/// Runs until `shutdown` turns true.
pub async fn run(rt: Runtime, lease: Duration, mut shutdown: watch::Receiver<bool>) {
    info!(node = rt.node(), "job worker started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = rt.now();
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
        match rt.store().lease_due_jobs(rt.node(), now, until, 20).await {
            Ok(jobs) if !jobs.is_empty() => {
                for job in jobs {
                    let span = info_span!(
                        "job",
                        job = %job.id,
                        job_type = %job.job_type,
                        instance = %job.instance_id,
                        attempt = job.attempts + 1
                    );
                    run_one(&rt, job).instrument(span).await;
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot take jobs; retrying"),
        }
        let sleep = match rt.store().next_job_due().await {
            Ok(Some(next)) => (next - rt.now()).to_std().unwrap_or(Duration::ZERO).min(Duration::from_secs(5)),
            _ => Duration::from_secs(5),
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep.max(Duration::from_millis(10))) => {}
            _ = rt.wakers().jobs.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
    info!(node = rt.node(), "job worker stopped");
}

/// Why a job did not complete.
enum JobError {
    /// Try again later (database unavailable).
    Temporary(String),
    /// The job cannot succeed as given: an incident for a person to look at.
    Permanent(String),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::Temporary(e.to_string())
    }
}

async fn run_one(rt: &Runtime, job: LeasedJob) {
    let payload: Json = serde_json::from_str(&job.payload).unwrap_or(Json::Null);
    let headers: BTreeMap<String, String> = payload["headers"]
        .as_array()
        .map(|pairs| {
            pairs.iter().filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string()))).collect()
        })
        .unwrap_or_default();
    let variables = payload["variables"].as_object().cloned().unwrap_or_default();
    let outcome = match job.job_type.as_str() {
        "registry-update" => registry_update(rt, &headers, &variables).await,
        "report" => report(rt, &variables).await,
        "directory-units" => directory_units(rt).await,
        other => Err(JobError::Permanent(format!("job type `{other}` has no worker in this engine"))),
    };
    let failed = matches!(outcome, Err(JobError::Permanent(_)));
    let command = match outcome {
        Ok(vars) => Command::CompleteJob { job: job.job_key, variables: vars },
        Err(JobError::Permanent(message)) => {
            warn!(job = %job.id, job_type = %job.job_type, error = %message, "job failed; the task gets an incident");
            Command::FailJob { job: job.job_key, message, retryable: false }
        }
        Err(JobError::Temporary(message)) => {
            let backoff = Duration::from_secs(2u64.saturating_pow(job.attempts.clamp(1, 10) as u32))
                .min(Duration::from_secs(600));
            warn!(job = %job.id, attempts = job.attempts, error = %message, "job failed; it will be retried");
            let due = rt.now() + chrono::Duration::from_std(backoff).unwrap_or_default();
            if let Err(e) = rt.store().retry_job_later(&job.id, due, &message).await {
                warn!(job = %job.id, error = %e, "cannot reschedule the job; its lease will expire");
            }
            return;
        }
    };
    match rt.submit(Op::Instance { id: job.instance_id.clone(), command }).await {
        Ok(_) if failed => {}
        Ok(_) => info!(job = %job.id, job_type = %job.job_type, "job done"),
        // The instance moved on (cancelled, the element terminated): nothing waits for it.
        Err(e) => warn!(job = %job.id, error = %e, "job outcome not accepted"),
    }
}

async fn registry_update(
    rt: &Runtime,
    headers: &BTreeMap<String, String>,
    variables: &serde_json::Map<String, Json>,
) -> Result<serde_json::Map<String, Json>, JobError> {
    let name = headers.get("change").map(String::as_str).unwrap_or("change");
    let change = variables
        .get(name)
        .and_then(Json::as_object)
        .ok_or_else(|| JobError::Permanent(format!("variable `{name}` with the registry change is missing")))?;
    let action = change.get("action").and_then(Json::as_str).unwrap_or("modify");
    if action == "actualize" {
        // The six-monthly actualization (order 1367-r, p. 11): the entries it changes, if any,
        // then every entry of the registry is marked as actualized now.
        let entries = change.get("entries").and_then(Json::as_array).cloned().unwrap_or_default();
        for (i, entry) in entries.iter().enumerate() {
            let entry = entry
                .as_object()
                .ok_or_else(|| JobError::Permanent(format!("`{name}.entries[{i}]` is not an object")))?;
            apply_registry_change(rt, &format!("{name}.entries[{i}]"), entry, "modify").await?;
        }
        let touched = rt.store().actualize_registry(rt.now()).await?;
        let mut out = serde_json::Map::new();
        out.insert("registryUpdated".into(), json!(true));
        out.insert("registryActualizedEntries".into(), json!(touched));
        out.insert("registryUpdatedAt".into(), json!(rt.now().with_timezone(&rt.default_tz()).to_rfc3339()));
        return Ok(out);
    }
    apply_registry_change(rt, name, change, "modify").await?;
    let mut out = serde_json::Map::new();
    out.insert("registryUpdated".into(), json!(true));
    out.insert("registryUpdatedAt".into(), json!(rt.now().with_timezone(&rt.default_tz()).to_rfc3339()));
    Ok(out)
}

/// `directory-units`: the structural units of the directory with their heads, as
/// `directoryUnits = [{id, name, head, headEmail}]` — units that have a head, leaving out a top
/// unit (the ministry itself) when it has units under it.
async fn directory_units(rt: &Runtime) -> Result<serde_json::Map<String, Json>, JobError> {
    let directory = rt.store().directory().await?;
    let emails: BTreeMap<String, String> = rt.store().users().await?.into_iter().map(|u| (u.login, u.email)).collect();
    let has_units_under = |id: &str| directory.units.iter().any(|u| u.parent.as_deref() == Some(id));
    let units: Vec<Json> = directory
        .units
        .iter()
        .filter(|u| u.head.is_some() && !(u.parent.is_none() && has_units_under(&u.id)))
        .map(|u| {
            let head = u.head.clone().unwrap_or_default();
            json!({"id": u.id, "name": u.name, "head": head, "headEmail": emails.get(&head)})
        })
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("directoryUnits".into(), Json::Array(units));
    Ok(out)
}

/// One registry change `{processId, action, fields}`.
async fn apply_registry_change(
    rt: &Runtime,
    name: &str,
    change: &serde_json::Map<String, Json>,
    default_action: &str,
) -> Result<(), JobError> {
    let key = change.get("processId").and_then(Json::as_str).filter(|k| !k.trim().is_empty()).ok_or_else(|| {
        JobError::Permanent(format!("`{name}.processId` is missing: which process does the change concern?"))
    })?;
    let action = change.get("action").and_then(Json::as_str).unwrap_or(default_action);
    if !matches!(action, "add" | "modify" | "remove") {
        return Err(JobError::Permanent(format!(
            "`{name}.action` is `{action}`; expected add, modify, remove or actualize"
        )));
    }
    let fields: BTreeMap<String, String> = change
        .get("fields")
        .and_then(Json::as_object)
        .map(|f| {
            f.iter()
                .filter(|(_, v)| !v.is_null() && v.as_str() != Some(""))
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    rt.store().change_registry(key, action, &fields, rt.now()).await?;
    Ok(())
}

/// A date or date-time variable as an instant (dates at 00:00 in the engine's zone).
fn instant(v: Option<&Json>, tz: chrono_tz::Tz) -> Option<Ts> {
    let text = v?.as_str()?;
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return tz.from_local_datetime(&d.and_hms_opt(0, 0, 0)?).earliest().map(|t| t.to_utc());
    }
    reglament_engine::timer::parse_date_time(text).ok().map(|t| t.to_utc())
}

async fn report(
    rt: &Runtime,
    variables: &serde_json::Map<String, Json>,
) -> Result<serde_json::Map<String, Json>, JobError> {
    let tz = rt.default_tz();
    let now = rt.now().with_timezone(&tz);
    // Default period: the previous quarter.
    let quarter_start_month = (now.month0() / 3) * 3 + 1;
    let this_quarter = NaiveDate::from_ymd_opt(now.year(), quarter_start_month, 1).expect("valid date");
    let previous = this_quarter.checked_sub_months(chrono::Months::new(3)).expect("valid date");
    let at = |d: NaiveDate| {
        tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight")).earliest().map(|t| t.to_utc())
    };
    let from = instant(variables.get("from"), tz).or_else(|| at(previous)).unwrap_or_default();
    let to = instant(variables.get("to"), tz).or_else(|| at(this_quarter)).unwrap_or_default();
    if to <= from {
        return Err(JobError::Permanent("the report period is empty: `to` must be after `from`".into()));
    }
    let facts = rt.store().instance_facts(from, to).await?;
    let calendar = rt.env().calendars.get("ru");
    let mut by_process: BTreeMap<String, (i64, i64, i64, f64, i64)> = BTreeMap::new();
    for f in &facts {
        let entry = by_process.entry(f.definition_key.clone()).or_default();
        entry.0 += 1;
        let late = match (f.deadline, f.ended_at) {
            (Some(d), Some(e)) => e > d,
            (Some(d), None) => f.status == "active" && d < rt.now(),
            _ => false,
        };
        if late {
            entry.2 += 1;
        } else if f.deadline.is_some() && f.ended_at.is_some() {
            entry.1 += 1;
        }
        if let (Some(end), Some(cal)) = (f.ended_at, calendar) {
            let minutes =
                cal.working_minutes_between(f.started_at.with_timezone(&tz), end.with_timezone(&tz)).unwrap_or(0);
            entry.3 += minutes as f64 / 480.0;
            entry.4 += 1;
        }
    }
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let mut rows = Vec::new();
    let mut csv =
        String::from("\u{feff}Процесс,Обращений,В срок,В срок %,Просрочено,Средняя длительность (раб. дней)\r\n");
    let (mut total, mut on_time, mut overdue, mut days, mut finished) = (0, 0, 0, 0.0, 0);
    for (key, (n, ok, late, d, done)) in &by_process {
        let percent = if ok + late > 0 { round(*ok as f64 * 100.0 / (*ok + *late) as f64) } else { 100.0 };
        let avg = if *done > 0 { round(d / *done as f64) } else { 0.0 };
        csv.push_str(&format!("{},{n},{ok},{percent},{late},{avg}\r\n", crate::csv::cell(key)));
        rows.push(json!({"process": key, "total": n, "onTime": ok, "onTimePercent": percent, "overdue": late, "avgWorkingDays": avg}));
        total += n;
        on_time += ok;
        overdue += late;
        days += d;
        finished += done;
    }
    let percent =
        if on_time + overdue > 0 { round(on_time as f64 * 100.0 / (on_time + overdue) as f64) } else { 100.0 };
    let avg = if finished > 0 { round(days / finished as f64) } else { 0.0 };
    csv.push_str(&format!("Итого,{total},{on_time},{percent},{overdue},{avg}\r\n"));
    let mut out = serde_json::Map::new();
    out.insert(
        "reportSummary".into(),
        json!({"total": total, "onTime": on_time, "onTimePercent": percent, "overdue": overdue, "avgWorkingDays": avg, "byProcess": rows}),
    );
    let name = format!(
        "otchet-{}-{}.csv",
        from.with_timezone(&tz).format("%Y-%m-%d"),
        to.with_timezone(&tz).format("%Y-%m-%d")
    );
    out.insert("reportFile".into(), json!({"name": name, "content": csv}));
    Ok(out)
}
