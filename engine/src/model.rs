//! The typed BPMN model the engine validates and executes.
//!
//! A process is a flat arena of [`Node`]s and [`Flow`]s addressed by index; nesting
//! (subprocesses) is expressed by `Node::parent`. Every element keeps the position it was read
//! from, so validation and runtime incidents can point at the source.

use std::collections::{BTreeMap, HashMap};

use crate::diagnostics::Pos;
use crate::feel::Expr;
use crate::timer::{TimerKind, TimerSpec};

pub type NodeIdx = u32;
pub type FlowIdx = u32;

/// A whole `bpmn:definitions` document.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    pub id: Option<String>,
    /// Where the `<definitions>` element is.
    pub pos: Pos,
    pub name: Option<String>,
    pub processes: Vec<Process>,
    pub messages: BTreeMap<String, MessageDef>,
    pub errors: BTreeMap<String, ErrorDef>,
    /// True when the file has a `bpmn:collaboration` (pools, message flows).
    pub has_collaboration: bool,
}

impl Definitions {
    pub fn process(&self, id: &str) -> Option<&Process> {
        self.processes.iter().find(|p| p.id == id)
    }

    pub fn executable_processes(&self) -> impl Iterator<Item = &Process> {
        self.processes.iter().filter(|p| p.executable)
    }
}

#[derive(Debug, Clone)]
pub struct MessageDef {
    pub id: String,
    pub name: String,
    pub pos: Pos,
    /// `zeebe:subscription correlationKey` on the message.
    pub correlation_key: Option<Expr>,
}

#[derive(Debug, Clone)]
pub struct ErrorDef {
    pub id: String,
    pub name: Option<String>,
    pub code: Option<String>,
    pub pos: Pos,
}

/// One `bpmn:process`.
#[derive(Debug, Clone, Default)]
pub struct Process {
    pub id: String,
    pub name: Option<String>,
    pub pos: Pos,
    pub executable: bool,
    pub nodes: Vec<Node>,
    pub flows: Vec<Flow>,
    pub settings: ProcessSettings,
    pub(crate) index: HashMap<String, NodeIdx>,
}

impl Process {
    pub fn node(&self, idx: NodeIdx) -> &Node {
        &self.nodes[idx as usize]
    }

    pub fn flow(&self, idx: FlowIdx) -> &Flow {
        &self.flows[idx as usize]
    }

    pub fn node_by_id(&self, id: &str) -> Option<NodeIdx> {
        self.index.get(id).copied()
    }

    /// Nodes directly inside `scope` (`None` = the process itself).
    pub fn children_of(&self, scope: Option<NodeIdx>) -> impl Iterator<Item = NodeIdx> + '_ {
        self.nodes.iter().enumerate().filter(move |(_, n)| n.parent == scope).map(|(i, _)| i as NodeIdx)
    }

    /// Start events that a scope begins with when entered normally (none starts; for the
    /// process also timer and message starts are entry points, handled by the runtime).
    pub fn none_start_of(&self, scope: Option<NodeIdx>) -> Option<NodeIdx> {
        self.children_of(scope).find(|&i| {
            matches!(self.node(i).kind, NodeKind::StartEvent { ref trigger, .. } if matches!(trigger, Trigger::None))
        })
    }
}

/// Process-wide settings from the `reglament:` namespace.
#[derive(Debug, Clone, Default)]
pub struct ProcessSettings {
    /// IANA time zone (`reglament:settings timeZone`), default from the server config.
    pub time_zone: Option<String>,
    /// Working-day calendar name (`reglament:settings calendar`).
    pub calendar: Option<String>,
    /// A business key (request number) may start one instance only
    /// (`reglament:settings uniqueBusinessKey="true"`).
    pub unique_business_key: bool,
    /// Who owns the process among the process owners (`reglament:settings owners="legal,
    /// ivanova"`): group ids or logins. Empty: every process owner.
    pub owners: Vec<String>,
    /// The groups whose members may start the process (`reglament:settings
    /// starters="reception,legal"`); empty: everyone. A user task offered to nobody is offered to
    /// these groups, so only people whose rights allow the process see and take it.
    pub starters: Vec<String>,
    /// Variables no completion of a user task without a form may write (`reglament:settings
    /// protected="requestNo,registeredAt"`): the request number, legal dates.
    pub protected: Vec<String>,
    /// Who may publish each message this process receives from outside the engine (the API):
    /// `reglament:settings messageSenders="cur_signal=cur; cur_proposal=cur,admins"`, message
    /// name → group ids or logins. A name listed here may be published only by them (and by
    /// admins); messages thrown inside the engine are not affected.
    pub message_senders: BTreeMap<String, Vec<String>>,
    /// The instance SLA (`reglament:sla`).
    pub sla: Option<Deadline>,
    /// Process registry metadata (`reglament:registry`), field name → value.
    pub registry: BTreeMap<String, String>,
    /// `zeebe:properties` on the process.
    pub properties: Vec<(String, String)>,
    /// `zeebe:userTaskForm`: Camunda Forms embedded in the model.
    pub embedded_forms: Vec<EmbeddedForm>,
}

