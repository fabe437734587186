//! An instance's audit history in the vocabulary of the scenario trace (DESIGN §6), rendered by
//! the simulator's own renderer (`reglament_engine::sim::render_event`), so the two cannot
//! drift. The differences, on purpose: `task` on `task_created` is the task's API id
//! (`INSTANCE.KEY`), not the bare key; there is no `instance` field (the history belongs to one
//! instance); and `by` names the person who started the instance or completed a task (from the
//! audit log; the simulator has no people).

use reglament_engine::feel::Vars;
use reglament_engine::runtime::{Event, ProcessDef, Ts};
use serde_json::{Map, Value as Json, json};

use crate::driver::task_id;

/// One history line.
pub type HistoryItem = Map<String, Json>;

/// Renders one event; `None` for bookkeeping events the trace leaves out (joins, variable
/// writes, multi-instance progress). `final_vars` are shown on `instance_completed`.
pub fn render(instance: &str, def: &ProcessDef, event: &Event, at: Ts, final_vars: &Vars) -> Option<HistoryItem> {
    reglament_engine::sim::render_event(Some(def), event, at, def.tz, Some(final_vars), &|key| {
        json!(task_id(instance, key))
    })
}
