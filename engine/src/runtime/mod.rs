//! Execution: `(definition, instance state, command, now) -> transition | rejection`.
//!
//! The runtime is sans-IO. A [`Command`] comes in with the time it happens at; out come
//! [`Event`]s (the audit history) and [`Effect`]s (what the driver must do after commit: wake at
//! a time, send an email, run a job, start a child instance). The instance state changes only by
//! [`apply`]ing events, so replaying the history rebuilds the state and the audit trail can never
//! disagree with it.
//!
//! Keys of element instances, tasks, timers and subscriptions come from a counter in the state;
//! nothing here reads a clock or a random source.

mod exec;
mod state;
mod terms;

pub use exec::{handle, handle_within, start, start_within};
pub use state::*;
pub use terms::{TermError, compute_term, term_last_day};

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::calendar::WorkCalendar;
use crate::feel::Vars;
use crate::model::{Definitions, NodeIdx, Process};

/// Instants are UTC; they are shown in the definition's zone.
pub type Ts = DateTime<Utc>;

/// A local key inside one instance (element instances, timers, subscriptions, tasks).
pub type Key = u32;

/// The process-instance root scope's key.
pub const ROOT: Key = 0;

/// A deployed, validated process and what it needs to run: its zone and default calendar.
#[derive(Debug, Clone)]
pub struct ProcessDef {
    pub defs: Arc<Definitions>,
    index: usize,
    /// The definition's version, recorded on each instance.
    pub version: u32,
    pub tz: chrono_tz::Tz,
    pub calendar: String,
}

impl ProcessDef {
    /// Wraps process `process_id` of `defs`. The caller has validated `defs` without errors.
    pub fn new(
        defs: Arc<Definitions>,
        process_id: &str,
        version: u32,
        default_tz: chrono_tz::Tz,
    ) -> Option<ProcessDef> {
        let index = defs.processes.iter().position(|p| p.id == process_id)?;
        let settings = &defs.processes[index].settings;
        let tz = settings.time_zone.as_deref().and_then(|t| t.parse().ok()).unwrap_or(default_tz);
        let calendar = settings.calendar.clone().unwrap_or_else(|| "ru".to_string());
        Some(ProcessDef { defs, index, version, tz, calendar })
    }

    pub fn process(&self) -> &Process {
        &self.defs.processes[self.index]
    }

    pub fn key(&self) -> &str {
        &self.process().id
    }

    pub fn node_id(&self, node: NodeIdx) -> &str {
        &self.process().node(node).id
    }
}

/// What the runtime needs from its surroundings besides the definition: the calendars, and the
/// limits of one command's work ([`crate::feel::Limits`]).
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub calendars: BTreeMap<String, WorkCalendar>,
    pub limits: crate::feel::Limits,
}

/// Commands. Each is decided against the current state and the time it happens at.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Complete an open user task with the form's variables.
    CompleteTask {
        task: Key,
        variables: Vars,
    },
    /// A message for a subscription of this instance (the driver found it by name and key).
    CorrelateMessage {
        name: String,
        correlation_key: String,
        variables: Vars,
    },
    /// A timer of this instance fell due.
    FireTimer {
        timer: Key,
    },
    /// A job (service task, email, report) finished; its outputs come back as variables.
    CompleteJob {
        job: Key,
        variables: Vars,
    },
    /// A job's worker threw a BPMN error (`/v2/jobs/{key}/error`): caught by the nearest
    /// boundary or event subprocess catching `code`, else an incident. `variables` go with the
    /// error to the catching event, as in Zeebe.
    ThrowJobError {
        job: Key,
        code: String,
        message: String,
        variables: Vars,
    },
    /// A job failed. `retryable` failures leave the job to be retried by the driver;
    /// others raise an incident on the element.
    FailJob {
        job: Key,
        message: String,
        retryable: bool,
    },
    /// A child instance started by a call activity completed.
    ChildCompleted {
        call: Key,
        variables: Vars,
    },
    /// A child instance ended with an error nobody in it caught.
    ChildFailed {
        call: Key,
        error_code: String,
        message: String,
    },
    /// Retry the operation an incident stopped, after the cause was fixed (e.g. variables set).
    ResolveIncident {
        incident: Key,
        variables: Vars,
    },
    /// Cancel the instance.
    Cancel {
        reason: String,
    },
    /// Extend the SLA deadline by a term (8-FZ: up to 15 days with a notice).
    ExtendSla {
        by: crate::model::Term,
        reason: String,
    },
    /// Stop or restart the SLA clock (waiting for the requester).
    PauseSla {
        reason: String,
    },
    ResumeSla,
    /// Set the instance aside with an incident on it (the host failed to run a command on it):
    /// see [`Retry::Quarantine`].
    Quarantine {
        reason: String,
    },
}

