//! The state of one process instance, and [`apply`]: the only function that changes it.
//!
//! The state is kept small (a waiting instance is a few hundred bytes serialised): element
//! instances refer to model nodes by index, and nothing derivable from the definition is stored.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{Event, Key, ROOT, Ts};
use crate::feel::Vars;
use crate::model::NodeIdx;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Active,
    Completed,
    Cancelled,
}

/// Which parent instance and call activity started this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    pub instance: String,
    pub call: Key,
}

/// One process instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Instance {
    pub id: String,
    pub process: String,
    pub version: u32,
    #[serde(default)]
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
    pub started_at: Option<Ts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Ts>,
    /// The next free key.
    pub next_key: Key,
    /// Active element instances, in creation order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elements: Vec<Ei>,
    /// Variables by scope key (0 = the instance).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<(Key, Vars)>,
    /// Tokens waiting at joins: (scope, incoming flow).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<(Key, u32)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timers: Vec<TimerSub>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageSub>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incidents: Vec<Incident>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<Sla>,
}

/// An active element instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ei {
    pub key: Key,
    pub node: NodeIdx,
    pub scope: Key,
    #[serde(default, skip_serializing_if = "EiData::is_plain")]
    pub data: EiData,
}

/// What an element instance is waiting for, when it waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EiData {
    #[default]
    Plain,
    Task(Box<TaskInfo>),
    Job,
    Call,
    MultiInstance(Box<MiState>),
}

impl EiData {
    fn is_plain(&self) -> bool {
        matches!(self, EiData::Plain)
    }
}

/// A user task as the inbox shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TaskInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidate_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidate_users: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<Ts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<Ts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}

/// The body of a multi-instance activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MiState {
    pub items: Vec<Json>,
    /// How many inner instances were started.
    pub started: u32,
    pub completed: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<Json>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerSub {
    pub key: Key,
    /// The timer event (catch, boundary, event-subprocess start).
    pub node: NodeIdx,
    /// The element instance the timer belongs to (activity for boundaries, the catch event
    /// itself, the event-based gateway, or the scope of an event subprocess).
    pub owner: Key,
    pub due: Ts,
    /// Occurrences so far, for cycles: fired, or skipped because the timer fired late.
    pub fired: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageSub {
    pub key: Key,
    pub node: NodeIdx,
    pub owner: Key,
    pub name: String,
    pub correlation_key: String,
}

/// Something stopped the instance that a person must look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub key: Key,
    pub node: NodeIdx,
    pub element: Key,
    pub message: String,
    pub retry: Retry,
}

/// What resolving an incident retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// Run the element's activation again (input mappings, then its behaviour); its boundary
    /// events are open.
    Activate,
    /// Leave the element again (evaluate outgoing flows, output mappings).
    Complete,
    /// Run the whole activation again: input mappings, opening the boundary events, then the
    /// behaviour. The activation stopped before its boundary events were opened (none is).
    Boundaries,
    /// Schedule the next firing of the cycle timer of the incident's node (owned by the
    /// incident's element): it fired `fired` times so far, the last one due at `after`.
    Reschedule { fired: u32, after: Ts },
    /// The host could not run a command on the instance (the engine failed on it) and set
    /// the instance aside: until this incident is resolved every other command but `Cancel`
    /// is refused. Resolving it schedules the instance's pending timers again (the host
    /// dropped their rows).
    Quarantine,
}

/// The instance's service-level clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sla {
    pub deadline: Ts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<Ts>,
    #[serde(default)]
    pub extended: bool,
    /// For a term in calendar days: its last day as counted (Civil Code art. 191), before
    /// art. 193 moves the deadline off a day off. Extensions and pauses count from it, so a
    /// move off a holiday is never counted twice (30 + 15 days end 45 days after registration).
    /// `None` for clock and working-time SLAs, and in states stored before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_day: Option<chrono::NaiveDate>,
}

impl Instance {
    pub fn ei(&self, key: Key) -> Option<&Ei> {
        self.elements.iter().find(|e| e.key == key)
    }

