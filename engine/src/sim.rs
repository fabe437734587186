//! The simulator: runs a scenario (DESIGN §6) on the pure runtime with a virtual clock and
//! renders the trace as JSON lines. The same scenario files are the project's data-driven tests.
//!
//! It plays the driver's part: it keeps the instances (a call activity starts a child), fires
//! timers in due order while the clock advances, sends emails and runs built-in jobs by
//! answering them at once (with the variables the scenario gives per job type), correlates
//! messages, and buffers messages published with a time-to-live.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::SecondsFormat;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use crate::feel::Vars;
use crate::model::Definitions;
use crate::runtime::{
    self, ChildOutcome, Command, Effect, Env, Event, Instance, Key, ParentRef, ProcessDef, StartCommand, Status,
    Transition, Ts,
};
use crate::timer::{IsoDuration, parse_date_time};

/// A scenario file, as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The BPMN file, relative to the scenario file.
    pub definition: String,
    /// The process to start; optional when the file has one executable process.
    #[serde(default)]
    pub process: Option<String>,
    /// IANA zone used when the definition does not name one (default Europe/Astrakhan).
    #[serde(default)]
    pub time_zone: Option<String>,
    pub start: StartSpec,
    #[serde(default, rename = "step")]
    pub steps: Vec<StepSpec>,
    /// Variables a built-in job of each type returns (`[jobs.report] variables = {…}`).
    #[serde(default)]
    pub jobs: BTreeMap<String, JobSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartSpec {
    pub at: String,
    #[serde(default)]
    pub variables: Option<toml::Table>,
    #[serde(default)]
    pub business_key: Option<String>,
    /// Start at this start event (timer or message start) instead of the none start event.
    #[serde(default)]
    pub event: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    #[serde(default)]
    pub variables: Option<toml::Table>,
    /// Make the job fail instead (the message becomes an incident).
    #[serde(default)]
    pub fail: Option<String>,
    /// Make the worker throw this BPMN error code instead (as `/v2/jobs/{key}/error` does);
    /// `variables` go with it to the catching event.
    #[serde(default)]
    pub error: Option<String>,
}

/// One step. Exactly one of the action keys is set.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Complete the oldest open user task of this element.
    #[serde(default)]
    pub complete: Option<String>,
    /// Publish a message by name.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub correlation_key: Option<String>,
    /// With a message: keep it this long (ISO 8601) if no subscription waits for it yet.
    #[serde(default)]
    pub ttl: Option<String>,
    /// Move the clock forward by an ISO 8601 duration, firing timers on the way.
    #[serde(default)]
    pub advance: Option<String>,
    /// Move the clock to an instant (RFC 3339), firing timers on the way.
    #[serde(default)]
    pub until: Option<String>,
    /// Cancel the main instance with this reason.
    #[serde(default)]
    pub cancel: Option<String>,
    /// Extend the main instance's SLA by an ISO 8601 duration in calendar days.
    #[serde(default)]
    pub extend_sla: Option<String>,
    #[serde(default)]
    pub pause_sla: Option<String>,
    #[serde(default)]
    pub resume_sla: Option<bool>,
    /// Resolve the oldest open incident (after setting `variables`).
    #[serde(default)]
    pub resolve_incident: Option<bool>,
    #[serde(default)]
    pub variables: Option<toml::Table>,
}

/// Parses a scenario.
pub fn parse_scenario(text: &str) -> Result<Scenario, String> {
    toml::from_str(text).map_err(|e| format!("bad scenario: {e}"))
}

/// One trace line.
pub type TraceLine = Map<String, Json>;

/// Why a simulation stopped early. The trace up to that point is still returned.
#[derive(Debug, Clone, PartialEq)]
pub struct SimError {
    pub message: String,
}

struct Live {
    def: ProcessDef,
    state: Instance,
}

/// A simulation in progress.
pub struct Simulation<'a> {
    defs: Arc<Definitions>,
    env: &'a Env,
    tz: chrono_tz::Tz,
    now: Ts,
    instances: BTreeMap<String, Live>,
    next_instance: u32,
    /// (due, instance, timer key)
    timers: Vec<(Ts, String, Key)>,
    /// Messages waiting for a subscription: (expires, name, key, variables).
    buffered: Vec<(Ts, String, String, Vars)>,
    jobs: BTreeMap<String, JobSpec>,
    pending: std::collections::VecDeque<(String, Command)>,
    pub trace: Vec<TraceLine>,
}

impl std::fmt::Debug for Simulation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation").field("now", &self.now).field("instances", &self.instances.len()).finish()
    }
}