/// A term: a duration counted in calendar time or in working time of a calendar.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub duration: crate::timer::IsoDuration,
    pub time: TimeBasis,
    pub calendar: Option<String>,
    pub pos: Pos,
}

/// A deadline: a term counted from an event, or a date computed by FEEL (e.g. "by the 5th of
/// next month"), which ends at close of business and moves to the next working day when the
/// date is a day off.
#[derive(Debug, Clone, PartialEq)]
pub enum Deadline {
    Term(Term),
    Date { expr: Expr, calendar: Option<String>, pos: Pos },
}

/// How a term's days and hours are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBasis {
    /// Calendar days (moved to the next working day when the last is a day off) and clock hours.
    Calendar,
    /// Working days and working hours of the calendar.
    Working,
    /// Plain elapsed time, no legal adjustment (e.g. ЦУР's 3 clock hours).
    Clock,
}

#[derive(Debug, Clone)]
pub struct Flow {
    pub id: String,
    pub name: Option<String>,
    pub pos: Pos,
    pub parent: Option<NodeIdx>,
    pub source: NodeIdx,
    pub target: NodeIdx,
    pub condition: Option<Expr>,
    /// A condition was written but did not compile (already reported); validation treats the
    /// flow as conditional so it invents no follow-on error.
    pub bad_condition: bool,
}

impl Flow {
    pub fn is_conditional(&self) -> bool {
        self.condition.is_some() || self.bad_condition
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub name: Option<String>,
    pub pos: Pos,
    /// The enclosing subprocess, `None` at process level.
    pub parent: Option<NodeIdx>,
    pub kind: NodeKind,
    pub incoming: Vec<FlowIdx>,
    pub outgoing: Vec<FlowIdx>,
    pub default_flow: Option<FlowIdx>,
    /// Boundary events attached to this activity.
    pub boundaries: Vec<NodeIdx>,
    pub multi_instance: Option<MultiInstance>,
    pub io: IoMapping,
    /// `zeebe:properties`.
    pub properties: Vec<(String, String)>,
}

impl Node {
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// Start events, including ones whose trigger is unsupported (so they still count as entry
    /// points and no follow-on "no start event" error is invented).
    pub fn is_start(&self) -> bool {
        matches!(self.kind, NodeKind::StartEvent { .. })
            || matches!(&self.kind, NodeKind::Unsupported { element, .. } if element == "startEvent")
    }