    pub fn ei_mut(&mut self, key: Key) -> Option<&mut Ei> {
        self.elements.iter_mut().find(|e| e.key == key)
    }

    pub fn vars(&self, scope: Key) -> Option<&Vars> {
        self.scopes.iter().find(|(k, _)| *k == scope).map(|(_, v)| v)
    }

    /// The scope chain from `scope` out to the root.
    pub fn scope_chain(&self, mut scope: Key) -> Vec<Key> {
        let mut chain = vec![scope];
        while scope != ROOT {
            match self.ei(scope) {
                Some(ei) => scope = ei.scope,
                None => break,
            }
            chain.push(scope);
        }
        if *chain.last().expect("non-empty") != ROOT {
            chain.push(ROOT);
        }
        chain
    }

    /// A variable as seen from `scope` (innermost first).
    pub fn lookup(&self, scope: Key, name: &str) -> Option<Json> {
        for s in self.scope_chain(scope) {
            if let Some(v) = self.vars(s).and_then(|vars| vars.get(name)) {
                return Some(v.clone());
            }
        }
        None
    }

    /// All variables visible from `scope`, inner ones shadowing outer ones.
    pub fn visible(&self, scope: Key) -> Vars {
        let mut out = Vars::new();
        for s in self.scope_chain(scope).into_iter().rev() {
            if let Some(vars) = self.vars(s) {
                for (k, v) in vars {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        out
    }

    /// The open user tasks, oldest first: (key, node, info).
    pub fn open_tasks(&self) -> impl Iterator<Item = (Key, NodeIdx, &TaskInfo)> {
        self.elements.iter().filter_map(|e| match &e.data {
            EiData::Task(t) => Some((e.key, e.node, t.as_ref())),
            _ => None,
        })
    }

    pub fn has_incident(&self) -> bool {
        !self.incidents.is_empty()
    }

    /// Children of a scope: element instances whose scope is `scope`.
    pub fn children(&self, scope: Key) -> impl Iterator<Item = &Ei> {
        self.elements.iter().filter(move |e| e.scope == scope)
    }

    fn bump(&mut self, key: Key) {
        if key >= self.next_key {
            self.next_key = key + 1;
        }
    }

    fn set_vars(&mut self, scope: Key, variables: &Vars) {
        match self.scopes.iter_mut().find(|(k, _)| *k == scope) {
            Some((_, vars)) => {
                for (k, v) in variables {
                    vars.insert(k.clone(), v.clone());
                }
            }
            None => self.scopes.push((scope, variables.clone())),
        }
    }

    fn remove_ei(&mut self, key: Key) {
        self.elements.retain(|e| e.key != key);
        self.scopes.retain(|(k, _)| *k != key);
        self.waiting.retain(|(s, _)| *s != key);
    }
}

/// Applies one event to the state. `at` is when it happened.
pub fn apply(state: &mut Instance, event: &Event, at: Ts) {
    match event {
        Event::InstanceStarted { process, version, business_key, parent, deadline, last_day } => {
            state.process = process.clone();
            state.version = *version;
            state.business_key = business_key.clone();
            state.parent = parent.clone();
            state.started_at = Some(at);
            state.status = Status::Active;
            state.next_key = state.next_key.max(1);
            state.sla =
                deadline.map(|deadline| Sla { deadline, paused_at: None, extended: false, last_day: *last_day });
        }
        Event::ElementEntered { key, node, scope } => {
            state.bump(*key);
            state.elements.push(Ei { key: *key, node: *node, scope: *scope, data: EiData::Plain });
        }
        Event::ElementCompleted { key, .. } | Event::ElementTerminated { key, .. } => state.remove_ei(*key),
        Event::TokenWaiting { scope, flow } => state.waiting.push((*scope, *flow)),
        Event::JoinFired { scope, flows } => {
            for flow in flows {
                if let Some(i) = state.waiting.iter().position(|(s, f)| s == scope && f == flow) {
                    state.waiting.remove(i);
                }
            }
        }
        Event::VariablesSet { scope, variables } => state.set_vars(*scope, variables),
        Event::MultiInstanceStarted { key, items } => {
            if let Some(ei) = state.ei_mut(*key) {
                ei.data = EiData::MultiInstance(Box::new(MiState { items: items.clone(), ..MiState::default() }));
            }
        }
        Event::MultiInstanceProgress { key, index, output } => {
            if let Some(Ei { data: EiData::MultiInstance(mi), .. }) = state.ei_mut(*key) {
                if *index >= mi.started {
                    // An inner instance started.
                    mi.started = index + 1;
                } else {
                    mi.completed += 1;
                    if let Some(out) = output {
                        if mi.outputs.len() < mi.items.len() {
                            mi.outputs.resize(mi.items.len(), Json::Null);
                        }
                        if let Some(slot) = mi.outputs.get_mut(*index as usize) {
                            *slot = out.clone();
                        }
                    }
                }
            }
        }
        Event::TaskCreated { key, task, .. } => {
            if let Some(ei) = state.ei_mut(*key) {
                ei.data = EiData::Task(Box::new(task.clone()));
            }
        }
        Event::JobCreated { key, .. } | Event::EmailQueued { key, .. } => {
            if let Some(ei) = state.ei_mut(*key) {
                ei.data = EiData::Job;
            }
        }
        Event::ChildStarted { key, .. } => {
            if let Some(ei) = state.ei_mut(*key) {
                ei.data = EiData::Call;
            }
        }
        Event::TaskCompleted { key, .. } | Event::JobCompleted { key, .. } => {
            if let Some(ei) = state.ei_mut(*key) {
                ei.data = EiData::Plain;
            }
        }
        Event::TimerScheduled { key, node, owner, due, fired } => {
            state.bump(*key);
            state.timers.retain(|t| t.key != *key);
            state.timers.push(TimerSub { key: *key, node: *node, owner: *owner, due: *due, fired: *fired });
        }
        Event::TimerFired { key, .. } | Event::TimerCancelled { key, .. } => state.timers.retain(|t| t.key != *key),
        Event::MessageSubscribed { key, node, owner, name, correlation_key } => {
            state.bump(*key);
            state.messages.push(MessageSub {
                key: *key,
                node: *node,
                owner: *owner,
                name: name.clone(),
                correlation_key: correlation_key.clone(),
            });
        }
        Event::MessageCorrelated { key, .. } | Event::SubscriptionClosed { key, .. } => {
            state.messages.retain(|m| m.key != *key)
        }
        Event::IncidentRaised { key, node, element, message, retry } => {
            state.bump(*key);
            state.incidents.push(Incident {
                key: *key,
                node: *node,
                element: *element,
                message: message.clone(),
                retry: *retry,
            });
        }
        Event::IncidentResolved { key } => state.incidents.retain(|i| i.key != *key),
        Event::SlaExtended { deadline, last_day, .. } => {
            if let Some(sla) = &mut state.sla {
                sla.deadline = *deadline;
                sla.extended = true;
                sla.last_day = *last_day;
            }
        }
        Event::SlaPaused { .. } => {
            if let Some(sla) = &mut state.sla {
                sla.paused_at = Some(at);
            }
        }
        Event::SlaResumed { deadline, last_day } => {
            if let Some(sla) = &mut state.sla {
                sla.deadline = *deadline;
                sla.paused_at = None;
                sla.last_day = *last_day;
            }
        }
        Event::InstanceCompleted => {
            state.status = Status::Completed;
            state.ended_at = Some(at);
            clear_waits(state);
        }
        Event::InstanceCancelled { .. } => {
            state.status = Status::Cancelled;
            state.ended_at = Some(at);
            clear_waits(state);
        }
        Event::ErrorThrown { .. } => {}
    }
}

fn clear_waits(state: &mut Instance) {
    state.elements.clear();
    state.waiting.clear();
    state.timers.clear();
    state.messages.clear();
    state.incidents.clear();
    state.scopes.retain(|(k, _)| *k == ROOT);
}
