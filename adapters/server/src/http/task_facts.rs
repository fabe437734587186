//! What a task list shows beside each task's own row: the process name, the instance's business
//! key (request number), whether it is overdue and the working days left. Shared by the API's
//! inbox (`GET /api/tasks`) and the inbox page; a page costs two queries, not one per task.

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;

use super::AppState;
use crate::driver::DriverError;
use reglament_store::{StoreError, TaskRow, Ts};

/// The facts of one task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFacts {
    pub process_name: Option<String>,
    pub business_key: Option<String>,
    pub overdue: bool,
    pub working_days_left: Option<i64>,
}

/// The longest stretch counted day by day; farther due dates are shown without a count.
const MAX_DAYS_COUNTED: i64 = 750;

/// Working days of `calendar` after `today` up to `due_day` (negative when `due_day` is past:
/// minus the working days after it up to today). `None` outside the calendar's years.
pub fn working_days_between(
    calendar: &reglament_engine::calendar::WorkCalendar,
    today: NaiveDate,
    due_day: NaiveDate,
) -> Option<i64> {
    let (from, to, sign) = if due_day >= today { (today, due_day, 1) } else { (due_day, today, -1) };
    if (to - from).num_days() > MAX_DAYS_COUNTED {
        return None;
    }
    let mut count = 0;
    let mut day = from;
    while day < to {
        day = day.succ_opt()?;
        if calendar.is_working_day(day).ok()? {
            count += 1;
        }
    }
    Some(sign * count)
}

/// The facts of each row, in order.
pub async fn facts(state: &AppState, rows: &[TaskRow], now: Ts) -> Result<Vec<TaskFacts>, StoreError> {
    let store = state.runtime.store();
    let ids: Vec<&str> = rows.iter().map(|t| t.instance_id.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
    let keys = store.business_keys(&ids).await?;
    let wanted: BTreeSet<&str> = rows.iter().map(|t| t.definition_key.as_str()).collect();
    let mut processes: HashMap<
        String,
        (Option<String>, Option<std::sync::Arc<reglament_engine::runtime::ProcessDef>>),
    > = HashMap::new();
    for d in store.definitions().await?.into_iter().filter(|d| wanted.contains(d.key.as_str())) {
        let def = match state.runtime.definition(&d.key, d.version).await {
            Ok(def) => Some(def),
            Err(DriverError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(definition = %d.key, error = %e, "the definition cannot be read for the inbox");
                None
            }
        };
        processes.insert(d.key.clone(), (d.name.clone(), def));
    }
    let env = state.runtime.env();
    Ok(rows
        .iter()
        .map(|t| {
            let (name, def) = processes.get(&t.definition_key).cloned().unwrap_or_default();
            let open = t.state == "open";
            let working_days_left = match (t.due, &def) {
                (Some(due), Some(def)) if open => env.calendars.get(&def.calendar).and_then(|calendar| {
                    let today = now.with_timezone(&def.tz).date_naive();
                    working_days_between(calendar, today, due.with_timezone(&def.tz).date_naive())
                }),
                _ => None,
            };
            TaskFacts {
                process_name: name,
                business_key: keys.get(&t.instance_id).cloned(),
                overdue: open && t.due.is_some_and(|d| d < now),
                working_days_left,
            }
        })
        .collect())
}
