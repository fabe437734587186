//! An instance's audit history in the vocabulary of the scenario trace (DESIGN §6,
//! `reglament_engine::sim`): `{"at", "event", "element", …}` with the same event names and
//! fields. The simulator's renderer is private to the engine, so this mirrors it line for line;
//! a test runs one model through both and compares. Differences, on purpose: `task` on
//! `task_created` is the task's API id (`INSTANCE.KEY`), not the bare key, and there is no
//! `instance` field (the history belongs to one instance).

use reglament_engine::feel::Vars;
use reglament_engine::runtime::{Event, ProcessDef, Ts};
use serde_json::{Map, Value as Json, json};

use super::views::fmt_ts;
use crate::driver::task_id;

/// One history line.
pub type HistoryItem = Map<String, Json>;

/// Renders one event; `None` for bookkeeping events the trace leaves out (joins, variable
/// writes, multi-instance progress). `final_vars` are shown on `instance_completed`.
pub fn render(instance: &str, def: &ProcessDef, event: &Event, at: Ts, final_vars: &Vars) -> Option<HistoryItem> {
    let tz = def.tz;
    let el = |node: &u32| {
        let process = def.process();
        if (*node as usize) < process.nodes.len() { def.node_id(*node).to_string() } else { String::new() }
    };
    let mut line = Map::new();
    line.insert("at".into(), json!(fmt_ts(at, tz)));
    let mut put = |k: &str, v: Json| {
        line.insert(k.to_string(), v);
    };
    match event {
        Event::InstanceStarted { process, business_key, deadline, .. } => {
            put("event", json!("instance_started"));
            put("process", json!(process));
            if let Some(bk) = business_key {
                put("business_key", json!(bk));
            }
            if let Some(d) = deadline {
                put("deadline", json!(fmt_ts(*d, tz)));
            }
        }
        Event::ElementEntered { node, .. } => {
            put("event", json!("element_entered"));
            put("element", json!(el(node)));
        }
        Event::ElementCompleted { node, .. } => {
            put("event", json!("element_completed"));
            put("element", json!(el(node)));
        }
        Event::ElementTerminated { node, .. } => {
            put("event", json!("element_terminated"));
            put("element", json!(el(node)));
        }
        Event::TaskCreated { key, node, task, .. } => {
            put("event", json!("task_created"));
            put("element", json!(el(node)));
            put("task", json!(task_id(instance, *key)));
            put("due", task.due.map(|d| json!(fmt_ts(d, tz))).unwrap_or(Json::Null));
            put("candidate_groups", json!(task.candidate_groups));
            put("assignee", task.assignee.as_ref().map(|a| json!(a)).unwrap_or(Json::Null));
        }
        Event::TaskCompleted { node, .. } => {
            put("event", json!("task_completed"));
            put("element", json!(el(node)));
        }
        Event::JobCreated { node, job_type, .. } => {
            put("event", json!("job_created"));
            put("element", json!(el(node)));
            put("type", json!(job_type));
        }
        Event::JobCompleted { node, .. } => {
            put("event", json!("job_completed"));
            put("element", json!(el(node)));
        }
        Event::EmailQueued { node, email, .. } => {
            put("event", json!("email_queued"));
            put("element", json!(el(node)));
            put("to", json!(email.to));
            put("subject", json!(email.subject));
        }
        Event::TimerScheduled { node, due, .. } => {
            put("event", json!("timer_scheduled"));
            put("element", json!(el(node)));
            put("due", json!(fmt_ts(*due, tz)));
        }
        Event::TimerFired { node, .. } => {
            put("event", json!("timer_fired"));
            put("element", json!(el(node)));
        }
        Event::TimerCancelled { node, .. } => {
            put("event", json!("timer_cancelled"));
            put("element", json!(el(node)));
        }
        Event::MessageSubscribed { node, name, correlation_key, .. } => {
            put("event", json!("message_subscribed"));
            put("element", json!(el(node)));
            put("message", json!(name));
            put("correlation_key", json!(correlation_key));
        }
        Event::MessageCorrelated { node, name, correlation_key, .. } => {
            put("event", json!("message_correlated"));
            put("element", json!(el(node)));
            put("message", json!(name));
            put("correlation_key", json!(correlation_key));
        }
        Event::ChildStarted { node, process, .. } => {
            put("event", json!("child_started"));
            put("element", json!(el(node)));
            put("process", json!(process));
        }
        Event::ErrorThrown { node, code, caught_by, .. } => {
            put("event", json!("error_thrown"));
            put("element", json!(el(node)));
            put("code", json!(code));
            put("caught_by", caught_by.as_ref().map(|n| json!(el(n))).unwrap_or(Json::Null));
        }
        Event::IncidentRaised { node, message, .. } => {
            put("event", json!("incident"));
            put("element", json!(el(node)));
            put("message", json!(message));
        }
        Event::IncidentResolved { .. } => put("event", json!("incident_resolved")),
        Event::SlaExtended { deadline, reason, .. } => {
            put("event", json!("sla_extended"));
            put("deadline", json!(fmt_ts(*deadline, tz)));
            put("reason", json!(reason));
        }
        Event::SlaPaused { reason, .. } => {
            put("event", json!("sla_paused"));
            put("reason", json!(reason));
        }
        Event::SlaResumed { deadline, .. } => {
            put("event", json!("sla_resumed"));
            put("deadline", json!(fmt_ts(*deadline, tz)));
        }
        Event::InstanceCompleted => {
            put("event", json!("instance_completed"));
            put("variables", Json::Object(final_vars.clone()));
        }
        Event::InstanceCancelled { reason, .. } => {
            put("event", json!("instance_cancelled"));
            put("reason", json!(reason));
        }
        Event::TokenWaiting { .. }
        | Event::JoinFired { .. }
        | Event::VariablesSet { .. }
        | Event::MultiInstanceStarted { .. }
        | Event::MultiInstanceProgress { .. }
        | Event::SubscriptionClosed { .. } => return None,
    }
    Some(line)
}
