//! The resources of the API (DESIGN §6) and how they are built from stored rows and the model.
//! JSON is camelCase; instants are RFC 3339 with the offset of the definition's (or the
//! server's) time zone.

use chrono::SecondsFormat;
use reglament_engine::model::{FieldKind, NodeKind};
use reglament_engine::runtime::{Env, ProcessDef, ROOT, Status};
use serde::Serialize;
use utoipa::ToSchema;

use reglament_store::auth::{RegistryEntry, UserRecord};
use reglament_store::{DefinitionRow, InstanceRow, TaskRow, Ts};

pub fn fmt_ts(t: Ts, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An instance's state as the API names it: `active`, `incident` (active but stopped by an
/// incident), `completed` or `cancelled`.
pub fn state_name(s: &reglament_engine::runtime::Instance) -> &'static str {
    match s.status {
        Status::Active if s.has_incident() => "incident",
        Status::Active => "active",
        Status::Completed => "completed",
        Status::Cancelled => "cancelled",
    }
}

/// A process instance.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    pub id: String,
    pub definition_key: String,
    pub version: i64,
    pub business_key: Option<String>,
    /// `active`, `completed`, `cancelled`, or `incident` (active but stopped by an incident).
    pub state: String,
    /// The instance's variables (root scope).
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, serde_json::Value>,
    /// The elements a token is at now.
    pub active_elements: Vec<ActiveElement>,
    pub incidents: Vec<IncidentView>,
    /// The SLA deadline, when the definition declares one.
    pub deadline: Option<String>,
    /// Working minutes left until the deadline by the definition's calendar (negative: overdue).
    pub working_time_left: Option<i64>,
    pub sla_paused: bool,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// The parent instance when a call activity started this one.
    pub parent_id: Option<String>,
    /// Where the audit history of this instance is.
    pub history: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveElement {
    pub element_id: String,
    pub name: Option<String>,
    /// The BPMN element type, e.g. `userTask`.
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncidentView {
    pub element_id: String,
    pub message: String,
}

fn node_type(kind: &NodeKind) -> String {
    match kind {
        NodeKind::StartEvent { .. } => "startEvent".into(),
        NodeKind::EndEvent { .. } => "endEvent".into(),
        NodeKind::CatchEvent { .. } => "intermediateCatchEvent".into(),
        NodeKind::ThrowEvent { .. } => "intermediateThrowEvent".into(),
        NodeKind::Boundary { .. } => "boundaryEvent".into(),
        NodeKind::Task(t) => t.kind.xml_name().into(),
        NodeKind::Gateway(g) => g.xml_name().into(),
        NodeKind::SubProcess { .. } => "subProcess".into(),
        NodeKind::CallActivity { .. } => "callActivity".into(),
        NodeKind::Unsupported { element, .. } => element.clone(),
    }
}

impl InstanceView {
    pub fn build(row: &InstanceRow, def: &ProcessDef, env: &Env, now: Ts, base_url: &str) -> InstanceView {
        let s = &row.state;
        let process = def.process();
        let active_elements = s
            .elements
            .iter()
            .map(|e| {
                let node = process.node(e.node);
                ActiveElement { element_id: node.id.clone(), name: node.name.clone(), kind: node_type(&node.kind) }
            })
            .collect();
        let incidents = s
            .incidents
            .iter()
            .map(|i| IncidentView { element_id: process.node(i.node).id.clone(), message: i.message.clone() })
            .collect();
        let state = state_name(s);
        let working_time_left = s.sla.as_ref().filter(|_| s.status == Status::Active).and_then(|sla| {
            let calendar = env.calendars.get(&def.calendar)?;
            let from = sla.paused_at.unwrap_or(now).with_timezone(&def.tz);
            match calendar.working_minutes_between(from, sla.deadline.with_timezone(&def.tz)) {
                Ok(minutes) => Some(minutes),
                Err(e) => {
                    tracing::warn!(instance = %row.id, error = %e, "working time left cannot be computed");
                    None
                }
            }
        });
        InstanceView {
            id: row.id.clone(),
            definition_key: row.definition_key.clone(),
            version: row.version,
            business_key: row.business_key.clone(),
            state: state.into(),
            variables: s.vars(ROOT).cloned().unwrap_or_default(),
            active_elements,
            incidents,
            deadline: s.sla.as_ref().map(|sla| fmt_ts(sla.deadline, def.tz)),
            working_time_left,
            sla_paused: s.sla.as_ref().is_some_and(|sla| sla.paused_at.is_some()),
            started_at: fmt_ts(row.started_at, def.tz),
            ended_at: row.ended_at.map(|t| fmt_ts(t, def.tz)),
            parent_id: row.parent_id.clone(),
            history: format!("{base_url}/api/process-instances/{}/history", row.id),
        }
    }
}

/// A user task.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub id: String,
    pub process_instance_id: String,
    pub definition_key: String,
    pub element_id: String,
    pub name: Option<String>,
    /// `open`, `completed` or `cancelled`.
    pub state: String,
    pub assignee: Option<String>,
    pub candidate_groups: Vec<String>,
    pub candidate_users: Vec<String>,
    pub due: Option<String>,
    pub priority: Option<i64>,
    pub created_at: String,
    pub completed_at: Option<String>,
    pub completed_by: Option<String>,
    /// The name of the task's process (latest deployed version).
    pub process_name: Option<String>,
    /// The instance's business key (the request number).
    pub business_key: Option<String>,
    /// Open and past its due time.
    pub overdue: bool,
    /// Working days of the process's calendar after today up to the due date (0: due today;
    /// negative: overdue by that many); null without a due date or past the calendar's years.
    pub working_days_left: Option<i64>,
    /// The fields the completion must carry (`reglament:form`); only on `GET /api/tasks/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form: Option<Vec<FormFieldView>>,
}

