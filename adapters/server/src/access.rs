//! Who may see an instance: one rule for the API, the pages and every later reader (issue 19).
//!
//! A person sees an instance when they
//! - are an admin or an auditor (read-only `auditors`);
//! - own its process: members of `process-owners`, limited to the groups or logins the model
//!   names in `reglament:settings owners="…"` when it names any;
//! - started it;
//! - hold, held, completed or may take one of its user tasks (a task offered to nobody is
//!   offered to everyone, as in Camunda; in a process that names its starters the engine
//!   offers such a task to those groups).
//!
//! Everything else answers as if the instance did not exist (404), so ids leak nothing.

use reglament_engine::runtime::ProcessDef;
use reglament_store::auth::UserRecord;
use reglament_store::{InstanceRow, Store, StoreError, TaskRow};

/// Members see every instance, read-only for auditors.
pub const AUDITORS: &str = "auditors";
pub const ADMINS: &str = "admins";
pub const PROCESS_OWNERS: &str = "process-owners";

/// Whether `user` owns `def`'s process: a process owner, and named by its `owners` when it
/// names any.
pub fn owns(user: &UserRecord, def: &ProcessDef) -> bool {
    if !user.in_group(PROCESS_OWNERS) {
        return false;
    }
    let owners = &def.process().settings.owners;
    owners.is_empty() || owners.iter().any(|o| o == &user.login || user.in_group(o))
}

/// Whether `user` may see (or act on) `task`: theirs, offered to them or their groups, done by
/// them, or offered to nobody.
pub fn may_see_task(user: &UserRecord, task: &TaskRow) -> bool {
    let me = user.login.as_str();
    let unoffered = task.assignee.is_none() && task.candidate_groups.is_empty() && task.candidate_users.is_empty();
    unoffered
        || task.assignee.as_deref() == Some(me)
        || task.completed_by.as_deref() == Some(me)
        || task.candidate_users.iter().any(|u| u == me)
        || task.candidate_groups.iter().any(|g| user.in_group(g))
}

/// Whether `user` may see the instance `row` of `def`, whose user tasks (open and closed) are
/// `tasks`.
pub fn may_see(user: &UserRecord, row: &InstanceRow, def: &ProcessDef, tasks: &[TaskRow]) -> bool {
    user.in_group(ADMINS)
        || user.in_group(AUDITORS)
        || owns(user, def)
        || row.started_by.as_deref() == Some(user.login.as_str())
        || tasks.iter().any(|t| may_see_task(user, t))
}

/// [`may_see`], reading the instance's tasks.
pub async fn may_see_instance(
    store: &Store,
    user: &UserRecord,
    row: &InstanceRow,
    def: &ProcessDef,
) -> Result<bool, StoreError> {
    if user.in_group(ADMINS) || user.in_group(AUDITORS) || owns(user, def) {
        return Ok(true);
    }
    if row.started_by.as_deref() == Some(user.login.as_str()) {
        return Ok(true);
    }
    let tasks = store.tasks_of_instance(&row.id).await?;
    Ok(may_see(user, row, def, &tasks))
}
