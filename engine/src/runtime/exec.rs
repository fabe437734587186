//! The executor: decides what a command does, emitting events (applied at once to a working copy
//! of the state) and effects. Work inside one command runs from a FIFO queue of steps, so the
//! order of events is deterministic and independent of recursion depth.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value as Json;

use super::state::{EiData, MiState, Retry, apply};
use super::terms::{self, compute_term};
use super::*;
use crate::feel::{Budget, Expr, Vars};
use crate::model::*;
use crate::timer::IsoDuration;
use crate::timer::TimerSpec;
use chrono::NaiveDate;

/// Starts a new instance, within a budget of `env.limits`.
pub fn start(def: &ProcessDef, env: &Env, cmd: StartCommand, now: Ts) -> Result<(Instance, Transition), Rejection> {
    start_within(def, env, cmd, now, &Budget::new(env.limits))
}

/// Starts a new instance; its evaluations and activations spend `budget`.
pub fn start_within(
    def: &ProcessDef,
    env: &Env,
    cmd: StartCommand,
    now: Ts,
    budget: &Budget,
) -> Result<(Instance, Transition), Rejection> {
    let p = def.process();
    let start_node = match &cmd.start_event {
        Some(id) => {
            let node = p.node_by_id(id).ok_or_else(|| Rejection::NoSuchStartEvent(id.clone()))?;
            if !matches!(p.node(node).kind, NodeKind::StartEvent { .. }) || p.node(node).parent.is_some() {
                return Err(Rejection::NoSuchStartEvent(id.clone()));
            }
            node
        }
        None => p.none_start_of(None).ok_or(Rejection::NoNoneStart)?,
    };
    let state = Instance { id: cmd.id.clone(), next_key: 1, ..Instance::default() };
    let mut x = Exec::new(def, env, state, now, budget);
    if !cmd.variables.is_empty() {
        // Visible to the SLA's date expression; emitted as an event just below.
        x.st.scopes.push((ROOT, cmd.variables.clone()));
    }
    let (deadline, last_day) = match &p.settings.sla {
        Some(sla) => {
            let (deadline, last_day) = x
                .deadline_detail(sla, ROOT)
                .map_err(|Failure(e)| Rejection::Invalid(format!("the SLA deadline cannot be computed: {e}")))?;
            (Some(deadline), last_day)
        }
        None => (None, None),
    };
    x.st.scopes.clear();
    x.emit(Event::InstanceStarted {
        process: def.key().to_string(),
        version: def.version,
        business_key: cmd.business_key,
        parent: cmd.parent,
        deadline,
        last_day,
    });
    if !cmd.variables.is_empty() {
        x.emit(Event::VariablesSet { scope: ROOT, variables: cmd.variables });
    }
    if let Err(Failure(message)) = x.open_event_subprocesses(ROOT) {
        x.incident(ROOT, Retry::Activate, message);
    }
    x.queue.push_back(Step::Activate { node: start_node, scope: ROOT, flow: None });
    x.run();
    Ok(x.finish())
}

/// Applies a command to an existing instance, within a budget of `env.limits`.
pub fn handle(
    def: &ProcessDef,
    env: &Env,
    state: &Instance,
    cmd: Command,
    now: Ts,
) -> Result<(Instance, Transition), Rejection> {
    handle_within(def, env, state, cmd, now, &Budget::new(env.limits))
}

/// Applies a command to an existing instance; its evaluations and activations spend `budget`.
/// Work past the budget stops with an incident on the element it reached.
pub fn handle_within(
    def: &ProcessDef,
    env: &Env,
    state: &Instance,
    cmd: Command,
    now: Ts,
    budget: &Budget,
) -> Result<(Instance, Transition), Rejection> {
    if state.status != Status::Active {
        return Err(Rejection::NotActive(state.status));
    }
    if let Some(quarantine) = state.incidents.iter().find(|i| i.retry == Retry::Quarantine)
        && !matches!(&cmd, Command::Cancel { .. })
        && !matches!(&cmd, Command::ResolveIncident { incident, .. } if *incident == quarantine.key)
    {
        return Err(Rejection::Quarantined(quarantine.key));
    }
    let mut x = Exec::new(def, env, state.clone(), now, budget);
    x.command(cmd)?;
    x.run();
    Ok(x.finish())
}

#[derive(Debug)]
enum Step {
    Activate {
        node: NodeIdx,
        scope: Key,
        flow: Option<FlowIdx>,
    },
    Leave {
        key: Key,
    },
    ScopeCheck {
        scope: Key,
    },
    /// The next inner instance of a sequential multi-instance body: queued, not called from
    /// the completion of the previous one, so a loop over many items needs no stack.
    StartInner {
        body: Key,
        index: u32,
    },
}

struct Exec<'a> {
    def: &'a ProcessDef,
    p: &'a Process,
    env: &'a Env,
    now: Ts,
    st: Instance,
    next_key: Key,
    events: Vec<Event>,
    effects: Vec<Effect>,
    queue: VecDeque<Step>,
    /// The command's budget: FEEL evaluations and element activations spend it.
    budget: &'a Budget,
}

/// A failure inside the running process: becomes an incident.
struct Failure(String);

impl<'a> Exec<'a> {
    fn new(def: &'a ProcessDef, env: &'a Env, st: Instance, now: Ts, budget: &'a Budget) -> Self {
        let next_key = st.next_key;
        Exec {
            def,
            p: def.process(),
            env,
            now,
            st,
            next_key,
            events: Vec::new(),
            effects: Vec::new(),
            queue: VecDeque::new(),
            budget,
        }
    }

    fn finish(self) -> (Instance, Transition) {
        (self.st, Transition { at: self.now, events: self.events, effects: self.effects })
    }

    fn emit(&mut self, event: Event) {
        apply(&mut self.st, &event, self.now);
        self.events.push(event);
    }

    fn key(&mut self) -> Key {
        let k = self.next_key;
        self.next_key += 1;
        k
    }

    /// The seed of FEEL's `random number()`: the instance id, the command's time and the key
    /// counter (which moves as the command opens elements), so evaluations differ from each
    /// other yet a replay of the same command gives the same numbers.
    fn random_seed(&self) -> u64 {
        let stamp = self.now.timestamp_nanos_opt().unwrap_or_default() as u64;
        crate::feel_compat::fnv1a(self.st.id.as_bytes(), stamp ^ (u64::from(self.next_key) << 32))
    }

    fn clock(&self) -> crate::feel::Clock {
        crate::feel::Clock { now: self.now, tz: self.def.tz, seed: self.random_seed() }
    }