/// Runs `scenario` against `defs`. Returns the trace, and an error if a step could not apply.
pub fn run(defs: Arc<Definitions>, env: &Env, scenario: &Scenario) -> (Vec<TraceLine>, Option<SimError>) {
    let default_tz: chrono_tz::Tz =
        scenario.time_zone.as_deref().and_then(|t| t.parse().ok()).unwrap_or(chrono_tz::Europe::Astrakhan);
    let process = match &scenario.process {
        Some(p) => p.clone(),
        None => {
            let mut exec = defs.executable_processes();
            match (exec.next(), exec.next()) {
                (Some(p), None) => p.id.clone(),
                (None, _) => return (Vec::new(), Some(err("the definition has no executable process"))),
                (Some(_), Some(_)) => {
                    return (
                        Vec::new(),
                        Some(err("the definition has several processes; set `process` in the scenario")),
                    );
                }
            }
        }
    };
    let Some(def) = ProcessDef::new(defs.clone(), &process, 1, default_tz) else {
        return (Vec::new(), Some(err(&format!("no process `{process}` in the definition"))));
    };
    let start_at = match parse_date_time(&scenario.start.at) {
        Ok(t) => t.to_utc(),
        Err(e) => return (Vec::new(), Some(err(&format!("[start] at: {e}")))),
    };
    let mut sim = Simulation {
        defs,
        env,
        tz: def.tz,
        now: start_at,
        instances: BTreeMap::new(),
        next_instance: 1,
        timers: Vec::new(),
        buffered: Vec::new(),
        jobs: scenario.jobs.clone(),
        pending: Default::default(),
        trace: Vec::new(),
    };
    let start = StartCommand {
        id: String::new(),
        business_key: scenario.start.business_key.clone(),
        variables: table_to_vars(scenario.start.variables.as_ref()),
        start_event: scenario.start.event.clone(),
        parent: None,
    };
    if let Err(e) = sim.start_instance(def, start) {
        return (sim.trace, Some(e));
    }
    for (i, step) in scenario.steps.iter().enumerate() {
        if let Err(e) = sim.step(step) {
            let e = SimError { message: format!("step {}: {}", i + 1, e.message) };
            let mut line = Map::new();
            line.insert("at".into(), json!(sim.fmt_ts(sim.now)));
            line.insert("event".into(), json!("error"));
            line.insert("message".into(), json!(e.message));
            sim.trace.push(line);
            return (sim.trace, Some(e));
        }
    }
    (sim.trace, None)
}

fn err(message: &str) -> SimError {
    SimError { message: message.to_string() }
}

fn table_to_vars(table: Option<&toml::Table>) -> Vars {
    match table {
        Some(t) => match serde_json::to_value(t) {
            Ok(Json::Object(map)) => map,
            _ => Vars::new(),
        },
        None => Vars::new(),
    }
}