/// How a new instance begins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartCommand {
    pub id: String,
    pub business_key: Option<String>,
    pub variables: Vars,
    /// A specific start event (timer or message start); default: the none start event.
    pub start_event: Option<String>,
    /// Set when a call activity of another instance starts this one.
    pub parent: Option<ParentRef>,
}

/// Why a command does not fit the state. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the instance is {0:?}, not active")]
    NotActive(Status),
    #[error("there is no open task {0}")]
    NoSuchTask(Key),
    #[error("there is no pending timer {0}")]
    NoSuchTimer(Key),
    #[error("there is no job {0} waiting")]
    NoSuchJob(Key),
    #[error("there is no call activity {0} waiting for a child")]
    NoSuchCall(Key),
    #[error("no subscription for message `{name}` with correlation key `{correlation_key}`")]
    NoSubscription { name: String, correlation_key: String },
    #[error("there is no open incident {0}")]
    NoSuchIncident(Key),
    #[error("no start event `{0}` in the process")]
    NoSuchStartEvent(String),
    #[error("the process has no none start event; name the start event to use")]
    NoNoneStart,
    #[error("the form is not filled in correctly: {0}")]
    InvalidForm(FormProblems),
    #[error("the instance has no SLA")]
    NoSla,
    #[error("the instance is set aside after a failure (incident {0}); resolve or cancel it first")]
    Quarantined(Key),
    #[error("{0}")]
    Invalid(String),
}

/// A refused form's problems: defined with the forms, part of the runtime's vocabulary.
pub use crate::form::{FieldProblem, FieldProblemKind, FormProblems};

/// The outcome of a command: the events that happened, in order, and the effects to run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub at: Ts,
    pub events: Vec<Event>,
    pub effects: Vec<Effect>,
}