    /// The instant a deadline falls at, counted from now, and for a term in calendar days (or a
    /// date) its last day before the legal move to a working day.
    fn deadline_detail(&self, deadline: &Deadline, scope: Key) -> Result<(Ts, Option<NaiveDate>), Failure> {
        match deadline {
            Deadline::Term(term) => {
                let at = compute_term(term, self.now, self.def.tz, self.env, &self.def.calendar)
                    .map_err(|e| Failure(e.to_string()))?;
                Ok((at, terms::term_last_day(term, self.now, self.def.tz)))
            }
            Deadline::Date { expr, calendar, .. } => {
                let value = self.eval(expr, scope)?;
                let text = match &value {
                    Json::String(text) => text.as_str(),
                    Json::Null => return Err(Failure(expr.null_message(&self.lookup_fn(scope)))),
                    other => return Err(Failure(format!("`{}` gave {other}, expected a date", expr.source()))),
                };
                if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                    let name = calendar.as_deref().unwrap_or(&self.def.calendar);
                    let at = self
                        .calendar(name)?
                        .on_or_next_working_day_close(date, self.def.tz)
                        .map_err(|e| Failure(e.to_string()))?;
                    return Ok((at.to_utc(), Some(date)));
                }
                let at = crate::timer::parse_date_time(text)
                    .map_err(|e| Failure(format!("`{}` gave `{text}`: {e}", expr.source())))?;
                Ok((at.to_utc(), None))
            }
        }
    }

    /// The instant a task's deadline falls at, counted from now.
    fn deadline(&self, deadline: &Deadline, scope: Key) -> Result<Ts, Failure> {
        self.deadline_detail(deadline, scope)
            .map(|(at, _)| at)
            .map_err(|Failure(e)| Failure(format!("the deadline cannot be computed: {e}")))
    }

    fn calendar(&self, name: &str) -> Result<&'a crate::calendar::WorkCalendar, Failure> {
        self.env
            .calendars
            .get(name)
            .ok_or_else(|| Failure(terms::TermError::UnknownCalendar(name.to_string()).to_string()))
    }

    fn node(&self, n: NodeIdx) -> &'a Node {
        self.p.node(n)
    }

    // ---- commands -------------------------------------------------------------------------

    fn command(&mut self, cmd: Command) -> Result<(), Rejection> {
        match cmd {
            Command::CompleteTask { task, variables } => {
                let ei = self
                    .st
                    .ei(task)
                    .filter(|e| matches!(e.data, EiData::Task(_)))
                    .ok_or(Rejection::NoSuchTask(task))?;
                let node = ei.node;
                let n = self.node(node);
                if let NodeKind::Task(t) = &n.kind {
                    crate::form::check_writes(self.p, n, &t.form, &variables).map_err(Rejection::InvalidForm)?;
                    crate::form::check(&t.form, &variables).map_err(Rejection::InvalidForm)?;
                }
                self.emit(Event::TaskCompleted { key: task, node });
                self.leave(task, Some(variables));
            }
            Command::CompleteJob { job, variables } => {
                let ei = self.st.ei(job).filter(|e| matches!(e.data, EiData::Job)).ok_or(Rejection::NoSuchJob(job))?;
                let node = ei.node;
                self.emit(Event::JobCompleted { key: job, node });
                self.leave(job, Some(variables));
            }
            Command::FailJob { job, message, retryable } => {
                let ei = self.st.ei(job).filter(|e| matches!(e.data, EiData::Job)).ok_or(Rejection::NoSuchJob(job))?;
                if !retryable {
                    let node = ei.node;
                    self.emit(Event::JobCompleted { key: job, node });
                    self.incident(job, Retry::Activate, message);
                }
            }
            Command::ThrowJobError { job, code, message, variables } => {
                let ei = self.st.ei(job).filter(|e| matches!(e.data, EiData::Job)).ok_or(Rejection::NoSuchJob(job))?;
                let node = ei.node;
                self.emit(Event::JobCompleted { key: job, node });
                self.throw_error_with(job, &code, &message, variables);
            }
            Command::FireTimer { timer } => self.fire_timer(timer)?,
            Command::CorrelateMessage { name, correlation_key, variables } => {
                let sub = self
                    .st
                    .messages
                    .iter()
                    .find(|m| m.name == name && m.correlation_key == correlation_key)
                    .cloned()
                    .ok_or(Rejection::NoSubscription {
                        name: name.clone(),
                        correlation_key: correlation_key.clone(),
                    })?;
                self.emit(Event::MessageCorrelated {
                    key: sub.key,
                    node: sub.node,
                    name: name.clone(),
                    correlation_key: correlation_key.clone(),
                });
                self.event_happened(sub.node, sub.owner, Some(variables), Some((name, correlation_key)));
            }
            Command::ChildCompleted { call, variables } => {
                let ei =
                    self.st.ei(call).filter(|e| matches!(e.data, EiData::Call)).ok_or(Rejection::NoSuchCall(call))?;
                let node = self.node(ei.node);
                let vars = match &node.kind {
                    NodeKind::CallActivity { called }
                        if !called.propagate_all_child_variables && node.io.outputs.is_empty() =>
                    {
                        None
                    }
                    _ => Some(variables),
                };
                self.leave(call, vars);
            }
            Command::ChildFailed { call, error_code, message } => {
                self.st.ei(call).filter(|e| matches!(e.data, EiData::Call)).ok_or(Rejection::NoSuchCall(call))?;
                self.throw_error(call, &error_code, &message);
            }
            Command::ResolveIncident { incident, variables } => {
                let inc = self
                    .st
                    .incidents
                    .iter()
                    .find(|i| i.key == incident)
                    .cloned()
                    .ok_or(Rejection::NoSuchIncident(incident))?;
                if !variables.is_empty() {
                    let scope = self.st.ei(inc.element).map(|e| e.scope).unwrap_or(ROOT);
                    self.set_propagated(scope, variables);
                }
                self.emit(Event::IncidentResolved { key: incident });
                if let Retry::Reschedule { fired, after } = inc.retry {
                    self.reschedule_cycle(inc.node, inc.element, fired, after);
                } else if inc.retry == Retry::Quarantine {
                    let timers: Vec<Effect> =
                        self.st.timers.iter().map(|t| Effect::ScheduleTimer { timer: t.key, due: t.due }).collect();
                    self.effects.extend(timers);
                } else if inc.element == ROOT && inc.retry == Retry::Activate {
                    // The instance's event subprocesses could not be opened at its start.
                    if let Err(Failure(message)) = self.open_event_subprocesses(ROOT) {
                        self.incident(ROOT, Retry::Activate, message);
                    }
                } else if let Some(ei) = self.st.ei(inc.element).cloned() {
                    match inc.retry {
                        Retry::Activate => self.activate(ei.key, false),
                        Retry::Boundaries => self.activate(ei.key, true),
                        Retry::Complete => self.leave(ei.key, None),
                        Retry::Reschedule { .. } | Retry::Quarantine => {}
                    }
                }
            }
            Command::Cancel { reason } => {
                self.terminate_children(ROOT);
                self.close_subscriptions(ROOT);
                self.emit(Event::InstanceCancelled { reason });
                if let Some(parent) = self.st.parent.clone() {
                    self.effects.push(Effect::NotifyParent { parent, outcome: ChildOutcome::Cancelled });
                }
            }
            Command::ExtendSla { by, reason } => {
                let sla = self.st.sla.clone().ok_or(Rejection::NoSla)?;
                let (deadline, last_day) = self.extended_deadline(&sla, &by)?;
                self.emit(Event::SlaExtended { deadline, reason, last_day });
            }
            Command::PauseSla { reason } => {
                let sla = self.st.sla.clone().ok_or(Rejection::NoSla)?;
                if sla.paused_at.is_some() {
                    return Err(Rejection::Invalid("the SLA clock is already paused".into()));
                }
                self.emit(Event::SlaPaused { reason });
            }
            Command::Quarantine { reason } => self.incident(ROOT, Retry::Quarantine, reason),
            Command::ResumeSla => {
                let sla = self.st.sla.clone().ok_or(Rejection::NoSla)?;
                let paused_at =
                    sla.paused_at.ok_or_else(|| Rejection::Invalid("the SLA clock is not paused".into()))?;
                let (deadline, last_day) = self.shift_deadline(&sla, paused_at)?;
                self.emit(Event::SlaResumed { deadline, last_day });
            }
        }
        Ok(())
    }

    /// The calendar an SLA counts in: its term's, else the definition's.
    fn sla_calendar(&self) -> &'a str {
        match &self.p.settings.sla {
            Some(Deadline::Term(Term { calendar: Some(name), .. }))
            | Some(Deadline::Date { calendar: Some(name), .. }) => name,
            _ => &self.def.calendar,
        }
    }

    /// The unmoved last day of a day-counted SLA; for states stored before it was kept, the
    /// day of its deadline.
    fn sla_last_day(&self, sla: &Sla) -> Option<NaiveDate> {
        let counts_days = match &self.p.settings.sla {
            Some(Deadline::Term(term)) => terms::counts_days(&term.duration, term.time),
            _ => false,
        };
        sla.last_day.or_else(|| counts_days.then(|| sla.deadline.with_timezone(&self.def.tz).date_naive()))
    }

    /// The close of business of `day`, or of the next working day (Civil Code art. 193, 194).
    fn legal_end(&self, calendar: &str, day: NaiveDate) -> Result<Ts, Rejection> {
        let cal = self.calendar(calendar).map_err(|Failure(e)| Rejection::Invalid(e))?;
        cal.on_or_next_working_day_close(day, self.def.tz)
            .map(|t| t.to_utc())
            .map_err(|e| Rejection::Invalid(format!("the SLA deadline cannot be computed: {e}")))
    }

    /// An SLA deadline extended by `by`. A term in calendar days is added to the term's own
    /// last day, not to the deadline already moved off a day off, and the result moved again
    /// as the law says: 8-FZ's "no more than 15 days past the 30-day term" ends 45 days after
    /// registration, whatever holiday the 30th day fell on. Other extensions count from the
    /// deadline.
    fn extended_deadline(&self, sla: &Sla, by: &Term) -> Result<(Ts, Option<NaiveDate>), Rejection> {
        if terms::counts_days(&by.duration, by.time)
            && let Some(last_day) = self.sla_last_day(sla)
        {
            let day = terms::add_date(last_day, &by.duration)
                .ok_or_else(|| Rejection::Invalid(format!("{} overflows the date range", by.duration)))?;
            let calendar = by.calendar.as_deref().unwrap_or(self.sla_calendar());
            return Ok((self.legal_end(calendar, day)?, Some(day)));
        }
        let deadline = compute_term(by, sla.deadline, self.def.tz, self.env, self.sla_calendar())
            .map_err(|e| Rejection::Invalid(format!("the SLA deadline cannot be computed: {e}")))?;
        Ok((deadline, None))
    }

    /// Moves an SLA deadline by the time it was paused, in the SLA's own time basis: working
    /// time by the working minutes paused; a term in calendar days by the calendar days paused,
    /// counted on its last day and moved off a day off again (Civil Code art. 193); clock time
    /// by the time elapsed.
    fn shift_deadline(&self, sla: &Sla, paused_at: Ts) -> Result<(Ts, Option<NaiveDate>), Rejection> {
        let tz = self.def.tz;
        let working = matches!(&self.p.settings.sla, Some(Deadline::Term(t)) if t.time == TimeBasis::Working);
        if working {
            let cal = self.calendar(self.sla_calendar()).map_err(|Failure(e)| Rejection::Invalid(e))?;
            let minutes = cal
                .working_minutes_between(paused_at.with_timezone(&tz), self.now.with_timezone(&tz))
                .map_err(|e| Rejection::Invalid(e.to_string()))?;
            let minutes = u32::try_from(minutes.max(0)).unwrap_or(u32::MAX);
            let deadline = cal
                .add_working_hours(sla.deadline.with_timezone(&tz), minutes)
                .map(|t| t.to_utc())
                .map_err(|e| Rejection::Invalid(e.to_string()))?;
            return Ok((deadline, None));
        }
        if let Some(last_day) = self.sla_last_day(sla) {
            let paused_days = (self.now.with_timezone(&tz).date_naive() - paused_at.with_timezone(&tz).date_naive())
                .num_days()
                .max(0);
            let day = last_day
                .checked_add_days(chrono::Days::new(paused_days as u64))
                .ok_or_else(|| Rejection::Invalid("the SLA deadline overflows the date range".into()))?;
            return Ok((self.legal_end(self.sla_calendar(), day)?, Some(day)));
        }
        Ok((sla.deadline + (self.now - paused_at), None))
    }

    fn fire_timer(&mut self, timer: Key) -> Result<(), Rejection> {
        let t = self.st.timers.iter().find(|t| t.key == timer).cloned().ok_or(Rejection::NoSuchTimer(timer))?;
        // Non-interrupting cycles fire again. The next firing is worked out first, so that the
        // firing records how many occurrences it stands for when it is late.
        let node = self.node(t.node);
        let cycle = match &node.kind {
            NodeKind::Boundary { cancel_activity: false, trigger: Trigger::Timer(td), .. }
            | NodeKind::StartEvent { interrupting: false, trigger: Trigger::Timer(td) }
                if td.kind == crate::timer::TimerKind::Cycle =>
            {
                Some(self.next_cycle_firing(td, t.owner, t.fired + 1, t.due))
            }
            _ => None,
        };
        let missed = match &cycle {
            Some(Ok((_, missed))) => *missed,
            _ => 0,
        };
        self.emit(Event::TimerFired { key: t.key, node: t.node, missed });
        match cycle {
            Some(Ok((Some(due), missed))) => self.schedule_timer(t.node, t.owner, due, t.fired + 1 + missed),
            Some(Err(Failure(message))) => self.reschedule_incident(t.node, t.owner, t.fired + 1, t.due, message),
            Some(Ok((None, _))) | None => {}
        }
        self.event_happened(t.node, t.owner, None, None);
        Ok(())
    }

    /// The next firing of a cycle timer owned by `owner` whose occurrence due at `due` fired
    /// now, with the occurrences missed in between (the misfire policy of DESIGN §4: a late
    /// cycle fires once and goes on after now). The cycle's expression is evaluated in the
    /// owner's scope, as for its first firing, so it sees the same (local) variables.
    fn next_cycle_firing(&self, td: &TimerDef, owner: Key, fired: u32, due: Ts) -> Result<(Option<Ts>, u32), Failure> {
        match self.timer_spec(td, owner)? {
            TimerSpec::Cycle(cycle) => Ok(cycle.next_after_late(due, self.now, fired, self.def.tz)),
            TimerSpec::Date(_) | TimerSpec::Duration(_) => Ok((None, 0)),
        }
    }

    /// Retries scheduling a cycle timer after its incident was resolved.
    fn reschedule_cycle(&mut self, node: NodeIdx, owner: Key, fired: u32, after: Ts) {
        if owner != ROOT && self.st.ei(owner).is_none() {
            return;
        }
        let td = match &self.node(node).kind {
            NodeKind::Boundary { trigger: Trigger::Timer(td), .. }
            | NodeKind::StartEvent { trigger: Trigger::Timer(td), .. } => td,
            _ => return,
        };
        match self.next_cycle_firing(td, owner, fired, after) {
            Ok((Some(due), missed)) => self.schedule_timer(node, owner, due, fired + missed),
            Ok((None, _)) => {}
            Err(Failure(message)) => self.reschedule_incident(node, owner, fired, after, message),
        }
    }

    fn schedule_timer(&mut self, node: NodeIdx, owner: Key, due: Ts, fired: u32) {
        let key = self.key();
        self.emit(Event::TimerScheduled { key, node, owner, due, fired });
        self.effects.push(Effect::ScheduleTimer { timer: key, due });
    }

    /// The next firing of a cycle could not be worked out: an incident on the timer event,
    /// owned by the element the timer belongs to. The element goes on; resolving the incident
    /// (after fixing the variables) schedules the next firing.
    fn reschedule_incident(&mut self, node: NodeIdx, owner: Key, fired: u32, after: Ts, message: String) {
        let key = self.key();
        let message = format!("the next firing of the timer cycle cannot be scheduled: {message}");
        self.emit(Event::IncidentRaised {
            key,
            node,
            element: owner,
            message,
            retry: Retry::Reschedule { fired, after },
        });
    }

    /// A timer fired or a message arrived for event node `node` owned by element `owner`.
    /// `message` is the name and correlation key of the message that arrived: a
    /// non-interrupting message event listens on with the same subscription.
    fn event_happened(&mut self, node: NodeIdx, owner: Key, vars: Option<Vars>, message: Option<(String, String)>) {
        let n = self.node(node);
        match &n.kind {
            NodeKind::Boundary { .. } => self.boundary_triggered(owner, node, Payload::Merge(vars), message),
            NodeKind::StartEvent { .. } => self.event_subprocess_triggered(owner, node, Payload::Merge(vars), message),
            _ => {
                let Some(owner_ei) = self.st.ei(owner) else { return };
                if owner_ei.node == node {
                    // An intermediate catch event or receive task waiting for itself.
                    self.leave(owner, vars);
                } else {
                    // The event won the race of an event-based gateway.
                    self.event_gateway_won(owner, node, vars);
                }
            }
        }
    }

    // ---- the step loop --------------------------------------------------------------------

    fn run(&mut self) {
        loop {
            while let Some(step) = self.queue.pop_front() {
                if self.st.status != Status::Active {
                    self.queue.clear();
                    break;
                }
                match step {
                    Step::Activate { node, scope, flow } => self.arrive(node, scope, flow),
                    Step::Leave { key } => self.leave(key, None),
                    Step::ScopeCheck { scope } => self.scope_check(scope),
                    Step::StartInner { body, index } => self.start_inner(body, index),
                }
            }
            // Inclusive joins may become ready once other branches died.
            if self.st.status != Status::Active || !self.fire_ready_inclusive_joins() {
                break;
            }
        }
        debug_assert!(self.st.next_key <= self.next_key);
        self.st.next_key = self.st.next_key.max(self.next_key);
    }

    /// A token arrives at `node` (via `flow`, unless it is a start).
    fn arrive(&mut self, node: NodeIdx, scope: Key, flow: Option<FlowIdx>) {
        let n = self.node(node);
        if let (NodeKind::Gateway(kind @ (GatewayKind::Parallel | GatewayKind::Inclusive)), Some(flow)) =
            (&n.kind, flow)
            && n.incoming.len() > 1
        {
            self.emit(Event::TokenWaiting { scope, flow });
            let ready = match kind {
                GatewayKind::Parallel => n.incoming.iter().all(|f| self.st.waiting.contains(&(scope, *f))),
                _ => self.inclusive_ready(node, scope),
            };
            if ready {
                self.fire_join(node, scope);
            }
            return;
        }
        self.enter(node, scope);
    }

    fn fire_join(&mut self, node: NodeIdx, scope: Key) {
        let flows: Vec<FlowIdx> =
            self.node(node).incoming.iter().copied().filter(|f| self.st.waiting.contains(&(scope, *f))).collect();
        self.emit(Event::JoinFired { scope, flows });
        self.enter(node, scope);
    }

    /// An inclusive join may fire when a token waits and no other token in the scope can still
    /// reach one of its empty incoming flows.
    fn inclusive_ready(&self, join: NodeIdx, scope: Key) -> bool {
        let n = self.node(join);
        let pending: Vec<NodeIdx> = n
            .incoming
            .iter()
            .filter(|f| !self.st.waiting.contains(&(scope, **f)))
            .map(|f| self.p.flow(*f).source)
            .collect();
        if pending.len() == n.incoming.len() {
            return false;
        }
        let mut live: Vec<NodeIdx> = self.st.children(scope).map(|e| e.node).collect();
        // Tokens of this command still in the step queue are live too: one already on its way
        // into an empty incoming flow of the join means the join must wait for it (else it
        // passed once per early token).
        for step in &self.queue {
            if let Step::Activate { node, scope: s, flow } = step
                && *s == scope
            {
                if *node != join {
                    live.push(*node);
                } else if flow.is_some_and(|f| n.incoming.contains(&f) && !self.st.waiting.contains(&(scope, f))) {
                    return false;
                }
            }
        }
        for (s, f) in &self.st.waiting {
            let target = self.p.flow(*f).target;
            if *s == scope && target != join {
                live.push(target);
            }
        }
        let mut seen = vec![false; self.p.nodes.len()];
        let mut stack = live;
        while let Some(v) = stack.pop() {
            if v == join || std::mem::replace(&mut seen[v as usize], true) {
                continue;
            }
            if pending.contains(&v) {
                return false;
            }
            let vn = self.node(v);
            stack.extend(vn.outgoing.iter().map(|f| self.p.flow(*f).target));
            stack.extend(vn.boundaries.iter().copied());
        }
        true
    }

    fn fire_ready_inclusive_joins(&mut self) -> bool {
        let mut candidates: Vec<(NodeIdx, Key)> = self
            .st
            .waiting
            .iter()
            .map(|(s, f)| (self.p.flow(*f).target, *s))
            .filter(|(n, _)| matches!(self.node(*n).kind, NodeKind::Gateway(GatewayKind::Inclusive)))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        for (join, scope) in candidates {
            if self.inclusive_ready(join, scope) {
                self.fire_join(join, scope);
                return true;
            }
        }
        false
    }

    /// Creates the element instance and runs its activation.
    fn enter(&mut self, node: NodeIdx, scope: Key) {
        let key = self.key();
        self.emit(Event::ElementEntered { key, node, scope });
        self.activate(key, true);
    }

    /// Runs an element's activation, as Zeebe does: its input mappings, then (on entry, or when
    /// an incident stopped the activation before) its boundary events, which may read the
    /// locals the mappings set, then its behaviour. A multi-instance body has no mappings (its
    /// inner instances have them); its behaviour starts the inner instances. A failure raises
    /// one incident and stops the activation there, so resolving it runs the rest once.
    fn activate(&mut self, key: Key, with_boundaries: bool) {
        let Some(ei) = self.st.ei(key).cloned() else { return };
        let n = self.node(ei.node);
        let mi_inner = self.is_mi_inner(key);
        let mi_body = n.multi_instance.is_some() && !mi_inner;
        // The boundary events of a multi-instance activity belong to its body.
        let with_boundaries = with_boundaries && !mi_inner && !n.boundaries.is_empty();
        let retry = if with_boundaries { Retry::Boundaries } else { Retry::Activate };
        // Each activation is a step: a cycle of elements with no wait state ends in an incident
        // when the command's budget is spent, instead of running forever.
        if let Err(overrun) = self.budget.charge(1) {
            return self.incident(key, retry, format!("element `{}` was not run: {overrun}", n.id));
        }
        if !mi_body && let Err(Failure(message)) = self.apply_inputs(key, &ei, mi_inner) {
            return self.incident(key, retry, message);
        }
        if with_boundaries && let Err(Failure(message)) = self.open_boundaries(key) {
            return self.incident(key, Retry::Boundaries, message);
        }
        if mi_body {
            self.start_multi_instance(key);
        } else {
            self.run_behaviour(key, &ei);
        }
    }

    /// Is `key` an inner instance of a multi-instance body (same node, body as scope)?
    fn is_mi_inner(&self, key: Key) -> bool {
        let Some(ei) = self.st.ei(key) else { return false };
        self.st.ei(ei.scope).is_some_and(|body| body.node == ei.node && matches!(body.data, EiData::MultiInstance(_)))
    }

    fn lookup_fn(&self, scope: Key) -> impl Fn(&str) -> Option<Json> + '_ {
        move |name: &str| self.st.lookup(scope, name)
    }

    fn eval(&self, expr: &Expr, scope: Key) -> Result<Json, Failure> {
        expr.eval_in(&self.lookup_fn(scope), Some(self.clock()), self.budget).map_err(|e| Failure(e.message))
    }

    fn param_string(&self, param: &Param, scope: Key) -> Result<String, Failure> {
        match param {
            Param::Static(s) => Ok(s.clone()),
            Param::Feel(e) => match self.eval(e, scope)? {
                Json::String(s) => Ok(s),
                Json::Null => Err(Failure(e.null_message(&self.lookup_fn(scope)))),
                other => Ok(other.to_string()),
            },
        }
    }

    fn param_list(&self, param: &Param, scope: Key) -> Result<Vec<String>, Failure> {
        let split = |s: &str| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        match param {
            Param::Static(s) => Ok(split(s)),
            Param::Feel(e) => match self.eval(e, scope)? {
                Json::String(s) => Ok(split(&s)),
                Json::Array(items) => Ok(items
                    .into_iter()
                    .map(|v| match v {
                        Json::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect()),
                Json::Null => Ok(Vec::new()),
                other => Err(Failure(format!("`{}` gave {other}, expected a list of strings", e.source()))),
            },
        }
    }

    /// Sets an element's input mappings as its locals.
    fn apply_inputs(&mut self, key: Key, ei: &Ei, mi_inner: bool) -> Result<(), Failure> {
        let n = self.node(ei.node);
        if n.io.inputs.is_empty() {
            return Ok(());
        }
        // An inner instance of a multi-instance activity maps from its own scope, where its
        // input element and loopCounter live (as in Zeebe).
        let from = if mi_inner { key } else { ei.scope };
        let mut locals = Vars::new();
        for m in &n.io.inputs {
            let value = {
                let lookup = |name: &str| locals.get(name).cloned().or_else(|| self.st.lookup(from, name));
                m.source.eval_in(&lookup, Some(self.clock()), self.budget)
            };
            set_path(&mut locals, &m.target, value.map_err(|e| Failure(e.message))?);
        }
        self.emit(Event::VariablesSet { scope: key, variables: locals });
        Ok(())
    }

    /// Runs an element's behaviour, after its input mappings and boundary events.
    fn run_behaviour(&mut self, key: Key, ei: &Ei) {
        let n = self.node(ei.node);
        let result = match &n.kind {
            NodeKind::StartEvent { .. }
            | NodeKind::Boundary { .. }
            | NodeKind::Gateway(GatewayKind::Exclusive | GatewayKind::Inclusive | GatewayKind::Parallel) => {
                self.queue.push_back(Step::Leave { key });
                Ok(())
            }
            NodeKind::EndEvent { result } | NodeKind::ThrowEvent { result } => self.throw_result(key, result),
            NodeKind::CatchEvent { trigger } => self.subscribe_trigger(trigger, ei.node, key),
            NodeKind::Gateway(GatewayKind::EventBased) => {
                // All or none: a failure leaves no subscription behind to be doubled on retry.
                let mut planned = Vec::new();
                let mut result = Ok(());
                for f in &n.outgoing {
                    let target = self.p.flow(*f).target;
                    let plan = match &self.node(target).kind {
                        NodeKind::CatchEvent { trigger } => self.plan_trigger(trigger, target, key),
                        NodeKind::Task(t) => match &t.message {
                            Some(m) => self.plan_message(m, target, key).map(Some),
                            None => Ok(None),
                        },
                        _ => Ok(None),
                    };
                    match plan {
                        Ok(plan) => planned.extend(plan),
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                if result.is_ok() {
                    for plan in planned {
                        self.open(plan, key);
                    }
                }
                result
            }
            NodeKind::Task(task) => self.activate_task(key, ei, task),
            NodeKind::SubProcess { triggered_by_event: false } => {
                let start = self.p.none_start_of(Some(ei.node)).or_else(|| {
                    self.p
                        .children_of(Some(ei.node))
                        .find(|&c| matches!(self.node(c).kind, NodeKind::StartEvent { .. }))
                });
                // Its event subprocesses listen before its flow starts; if they cannot, the flow
                // does not start either, and resolving the incident runs both once.
                self.open_event_subprocesses(key).map(|()| {
                    if let Some(s) = start {
                        self.queue.push_back(Step::Activate { node: s, scope: key, flow: None });
                    }
                })
            }
            NodeKind::SubProcess { triggered_by_event: true } => Ok(()),
            NodeKind::CallActivity { called } => self.call(key, ei, called),
            NodeKind::Unsupported { element, .. } => Err(Failure(format!("{element} cannot be executed"))),
        };
        if let Err(Failure(message)) = result {
            self.incident(key, Retry::Activate, message);
        }
    }

    fn activate_task(&mut self, key: Key, ei: &Ei, task: &Task) -> Result<(), Failure> {
        match task.kind {
            TaskKind::Plain | TaskKind::Manual => {
                self.queue.push_back(Step::Leave { key });
                Ok(())
            }
            TaskKind::User => {
                let info = self.task_info(task, key)?;
                self.emit(Event::TaskCreated { key, node: ei.node, task: info });
                Ok(())
            }
            TaskKind::Script => {
                let expr = task.script.as_ref().ok_or_else(|| Failure("the script task has no expression".into()))?;
                let value = self.eval(expr, key)?;
                let mut vars = Vars::new();
                if let Some(name) = &task.result_variable {
                    vars.insert(name.clone(), value);
                }
                if let Some(ext) = &task.sla_extension {
                    self.extend_sla_from_model(ext, key, &mut vars)?;
                }
                self.leave(key, Some(vars));
                Ok(())
            }
            TaskKind::Receive => {
                let message = task.message.clone().ok_or_else(|| Failure("the receive task has no message".into()))?;
                let plan = self.plan_message(&message, ei.node, key)?;
                self.open(plan, key);
                Ok(())
            }
            TaskKind::Service | TaskKind::Send | TaskKind::BusinessRule => {
                let job_type = match &task.job_type {
                    Some(p) => self.param_string(p, key)?,
                    None => return Err(Failure("the task has no zeebe:taskDefinition type".into())),
                };
                // A type given as FEEL is treated as a written one: a built-in type behaves as
                // that type; any other is a job for an external worker.
                if job_type.trim().is_empty() {
                    return Err(Failure("the task's type (zeebe:taskDefinition type) evaluated to nothing".into()));
                }
                if job_type == "email" {
                    let email = self.email(task, key)?;
                    self.emit(Event::EmailQueued { key, node: ei.node, email: email.clone() });
                    self.effects.push(Effect::SendEmail { job: key, email });
                } else {
                    self.emit(Event::JobCreated { key, node: ei.node, job_type: job_type.clone() });
                    let variables = self.st.visible(key);
                    let retries = match &task.retries {
                        None => 3,
                        Some(p) => {
                            let text = self.param_string(p, key)?;
                            text.trim().parse::<u32>().map_err(|_| {
                                Failure(format!(
                                    "the task's retries (zeebe:taskDefinition retries) are `{text}`, not a whole number"
                                ))
                            })?
                        }
                    };
                    self.effects.push(Effect::RunJob {
                        job: key,
                        job_type,
                        headers: task.headers.clone(),
                        variables,
                        retries,
                    });
                }
                Ok(())
            }
        }
    }

    /// `reglament:slaExtension`: extends the SLA as [`Command::ExtendSla`] does, with the
    /// duration and reason evaluated over the task's variables and its script result.
    fn extend_sla_from_model(&mut self, ext: &SlaExtension, key: Key, vars: &mut Vars) -> Result<(), Failure> {
        let lookup = |name: &str| vars.get(name).cloned().or_else(|| self.st.lookup(key, name));
        let eval = |p: &Param| -> Result<Json, Failure> {
            match p {
                Param::Static(s) => Ok(Json::String(s.clone())),
                Param::Feel(e) => e.eval_in(&lookup, Some(self.clock()), self.budget).map_err(|e| Failure(e.message)),
            }
        };
        let duration = match eval(&ext.duration)? {
            Json::String(s) => {
                IsoDuration::parse(&s).map_err(|e| Failure(format!("reglament:slaExtension duration `{s}`: {e}")))?
            }
            Json::Number(n) => match n.as_u64() {
                Some(days) if days > 0 => IsoDuration::parse(&format!("P{days}D")).map_err(Failure)?,
                _ => {
                    return Err(Failure(format!(
                        "reglament:slaExtension duration {n} is not a positive whole number of days"
                    )));
                }
            },
            other => {
                return Err(Failure(format!(
                    "reglament:slaExtension duration must be an ISO 8601 duration or a number of days, not {other}"
                )));
            }
        };
        let reason = match &ext.reason {
            Some(p) => match eval(p)? {
                Json::String(s) => s,
                Json::Null => String::new(),
                other => other.to_string(),
            },
            None => String::new(),
        };
        let sla = self
            .st
            .sla
            .clone()
            .ok_or_else(|| Failure("reglament:slaExtension: the process has no reglament:sla to extend".into()))?;
        let term = Term { duration, time: ext.time, calendar: ext.calendar.clone(), pos: ext.pos };
        let (deadline, last_day) = self.extended_deadline(&sla, &term).map_err(|r| Failure(r.to_string()))?;
        self.emit(Event::SlaExtended { deadline, reason, last_day });
        if let Some(name) = &ext.deadline_variable {
            vars.insert(name.clone(), Json::String(deadline.with_timezone(&self.def.tz).to_rfc3339()));
        }
        Ok(())
    }

    fn task_info(&self, task: &Task, key: Key) -> Result<TaskInfo, Failure> {
        let assignee = match &task.assignee {
            Some(p) => Some(self.param_string(p, key)?).filter(|s| !s.is_empty()),
            None => None,
        };
        let mut candidate_groups = match &task.candidate_groups {
            Some(p) => self.param_list(p, key)?,
            None => Vec::new(),
        };
        let candidate_users = match &task.candidate_users {
            Some(p) => self.param_list(p, key)?,
            None => Vec::new(),
        };
        // A task offered to nobody is offered to everyone whose rights allow the process: all,
        // or the groups the process names as its starters.
        if assignee.is_none() && candidate_groups.is_empty() && candidate_users.is_empty() {
            candidate_groups = self.def.process().settings.starters.clone();
        }
        let due = match (&task.deadline, &task.due_date) {
            (Some(deadline), _) => Some(self.deadline(deadline, key)?),
            (None, Some(p)) => Some(self.date_param(p, key)?),
            (None, None) => None,
        };
        let follow_up = match &task.follow_up_date {
            Some(p) => Some(self.date_param(p, key)?),
            None => None,
        };
        let priority = match &task.priority {
            Some(p) => Some(
                self.param_string(p, key)?
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| Failure("the task priority is not a whole number".into()))?,
            ),
            None => None,
        };
        Ok(TaskInfo { assignee, candidate_groups, candidate_users, due, follow_up, priority })
    }

    fn date_param(&self, p: &Param, key: Key) -> Result<Ts, Failure> {
        let text = self.param_string(p, key)?;
        crate::timer::parse_date_time(&text)
            .map(|d| d.to_utc())
            .map_err(|e| Failure(format!("`{text}` is not a date-time: {e}")))
    }

    fn email(&self, task: &Task, key: Key) -> Result<Email, Failure> {
        let header = |name: &str| -> Result<Option<String>, Failure> {
            match task.header(name) {
                None => Ok(None),
                Some(v) if v.trim_start().starts_with('=') => {
                    let expr = Expr::compile(v, Default::default()).map_err(|e| Failure(e.message))?;
                    match self.eval(&expr, key)? {
                        Json::String(s) => Ok(Some(s)),
                        Json::Array(items) => Ok(Some(
                            items
                                .iter()
                                .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                                .collect::<Vec<_>>()
                                .join(", "),
                        )),
                        Json::Null => Ok(None),
                        other => Ok(Some(other.to_string())),
                    }
                }
                Some(v) => Ok(Some(v.to_string())),
            }
        };
        // Recipient rules (`group:…`, `head-of:…`, `initiator`, …) choose people of the
        // organisation, so only the model may write them: an expression's value may carry a rule
        // only when the rule stands in the expression as a literal; values that come from
        // variables are addresses or logins.
        let ruled = |name: &str, entries: Vec<String>| -> Result<Vec<String>, Failure> {
            let Some(source) = task.header(name).filter(|v| v.trim_start().starts_with('=')) else {
                return Ok(entries);
            };
            for entry in &entries {
                // `user:login` names one person, as a bare login does; the other rules reach groups.
                let is_rule = entry == "initiator"
                    || (entry.contains(':') && !entry.contains('@') && !entry.starts_with("user:"));
                if is_rule && !source.contains(&format!("\"{entry}\"")) {
                    return Err(Failure(format!(
                        "the `{name}` header gave the recipient rule `{entry}` from a variable; rules may only be written \
                         in the model (as a literal), variables may give email addresses"
                    )));
                }
            }
            Ok(entries)
        };
        // Addresses an expression gave that it does not spell out itself came from variables.
        let from_variables = |name: &str, entries: &[String]| -> Vec<String> {
            match task.header(name).filter(|v| v.trim_start().starts_with('=')) {
                Some(source) => entries
                    .iter()
                    .filter(|e| e.contains('@') && !source.contains(&format!("\"{e}\"")))
                    .cloned()
                    .collect(),
                None => Vec::new(),
            }
        };
        let list = |s: Option<String>| -> Vec<String> {
            s.map(|s| s.split([',', ';']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let to = ruled("to", list(header("to")?))?;
        let recipients_rule = task.header("recipients").is_some();
        if to.is_empty() && !recipients_rule {
            return Err(Failure("the email task has no recipient: header `to` is empty".into()));
        }
        let subject = header("subject")?.unwrap_or_default();
        let body = header("body")?;
        let template = task.header("template").map(str::to_owned);
        if body.is_none() && template.is_none() {
            return Err(Failure("the email task needs a `body` or a `template` header".into()));
        }
        let headers = task
            .headers
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "to" | "cc" | "subject" | "body" | "template"))
            .cloned()
            .collect();
        let cc = ruled("cc", list(header("cc")?))?;
        let mut variable_addresses = from_variables("to", &to);
        variable_addresses.extend(from_variables("cc", &cc));
        Ok(Email {
            to,
            cc,
            subject,
            body,
            template,
            headers,
            variables: self.st.visible(key),
            from_variables: variable_addresses,
        })
    }

    fn call(&mut self, key: Key, ei: &Ei, called: &CalledElement) -> Result<(), Failure> {
        let process = match &called.process_id {
            Some(p) => self.param_string(p, key)?,
            None => return Err(Failure("the call activity names no process".into())),
        };
        let variables = if called.propagate_all_parent_variables {
            self.st.visible(key)
        } else {
            self.st.vars(key).cloned().unwrap_or_default()
        };
        self.emit(Event::ChildStarted { key, node: ei.node, process: process.clone() });
        self.effects.push(Effect::StartChild { call: key, process, variables });
        Ok(())
    }

    fn throw_result(&mut self, key: Key, result: &EndResult) -> Result<(), Failure> {
        match result {
            EndResult::None => self.queue.push_back(Step::Leave { key }),
            EndResult::Message { message } => {
                if let Some(m) = message.as_ref().and_then(|m| self.p_defs().messages.get(m)) {
                    let correlation_key = match &m.correlation_key {
                        Some(e) => json_key(&self.eval(e, key)?),
                        None => String::new(),
                    };
                    let variables = self.st.visible(key);
                    self.effects.push(Effect::PublishMessage { name: m.name.clone(), correlation_key, variables });
                }
                self.queue.push_back(Step::Leave { key });
            }
            EndResult::Terminate => {
                let scope = self.st.ei(key).map(|e| e.scope).unwrap_or(ROOT);
                let node = self.st.ei(key).map(|e| e.node).unwrap_or_default();
                self.emit(Event::ElementCompleted { key, node });
                self.terminate_children(scope);
                self.queue.push_back(Step::ScopeCheck { scope });
            }
            EndResult::Error { error } => {
                let code =
                    self.p_defs().errors.get(error).and_then(|e| e.code.clone()).unwrap_or_else(|| error.clone());
                self.throw_error(key, &code, "");
            }
        }
        Ok(())
    }

    fn p_defs(&self) -> &'a Definitions {
        &self.def.defs
    }

    // ---- subscriptions --------------------------------------------------------------------

    /// Opens the subscription of a catch event's trigger (a timer or a message) for `owner`,
    /// evaluating its expressions in the owner's scope.
    fn subscribe_trigger(&mut self, trigger: &Trigger, node: NodeIdx, owner: Key) -> Result<(), Failure> {
        if let Some(plan) = self.plan_trigger(trigger, node, owner)? {
            self.open(plan, owner);
        }
        Ok(())
    }

    /// What subscribing to a trigger will open, worked out without changing anything: a
    /// failure then leaves nothing half-open. Expressions are read in `owner`'s scope (the
    /// activity of a boundary event, with its input mappings; the catch event itself; the
    /// event-based gateway; the scope of an event subprocess).
    fn plan_trigger(&self, trigger: &Trigger, node: NodeIdx, owner: Key) -> Result<Option<Planned>, Failure> {
        match trigger {
            Trigger::Timer(td) => match self.timer_due(td, owner, 0, self.now)? {
                Some(due) => Ok(Some(Planned::Timer { node, due })),
                None => Err(Failure("the timer cycle has no further firing".into())),
            },
            Trigger::Message { message } => self.plan_message(message, node, owner).map(Some),
            Trigger::None | Trigger::Error { .. } => Ok(None),
        }
    }

    fn plan_message(&self, message: &str, node: NodeIdx, scope: Key) -> Result<Planned, Failure> {
        let m = self
            .p_defs()
            .messages
            .get(message)
            .ok_or_else(|| Failure(format!("message `{message}` is not defined")))?;
        let correlation_key = match &m.correlation_key {
            Some(e) => {
                let v = self.eval(e, scope)?;
                if v.is_null() {
                    return Err(Failure(format!(
                        "the correlation key of message `{}`: {}",
                        m.name,
                        e.null_message(&self.lookup_fn(scope))
                    )));
                }
                json_key(&v)
            }
            None => String::new(),
        };
        Ok(Planned::Message { node, name: m.name.clone(), correlation_key })
    }

    /// Opens a planned subscription for `owner`.
    fn open(&mut self, plan: Planned, owner: Key) {
        match plan {
            Planned::Timer { node, due } => self.schedule_timer(node, owner, due, 0),
            Planned::Message { node, name, correlation_key } => {
                let key = self.key();
                self.emit(Event::MessageSubscribed {
                    key,
                    node,
                    owner,
                    name: name.clone(),
                    correlation_key: correlation_key.clone(),
                });
                self.effects.push(Effect::Subscribe { subscription: key, name, correlation_key });
            }
        }
    }

    /// A timer definition's text, evaluated in `scope` when it is an expression.
    fn timer_spec(&self, td: &TimerDef, scope: Key) -> Result<TimerSpec, Failure> {
        match &td.value {
            TimerValue::Literal(spec) => Ok(spec.clone()),
            TimerValue::Expression(e) => {
                let text = match self.eval(e, scope)? {
                    Json::String(s) => s,
                    Json::Null => return Err(Failure(e.null_message(&self.lookup_fn(scope)))),
                    other => other.to_string(),
                };
                TimerSpec::parse(td.kind, &text).map_err(|e| Failure(format!("timer `{text}`: {e}")))
            }
        }
    }

    fn timer_due(&self, td: &TimerDef, scope: Key, fired: u32, base: Ts) -> Result<Option<Ts>, Failure> {
        Ok(match self.timer_spec(td, scope)? {
            TimerSpec::Date(d) => Some(d.to_utc()),
            TimerSpec::Duration(d) => {
                let calendar = td.calendar.as_deref().unwrap_or(&self.def.calendar);
                Some(
                    terms::compute(&d, td.basis, calendar, base, self.def.tz, self.env)
                        .map_err(|e| Failure(format!("timer duration {d}: {e}")))?,
                )
            }
            TimerSpec::Cycle(c) => {
                let next = c.next_after(base, fired, self.def.tz);
                if let crate::timer::Cycle::Cron { source, .. } = &c {
                    let horizon = base
                        .checked_add_months(chrono::Months::new(12 * crate::timer::CRON_HORIZON_YEARS as u32))
                        .unwrap_or(base);
                    if next.is_none_or(|t| t > horizon) {
                        return Err(Failure(format!(
                            "cron `{source}` never fires: it has no occurrence in the {} years after {}",
                            crate::timer::CRON_HORIZON_YEARS,
                            base.with_timezone(&self.def.tz).format("%Y-%m-%d %H:%M")
                        )));
                    }
                }
                next
            }
        })
    }

    /// Opens the boundary events of activity `key`: all of them, or none when one fails.
    fn open_boundaries(&mut self, key: Key) -> Result<(), Failure> {
        let Some(ei) = self.st.ei(key).cloned() else { return Ok(()) };
        let mut planned = Vec::new();
        for &b in &self.node(ei.node).boundaries {
            if let NodeKind::Boundary { trigger, .. } = &self.node(b).kind {
                planned.extend(self.plan_trigger(trigger, b, key)?);
            }
        }
        for plan in planned {
            self.open(plan, key);
        }
        Ok(())
    }

    /// Opens the start subscriptions of the event subprocesses directly inside scope `scope`:
    /// all of them, or none when one fails.
    fn open_event_subprocesses(&mut self, scope: Key) -> Result<(), Failure> {
        let scope_node = if scope == ROOT { None } else { self.st.ei(scope).map(|e| e.node) };
        let mut planned = Vec::new();
        for sub in self.p.children_of(scope_node) {
            if !matches!(self.node(sub).kind, NodeKind::SubProcess { triggered_by_event: true }) {
                continue;
            }
            for s in self.p.children_of(Some(sub)).filter(|&c| self.node(c).is_start()) {
                if let NodeKind::StartEvent { trigger, .. } = &self.node(s).kind {
                    planned.extend(self.plan_trigger(trigger, s, scope)?);
                }
            }
        }
        for plan in planned {
            self.open(plan, scope);
        }
        Ok(())
    }

    /// Closes the timers and message subscriptions owned by element `owner`.
    fn close_subscriptions(&mut self, owner: Key) {
        self.close_subscriptions_where(owner, |_| true);
    }

    fn close_subscriptions_where(&mut self, owner: Key, keep_node: impl Fn(NodeIdx) -> bool) {
        let timers: Vec<(Key, NodeIdx)> =
            self.st.timers.iter().filter(|t| t.owner == owner && keep_node(t.node)).map(|t| (t.key, t.node)).collect();
        for (key, node) in timers {
            self.emit(Event::TimerCancelled { key, node });
            self.effects.push(Effect::CancelTimer { timer: key });
        }
        let subs: Vec<(Key, NodeIdx)> = self
            .st
            .messages
            .iter()
            .filter(|m| m.owner == owner && keep_node(m.node))
            .map(|m| (m.key, m.node))
            .collect();
        for (key, node) in subs {
            self.emit(Event::SubscriptionClosed { key, node });
            self.effects.push(Effect::Unsubscribe { subscription: key });
        }
    }

    // ---- leaving elements -----------------------------------------------------------------

    /// Completes element `key`: output mappings, choice of outgoing flows, then the next steps.
    fn leave(&mut self, key: Key, completion: Option<Vars>) {
        let Some(ei) = self.st.ei(key).cloned() else { return };
        let n = self.node(ei.node);
        let mi_inner = self.is_mi_inner(key);
        let mi_body = matches!(ei.data, EiData::MultiInstance(_));
        // Variables, as Zeebe merges them. With output mappings, the completion values become
        // locals of the element and only the mapped results are merged — from the flow scope
        // up, or for an inner multi-instance instance from its own scope (where its output
        // element lives). Without, the completion values are merged from the element itself
        // up: each updates the nearest scope that has it, else the instance. A multi-instance
        // body applies no mappings: its inner instances did.
        if !n.io.outputs.is_empty() && !mi_body {
            if let Some(vars) = completion.filter(|v| !v.is_empty()) {
                self.emit(Event::VariablesSet { scope: key, variables: vars });
            }
            let mut out = Vars::new();
            for m in &n.io.outputs {
                let value = {
                    let lookup = |name: &str| out.get(name).cloned().or_else(|| self.st.lookup(key, name));
                    m.source.eval_in(&lookup, Some(self.clock()), self.budget)
                };
                match value {
                    Ok(v) => {
                        // A nested target sets one property of the variable and keeps the others.
                        if let Some((root, _)) = m.target.split_once('.')
                            && !out.contains_key(root)
                            && let Some(existing) = self.st.lookup(key, root).filter(Json::is_object)
                        {
                            out.insert(root.to_string(), existing);
                        }
                        set_path(&mut out, &m.target, v);
                    }
                    Err(e) => return self.incident(key, Retry::Complete, e.message),
                }
            }
            self.set_propagated(if mi_inner { key } else { ei.scope }, out);
        } else if let Some(vars) = completion.filter(|v| !v.is_empty()) {
            self.set_propagated(key, vars);
        }
        let flows = match self.choose_flows(&ei, n) {
            Ok(flows) => flows,
            Err(Failure(message)) => return self.incident(key, Retry::Complete, message),
        };
        if mi_inner {
            return self.mi_inner_done(key, ei.scope);
        }
        if let EiData::MultiInstance(mi) = &ei.data
            && let Some(mi_def) = &n.multi_instance
            && let Some(name) = &mi_def.output_collection
        {
            let mut outputs = mi.outputs.clone();
            outputs.resize(mi.items.len().max(outputs.len()), Json::Null);
            let mut vars = Vars::new();
            vars.insert(name.clone(), Json::Array(outputs));
            self.set_propagated(ei.scope, vars);
        }
        self.close_subscriptions(key);
        self.resolve_incidents_of(key);
        self.emit(Event::ElementCompleted { key, node: ei.node });
        if flows.is_empty() {
            self.queue.push_back(Step::ScopeCheck { scope: ei.scope });
        }
        for f in flows {
            self.queue.push_back(Step::Activate { node: self.p.flow(f).target, scope: ei.scope, flow: Some(f) });
        }
    }

    fn choose_flows(&self, ei: &Ei, n: &Node) -> Result<Vec<FlowIdx>, Failure> {
        match &n.kind {
            NodeKind::Gateway(GatewayKind::Exclusive) => {
                for &f in &n.outgoing {
                    if Some(f) == n.default_flow {
                        continue;
                    }
                    let flow = self.p.flow(f);
                    match &flow.condition {
                        None => return Ok(vec![f]),
                        Some(c) => {
                            if c.eval_bool_in(&self.lookup_fn(ei.scope), Some(self.clock()), self.budget)
                                .map_err(|e| Failure(e.message))?
                            {
                                return Ok(vec![f]);
                            }
                        }
                    }
                }
                n.default_flow.map(|d| vec![d]).ok_or_else(|| {
                    Failure(format!(
                        "no condition of exclusive gateway `{}` is true and it has no default flow{}",
                        n.id,
                        self.unset_in_conditions(n, ei.scope)
                    ))
                })
            }
            NodeKind::Gateway(GatewayKind::Inclusive) => {
                let mut taken = Vec::new();
                for &f in &n.outgoing {
                    if Some(f) == n.default_flow {
                        continue;
                    }
                    let ok = match &self.p.flow(f).condition {
                        None => true,
                        Some(c) => c
                            .eval_bool_in(&self.lookup_fn(ei.scope), Some(self.clock()), self.budget)
                            .map_err(|e| Failure(e.message))?,
                    };
                    if ok {
                        taken.push(f);
                    }
                }
                if taken.is_empty() {
                    taken.extend(n.default_flow);
                }
                if taken.is_empty() && !n.outgoing.is_empty() {
                    return Err(Failure(format!(
                        "no condition of inclusive gateway `{}` is true and it has no default flow{}",
                        n.id,
                        self.unset_in_conditions(n, ei.scope)
                    )));
                }
                Ok(taken)
            }
            _ => Ok(n.outgoing.clone()),
        }
    }

    /// " (variable `x` is not set)" when the conditions out of gateway `n` read variables that
    /// are not set or null (a condition on them is false): the likely reason none is true.
    fn unset_in_conditions(&self, n: &Node, scope: Key) -> String {
        let lookup = self.lookup_fn(scope);
        let (mut missing, mut null) = (Vec::new(), Vec::new());
        for &f in &n.outgoing {
            if let Some(condition) = &self.p.flow(f).condition {
                let (m, z) = condition.unset_names(&lookup);
                missing.extend(m.into_iter().filter(|v| !missing.contains(v)).collect::<Vec<_>>());
                null.extend(z.into_iter().filter(|v| !null.contains(v)).collect::<Vec<_>>());
            }
        }
        crate::feel::describe_unset(&missing, &null).map(|unset| format!(" ({unset})")).unwrap_or_default()
    }

    /// Writes variables where they live: the nearest scope that has each, else the instance.
    fn set_propagated(&mut self, scope: Key, vars: Vars) {
        let chain = self.st.scope_chain(scope);
        let mut by_scope: BTreeMap<Key, Vars> = BTreeMap::new();
        for (name, value) in vars {
            let target =
                chain.iter().copied().find(|s| self.st.vars(*s).is_some_and(|v| v.contains_key(&name))).unwrap_or(ROOT);
            by_scope.entry(target).or_default().insert(name, value);
        }
        for (scope, variables) in by_scope {
            self.emit(Event::VariablesSet { scope, variables });
        }
    }

    /// A scope may be done: no element instances and no waiting tokens left in it.
    fn scope_check(&mut self, scope: Key) {
        if self.st.children(scope).next().is_some() || self.st.waiting.iter().any(|(s, _)| *s == scope) {
            return;
        }
        if scope == ROOT {
            if self.st.status == Status::Active {
                self.close_subscriptions(ROOT);
                let variables = self.st.vars(ROOT).cloned().unwrap_or_default();
                self.emit(Event::InstanceCompleted);
                if let Some(parent) = self.st.parent.clone() {
                    self.effects.push(Effect::NotifyParent { parent, outcome: ChildOutcome::Completed { variables } });
                }
            }
            return;
        }
        if self.st.ei(scope).is_some() {
            self.leave(scope, None);
        }
    }

    // ---- multi-instance -------------------------------------------------------------------

    fn start_multi_instance(&mut self, body: Key) {
        let Some(ei) = self.st.ei(body).cloned() else { return };
        let mi = self.node(ei.node).multi_instance.as_ref().expect("checked by caller");
        let Some(collection) = &mi.input_collection else { return };
        // As in Zeebe, anything but a list — null included, as from a misspelt variable — is
        // an incident, not an empty loop.
        let items = match self.eval(collection, ei.scope) {
            Ok(Json::Array(items)) => items,
            Ok(Json::Null) => {
                let message = match collection.unset_variables(&self.lookup_fn(ei.scope)) {
                    Some(unset) => format!("inputCollection `{}` is null, not a list: {unset}", collection.source()),
                    None => format!("inputCollection `{}` is null, not a list", collection.source()),
                };
                return self.incident(body, Retry::Activate, message);
            }
            Ok(other) => {
                return self.incident(
                    body,
                    Retry::Activate,
                    format!("inputCollection `{}` gave {other}, expected a list", collection.source()),
                );
            }
            Err(Failure(message)) => return self.incident(body, Retry::Activate, message),
        };
        let count = items.len();
        self.emit(Event::MultiInstanceStarted { key: body, items });
        if count == 0 {
            self.queue.push_back(Step::Leave { key: body });
        } else if mi.sequential {
            self.start_inner(body, 0);
        } else {
            for i in 0..count {
                self.start_inner(body, i as u32);
            }
        }
    }

    fn start_inner(&mut self, body: Key, index: u32) {
        // Only the item is copied out of the body: copying its whole collection per item made
        // a loop quadratic.
        let Some(ei) = self.st.ei(body) else { return };
        let EiData::MultiInstance(mi) = &ei.data else { return };
        let item = mi.items.get(index as usize).cloned().unwrap_or(Json::Null);
        let node = ei.node;
        let mi_def = self.node(node).multi_instance.as_ref().expect("multi-instance body");
        let key = self.key();
        self.emit(Event::ElementEntered { key, node, scope: body });
        self.emit(Event::MultiInstanceProgress { key: body, index, output: None });
        let mut locals = Vars::new();
        locals.insert("loopCounter".into(), Json::from(index + 1));
        if let Some(name) = &mi_def.input_element {
            locals.insert(name.clone(), item);
        }
        // An output element that reads a variable gets that variable as a local (null until
        // set), so the instance's result lands there instead of racing in an outer scope.
        if let Some(name) = mi_def.output_element.as_ref().and_then(read_variable) {
            locals.entry(name).or_insert(Json::Null);
        }
        self.emit(Event::VariablesSet { scope: key, variables: locals });
        self.activate(key, false);
    }

    fn mi_inner_done(&mut self, inner: Key, body: Key) {
        let Some(ei) = self.st.ei(inner).cloned() else { return };
        let mi_def = self.node(ei.node).multi_instance.as_ref().expect("multi-instance body");
        let index = self
            .st
            .vars(inner)
            .and_then(|v| v.get("loopCounter"))
            .and_then(Json::as_u64)
            .map(|c| c as u32 - 1)
            .unwrap_or(0);
        let output = match &mi_def.output_element {
            Some(e) => match self.eval(e, inner) {
                Ok(v) => Some(v),
                Err(Failure(message)) => return self.incident(inner, Retry::Complete, message),
            },
            None => None,
        };
        let Some(EiData::MultiInstance(state)) = self.st.ei(body).map(|b| &b.data) else { return };
        let MiState { ref items, started, completed, .. } = **state;
        let total = items.len() as u32;
        // This instance counts as completed.
        let completed = completed + 1;
        // The completion condition sees the completing instance's variables (e.g. its output
        // element), as in Zeebe; the counters take precedence over variables of those names.
        let complete_early = match &mi_def.completion_condition {
            Some(cond) => {
                let mut counters = Vars::new();
                counters.insert("numberOfInstances".into(), Json::from(total));
                counters.insert("numberOfCompletedInstances".into(), Json::from(completed));
                counters.insert("numberOfActiveInstances".into(), Json::from(started - completed));
                counters.insert("numberOfTerminatedInstances".into(), Json::from(0));
                let lookup = |name: &str| counters.get(name).cloned().or_else(|| self.st.lookup(inner, name));
                match cond.eval_bool_in(&lookup, Some(self.clock()), self.budget) {
                    Ok(done) => done,
                    Err(e) => return self.incident(inner, Retry::Complete, e.message),
                }
            }
            None => false,
        };
        self.close_subscriptions(inner);
        self.emit(Event::ElementCompleted { key: inner, node: ei.node });
        self.emit(Event::MultiInstanceProgress { key: body, index, output });
        if complete_early {
            self.terminate_children(body);
            self.queue.push_back(Step::Leave { key: body });
        } else if mi_def.sequential && started < total {
            self.queue.push_back(Step::StartInner { body, index: started });
        } else if completed >= total {
            self.queue.push_back(Step::Leave { key: body });
        }
    }

    // ---- interruptions --------------------------------------------------------------------

    /// A boundary event of `activity` was triggered; `message` as for [`Exec::event_happened`].
    fn boundary_triggered(
        &mut self,
        activity: Key,
        boundary: NodeIdx,
        payload: Payload,
        message: Option<(String, String)>,
    ) {
        let Some(act) = self.st.ei(activity).cloned() else { return };
        let interrupting = matches!(self.node(boundary).kind, NodeKind::Boundary { cancel_activity: true, .. });
        if interrupting {
            self.terminate(activity);
        } else if let Some((name, correlation_key)) = message {
            // A non-interrupting message boundary keeps listening while its activity runs, with
            // the correlation key it was opened with (as Zeebe keeps the subscription).
            self.open(Planned::Message { node: boundary, name, correlation_key }, activity);
        }
        let key = self.key();
        self.emit(Event::ElementEntered { key, node: boundary, scope: act.scope });
        self.leave_catch_event(key, payload);
    }

    /// Completes a catch event that was just entered with what triggered it.
    fn leave_catch_event(&mut self, key: Key, payload: Payload) {
        match payload {
            Payload::Merge(vars) => self.leave(key, vars),
            Payload::Local(vars) => {
                self.emit(Event::VariablesSet { scope: key, variables: vars });
                self.leave(key, None);
            }
        }
    }

    /// The start event of an event subprocess in `scope` was triggered; `message` as for
    /// [`Exec::event_happened`].
    fn event_subprocess_triggered(
        &mut self,
        scope: Key,
        start: NodeIdx,
        payload: Payload,
        message: Option<(String, String)>,
    ) {
        if scope != ROOT && self.st.ei(scope).is_none() {
            return;
        }
        let Some(sub) = self.node(start).parent else { return };
        let interrupting = matches!(self.node(start).kind, NodeKind::StartEvent { interrupting: true, .. });
        if interrupting {
            self.terminate_children(scope);
            // The scope's other event subprocesses stop listening; its own boundaries stay.
            let p = self.p;
            self.close_subscriptions_where(scope, |n| {
                p.node(n).parent.is_some_and(|s| p.node(s).parent == p.node(sub).parent)
            });
        } else if let Some((name, correlation_key)) = message {
            self.open(Planned::Message { node: start, name, correlation_key }, scope);
        }
        let key = self.key();
        self.emit(Event::ElementEntered { key, node: sub, scope });
        let start_key = self.key();
        self.emit(Event::ElementEntered { key: start_key, node: start, scope: key });
        self.leave_catch_event(start_key, payload);
    }

    fn event_gateway_won(&mut self, gateway: Key, target: NodeIdx, vars: Option<Vars>) {
        let Some(gw) = self.st.ei(gateway).cloned() else { return };
        self.close_subscriptions(gateway);
        self.emit(Event::ElementCompleted { key: gateway, node: gw.node });
        let key = self.key();
        self.emit(Event::ElementEntered { key, node: target, scope: gw.scope });
        self.leave(key, vars);
    }

    /// Throws error `code` from element `from`: the nearest event subprocess or boundary event
    /// that catches it, scope by scope outwards; else the parent instance, else an incident. At
    /// each level a catcher naming the error's code wins over a catch-all one (as in Zeebe).
    fn throw_error(&mut self, from: Key, code: &str, message: &str) {
        self.throw_error_with(from, code, message, Vars::new())
    }

    /// [`Self::throw_error`] with variables that go with the error to the catching event.
    fn throw_error_with(&mut self, from: Key, code: &str, message: &str, extra: Vars) {
        let error_vars = |code: &str, message: &str| {
            let mut vars = error_vars(code, message);
            vars.extend(extra.clone());
            vars
        };
        let from_node = self.st.ei(from).map(|e| e.node).unwrap_or_default();
        let mut cur = from;
        loop {
            // Event subprocesses inside `cur`, when `cur` is a scope.
            let scope_node = if cur == ROOT { None } else { self.st.ei(cur).map(|e| e.node) };
            let is_scope =
                cur == ROOT || scope_node.is_some_and(|n| matches!(self.node(n).kind, NodeKind::SubProcess { .. }));
            if is_scope && cur != from {
                let starts = self
                    .p
                    .children_of(scope_node)
                    .filter(|&sub| matches!(self.node(sub).kind, NodeKind::SubProcess { triggered_by_event: true }))
                    .flat_map(|sub| self.p.children_of(Some(sub)))
                    .filter_map(|s| match &self.node(s).kind {
                        NodeKind::StartEvent { trigger: Trigger::Error { error }, .. } => Some((s, error.as_deref())),
                        _ => None,
                    });
                if let Some(start) = self.best_error_catcher(starts, code) {
                    self.emit(Event::ErrorThrown { node: from_node, code: code.to_string(), caught_by: Some(start) });
                    self.event_subprocess_triggered(cur, start, Payload::Local(error_vars(code, message)), None);
                    return;
                }
            }
            if cur == ROOT {
                break;
            }
            let Some(ei) = self.st.ei(cur).cloned() else { break };
            // The boundary events of a multi-instance activity belong to its body, one level up.
            if !self.is_mi_inner(cur) {
                let boundaries = self.node(ei.node).boundaries.iter().filter_map(|&b| match &self.node(b).kind {
                    NodeKind::Boundary { trigger: Trigger::Error { error }, .. } => Some((b, error.as_deref())),
                    _ => None,
                });
                if let Some(b) = self.best_error_catcher(boundaries, code) {
                    self.emit(Event::ErrorThrown { node: from_node, code: code.to_string(), caught_by: Some(b) });
                    self.boundary_triggered(cur, b, Payload::Local(error_vars(code, message)), None);
                    return;
                }
            }
            cur = ei.scope;
        }
        self.emit(Event::ErrorThrown { node: from_node, code: code.to_string(), caught_by: None });
        if let Some(parent) = self.st.parent.clone() {
            self.terminate_children(ROOT);
            self.close_subscriptions(ROOT);
            self.emit(Event::InstanceCancelled { reason: format!("error `{code}` passed to the calling process") });
            self.effects.push(Effect::NotifyParent {
                parent,
                outcome: ChildOutcome::Failed { error_code: code.to_string(), message: message.to_string() },
            });
        } else {
            let text = if message.is_empty() { String::new() } else { format!(": {message}") };
            self.incident(
                from,
                Retry::Activate,
                format!("error `{code}` was not caught by any boundary or event subprocess{text}"),
            );
        }
    }

    /// Of error catch events `(node, errorRef)` at one level, the one for `code`: a catcher
    /// naming the code, else a catch-all one (no errorRef).
    fn best_error_catcher<'n>(
        &self,
        catchers: impl Iterator<Item = (NodeIdx, Option<&'n str>)>,
        code: &str,
    ) -> Option<NodeIdx> {
        let mut catch_all = None;
        for (node, error) in catchers {
            match error {
                Some(id) => {
                    let def = self.p_defs().errors.get(id);
                    if def.and_then(|d| d.code.as_deref()).unwrap_or(id) == code {
                        return Some(node);
                    }
                }
                None => catch_all = catch_all.or(Some(node)),
            }
        }
        catch_all
    }

    /// Terminates an element instance and everything inside it.
    fn terminate(&mut self, key: Key) {
        self.terminate_children(key);
        let Some(ei) = self.st.ei(key).cloned() else { return };
        self.close_subscriptions(key);
        match ei.data {
            EiData::Job => self.effects.push(Effect::CancelJob { job: key }),
            EiData::Call => self.effects.push(Effect::CancelChild { call: key }),
            _ => {}
        }
        self.resolve_incidents_of(key);
        self.emit(Event::ElementTerminated { key, node: ei.node });
    }

    /// An element that ends takes its open incidents with it (a cycle that could not be
    /// rescheduled needs no retry once its activity is done).
    fn resolve_incidents_of(&mut self, key: Key) {
        let incidents: Vec<Key> = self.st.incidents.iter().filter(|i| i.element == key).map(|i| i.key).collect();
        for incident in incidents {
            self.emit(Event::IncidentResolved { key: incident });
        }
    }

    fn terminate_children(&mut self, scope: Key) {
        let children: Vec<Key> = self.st.children(scope).map(|e| e.key).collect();
        for child in children.into_iter().rev() {
            self.terminate(child);
        }
        let waiting: Vec<u32> = self.st.waiting.iter().filter(|(s, _)| *s == scope).map(|(_, f)| *f).collect();
        if !waiting.is_empty() {
            self.emit(Event::JoinFired { scope, flows: waiting });
        }
    }

    fn incident(&mut self, element: Key, retry: Retry, message: String) {
        let node = self.st.ei(element).map(|e| e.node).unwrap_or_default();
        let key = self.key();
        self.emit(Event::IncidentRaised { key, node, element, message, retry });
    }
}

/// A subscription worked out and ready to open.
enum Planned {
    Timer { node: NodeIdx, due: Ts },
    Message { node: NodeIdx, name: String, correlation_key: String },
}

/// What a triggered catch event brings with it.
enum Payload {
    /// A message's variables: merged into the instance like a task's result.
    Merge(Option<Vars>),
    /// An error's `errorCode` and `errorMessage`: local to the catch event, so its output
    /// mappings can read them; nothing reaches the instance unless they map it (Zeebe gives an
    /// error end event no payload at all).
    Local(Vars),
}

/// Variables handed to an error catcher.
fn error_vars(code: &str, message: &str) -> Vars {
    let mut vars = Vars::new();
    vars.insert("errorCode".into(), Json::String(code.to_string()));
    if !message.is_empty() {
        vars.insert("errorMessage".into(), Json::String(message.to_string()));
    }
    vars
}

/// The variable an expression only reads (`=result` or `=result.status` → `result`), if it is
/// no more than that.
fn read_variable(expr: &Expr) -> Option<String> {
    let source = expr.source().trim_start_matches('=').trim();
    let is_name = |part: &str| {
        part.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    let root = source.split('.').next()?;
    let plain = source.split('.').all(is_name) && !matches!(root, "null" | "true" | "false" | "loopCounter");
    plain.then(|| root.to_string())
}

/// A correlation key as text: strings as they are, other values as JSON.
fn json_key(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Sets `path` (`a` or `a.b.c`) in `vars`, creating objects on the way.
fn set_path(vars: &mut Vars, path: &str, value: Json) {
    let mut parts = path.split('.');
    let first = parts.next().unwrap_or(path).to_string();
    let rest: Vec<&str> = parts.collect();
    if rest.is_empty() {
        vars.insert(first, value);
        return;
    }
    let mut slot = vars.entry(first).or_insert_with(|| Json::Object(Vars::new()));
    for part in rest {
        if !slot.is_object() {
            *slot = Json::Object(Vars::new());
        }
        slot = slot.as_object_mut().expect("made an object above").entry(part.to_string()).or_insert(Json::Null);
    }
    *slot = value;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const REMINDERS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="defs" targetNamespace="urn:test">
  <bpmn:process id="reminders" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="answer" />
    <bpmn:userTask id="answer" />
    <bpmn:sequenceFlow id="f2" sourceRef="answer" targetRef="end" />
    <bpmn:endEvent id="end" />
    <bpmn:boundaryEvent id="hourly" cancelActivity="false" attachedToRef="answer">
      <bpmn:timerEventDefinition>
        <bpmn:timeCycle xsi:type="bpmn:tFormalExpression">R/PT1H</bpmn:timeCycle>
      </bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="f3" sourceRef="hourly" targetRef="reminded" />
    <bpmn:endEvent id="reminded" />
  </bpmn:process>
</bpmn:definitions>"#;

    fn at(text: &str) -> Ts {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn def(xml: &str) -> ProcessDef {
        let (defs, diags) = crate::check(xml.as_bytes(), &Default::default());
        assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
        let id = defs.processes[0].id.clone();
        ProcessDef::new(Arc::new(defs), &id, 1, chrono_tz::Europe::Astrakhan).unwrap()
    }

    fn fired(transition: &Transition) -> Vec<(u32, Option<Ts>)> {
        let mut out = Vec::new();
        for e in &transition.events {
            match e {
                Event::TimerFired { missed, .. } => out.push((*missed, None)),
                Event::TimerScheduled { due, .. } => out.push((u32::MAX, Some(*due))),
                _ => {}
            }
        }
        out
    }

    /// A sequential multi-instance over a script task, over the variable `items`.
    pub(crate) const SEQUENTIAL_SCRIPT_LOOP: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="defs" targetNamespace="urn:test">
  <bpmn:process id="loop" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="double" />
    <bpmn:scriptTask id="double">
      <bpmn:extensionElements>
        <zeebe:script expression="=n * 2" resultVariable="doubled" />
      </bpmn:extensionElements>
      <bpmn:multiInstanceLoopCharacteristics isSequential="true">
        <bpmn:extensionElements>
          <zeebe:loopCharacteristics inputCollection="=items" inputElement="n" outputCollection="results" outputElement="=doubled" />
        </bpmn:extensionElements>
      </bpmn:multiInstanceLoopCharacteristics>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="double" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>"#;

    pub(crate) fn items(count: u32) -> Vars {
        let mut vars = Vars::new();
        vars.insert("items".into(), Json::Array((1..=count).map(Json::from).collect()));
        vars
    }

    #[test]
    fn a_sequential_multi_instance_over_many_items_runs_from_the_queue_without_stack_growth() {
        // 20,000 items overflowed the stack when each completion started the next item by a
        // call; from the step queue they run on a 1 MiB thread.
        let def = def(SEQUENTIAL_SCRIPT_LOOP);
        let (state, transition) = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let cmd = StartCommand { id: "i".into(), variables: items(20_000), ..StartCommand::default() };
                start(&def, &Env::default(), cmd, at("2026-03-02T09:00:00+04:00")).unwrap()
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(state.status, Status::Completed);
        let results = state.vars(ROOT).and_then(|v| v.get("results")).and_then(Json::as_array).unwrap();
        assert_eq!(results.len(), 20_000);
        assert_eq!((results[0].clone(), results[19_999].clone()), (Json::from(2), Json::from(40_000)));
        let completed = transition.events.iter().filter(|e| matches!(e, Event::ElementCompleted { .. })).count();
        assert_eq!(completed, 20_000 + 3, "start, each item, the body and end");
    }

    #[test]
    fn a_late_cycle_fires_once_records_the_missed_and_goes_on_after_now() {
        let def = def(REMINDERS);
        let env = Env::default();
        let (state, _) = start(&def, &env, StartCommand::default(), at("2026-12-28T09:00:00+04:00")).unwrap();
        let timer = state.timers[0].clone();
        assert_eq!((timer.due, timer.fired), (at("2026-12-28T10:00:00+04:00"), 0));

        // On time: nothing missed, the next occurrence an interval after the due time.
        let (_, on_time) = handle(&def, &env, &state, Command::FireTimer { timer: timer.key }, timer.due).unwrap();
        assert_eq!(fired(&on_time), [(0, None), (u32::MAX, Some(at("2026-12-28T11:00:00+04:00")))]);

        // After downtime until 13:30: the 11:00, 12:00 and 13:00 occurrences were missed; the
        // reminder fires once, records them, and the next one is 14:00, not 11:00.
        let late = at("2026-12-28T13:30:00+04:00");
        let (after, transition) = handle(&def, &env, &state, Command::FireTimer { timer: timer.key }, late).unwrap();
        assert_eq!(fired(&transition), [(3, None), (u32::MAX, Some(at("2026-12-28T14:00:00+04:00")))]);
        assert_eq!(
            transition.effects.first(),
            Some(&Effect::ScheduleTimer { timer: after.timers[0].key, due: after.timers[0].due })
        );
        assert_eq!(after.timers[0].fired, 4, "missed occurrences count as used up");
        // The boundary event ran once.
        let entered = transition
            .events
            .iter()
            .filter(|e| matches!(e, Event::ElementEntered { node, .. } if def.node_id(*node) == "hourly"))
            .count();
        assert_eq!(entered, 1);
        // The history replays to the same state, `missed` included.
        let json = serde_json::to_string(&transition.events).unwrap();
        assert!(json.contains(r#""missed":3"#), "{json}");
        let mut replayed = state.clone();
        for e in serde_json::from_str::<Vec<Event>>(&json).unwrap() {
            apply(&mut replayed, &e, late);
        }
        assert_eq!(replayed.timers, after.timers);
    }

    #[test]
    fn state_and_history_stored_before_these_fields_stay_readable() {
        let sla: Sla = serde_json::from_str(r#"{"deadline":"2026-05-04T14:00:00Z","extended":false}"#).unwrap();
        assert_eq!(sla.last_day, None);
        let events: Vec<Event> = serde_json::from_str(
            r#"[{"event":"timer_fired","key":3,"node":4},{"event":"subscription_closed","key":5},
                {"event":"sla_resumed","deadline":"2026-05-04T14:00:00Z"},
                {"event":"sla_extended","deadline":"2026-05-19T14:00:00Z","reason":"r"}]"#,
        )
        .unwrap();
        assert_eq!(events[0], Event::TimerFired { key: 3, node: 4, missed: 0 });
        assert_eq!(events[1], Event::SubscriptionClosed { key: 5, node: 0 });
        let retry: Vec<Retry> = serde_json::from_str(r#"["activate","complete"]"#).unwrap();
        assert_eq!(retry, [Retry::Activate, Retry::Complete]);
        // New values round-trip; a firing on time writes no `missed`.
        let fired = serde_json::to_string(&Event::TimerFired { key: 3, node: 4, missed: 0 }).unwrap();
        assert_eq!(fired, r#"{"event":"timer_fired","key":3,"node":4}"#);
        let retry = Retry::Reschedule { fired: 2, after: at("2026-12-28T13:00:00+04:00") };
        assert_eq!(serde_json::from_str::<Retry>(&serde_json::to_string(&retry).unwrap()).unwrap(), retry);
    }

    const ENDLESS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="defs" targetNamespace="urn:test">
  <bpmn:process id="endless" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="again" />
    <bpmn:exclusiveGateway id="again" default="f2" />
    <bpmn:sequenceFlow id="f2" sourceRef="again" targetRef="count" />
    <bpmn:sequenceFlow id="out" sourceRef="again" targetRef="end"><bpmn:conditionExpression>=x = -1</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:endEvent id="end" />
    <bpmn:scriptTask id="count"><bpmn:extensionElements><zeebe:script expression="=1" resultVariable="x" /></bpmn:extensionElements></bpmn:scriptTask>
    <bpmn:sequenceFlow id="back" sourceRef="count" targetRef="again" />
  </bpmn:process>
</bpmn:definitions>"#;

    #[test]
    fn a_cycle_with_no_wait_state_stops_at_the_command_budget_with_an_incident() {
        let def = def(ENDLESS);
        let env = Env { limits: crate::feel::Limits { steps: 10_000, ..Default::default() }, ..Env::default() };
        let cmd = StartCommand { id: "i".into(), ..StartCommand::default() };
        let (state, _) = start(&def, &env, cmd, at("2026-03-02T09:00:00+04:00")).expect("starts");
        assert_eq!(state.status, Status::Active);
        assert_eq!(state.incidents.len(), 1, "{:?}", state.incidents);
        assert!(
            state.incidents[0].message.contains("evaluation budget of 10000 steps is spent"),
            "{}",
            state.incidents[0].message
        );
    }

    #[test]
    fn a_quarantined_instance_refuses_commands_until_resolved_and_then_schedules_its_timers_again() {
        let def = def(REMINDERS);
        let now = at("2026-03-02T09:00:00+04:00");
        let env = Env::default();
        let (state, _) = start(&def, &env, StartCommand { id: "i".into(), ..StartCommand::default() }, now).unwrap();
        let timer = state.timers[0].key;
        let (state, _) =
            handle(&def, &env, &state, Command::Quarantine { reason: "the engine failed".into() }, now).unwrap();
        let incident = state.incidents.iter().find(|i| i.retry == Retry::Quarantine).expect("quarantined").key;
        assert_eq!(
            handle(&def, &env, &state, Command::FireTimer { timer }, now).unwrap_err(),
            Rejection::Quarantined(incident)
        );
        let resolve = Command::ResolveIncident { incident, variables: Vars::new() };
        let (state, transition) = handle(&def, &env, &state, resolve, now).unwrap();
        assert!(state.incidents.is_empty());
        assert!(
            transition.effects.iter().any(|e| matches!(e, Effect::ScheduleTimer { timer: t, .. } if *t == timer)),
            "{:?}",
            transition.effects
        );
        assert!(handle(&def, &env, &state, Command::FireTimer { timer }, now).is_ok());
        let cancelled = handle(&def, &env, &state, Command::Cancel { reason: "x".into() }, now);
        assert!(cancelled.is_ok(), "cancel is always possible");
    }
}