impl Simulation<'_> {
    fn fmt_ts(&self, t: Ts) -> String {
        t.with_timezone(&self.tz).to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn main_id(&self) -> String {
        "1".to_string()
    }

    fn start_instance(&mut self, def: ProcessDef, mut cmd: StartCommand) -> Result<String, SimError> {
        let id = self.next_instance.to_string();
        self.next_instance += 1;
        cmd.id = id.clone();
        let (state, transition) = runtime::start(&def, self.env, cmd, self.now).map_err(|e| err(&e.to_string()))?;
        self.instances.insert(id.clone(), Live { def, state });
        self.absorb(&id, transition);
        self.drain()?;
        Ok(id)
    }

    fn command(&mut self, id: &str, cmd: Command) -> Result<(), SimError> {
        let live = self.instances.get(id).ok_or_else(|| err(&format!("no instance {id}")))?;
        let (state, transition) =
            runtime::handle(&live.def, self.env, &live.state, cmd, self.now).map_err(|e| err(&e.to_string()))?;
        self.instances.get_mut(id).expect("checked above").state = state;
        self.absorb(id, transition);
        Ok(())
    }

    /// Runs the commands that effects queued (job answers, child outcomes), in order; then
    /// fires the timers that are already due (a `timeDate` in the past, a zero duration) at the
    /// current virtual time, as a driver's scheduler would at once, not at the next step.
    fn drain(&mut self) -> Result<(), SimError> {
        loop {
            while let Some((id, cmd)) = self.pending.pop_front() {
                self.command(&id, cmd)?;
            }
            self.timers.sort();
            match self.timers.first() {
                Some((due, ..)) if *due <= self.now => {
                    let (_, id, key) = self.timers.remove(0);
                    if self.instances.get(&id).is_some_and(|l| l.state.status == Status::Active) {
                        self.command(&id, Command::FireTimer { timer: key })?;
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Records a transition's events in the trace and plays its effects.
    fn absorb(&mut self, id: &str, t: Transition) {
        for event in &t.events {
            if let Some(line) = self.render(id, event, t.at) {
                self.trace.push(line);
            }
        }
        for effect in t.effects {
            match effect {
                Effect::ScheduleTimer { timer, due } => self.timers.push((due, id.to_string(), timer)),
                Effect::CancelTimer { timer } => self.timers.retain(|(_, i, k)| !(i == id && *k == timer)),
                Effect::SendEmail { job, .. } => {
                    self.pending.push_back((id.to_string(), Command::CompleteJob { job, variables: Vars::new() }))
                }
                Effect::RunJob { job, job_type, .. } => {
                    // A built-in job runs at once (answered by `[jobs.TYPE]` when given); a job
                    // for an external worker waits until the scenario answers it.
                    let builtin = crate::parse::BUILTIN_JOB_TYPES.contains(&job_type.as_str());
                    let Some(spec) = self.jobs.get(&job_type).cloned().or_else(|| builtin.then(JobSpec::default))
                    else {
                        continue;
                    };
                    let variables = table_to_vars(spec.variables.as_ref());
                    let cmd = match (spec.fail, spec.error) {
                        (Some(message), _) => Command::FailJob { job, message, retryable: false },
                        (None, Some(code)) => Command::ThrowJobError { job, code, message: String::new(), variables },
                        (None, None) => Command::CompleteJob { job, variables },
                    };
                    self.pending.push_back((id.to_string(), cmd));
                }
                Effect::StartChild { call, process, variables } => {
                    let Some(def) = ProcessDef::new(self.defs.clone(), &process, 1, self.tz) else {
                        let cmd = Command::ChildFailed {
                            call,
                            error_code: "process-not-found".into(),
                            message: format!("process `{process}` is not deployed"),
                        };
                        self.pending.push_back((id.to_string(), cmd));
                        continue;
                    };
                    let cmd = StartCommand {
                        id: String::new(),
                        business_key: None,
                        variables,
                        start_event: None,
                        parent: Some(ParentRef { instance: id.to_string(), call }),
                    };
                    if let Err(e) = self.start_instance(def, cmd) {
                        let cmd = Command::ChildFailed { call, error_code: "start-failed".into(), message: e.message };
                        self.pending.push_back((id.to_string(), cmd));
                    }
                }
                Effect::CancelChild { call } => {
                    let child = self.instances.iter().find_map(|(cid, live)| {
                        (live.state.parent.as_ref() == Some(&ParentRef { instance: id.to_string(), call })
                            && live.state.status == Status::Active)
                            .then(|| cid.clone())
                    });
                    if let Some(child) = child {
                        self.pending
                            .push_back((child, Command::Cancel { reason: "the calling activity ended".into() }));
                    }
                }
                Effect::NotifyParent { parent, outcome } => {
                    let cmd = match outcome {
                        ChildOutcome::Completed { variables } => {
                            Command::ChildCompleted { call: parent.call, variables }
                        }
                        ChildOutcome::Failed { error_code, message } => {
                            Command::ChildFailed { call: parent.call, error_code, message }
                        }
                        ChildOutcome::Cancelled => continue,
                    };
                    self.pending.push_back((parent.instance, cmd));
                }
                Effect::PublishMessage { name, correlation_key, variables } => {
                    if let Some(target) = self.find_subscriber(&name, &correlation_key) {
                        self.pending
                            .push_back((target, Command::CorrelateMessage { name, correlation_key, variables }));
                    }
                }
                Effect::Subscribe { .. } => self.deliver_buffered(),
                Effect::Unsubscribe { .. } | Effect::CancelJob { .. } => {}
            }
        }
    }

    /// The instances in the order they were started (ids are counters: "2" before "10").
    fn in_start_order(&self) -> impl Iterator<Item = (&String, &Live)> {
        let mut all: Vec<(&String, &Live)> = self.instances.iter().collect();
        all.sort_by_key(|(id, _)| (id.len(), id.as_str()));
        all.into_iter()
    }

    fn find_subscriber(&self, name: &str, key: &str) -> Option<String> {
        self.in_start_order().find_map(|(id, live)| {
            live.state.messages.iter().any(|m| m.name == name && m.correlation_key == key).then(|| id.clone())
        })
    }

    fn deliver_buffered(&mut self) {
        self.expire_messages();
        let mut i = 0;
        while i < self.buffered.len() {
            let (_, name, key, _) = &self.buffered[i];
            if let Some(target) = self.find_subscriber(name, key) {
                let (_, name, correlation_key, variables) = self.buffered.remove(i);
                self.pending.push_back((target, Command::CorrelateMessage { name, correlation_key, variables }));
            } else {
                i += 1;
            }
        }
    }

    fn render(&self, id: &str, event: &Event, at: Ts) -> Option<TraceLine> {
        let live = self.instances.get(id);
        let final_vars = live.and_then(|l| l.state.vars(runtime::ROOT));
        let mut line = render_event(live.map(|l| &l.def), event, at, self.tz, final_vars, &|key| json!(key))?;
        if id != "1" {
            line.insert("instance".into(), json!(id));
        }
        Some(line)
    }

    fn step(&mut self, step: &StepSpec) -> Result<(), SimError> {
        let variables = table_to_vars(step.variables.as_ref());
        let main = self.main_id();
        if let Some(element) = &step.complete {
            let found = self.in_start_order().find_map(|(id, live)| {
                live.state
                    .open_tasks()
                    .find(|(_, node, _)| live.def.node_id(*node) == element)
                    .map(|(key, _, _)| (id.clone(), key))
            });
            let (id, task) = found.ok_or_else(|| err(&format!("no open task `{element}`")))?;
            self.command(&id, Command::CompleteTask { task, variables })?;
        } else if let Some(name) = &step.message {
            let key = step.correlation_key.clone().unwrap_or_default();
            match self.find_subscriber(name, &key) {
                Some(id) => {
                    let cmd = Command::CorrelateMessage { name: name.clone(), correlation_key: key, variables };
                    self.command(&id, cmd)?;
                }
                None => match &step.ttl {
                    Some(ttl) => {
                        let ttl = IsoDuration::parse(ttl).map_err(|e| err(&format!("ttl: {e}")))?;
                        let expires = ttl.add_to(self.now).ok_or_else(|| err("ttl out of range"))?;
                        let mut line = self.note("message_buffered", name);
                        line.insert("correlation_key".into(), json!(key));
                        line.insert("expires".into(), json!(self.fmt_ts(expires)));
                        self.trace.push(line);
                        self.buffered.push((expires, name.clone(), key, variables));
                    }
                    None => {
                        return Err(err(&format!(
                            "no instance waits for message `{name}` with correlation key `{key}` (give `ttl` to buffer it)"
                        )));
                    }
                },
            }
        } else if let Some(d) = &step.advance {
            let d = IsoDuration::parse(d).map_err(|e| err(&format!("advance: {e}")))?;
            let target =
                d.add_to(self.now.with_timezone(&self.tz)).ok_or_else(|| err("advance out of range"))?.to_utc();
            self.advance_to(target)?;
        } else if let Some(until) = &step.until {
            let target = parse_date_time(until).map_err(|e| err(&format!("until: {e}")))?.to_utc();
            if target < self.now {
                return Err(err("`until` is in the past of the virtual clock"));
            }
            self.advance_to(target)?;
        } else if let Some(reason) = &step.cancel {
            self.command(&main, Command::Cancel { reason: reason.clone() })?;
        } else if let Some(by) = &step.extend_sla {
            let duration = IsoDuration::parse(by).map_err(|e| err(&format!("extend_sla: {e}")))?;
            let term = crate::model::Term {
                duration,
                time: crate::model::TimeBasis::Calendar,
                calendar: None,
                pos: Default::default(),
            };
            let reason = step.variables.as_ref().and_then(|v| v.get("reason")).and_then(|v| v.as_str()).unwrap_or("");
            self.command(&main, Command::ExtendSla { by: term, reason: reason.to_string() })?;
        } else if let Some(reason) = &step.pause_sla {
            self.command(&main, Command::PauseSla { reason: reason.clone() })?;
        } else if step.resume_sla == Some(true) {
            self.command(&main, Command::ResumeSla)?;
        } else if step.resolve_incident == Some(true) {
            let found =
                self.in_start_order().find_map(|(id, live)| live.state.incidents.first().map(|i| (id.clone(), i.key)));
            let (id, incident) = found.ok_or_else(|| err("there is no open incident"))?;
            self.command(&id, Command::ResolveIncident { incident, variables })?;
        } else {
            return Err(err("the step has no action (complete, message, advance, until, cancel, …)"));
        }
        self.drain()
    }

    fn note(&self, event: &str, message: &str) -> TraceLine {
        let mut line = Map::new();
        line.insert("at".into(), json!(self.fmt_ts(self.now)));
        line.insert("event".into(), json!(event));
        line.insert("message".into(), json!(message));
        line
    }

    /// Drops the buffered messages whose time to live has run out by now (a message lives
    /// until, not including, its expiry instant), recording each.
    fn expire_messages(&mut self) {
        let now = self.now;
        let (expired, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.buffered).into_iter().partition(|m| m.0 <= now);
        self.buffered = kept;
        for (expires, name, key, _) in expired {
            let mut line = self.note("message_expired", &name);
            line.insert("at".into(), json!(self.fmt_ts(expires)));
            line.insert("correlation_key".into(), json!(key));
            self.trace.push(line);
        }
    }

    /// Fires due timers and expires buffered messages in time order (ties: messages first,
    /// then timers by instance and timer key) up to `target`.
    fn advance_to(&mut self, target: Ts) -> Result<(), SimError> {
        loop {
            self.timers.sort();
            let next_timer = self.timers.first().map(|(due, ..)| *due).filter(|due| *due <= target);
            let next_expiry = self.buffered.iter().map(|m| m.0).filter(|e| *e <= target).min();
            match (next_timer, next_expiry) {
                (_, Some(expiry)) if next_timer.is_none_or(|due| expiry <= due) => {
                    self.now = self.now.max(expiry);
                    self.expire_messages();
                }
                (Some(due), _) => {
                    let (_, id, key) = self.timers.remove(0);
                    self.now = self.now.max(due);
                    let active = self.instances.get(&id).is_some_and(|l| l.state.status == Status::Active);
                    if active {
                        self.command(&id, Command::FireTimer { timer: key })?;
                        self.drain()?;
                    }
                }
                _ => break,
            }
        }
        self.now = target;
        Ok(())
    }
}

/// Renders one event as a line of the trace vocabulary (DESIGN §6) — the one renderer of the
/// simulator and of the HTTP history. `None` for bookkeeping events the trace leaves out (joins,
/// variable writes, multi-instance progress). Times are shown in `tz`; `final_vars` are shown on
/// `instance_completed`; `task_id` names a task (the simulator prints its key, the HTTP history
/// the task's API id).
pub fn render_event(
    def: Option<&ProcessDef>,
    event: &Event,
    at: Ts,
    tz: chrono_tz::Tz,
    final_vars: Option<&Vars>,
    task_id: &dyn Fn(Key) -> Json,
) -> Option<TraceLine> {
    let fmt = |t: Ts| t.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Secs, true);
    let el = |node: &u32| {
        def.filter(|d| (*node as usize) < d.process().nodes.len())
            .map(|d| d.node_id(*node).to_string())
            .unwrap_or_default()
    };
    let mut line = Map::new();
    line.insert("at".into(), json!(fmt(at)));
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
                put("deadline", json!(fmt(*d)));
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
        Event::TaskCreated { key, node, task } => {
            put("event", json!("task_created"));
            put("element", json!(el(node)));
            put("task", task_id(*key));
            put("due", task.due.map(|d| json!(fmt(d))).unwrap_or(Json::Null));
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
            put("due", json!(fmt(*due)));
        }
        Event::TimerFired { node, missed, .. } => {
            put("event", json!("timer_fired"));
            put("element", json!(el(node)));
            if *missed > 0 {
                put("missed", json!(missed));
            }
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
        Event::SubscriptionClosed { node, .. } => {
            put("event", json!("message_subscription_closed"));
            put("element", json!(el(node)));
        }
        Event::ChildStarted { node, process, .. } => {
            put("event", json!("child_started"));
            put("element", json!(el(node)));
            put("process", json!(process));
        }
        Event::ErrorThrown { node, code, caught_by } => {
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
            put("deadline", json!(fmt(*deadline)));
            put("reason", json!(reason));
        }
        Event::SlaPaused { reason } => {
            put("event", json!("sla_paused"));
            put("reason", json!(reason));
        }
        Event::SlaResumed { deadline, .. } => {
            put("event", json!("sla_resumed"));
            put("deadline", json!(fmt(*deadline)));
        }
        Event::InstanceCompleted => {
            put("event", json!("instance_completed"));
            let vars = final_vars.cloned().unwrap_or_default();
            put("variables", Json::Object(vars));
        }
        Event::InstanceCancelled { reason } => {
            put("event", json!("instance_cancelled"));
            put("reason", json!(reason));
        }
        Event::TokenWaiting { .. }
        | Event::JoinFired { .. }
        | Event::VariablesSet { .. }
        | Event::MultiInstanceStarted { .. }
        | Event::MultiInstanceProgress { .. } => return None,
    }
    Some(line)
}