/// The audit history's vocabulary. Applying them in order rebuilds the state ([`apply`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    InstanceStarted {
        process: String,
        version: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        business_key: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<ParentRef>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline: Option<Ts>,
        /// The SLA term's last day before Civil Code art. 193 moves it off a day off, for a
        /// term in calendar days (see [`Sla::last_day`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_day: Option<chrono::NaiveDate>,
    },
    ElementEntered {
        key: Key,
        node: NodeIdx,
        scope: Key,
    },
    ElementCompleted {
        key: Key,
        node: NodeIdx,
    },
    ElementTerminated {
        key: Key,
        node: NodeIdx,
    },
    /// A token arrived at a join that is still waiting for others.
    TokenWaiting {
        scope: Key,
        flow: u32,
    },
    /// A join fired, consuming the waiting tokens of these flows.
    JoinFired {
        scope: Key,
        flows: Vec<u32>,
    },
    VariablesSet {
        scope: Key,
        variables: Vars,
    },
    MultiInstanceStarted {
        key: Key,
        items: Vec<serde_json::Value>,
    },
    MultiInstanceProgress {
        key: Key,
        index: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<serde_json::Value>,
    },
    TaskCreated {
        key: Key,
        node: NodeIdx,
        task: TaskInfo,
    },
    TaskCompleted {
        key: Key,
        node: NodeIdx,
    },
    JobCreated {
        key: Key,
        node: NodeIdx,
        job_type: String,
    },
    JobCompleted {
        key: Key,
        node: NodeIdx,
    },
    EmailQueued {
        key: Key,
        node: NodeIdx,
        email: Email,
    },
    TimerScheduled {
        key: Key,
        node: NodeIdx,
        owner: Key,
        due: Ts,
        fired: u32,
    },
    TimerFired {
        key: Key,
        node: NodeIdx,
        /// Occurrences of a cycle skipped because the timer fired late (after downtime): the
        /// cycle fires once for all of them (DESIGN §4).
        #[serde(default, skip_serializing_if = "is_zero")]
        missed: u32,
    },
    TimerCancelled {
        key: Key,
        node: NodeIdx,
    },
    MessageSubscribed {
        key: Key,
        node: NodeIdx,
        owner: Key,
        name: String,
        correlation_key: String,
    },
    MessageCorrelated {
        key: Key,
        node: NodeIdx,
        name: String,
        correlation_key: String,
    },
    SubscriptionClosed {
        key: Key,
        /// The message catch event (histories written before this field read node 0).
        #[serde(default)]
        node: NodeIdx,
    },
    ChildStarted {
        key: Key,
        node: NodeIdx,
        process: String,
    },
    ErrorThrown {
        node: NodeIdx,
        code: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caught_by: Option<NodeIdx>,
    },
    IncidentRaised {
        key: Key,
        node: NodeIdx,
        element: Key,
        message: String,
        retry: Retry,
    },
    IncidentResolved {
        key: Key,
    },
    SlaExtended {
        deadline: Ts,
        reason: String,
        /// The extended term's last day before the legal move (see [`Sla::last_day`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_day: Option<chrono::NaiveDate>,
    },
    SlaPaused {
        reason: String,
    },
    SlaResumed {
        deadline: Ts,
        /// The term's last day, moved by the pause, before the legal move.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_day: Option<chrono::NaiveDate>,
    },
    InstanceCompleted,
    InstanceCancelled {
        reason: String,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Work for the driver, to run after the transition is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Wake this instance with `FireTimer { timer }` at `due`.
    ScheduleTimer {
        timer: Key,
        due: Ts,
    },
    CancelTimer {
        timer: Key,
    },
    /// Send an email, then answer `CompleteJob { job }` (or `FailJob`).
    SendEmail {
        job: Key,
        email: Email,
    },
    /// Run a job: a built-in one (`report`, `registry-update`) in the engine's host, any other
    /// by an external worker (`/v2/jobs/activation`); then answer `CompleteJob`, `FailJob` or
    /// `ThrowJobError`. `retries`: how many failures the worker may report before the job
    /// becomes an incident (`zeebe:taskDefinition retries`, default 3).
    RunJob {
        job: Key,
        job_type: String,
        headers: Vec<(String, String)>,
        variables: Vars,
        retries: u32,
    },
    CancelJob {
        job: Key,
    },
    /// Index a message subscription so `CorrelateMessage` finds this instance.
    Subscribe {
        subscription: Key,
        name: String,
        correlation_key: String,
    },
    Unsubscribe {
        subscription: Key,
    },
    /// Start a child instance for a call activity; answer with `ChildCompleted { call }`.
    StartChild {
        call: Key,
        process: String,
        variables: Vars,
    },
    /// Cancel the child instance started for `call`.
    CancelChild {
        call: Key,
    },
    /// Tell the parent instance this (child) instance ended.
    NotifyParent {
        parent: ParentRef,
        outcome: ChildOutcome,
    },
    /// Publish a message (message throw/end event) for other instances.
    PublishMessage {
        name: String,
        correlation_key: String,
        variables: Vars,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ChildOutcome {
    Completed { variables: Vars },
    Failed { error_code: String, message: String },
    Cancelled,
}

/// An email ready to render and send. `template`, when set, names a file of
/// `definitions/templates/` rendered with `variables`; otherwise `body` is the text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Email {
    pub to: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<String>,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Extra headers of the email task (recipient rules, attachments) for the adapter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub variables: Vars,
    /// The entries of `to` and `cc` that are addresses taken from variables (an expression's
    /// value not written in it as a literal): the server sends to them only within the domains
    /// its operator allows for the process (`mail_variable_domains`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_variables: Vec<String>,
}