/// One field of a task form, enough to render it: from `reglament:form` or a Camunda Form.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FormFieldView {
    /// The variable the field sets; for a `note`, the component's id.
    pub id: String,
    pub label: String,
    /// `text`, `textarea`, `number`, `boolean`, `date`, `enum` (one of `options`, as radio
    /// buttons), `select` (one of `options`, as a list), `checklist` (a list of values of
    /// `options`), `email`, or `note` (text between the fields, no value: `label` a title,
    /// `hint` the text).
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    pub options: Vec<FormOption>,
    /// A line of help under the field; a note's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Shown as context with the case's value: the task page has no input for it and the
    /// completion check skips it.
    pub readonly: bool,
    /// The value an empty input starts with.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub default_value: Option<serde_json::Value>,
    /// Constraints the completion is checked against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// A regular expression the text must contain a match of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Numbers: at most this many digits after the decimal point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decimal_digits: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FormOption {
    pub value: String,
    pub label: String,
}

impl TaskView {
    pub fn build(t: &TaskRow, tz: chrono_tz::Tz) -> TaskView {
        TaskView {
            id: t.id.clone(),
            process_instance_id: t.instance_id.clone(),
            definition_key: t.definition_key.clone(),
            element_id: t.element_id.clone(),
            name: t.name.clone(),
            state: t.state.clone(),
            assignee: t.assignee.clone(),
            candidate_groups: t.candidate_groups.clone(),
            candidate_users: t.candidate_users.clone(),
            due: t.due.map(|d| fmt_ts(d, tz)),
            priority: t.priority,
            created_at: fmt_ts(t.created_at, tz),
            completed_at: t.completed_at.map(|d| fmt_ts(d, tz)),
            completed_by: t.completed_by.clone(),
            process_name: None,
            business_key: None,
            overdue: false,
            working_days_left: None,
            form: None,
        }
    }

    /// Adds what the inbox shows beside the row ([`super::task_facts`]).
    pub fn with_facts(mut self, facts: super::task_facts::TaskFacts) -> TaskView {
        self.process_name = facts.process_name;
        self.business_key = facts.business_key;
        self.overdue = facts.overdue;
        self.working_days_left = facts.working_days_left;
        self
    }

    /// Adds the form of the task's element in the model.
    pub fn with_form(mut self, def: &ProcessDef) -> TaskView {
        let process = def.process();
        let fields = process.node_by_id(&self.element_id).and_then(|n| match &process.node(n).kind {
            NodeKind::Task(task) => Some(&task.form),
            _ => None,
        });
        self.form = Some(
            fields
                .into_iter()
                .flatten()
                .map(|f| FormFieldView {
                    id: f.id.clone(),
                    label: f.label.clone(),
                    kind: field_kind(f.kind).into(),
                    required: f.required,
                    options: f
                        .options
                        .iter()
                        .map(|(value, label)| FormOption { value: value.clone(), label: label.clone() })
                        .collect(),
                    hint: f.hint.clone(),
                    readonly: f.readonly,
                    default_value: f.default.clone(),
                    min_length: f.rules.min_length,
                    max_length: f.rules.max_length,
                    min: f.rules.min,
                    max: f.rules.max,
                    pattern: f.rules.pattern.clone(),
                    decimal_digits: f.rules.decimal_digits,
                })
                .collect(),
        );
        self
    }
}

fn field_kind(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Text => "text",
        FieldKind::Textarea => "textarea",
        FieldKind::Number => "number",
        FieldKind::Boolean => "boolean",
        FieldKind::Date => "date",
        FieldKind::Enum => "enum",
        FieldKind::Email => "email",
        FieldKind::Select => "select",
        FieldKind::Checklist => "checklist",
        FieldKind::Note => "note",
    }
}

/// A deployed definition version.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionView {
    /// The BPMN process id.
    pub key: String,
    pub version: i64,
    pub name: Option<String>,
    pub deployed_at: String,
    pub deployed_by: Option<String>,
    /// Process registry fields (`reglament:registry`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub registry: Option<std::collections::BTreeMap<String, String>>,
    /// Where the XML of this version is.
    pub xml: String,
}

impl DefinitionView {
    pub fn build(d: &DefinitionRow, registry: Option<&RegistryEntry>, tz: chrono_tz::Tz, base_url: &str) -> Self {
        DefinitionView {
            key: d.key.clone(),
            version: d.version,
            name: d.name.clone(),
            deployed_at: fmt_ts(d.deployed_at, tz),
            deployed_by: d.deployed_by.clone(),
            registry: registry.map(|r| r.fields.clone()),
            xml: format!("{base_url}/api/definitions/{}/xml?version={}", d.key, d.version),
        }
    }
}

/// A user account (without tokens).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub login: String,
    pub name: Option<String>,
    pub email: String,
    pub groups: Vec<String>,
    pub disabled: bool,
    pub created_at: String,
}

impl UserView {
    pub fn build(u: &UserRecord, tz: chrono_tz::Tz) -> UserView {
        UserView {
            login: u.login.clone(),
            name: u.name.clone(),
            email: u.email.clone(),
            groups: u.groups.clone(),
            disabled: u.disabled,
            created_at: fmt_ts(u.created_at, tz),
        }
    }
}