    pub fn is_activity(&self) -> bool {
        matches!(self.kind, NodeKind::Task(_) | NodeKind::SubProcess { .. } | NodeKind::CallActivity { .. })
    }
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    StartEvent {
        trigger: Trigger,
        interrupting: bool,
    },
    EndEvent {
        result: EndResult,
    },
    /// Intermediate catch event (timer, message).
    CatchEvent {
        trigger: Trigger,
    },
    /// Intermediate throw event: none (pass-through) or message.
    ThrowEvent {
        result: EndResult,
    },
    Boundary {
        attached_to: NodeIdx,
        cancel_activity: bool,
        trigger: Trigger,
    },
    Task(Box<Task>),
    Gateway(GatewayKind),
    /// Embedded subprocess; `triggered_by_event` marks an event subprocess.
    SubProcess {
        triggered_by_event: bool,
    },
    CallActivity {
        called: CalledElement,
    },
    /// An element the engine cannot execute. Parsing reported it as an error; the node stays in
    /// the graph so that flows through it resolve and no follow-on errors are invented.
    Unsupported {
        element: String,
        attached_to: Option<NodeIdx>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayKind {
    Exclusive,
    Parallel,
    Inclusive,
    EventBased,
}

impl GatewayKind {
    pub fn xml_name(self) -> &'static str {
        match self {
            GatewayKind::Exclusive => "exclusiveGateway",
            GatewayKind::Parallel => "parallelGateway",
            GatewayKind::Inclusive => "inclusiveGateway",
            GatewayKind::EventBased => "eventBasedGateway",
        }
    }
}

/// What an event waits for.
#[derive(Debug, Clone)]
pub enum Trigger {
    None,
    Timer(Box<TimerDef>),
    /// Index into `Definitions::messages` by message id.
    Message {
        message: String,
    },
    /// `None` catches every error.
    Error {
        error: Option<String>,
    },
}

/// What an end or throw event does.
#[derive(Debug, Clone)]
pub enum EndResult {
    None,
    Terminate,
    Error { error: String },
    Message { message: Option<String> },
}

#[derive(Debug, Clone)]
pub struct TimerDef {
    pub kind: TimerKind,
    pub pos: Pos,
    pub value: TimerValue,
    /// `reglament:timer`: count the duration in working time of a calendar.
    pub basis: TimeBasis,
    pub calendar: Option<String>,
}

/// A timer's value: a literal parsed at validation time, or a FEEL expression evaluated when
/// the timer is scheduled.
#[derive(Debug, Clone)]
pub enum TimerValue {
    Literal(TimerSpec),
    Expression(Expr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    User,
    Service,
    Send,
    Receive,
    Script,
    Manual,
    Plain,
    BusinessRule,
}

impl TaskKind {
    pub fn xml_name(self) -> &'static str {
        match self {
            TaskKind::User => "userTask",
            TaskKind::Service => "serviceTask",
            TaskKind::Send => "sendTask",
            TaskKind::Receive => "receiveTask",
            TaskKind::Script => "scriptTask",
            TaskKind::Manual => "manualTask",
            TaskKind::Plain => "task",
            TaskKind::BusinessRule => "businessRuleTask",
        }
    }
}

/// A text attribute that may be a FEEL expression (`=…`) or a static value.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Static(String),
    Feel(Expr),
}

#[derive(Debug, Clone)]
pub struct Task {
    pub kind: TaskKind,
    pub assignee: Option<Param>,
    pub candidate_groups: Option<Param>,
    pub candidate_users: Option<Param>,
    pub due_date: Option<Param>,
    pub follow_up_date: Option<Param>,
    /// `reglament:deadline`: the task's due date, a term from its creation or a date.
    pub deadline: Option<Deadline>,
    /// `zeebe:taskDefinition type` (service, send, script-as-job tasks).
    pub job_type: Option<Param>,
    pub retries: Option<Param>,
    pub headers: Vec<(String, String)>,
    /// Script tasks: `zeebe:script expression` (or a FEEL `bpmn:script` body).
    pub script: Option<Expr>,
    pub result_variable: Option<String>,
    /// Receive tasks: the message they wait for.
    pub message: Option<String>,
    /// `zeebe:formDefinition formId` or an embedded `formKey`: the Camunda Form whose fields
    /// [`crate::form::link`] puts into `form`.
    pub form_link: Option<FormLink>,
    /// The fields a user task's completion must carry: from `reglament:form`, or from the
    /// linked Camunda Form.
    pub form: Vec<FormField>,
    pub priority: Option<Param>,
    /// Script tasks: `reglament:slaExtension`, the instance's SLA extended when the task runs.
    pub sla_extension: Option<SlaExtension>,
}

/// `<reglament:slaExtension duration="=extensionGranted" reason="=extensionReason"
/// deadlineVariable="answerDeadline"/>` on a script task: when the task runs (after its script
/// result is set) the instance's SLA deadline is extended by `duration` — an ISO 8601 duration,
/// or FEEL giving one or a whole number of days — counted in `time` (default `calendar`: from
/// the term's last day before its move off a day off, 8-FZ art. 18 part 6). The new deadline is
/// written to `deadlineVariable` when one is named.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaExtension {
    pub duration: Param,
    pub time: TimeBasis,
    pub calendar: Option<String>,
    pub reason: Option<Param>,
    pub deadline_variable: Option<String>,
    pub pos: Pos,
}

impl Task {
    pub fn new(kind: TaskKind) -> Task {
        Task {
            kind,
            assignee: None,
            candidate_groups: None,
            candidate_users: None,
            due_date: None,
            follow_up_date: None,
            deadline: None,
            job_type: None,
            retries: None,
            headers: Vec::new(),
            script: None,
            result_variable: None,
            message: None,
            form_link: None,
            form: Vec::new(),
            priority: None,
            sla_extension: None,
        }
    }

    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Where a user task's Camunda Form comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct FormLink {
    pub target: FormTarget,
    /// Where the `zeebe:formDefinition` is.
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FormTarget {
    /// `formId`: the `id` of a `.form` file deployed with the model.
    FormId(String),
    /// `formKey="camunda-forms:bpmn:ID"`: the process's `zeebe:userTaskForm id="ID"`.
    Embedded(String),
}

/// A Camunda Form embedded in the model (`zeebe:userTaskForm`, Camunda 8.0–8.2).
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedForm {
    pub id: String,
    /// The form's JSON, as written in the element.
    pub json: String,
    pub pos: Pos,
}

/// One field of a task form (`reglament:field`, or a component of a Camunda Form). The one
/// form model of both dialects: the runtime checks completions against it
/// ([`crate::form::check`]) and the task page renders it.
#[derive(Debug, Clone, PartialEq)]
pub struct FormField {
    /// The variable the field sets; for a [`FieldKind::Note`], the component's id.
    pub id: String,
    pub label: String,
    pub kind: FieldKind,
    pub required: bool,
    /// `hint`: a line of help shown under the field; a note's text.
    pub hint: Option<String>,
    /// Allowed values for `enum`, `select` and `checklist` fields: (value, label).
    pub options: Vec<(String, String)>,
    /// Shown with the case's value as context, never edited, checked or submitted (Camunda
    /// `readonly` and `disabled`).
    pub readonly: bool,
    /// The value an empty input starts with (Camunda `defaultValue`).
    pub default: Option<serde_json::Value>,
    pub rules: FieldRules,
    pub pos: Pos,
}

/// Constraints on a field's value besides its kind (Camunda `validate`). Empty values are
/// only checked by `required`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldRules {
    /// Characters of the trimmed text, at least / at most.
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    /// Numbers: at least / at most.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// A regular expression the text must contain a match of (as form-js tests it).
    pub pattern: Option<String>,
    /// Numbers: at most this many digits after the decimal point (0: whole numbers).
    pub decimal_digits: Option<u32>,
    /// Booleans: `required` means checked (a Camunda required checkbox), not merely answered.
    pub must_check: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Textarea,
    Number,
    Boolean,
    Date,
    /// One of `options`, shown as radio buttons.
    Enum,
    Email,
    /// One of `options`, shown as a drop-down list (Camunda `select`).
    Select,
    /// Any number of `options`: the value is the list of the chosen values (Camunda
    /// `checklist`, `taglist`).
    Checklist,
    /// No value: text shown between the fields (a Camunda `text` component, a group's title).
    Note,
}

#[derive(Debug, Clone)]
pub struct CalledElement {
    pub process_id: Option<Param>,
    pub propagate_all_child_variables: bool,
    pub propagate_all_parent_variables: bool,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct MultiInstance {
    pub sequential: bool,
    pub input_collection: Option<Expr>,
    pub input_element: Option<String>,
    pub output_collection: Option<String>,
    pub output_element: Option<Expr>,
    pub completion_condition: Option<Expr>,
    pub pos: Pos,
}

/// `zeebe:ioMapping`.
#[derive(Debug, Clone, Default)]
pub struct IoMapping {
    pub inputs: Vec<Mapping>,
    pub outputs: Vec<Mapping>,
}

#[derive(Debug, Clone)]
pub struct Mapping {
    pub source: Expr,
    /// Target variable; a dotted path (`a.b`) writes into a nested object.
    pub target: String,
}
