//! Maps the XML tree onto the typed model, reporting everything it cannot read.
//!
//! The rule: every BPMN element is either read into the model, or known to be descriptive
//! (diagram, documentation, data objects, lanes, annotations — no effect on execution), or
//! reported as an error naming the element. Nothing executable is skipped silently.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value as Json;

use crate::diagnostics::{Code, Diagnostic, Pos};
use crate::feel::Expr;
use crate::model::*;
use crate::timer::{IsoDuration, TimerKind, TimerSpec};
use crate::xml::{self, Ns, XmlElement};

/// Elements with no effect on execution; read past without a word.
const DESCRIPTIVE: &[&str] = &[
    "documentation",
    "dataObject",
    "dataObjectReference",
    "dataStoreReference",
    "textAnnotation",
    "association",
    "group",
    "laneSet",
    "ioSpecification",
    "dataInputAssociation",
    "dataOutputAssociation",
    "property",
    "incoming",
    "outgoing",
    "extensionElements",
    "auditing",
    "monitoring",
    "category",
    "resourceRole",
    "performer",
    "humanPerformer",
    "potentialOwner",
];

/// Root-level declarations that are read or are harmless to skip.
const ROOT_DECLARATIONS: &[&str] = &[
    "itemDefinition",
    "dataStore",
    "interface",
    "import",
    "category",
    "correlationProperty",
    "resource",
    "partnerRole",
    "partnerEntity",
    "signal",
    "escalation",
    "endPoint",
    "extension",
    "relationship",
    "documentation",
    "extensionElements",
    "collaboration",
    "choreography",
    "conversation",
    "globalTask",
    "globalUserTask",
    "globalManualTask",
    "globalScriptTask",
    "globalBusinessRuleTask",
];

/// Flow elements Reglament cannot execute, with advice.
const UNSUPPORTED_FLOW: &[(&str, &str)] = &[
    ("complexGateway", "use an inclusive or exclusive gateway"),
    ("transaction", "use an embedded subprocess with error boundary events"),
    ("adHocSubProcess", "model the tasks with a parallel or inclusive gateway"),
    ("callChoreography", "choreographies are descriptive, not executable"),
    ("subChoreography", "choreographies are descriptive, not executable"),
    ("choreographyTask", "choreographies are descriptive, not executable"),
    ("implicitThrowEvent", "use an intermediate throw event"),
];

/// Parses bytes into the model and the diagnostics met on the way.
pub fn parse(bytes: &[u8], limits: &xml::Limits) -> (Definitions, Vec<Diagnostic>) {
    let root = match xml::parse_document(bytes, limits) {
        Ok(root) => root,
        Err(e) => {
            return (Definitions::default(), vec![Diagnostic::error(Code::MalformedXml, e.pos, None, e.message)]);
        }
    };
    let mut p = Parser { diags: Vec::new() };
    let defs = p.definitions(&root);
    (defs, p.diags)
}

struct Parser {
    diags: Vec<Diagnostic>,
}

/// A process under construction.
struct Builder<'a> {
    process: Process,
    /// Flow elements, kept until all nodes exist so references resolve in any order.
    pending_flows: Vec<(&'a XmlElement, Option<NodeIdx>)>,
    pending_boundaries: Vec<(NodeIdx, &'a XmlElement)>,
    pending_defaults: Vec<(NodeIdx, &'a xml::XmlAttr)>,
}

impl Parser {
    fn error(&mut self, code: Code, pos: Pos, element: Option<&str>, message: impl Into<String>) {
        self.diags.push(Diagnostic::error(code, pos, element, message));
    }

    fn warning(&mut self, code: Code, pos: Pos, element: Option<&str>, message: impl Into<String>) {
        self.diags.push(Diagnostic::warning(code, pos, element, message));
    }

    fn definitions(&mut self, root: &XmlElement) -> Definitions {
        let mut defs = Definitions::default();
        if !root.is(&Ns::Bpmn, "definitions") {
            let hint = if let Ns::Other(uri) = &root.ns
                && root.name == "definitions"
            {
                format!(
                    "the root <{}> is in namespace `{uri}`, not BPMN 2.0 (`{}`): this is not a BPMN model",
                    root.qualified_name(),
                    xml::NS_BPMN
                )
            } else if root.name == "definitions" {
                format!(
                    "the root element <{}> is not in the BPMN 2.0 namespace; declare xmlns=\"{}\"",
                    root.qualified_name(),
                    xml::NS_BPMN
                )
            } else {
                format!("the root element is <{}>, not a BPMN 2.0 <definitions>", root.qualified_name())
            };
            self.error(Code::NotBpmn, root.pos, None, hint);
            return defs;
        }
        defs.id = root.id().map(str::to_owned);
        defs.pos = root.pos;
        defs.name = root.attr_value("name").map(str::to_owned);
        self.check_duplicate_ids(root);
        for child in &root.children {
            match (&child.ns, child.name.as_str()) {
                (Ns::Bpmn, "message") => self.message(child, &mut defs),
                (Ns::Bpmn, "error") => {
                    if let Some(id) = self.require_id(child) {
                        defs.errors.insert(
                            id.clone(),
                            ErrorDef {
                                id,
                                name: child.attr_value("name").map(str::to_owned),
                                code: child.attr_value("errorCode").map(str::to_owned),
                                pos: child.pos,
                            },
                        );
                    }
                }
                (Ns::Bpmn, "collaboration") => defs.has_collaboration = true,
                (Ns::Bpmn, _) => {}
                (Ns::Diagram, _) => {}
                _ => {}
            }
        }
        for child in &root.children {
            match (&child.ns, child.name.as_str()) {
                (Ns::Bpmn, "process") => {
                    if let Some(process) = self.process(child, &defs) {
                        defs.processes.push(process);
                    }
                }
                (Ns::Bpmn, "message" | "error") => {}
                (Ns::Bpmn, name) if ROOT_DECLARATIONS.contains(&name) => {}
                (Ns::Bpmn, _) => self.warning(
                    Code::IgnoredExtension,
                    child.pos,
                    child.id(),
                    format!("root element <{}> is not read by Reglament", child.qualified_name()),
                ),
                (Ns::Diagram, _) => {}
                _ => self.warning(
                    Code::IgnoredExtension,
                    child.pos,
                    child.id(),
                    format!("vendor element <{}> is ignored", child.qualified_name()),
                ),
            }
        }
        defs
    }

    fn check_duplicate_ids(&mut self, root: &XmlElement) {
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        let mut stack = vec![root];
        let mut dups = Vec::new();
        while let Some(el) = stack.pop() {
            // Ids of BPMN elements must be unique. Vendor extensions (inside extensionElements
            // or in foreign namespaces) have their own meaning for `id`: a form field's names
            // the variable it sets, a modeler's annotation its own record. Their ids are not
            // BPMN ids, and nothing refers to them.
            if el.ns != Ns::Bpmn {
                continue;
            }
            if let Some(attr) = el.attr("id") {
                if let Some(first) = seen.get(attr.value.as_str()) {
                    dups.push((el.pos, attr.value.clone(), *first, el.qualified_name()));
                } else {
                    seen.insert(&attr.value, el.pos);
                }
            }
            if el.name != "extensionElements" {
                stack.extend(el.children.iter().rev());
            }
        }
        // The walk above is depth-first in document order, so "first" is the earlier one.
        for (pos, id, first, name) in dups {
            self.error(
                Code::DuplicateId,
                pos,
                Some(&id),
                format!(
                    "id `{id}` of <{name}> is already used at line {}, column {}; ids must be unique",
                    first.line, first.col
                ),
            );
        }
    }

    fn require_id(&mut self, el: &XmlElement) -> Option<String> {
        match el.id() {
            Some(id) if !id.trim().is_empty() => Some(id.to_string()),
            _ => {
                self.error(Code::MissingId, el.pos, None, format!("<{}> has no id attribute", el.qualified_name()));
                None
            }
        }
    }

    fn message(&mut self, el: &XmlElement, defs: &mut Definitions) {
        let Some(id) = self.require_id(el) else { return };
        let name = el.attr_value("name").map(str::to_owned).unwrap_or_else(|| id.clone());
        let mut correlation_key = None;
        for ext in extension_elements(el) {
            match (&ext.ns, ext.name.as_str()) {
                (Ns::Zeebe, "subscription") => {
                    if let Some(attr) = ext.attr("correlationKey") {
                        correlation_key = self.expr(&attr.value, attr.pos, Some(&id));
                    }
                }
                _ => self.extension_elsewhere(ext, &id),
            }
        }
        defs.messages.insert(id.clone(), MessageDef { id, name, pos: el.pos, correlation_key });
    }

    fn expr(&mut self, source: &str, pos: Pos, element: Option<&str>) -> Option<Expr> {
        match Expr::compile(source, pos) {
            Ok(e) => Some(e),
            Err(e) => {
                self.error(Code::BadExpression, pos, element, e.message);
                None
            }
        }
    }

    /// A static value or, with a leading `=`, a FEEL expression.
    fn param(&mut self, attr: Option<&xml::XmlAttr>, element: &str) -> Option<Param> {
        let attr = attr?;
        let value = attr.value.trim();
        if value.starts_with('=') {
            self.expr(value, attr.pos, Some(element)).map(Param::Feel)
        } else if value.is_empty() {
            None
        } else {
            Some(Param::Static(value.to_string()))
        }
    }

    fn process(&mut self, el: &XmlElement, defs: &Definitions) -> Option<Process> {
        let id = self.require_id(el)?;
        let executable = el.attr_value("isExecutable").map(|v| v.trim() == "true").unwrap_or(false);
        let mut b = Builder {
            process: Process {
                id: id.clone(),
                name: el.attr_value("name").map(str::to_owned),
                pos: el.pos,
                executable,
                ..Process::default()
            },
            pending_flows: Vec::new(),
            pending_boundaries: Vec::new(),
            pending_defaults: Vec::new(),
        };
        for ext in extension_elements(el) {
            self.process_extension(ext, &id, &mut b.process.settings);
        }
        self.scope_children(el, None, &mut b, defs);
        let mut process = self.resolve(b)?;
        self.evaluate_start_timers(&mut process);
        Some(process)
    }

    /// A timer start event of a process whose time is a FEEL expression: as Zeebe does, the
    /// expression is evaluated once, when the process is deployed, with no variables, and the
    /// timer is scheduled from its value. Anything it cannot give then is a validation error.
    fn evaluate_start_timers(&mut self, process: &mut Process) {
        for node in &mut process.nodes {
            if node.parent.is_some() {
                continue;
            }
            let NodeKind::StartEvent { trigger: Trigger::Timer(td), .. } = &mut node.kind else { continue };
            let TimerValue::Expression(expr) = &td.value else { continue };
            let deploy_time = "a timer start event's expression is evaluated once, when the process is deployed, with no variables (as in Zeebe)";
            let value = if expr.uses_clock() {
                Err(format!(
                    "{deploy_time}; `{}` calls now(), today() or random number(), which are not available then: write the date or cycle itself",
                    expr.source()
                ))
            } else {
                match expr.eval_with(&|_| None) {
                    Ok(Json::String(text)) => TimerSpec::parse(td.kind, &text)
                        .map_err(|e| format!("`{}` gave \"{text}\": {e}", expr.source())),
                    Ok(Json::Null) => Err(format!("{deploy_time}; {}", expr.null_message(&|_| None))),
                    Ok(other) => Err(format!("`{}` gave {other}, expected a date or cycle as a string", expr.source())),
                    Err(e) => Err(format!("{deploy_time}; {}", e.message)),
                }
            };
            match value {
                Ok(spec) => td.value = TimerValue::Literal(spec),
                Err(message) => {
                    let (pos, id) = (td.pos, node.id.clone());
                    self.error(Code::BadTimer, pos, Some(&id), message);
                }
            }
        }
    }

    fn process_extension(&mut self, ext: &XmlElement, id: &str, settings: &mut ProcessSettings) {
        match (&ext.ns, ext.name.as_str()) {
            (Ns::Zeebe, "properties") => settings.properties = properties(ext),
            (Ns::Zeebe, "versionTag") => {}
            (Ns::Zeebe, "userTaskForm") => match ext.attr_value("id").filter(|v| !v.is_empty()) {
                Some(form_id) => settings.embedded_forms.push(EmbeddedForm {
                    id: form_id.to_string(),
                    json: ext.text.clone(),
                    pos: ext.pos,
                }),
                None => self.error(Code::MissingId, ext.pos, Some(id), "<zeebe:userTaskForm> has no id"),
            },
            (Ns::Reglament, "settings") => {
                settings.time_zone = ext.attr_value("timeZone").map(str::to_owned);
                if let Some(tz) = ext.attr("timeZone")
                    && tz.value.parse::<chrono_tz::Tz>().is_err()
                {
                    self.error(
                        Code::BadValue,
                        tz.pos,
                        Some(id),
                        format!("`{}` is not an IANA time zone name (e.g. Europe/Astrakhan)", tz.value),
                    );
                }
                settings.calendar = ext.attr_value("calendar").map(str::to_owned);
                if let Some(a) = ext.attr("owners") {
                    settings.owners =
                        a.value.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect();
                    if settings.owners.is_empty()
                        || settings.owners.iter().any(|o| o.chars().any(|c| c.is_whitespace() || c.is_control()))
                    {
                        self.error(
                            Code::BadValue,
                            a.pos,
                            Some(id),
                            format!(
                                "owners must list group ids or logins separated by commas (e.g. `legal,ivanova`), not `{}`",
                                a.value
                            ),
                        );
                    }
                }
                if let Some(a) = ext.attr("starters") {
                    settings.starters =
                        a.value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect();
                    if settings.starters.is_empty()
                        || settings.starters.iter().any(|v| v.chars().any(|c| c.is_whitespace() || c.is_control()))
                    {
                        self.error(
                            Code::BadValue,
                            a.pos,
                            Some(id),
                            format!(
                                "starters must list group ids separated by commas (e.g. `reception,legal`), not `{}`",
                                a.value
                            ),
                        );
                    }
                }
                if let Some(a) = ext.attr("protected") {
                    settings.protected =
                        a.value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect();
                    if settings.protected.iter().any(|v| v.chars().any(|c| c.is_whitespace() || c.is_control())) {
                        self.error(
                            Code::BadValue,
                            a.pos,
                            Some(id),
                            format!(
                                "protected must list variable names separated by commas (e.g. `requestNo,registeredAt`), not `{}`",
                                a.value
                            ),
                        );
                    }
                }
                if let Some(a) = ext.attr("messageSenders") {
                    match message_senders(&a.value) {
                        Ok(senders) => settings.message_senders = senders,
                        Err(message) => self.error(Code::BadValue, a.pos, Some(id), message),
                    }
                }
                match ext.attr("uniqueBusinessKey") {
                    None => {}
                    Some(a) if a.value == "true" || a.value == "false" => {
                        settings.unique_business_key = a.value == "true"
                    }
                    Some(a) => self.error(
                        Code::BadValue,
                        a.pos,
                        Some(id),
                        format!("uniqueBusinessKey must be `true` or `false`, not `{}`", a.value),
                    ),
                }
            }
            (Ns::Reglament, "sla") => settings.sla = self.deadline(ext, id),
            (Ns::Reglament, "registry") => {
                for field in &ext.children {
                    if field.ns == Ns::Reglament && REGISTRY_FIELDS.contains(&field.name.as_str()) {
                        settings.registry.insert(field.name.clone(), field.text.trim().to_string());
                    } else {
                        self.error(
                            Code::BadValue,
                            field.pos,
                            Some(id),
                            format!(
                                "<{}> is not a registry field; expected one of: {}",
                                field.qualified_name(),
                                REGISTRY_FIELDS.join(", ")
                            ),
                        );
                    }
                }
            }
            _ => self.extension_elsewhere(ext, id),
        }
    }

    /// A `reglament:sla` / `reglament:deadline`: a `duration` term or a FEEL `date`.
    fn deadline(&mut self, el: &XmlElement, id: &str) -> Option<Deadline> {
        match (el.attr("duration"), el.attr("date")) {
            (Some(_), Some(d)) => {
                self.error(
                    Code::BadValue,
                    d.pos,
                    Some(id),
                    format!("<{}> takes a duration or a date, not both", el.qualified_name()),
                );
                None
            }
            (None, Some(d)) => {
                let expr = self.expr(&d.value, d.pos, Some(id))?;
                Some(Deadline::Date { expr, calendar: el.attr_value("calendar").map(str::to_owned), pos: el.pos })
            }
            _ => self.term(el, id).map(Deadline::Term),
        }
    }

    /// A term: an ISO 8601 `duration` and how to count it (`time`, `calendar`).
    fn term(&mut self, el: &XmlElement, id: &str) -> Option<Term> {
        let Some(attr) = el.attr("duration") else {
            self.error(
                Code::Missing,
                el.pos,
                Some(id),
                format!("<{}> needs a duration (ISO 8601, e.g. P10D) or a date (FEEL) attribute", el.qualified_name()),
            );
            return None;
        };
        let duration = match IsoDuration::parse(&attr.value) {
            Ok(d) => d,
            Err(e) => {
                self.error(Code::BadTimer, attr.pos, Some(id), e);
                return None;
            }
        };
        let time = self.time_basis(el, id, TimeBasis::Calendar)?;
        Some(Term { duration, time, calendar: el.attr_value("calendar").map(str::to_owned), pos: el.pos })
    }

    fn time_basis(&mut self, el: &XmlElement, id: &str, default: TimeBasis) -> Option<TimeBasis> {
        match el.attr("time") {
            None => Some(default),
            Some(a) => match a.value.as_str() {
                "working" => Some(TimeBasis::Working),
                "calendar" => Some(TimeBasis::Calendar),
                "clock" => Some(TimeBasis::Clock),
                other => {
                    self.error(
                        Code::BadValue,
                        a.pos,
                        Some(id),
                        format!("time=\"{other}\" is not one of working, calendar, clock"),
                    );
                    None
                }
            },
        }
    }

    /// An extension element in a place where Reglament does not read it.
    fn extension_elsewhere(&mut self, ext: &XmlElement, id: &str) {
        match ext.ns {
            Ns::Zeebe if ZEEBE_KNOWN.contains(&ext.name.as_str()) => self.warning(
                Code::IgnoredExtension,
                ext.pos,
                Some(id),
                format!("<{}> has no meaning here and is ignored", ext.qualified_name()),
            ),
            Ns::Zeebe => self.error(
                Code::Unsupported,
                ext.pos,
                Some(id),
                format!("<{}> is not supported by Reglament", ext.qualified_name()),
            ),
            Ns::Reglament => self.error(
                Code::Unsupported,
                ext.pos,
                Some(id),
                format!("<{}> is not a reglament: element allowed here", ext.qualified_name()),
            ),
            _ => self.warning(
                Code::IgnoredExtension,
                ext.pos,
                Some(id),
                format!("vendor extension <{}> is ignored", ext.qualified_name()),
            ),
        }
    }

    /// Reads the flow elements of a process or subprocess.
    fn scope_children<'a>(
        &mut self,
        el: &'a XmlElement,
        scope: Option<NodeIdx>,
        b: &mut Builder<'a>,
        defs: &Definitions,
    ) {
        for child in &el.children {
            if child.ns != Ns::Bpmn {
                if child.ns != Ns::Diagram {
                    self.warning(
                        Code::IgnoredExtension,
                        child.pos,
                        child.id(),
                        format!("vendor element <{}> is ignored", child.qualified_name()),
                    );
                }
                continue;
            }
            let name = child.name.as_str();
            if name == "sequenceFlow" {
                b.pending_flows.push((child, scope));
            } else if DESCRIPTIVE.contains(&name) {
            } else if scope.is_some()
                && matches!(name, "multiInstanceLoopCharacteristics" | "standardLoopCharacteristics")
            {
                // The subprocess's own loop, read by `node_details` with the subprocess.
            } else if let Some(kind) = self.node_kind(child, defs) {
                let Some(id) = self.require_id(child) else { continue };
                let idx = b.process.nodes.len() as NodeIdx;
                if let Some(first) = b.process.index.insert(id.clone(), idx) {
                    // Reported by the document-wide duplicate check; references keep meaning the first.
                    b.process.index.insert(id.clone(), first);
                }
                let mut node = Node {
                    id: id.clone(),
                    name: child.attr_value("name").map(str::to_owned),
                    pos: child.pos,
                    parent: scope,
                    kind,
                    incoming: Vec::new(),
                    outgoing: Vec::new(),
                    default_flow: None,
                    boundaries: Vec::new(),
                    multi_instance: None,
                    io: IoMapping::default(),
                    properties: Vec::new(),
                };
                self.node_details(child, &mut node, defs);
                let is_boundary = child.name == "boundaryEvent";
                let is_subprocess = matches!(node.kind, NodeKind::SubProcess { .. });
                b.process.nodes.push(node);
                if is_boundary {
                    b.pending_boundaries.push((idx, child));
                }
                if let Some(default) = child.attr("default") {
                    b.pending_defaults.push((idx, default));
                }
                if is_subprocess {
                    self.scope_children(child, Some(idx), b, defs);
                }
            } else {
                self.error(
                    Code::Unsupported,
                    child.pos,
                    child.id(),
                    format!("<{}> is not a BPMN flow element Reglament knows", child.qualified_name()),
                );
            }
        }
    }

    /// The node kind for a flow-node element: `None` only for names that are no flow node at
    /// all; a known but unexecutable element becomes [`NodeKind::Unsupported`] after its error.
    fn node_kind(&mut self, el: &XmlElement, defs: &Definitions) -> Option<NodeKind> {
        // A business rule task runs as a job when it names a job type (as in Zeebe); a DMN
        // decision (`zeebe:calledDecision`) is not executed yet.
        if el.name == "businessRuleTask" && !extension_elements(el).any(|x| x.is(&Ns::Zeebe, "taskDefinition")) {
            self.error(
                Code::Unsupported,
                el.pos,
                el.id(),
                "businessRuleTask is supported as a job for an external worker (<zeebe:taskDefinition type=\"…\"/>); \
                 DMN decisions (zeebe:calledDecision) are not executed yet: use a script task with FEEL",
            );
            return Some(NodeKind::Unsupported { element: el.name.clone(), attached_to: None });
        }
        if let Some((_, advice)) = UNSUPPORTED_FLOW.iter().find(|(n, _)| *n == el.name) {
            self.error(
                Code::Unsupported,
                el.pos,
                el.id(),
                format!("{} is not supported by Reglament: {advice}", el.name),
            );
            return Some(NodeKind::Unsupported { element: el.name.clone(), attached_to: None });
        }
        if !FLOW_NODES.contains(&el.name.as_str()) {
            return None;
        }
        Some(
            self.supported_kind(el, defs)
                .unwrap_or_else(|| NodeKind::Unsupported { element: el.name.clone(), attached_to: None }),
        )
    }

    /// The kind of a flow node Reglament runs, or `None` after reporting why it cannot.
    fn supported_kind(&mut self, el: &XmlElement, defs: &Definitions) -> Option<NodeKind> {
        let id = el.id();
        Some(match el.name.as_str() {
            "startEvent" => {
                let interrupting = el.attr_value("isInterrupting") != Some("false");
                NodeKind::StartEvent { trigger: self.trigger(el, defs, &["timer", "message", "error"])?, interrupting }
            }
            "endEvent" => NodeKind::EndEvent { result: self.result(el, defs, true)? },
            "intermediateThrowEvent" => NodeKind::ThrowEvent { result: self.result(el, defs, false)? },
            "intermediateCatchEvent" => {
                let trigger = self.trigger(el, defs, &["timer", "message"])?;
                if matches!(trigger, Trigger::None) {
                    self.error(
                        Code::Missing,
                        el.pos,
                        id,
                        "an intermediate catch event needs a timer or message event definition",
                    );
                    return None;
                }
                NodeKind::CatchEvent { trigger }
            }
            "boundaryEvent" => {
                let trigger = self.trigger(el, defs, &["timer", "message", "error"])?;
                if matches!(trigger, Trigger::None) {
                    self.error(
                        Code::Missing,
                        el.pos,
                        id,
                        "a boundary event needs a timer, message or error event definition",
                    );
                    return None;
                }
                let cancel_activity = el.attr_value("cancelActivity") != Some("false");
                // attached_to is resolved once all nodes exist.
                NodeKind::Boundary { attached_to: NodeIdx::MAX, cancel_activity, trigger }
            }
            "task" => NodeKind::Task(Box::new(Task::new(TaskKind::Plain))),
            "userTask" => NodeKind::Task(Box::new(Task::new(TaskKind::User))),
            "serviceTask" => NodeKind::Task(Box::new(Task::new(TaskKind::Service))),
            "businessRuleTask" => NodeKind::Task(Box::new(Task::new(TaskKind::BusinessRule))),
            "sendTask" => NodeKind::Task(Box::new(Task::new(TaskKind::Send))),
            "receiveTask" => NodeKind::Task(Box::new(Task::new(TaskKind::Receive))),
            "scriptTask" => NodeKind::Task(Box::new(Task::new(TaskKind::Script))),
            "manualTask" => NodeKind::Task(Box::new(Task::new(TaskKind::Manual))),
            "exclusiveGateway" => NodeKind::Gateway(GatewayKind::Exclusive),
            "parallelGateway" => NodeKind::Gateway(GatewayKind::Parallel),
            "inclusiveGateway" => NodeKind::Gateway(GatewayKind::Inclusive),
            "eventBasedGateway" => {
                if el.attr_value("instantiate") == Some("true") {
                    self.error(
                        Code::Unsupported,
                        el.pos,
                        id,
                        "an instantiating event-based gateway is not supported; use message start events",
                    );
                    return None;
                }
                NodeKind::Gateway(GatewayKind::EventBased)
            }
            "subProcess" => {
                NodeKind::SubProcess { triggered_by_event: el.attr_value("triggeredByEvent") == Some("true") }
            }
            "callActivity" => NodeKind::CallActivity {
                called: CalledElement {
                    process_id: None,
                    propagate_all_child_variables: true,
                    propagate_all_parent_variables: true,
                    pos: el.pos,
                },
            },
            _ => {
                return None;
            }
        })
    }

    /// The single event definition of a catching event.
    fn trigger(&mut self, el: &XmlElement, defs: &Definitions, allowed: &[&str]) -> Option<Trigger> {
        let id = el.id();
        let definitions: Vec<&XmlElement> =
            el.children.iter().filter(|c| c.ns == Ns::Bpmn && c.name.ends_with("EventDefinition")).collect();
        if definitions.len() > 1 {
            self.error(
                Code::Unsupported,
                definitions[1].pos,
                id,
                format!("<{}> has several event definitions (a multiple event); use one event per trigger", el.name),
            );
            return None;
        }
        if el.children.iter().any(|c| c.is(&Ns::Bpmn, "eventDefinitionRef")) {
            self.error(Code::Unsupported, el.pos, id, "eventDefinitionRef is not supported; define the event inline");
            return None;
        }
        let Some(def) = definitions.first() else { return Some(Trigger::None) };
        let kind = def.name.trim_end_matches("EventDefinition");
        if !allowed.contains(&kind) {
            self.error(
                Code::Unsupported,
                def.pos,
                id,
                format!("{} {kind} event definition on <{}> is not supported by Reglament", article(kind), el.name),
            );
            return None;
        }
        match kind {
            "timer" => self.timer(def, el).map(|t| Trigger::Timer(Box::new(t))),
            "message" => {
                let message = self.message_ref(def, defs, id)?;
                Some(Trigger::Message { message })
            }
            "error" => {
                let error = self.error_ref(def, defs, id, false);
                Some(Trigger::Error { error })
            }
            _ => None,
        }
    }

    fn message_ref(&mut self, def: &XmlElement, defs: &Definitions, id: Option<&str>) -> Option<String> {
        match def.attr("messageRef") {
            None => {
                self.error(
                    Code::Missing,
                    def.pos,
                    id,
                    "the message event definition has no messageRef; pick a message in the modeler",
                );
                None
            }
            Some(r) if !defs.messages.contains_key(&r.value) => {
                self.error(
                    Code::UnknownMessage,
                    r.pos,
                    id,
                    format!("messageRef `{}` names no <message> of this file", r.value),
                );
                None
            }
            Some(r) => Some(r.value.clone()),
        }
    }

    fn error_ref(&mut self, def: &XmlElement, defs: &Definitions, id: Option<&str>, required: bool) -> Option<String> {
        match def.attr("errorRef") {
            None => {
                if required {
                    self.error(Code::Missing, def.pos, id, "an error end event needs an errorRef naming an <error>");
                }
                None
            }
            Some(r) if !defs.errors.contains_key(&r.value) => {
                self.error(
                    Code::UnknownError,
                    r.pos,
                    id,
                    format!("errorRef `{}` names no <error> of this file", r.value),
                );
                None
            }
            Some(r) => Some(r.value.clone()),
        }
    }

    fn result(&mut self, el: &XmlElement, defs: &Definitions, is_end: bool) -> Option<EndResult> {
        let id = el.id();
        let definitions: Vec<&XmlElement> =
            el.children.iter().filter(|c| c.ns == Ns::Bpmn && c.name.ends_with("EventDefinition")).collect();
        if definitions.len() > 1 {
            self.error(
                Code::Unsupported,
                definitions[1].pos,
                id,
                "several event definitions on one event are not supported",
            );
            return None;
        }
        let Some(def) = definitions.first() else { return Some(EndResult::None) };
        match def.name.as_str() {
            "terminateEventDefinition" if is_end => Some(EndResult::Terminate),
            "errorEventDefinition" if is_end => {
                let error = self.error_ref(def, defs, id, true)?;
                Some(EndResult::Error { error })
            }
            "messageEventDefinition" => {
                let message = match def.attr("messageRef") {
                    Some(_) => Some(self.message_ref(def, defs, id)?),
                    None => None,
                };
                Some(EndResult::Message { message })
            }
            other => {
                let kind = other.trim_end_matches("EventDefinition");
                self.error(
                    Code::Unsupported,
                    def.pos,
                    id,
                    format!("{} {kind} event definition on <{}> is not supported by Reglament", article(kind), el.name),
                );
                None
            }
        }
    }

    fn timer(&mut self, def: &XmlElement, event: &XmlElement) -> Option<TimerDef> {
        let id = event.id();
        let parts: Vec<(&XmlElement, TimerKind)> = def
            .children
            .iter()
            .filter_map(|c| match (&c.ns, c.name.as_str()) {
                (Ns::Bpmn, "timeDate") => Some((c, TimerKind::Date)),
                (Ns::Bpmn, "timeDuration") => Some((c, TimerKind::Duration)),
                (Ns::Bpmn, "timeCycle") => Some((c, TimerKind::Cycle)),
                _ => None,
            })
            .collect();
        let (el, kind) = match parts.as_slice() {
            [one] => *one,
            [] => {
                self.error(
                    Code::BadTimer,
                    def.pos,
                    id,
                    "the timer has no timeDate, timeDuration or timeCycle; set one in the modeler",
                );
                return None;
            }
            [_, second, ..] => {
                self.error(
                    Code::BadTimer,
                    second.0.pos,
                    id,
                    "a timer takes exactly one of timeDate, timeDuration, timeCycle",
                );
                return None;
            }
        };
        let text = el.text.trim();
        let value = if text.starts_with('=') {
            TimerValue::Expression(self.expr(text, el.text_pos, id)?)
        } else {
            match TimerSpec::parse(kind, text) {
                Ok(spec) => TimerValue::Literal(spec),
                Err(e) => {
                    self.error(Code::BadTimer, el.text_pos, id, e);
                    return None;
                }
            }
        };
        let mut basis = TimeBasis::Clock;
        let mut calendar = None;
        for ext in extension_elements(event) {
            if ext.is(&Ns::Reglament, "timer") {
                basis = self.time_basis(ext, id.unwrap_or(""), TimeBasis::Clock)?;
                calendar = ext.attr_value("calendar").map(str::to_owned);
                if basis != TimeBasis::Clock && kind != TimerKind::Duration {
                    self.error(
                        Code::BadTimer,
                        ext.pos,
                        id,
                        "working or calendar-day counting applies to timeDuration timers only",
                    );
                }
            }
        }
        Some(TimerDef { kind, pos: el.pos, value, basis, calendar })
    }

    /// Reads what is common to all flow nodes: extensions, loops, default flows.
    fn node_details(&mut self, el: &XmlElement, node: &mut Node, defs: &Definitions) {
        let id = node.id.clone();
        for attr in &el.attrs {
            if attr.ns == Ns::None && attr.name == "isForCompensation" && attr.value == "true" {
                self.error(Code::Unsupported, attr.pos, Some(&id), "compensation activities are not supported");
            }
            if let Ns::Other(_) = attr.ns {
                self.warning(
                    Code::IgnoredExtension,
                    attr.pos,
                    Some(&id),
                    format!("vendor attribute {}:{} is ignored", attr.prefix, attr.name),
                );
            }
        }
        for child in &el.children {
            match (&child.ns, child.name.as_str()) {
                (Ns::Bpmn, "multiInstanceLoopCharacteristics") => node.multi_instance = self.multi_instance(child, &id),
                (Ns::Bpmn, "standardLoopCharacteristics") => self.error(
                    Code::Unsupported,
                    child.pos,
                    Some(&id),
                    "standard loops are not supported; use multi-instance or a gateway loop",
                ),
                _ => {}
            }
        }
        if let NodeKind::Task(task) = &mut node.kind {
            let kind = task.kind;
            if kind == TaskKind::Script {
                self.bpmn_script(el, task, &id);
            }
            if kind == TaskKind::Receive {
                if let Some(r) = el.attr("messageRef") {
                    if defs.messages.contains_key(&r.value) {
                        task.message = Some(r.value.clone());
                    } else {
                        self.error(
                            Code::UnknownMessage,
                            r.pos,
                            Some(&id),
                            format!("messageRef `{}` names no <message>", r.value),
                        );
                    }
                } else {
                    self.error(Code::Missing, el.pos, Some(&id), "a receive task needs a messageRef");
                }
            }
        }
        if let NodeKind::CallActivity { called } = &mut node.kind
            && let Some(attr) = el.attr("calledElement")
        {
            called.process_id = Some(Param::Static(attr.value.clone()));
        }
        for ext in extension_elements(el) {
            self.node_extension(ext, node);
        }
        if let NodeKind::Task(task) = &node.kind {
            let needs_type = matches!(task.kind, TaskKind::Service | TaskKind::Send | TaskKind::BusinessRule);
            if needs_type && task.job_type.is_none() {
                self.error(
                    Code::Missing,
                    el.pos,
                    Some(&id),
                    format!(
                        "<{}> needs <zeebe:taskDefinition type=\"…\"/>: a built-in type (email, report, registry-update, directory-units) or the job type of an external worker",
                        task.kind.xml_name()
                    ),
                );
            }
            let written = el.child(&Ns::Bpmn, "script").is_some_and(|s| !s.text.trim().is_empty())
                || extension_elements(el).any(|x| x.is(&Ns::Zeebe, "script") && x.attr("expression").is_some());
            // An expression that was written but failed to compile is reported already.
            if task.kind == TaskKind::Script && task.script.is_none() && !written {
                self.error(
                    Code::Missing,
                    el.pos,
                    Some(&id),
                    "a script task needs a FEEL expression (<zeebe:script expression=\"=…\" resultVariable=\"…\"/>)",
                );
            }
        }
        if let NodeKind::CallActivity { called } = &node.kind
            && called.process_id.is_none()
        {
            self.error(
                Code::Missing,
                el.pos,
                Some(&id),
                "a call activity needs <zeebe:calledElement processId=\"…\"/> naming the process to call",
            );
        }
    }

    fn bpmn_script(&mut self, el: &XmlElement, task: &mut Task, id: &str) {
        let Some(script) = el.child(&Ns::Bpmn, "script") else { return };
        let format = el.attr_value("scriptFormat").unwrap_or("feel").to_ascii_lowercase();
        if format != "feel" {
            self.error(
                Code::Unsupported,
                el.pos,
                Some(id),
                format!("script format `{format}` is not supported; Reglament runs FEEL scripts only"),
            );
            return;
        }
        task.script = self.expr(&script.text, script.text_pos, Some(id));
    }

    fn node_extension(&mut self, ext: &XmlElement, node: &mut Node) {
        let id = node.id.clone();
        let id = id.as_str();
        match (&ext.ns, ext.name.as_str(), &mut node.kind) {
            (Ns::Zeebe, "ioMapping", _) => {
                for m in &ext.children {
                    let input = match (&m.ns, m.name.as_str()) {
                        (Ns::Zeebe, "input") => true,
                        (Ns::Zeebe, "output") => false,
                        _ => {
                            self.extension_elsewhere(m, id);
                            continue;
                        }
                    };
                    let target = m.attr_value("target").unwrap_or("").trim().to_string();
                    if target.is_empty() {
                        self.error(Code::Missing, m.pos, Some(id), "an ioMapping entry needs a target");
                        continue;
                    }
                    // As in Zeebe: an input's source is FEEL only with a leading `=`, otherwise
                    // a static string (`GET`, `20` is the string "20"); an input without a source
                    // (Camunda 8.8) sets its target to null, a local variable of the element.
                    // An output's source is always an expression.
                    let expr = match m.attr("source") {
                        Some(source) if input && !source.value.trim_start().starts_with('=') => {
                            Expr::string_literal(&source.value, source.pos)
                        }
                        Some(source) => self.expr(&source.value, source.pos, Some(id)),
                        None if input => Expr::compile("=null", m.pos).ok(),
                        None => {
                            self.error(
                                Code::Missing,
                                m.pos,
                                Some(id),
                                "an output mapping needs a source, a FEEL expression (source=\"=…\")",
                            );
                            continue;
                        }
                    };
                    let Some(expr) = expr else { continue };
                    let mapping = Mapping { source: expr, target };
                    if input {
                        node.io.inputs.push(mapping);
                    } else {
                        node.io.outputs.push(mapping);
                    }
                }
            }
            (Ns::Zeebe, "properties", _) => node.properties = properties(ext),
            (Ns::Zeebe, "loopCharacteristics", _) => {}
            (Ns::Zeebe, "assignmentDefinition", NodeKind::Task(task)) if task.kind == TaskKind::User => {
                task.assignee = self.param(ext.attr("assignee"), id);
                task.candidate_groups = self.param(ext.attr("candidateGroups"), id);
                task.candidate_users = self.param(ext.attr("candidateUsers"), id);
            }
            (Ns::Zeebe, "taskSchedule", NodeKind::Task(task)) if task.kind == TaskKind::User => {
                task.due_date = self.param(ext.attr("dueDate"), id);
                task.follow_up_date = self.param(ext.attr("followUpDate"), id);
            }
            (Ns::Zeebe, "priorityDefinition", NodeKind::Task(task)) if task.kind == TaskKind::User => {
                task.priority = self.param(ext.attr("priority"), id);
            }
            (Ns::Zeebe, "formDefinition", NodeKind::Task(task)) if task.kind == TaskKind::User => {
                task.form_link = self.form_link(ext, id);
            }
            (Ns::Zeebe, "userTask", NodeKind::Task(task)) if task.kind == TaskKind::User => {}
            (Ns::Zeebe, "taskDefinition", NodeKind::Task(task)) => {
                task.job_type = self.param(ext.attr("type"), id);
                task.retries = self.param(ext.attr("retries"), id);
            }
            (Ns::Zeebe, "taskHeaders", NodeKind::Task(task)) => {
                for h in ext.children_named(&Ns::Zeebe, "header") {
                    let key = h.attr_value("key").unwrap_or("").to_string();
                    let value = h.attr_value("value").unwrap_or("").to_string();
                    if let Some(v) = h.attr("value")
                        && v.value.trim_start().starts_with('=')
                    {
                        self.expr(&v.value, v.pos, Some(id));
                    }
                    if key == "template"
                        && let Some(problem) = template_name_problem(&value)
                    {
                        self.error(Code::BadValue, h.pos, Some(id), problem);
                    }
                    task.headers.push((key, value));
                }
            }
            (Ns::Zeebe, "script", NodeKind::Task(task)) if task.kind == TaskKind::Script => {
                if let Some(e) = ext.attr("expression") {
                    task.script = self.expr(&e.value, e.pos, Some(id));
                }
                task.result_variable = ext.attr_value("resultVariable").map(str::to_owned);
                if task.result_variable.is_none() {
                    self.error(Code::Missing, ext.pos, Some(id), "zeebe:script needs a resultVariable");
                }
            }
            (Ns::Zeebe, "calledElement", NodeKind::CallActivity { called }) => {
                called.process_id = self.param(ext.attr("processId"), id);
                called.propagate_all_child_variables = ext.attr_value("propagateAllChildVariables") != Some("false");
                called.propagate_all_parent_variables = ext.attr_value("propagateAllParentVariables") != Some("false");
                called.pos = ext.pos;
            }
            (Ns::Reglament, "deadline", NodeKind::Task(task)) if task.kind == TaskKind::User => {
                task.deadline = self.deadline(ext, id);
            }
            (Ns::Reglament, "form", NodeKind::Task(task)) if task.kind == TaskKind::User => {
                task.form = self.form(ext, id);
            }
            (Ns::Reglament, "slaExtension", NodeKind::Task(task)) if task.kind == TaskKind::Script => {
                task.sla_extension = self.sla_extension(ext, id);
            }
            (
                Ns::Reglament,
                "timer",
                NodeKind::CatchEvent { .. } | NodeKind::Boundary { .. } | NodeKind::StartEvent { .. },
            ) => {}
            _ => self.extension_elsewhere(ext, id),
        }
    }

    fn sla_extension(&mut self, ext: &XmlElement, id: &str) -> Option<SlaExtension> {
        let Some(duration) = self.param(ext.attr("duration"), id) else {
            self.error(
                Code::Missing,
                ext.pos,
                Some(id),
                "<reglament:slaExtension> needs a duration: ISO 8601 (P15D) or FEEL giving one or a number of days",
            );
            return None;
        };
        if let (Param::Static(text), Some(attr)) = (&duration, ext.attr("duration"))
            && let Err(e) = IsoDuration::parse(text)
        {
            self.error(Code::BadTimer, attr.pos, Some(id), e);
            return None;
        }
        let time = self.time_basis(ext, id, TimeBasis::Calendar)?;
        let reason = self.param(ext.attr("reason"), id);
        Some(SlaExtension {
            duration,
            time,
            calendar: ext.attr_value("calendar").map(str::to_owned),
            reason,
            deadline_variable: ext.attr_value("deadlineVariable").filter(|v| !v.is_empty()).map(str::to_owned),
            pos: ext.pos,
        })
    }

    /// `zeebe:formDefinition`: a Camunda Form by `formId`, or embedded by `formKey`. What
    /// Reglament cannot render (a form outside it) is an error here.
    fn form_link(&mut self, ext: &XmlElement, id: &str) -> Option<FormLink> {
        let non_empty = |name| ext.attr(name).filter(|a| !a.value.trim().is_empty());
        if let Some(a) = non_empty("formId") {
            return Some(FormLink { target: FormTarget::FormId(a.value.trim().to_string()), pos: a.pos });
        }
        if let Some(a) = non_empty("formKey") {
            if let Some(embedded) = a.value.trim().strip_prefix("camunda-forms:bpmn:") {
                return Some(FormLink { target: FormTarget::Embedded(embedded.to_string()), pos: a.pos });
            }
            self.error(
                Code::Unsupported,
                a.pos,
                Some(id),
                format!(
                    "formKey `{}` names a form outside the model, which Reglament cannot show; link a Camunda Form with formId=\"…\" and deploy its .form file, or use <reglament:form>",
                    a.value
                ),
            );
            return None;
        }
        if let Some(a) = non_empty("externalReference") {
            self.error(
                Code::Unsupported,
                a.pos,
                Some(id),
                format!(
                    "externalReference `{}` is a form of another application, which Reglament cannot show; link a Camunda Form with formId=\"…\" and deploy its .form file, or use <reglament:form>",
                    a.value
                ),
            );
            return None;
        }
        self.error(
            Code::Missing,
            ext.pos,
            Some(id),
            "<zeebe:formDefinition> needs formId (the id of a .form file deployed with the model)",
        );
        None
    }

    fn form(&mut self, ext: &XmlElement, id: &str) -> Vec<FormField> {
        let mut fields = Vec::new();
        for f in &ext.children {
            if !f.is(&Ns::Reglament, "field") {
                self.extension_elsewhere(f, id);
                continue;
            }
            let Some(field_id) = f.attr_value("id").filter(|v| !v.is_empty()) else {
                self.error(Code::Missing, f.pos, Some(id), "a form field needs an id (the variable it sets)");
                continue;
            };
            let kind = match f.attr_value("type").unwrap_or("text") {
                "text" => FieldKind::Text,
                "textarea" => FieldKind::Textarea,
                "number" => FieldKind::Number,
                "boolean" => FieldKind::Boolean,
                "date" => FieldKind::Date,
                "enum" => FieldKind::Enum,
                "email" => FieldKind::Email,
                other => {
                    self.error(
                        Code::BadValue,
                        f.pos,
                        Some(id),
                        format!(
                            "form field type `{other}` is not one of text, textarea, number, boolean, date, enum, email"
                        ),
                    );
                    continue;
                }
            };
            let options: Vec<(String, String)> = f
                .children_named(&Ns::Reglament, "option")
                .map(|o| {
                    let value = o.attr_value("value").unwrap_or("").to_string();
                    let label = o.attr_value("label").map(str::to_owned).unwrap_or_else(|| o.text.trim().to_string());
                    (value, label)
                })
                .collect();
            if kind == FieldKind::Enum && options.is_empty() {
                self.error(
                    Code::Missing,
                    f.pos,
                    Some(id),
                    format!("enum field `{field_id}` needs <reglament:option> children"),
                );
            }
            fields.push(FormField {
                id: field_id.to_string(),
                label: f.attr_value("label").unwrap_or(field_id).to_string(),
                kind,
                required: f.attr_value("required") == Some("true"),
                hint: f.attr_value("hint").map(str::trim).filter(|h| !h.is_empty()).map(str::to_owned),
                options,
                // Context shown to the official (the request text, the requester), never written.
                readonly: f.attr_value("readonly") == Some("true"),
                default: None,
                rules: FieldRules::default(),
                pos: f.pos,
            });
        }
        fields
    }

    fn multi_instance(&mut self, el: &XmlElement, id: &str) -> Option<MultiInstance> {
        let mut mi = MultiInstance {
            sequential: el.attr_value("isSequential") == Some("true"),
            input_collection: None,
            input_element: None,
            output_collection: None,
            output_element: None,
            completion_condition: None,
            pos: el.pos,
        };
        if let Some(card) = el.child(&Ns::Bpmn, "loopCardinality") {
            self.error(
                Code::Unsupported,
                card.pos,
                Some(id),
                "loopCardinality is not supported; give zeebe:loopCharacteristics an inputCollection such as =for i in 1..n return i",
            );
        }
        if let Some(cond) = el.child(&Ns::Bpmn, "completionCondition") {
            mi.completion_condition = self.expr(&cond.text, cond.text_pos, Some(id));
        }
        for ext in extension_elements(el) {
            if ext.is(&Ns::Zeebe, "loopCharacteristics") {
                if let Some(a) = ext.attr("inputCollection") {
                    // A bad expression was reported by `expr`; no second error for the loop.
                    mi.input_collection = Some(self.expr(&a.value, a.pos, Some(id))?);
                }
                mi.input_element = ext.attr_value("inputElement").map(str::to_owned);
                mi.output_collection = ext.attr_value("outputCollection").map(str::to_owned);
                if let Some(a) = ext.attr("outputElement") {
                    mi.output_element = self.expr(&a.value, a.pos, Some(id));
                }
            } else {
                self.extension_elsewhere(ext, id);
            }
        }
        if mi.input_collection.is_none() {
            self.error(
                Code::MultiInstanceWithoutCollection,
                el.pos,
                Some(id),
                "multi-instance without an input collection; add <zeebe:loopCharacteristics inputCollection=\"=…\" inputElement=\"…\"/>",
            );
            return None;
        }
        if mi.output_collection.is_some() != mi.output_element.is_some() {
            self.error(
                Code::Missing,
                el.pos,
                Some(id),
                "outputCollection and outputElement go together; set both or neither",
            );
        }
        Some(mi)
    }

    /// Resolves flows, boundary attachments and default flows once all nodes exist.
    fn resolve(&mut self, b: Builder<'_>) -> Option<Process> {
        let Builder { mut process, pending_flows, pending_boundaries, pending_defaults } = b;
        let mut flow_ids: HashMap<String, FlowIdx> = HashMap::new();
        for (el, scope) in pending_flows {
            let Some(id) = self.require_id(el) else { continue };
            let endpoint = |parser: &mut Parser, attr: &str| -> Option<NodeIdx> {
                let Some(r) = el.attr(attr) else {
                    parser.error(Code::DanglingFlowRef, el.pos, Some(&id), format!("sequence flow has no {attr}"));
                    return None;
                };
                match process.index.get(r.value.as_str()) {
                    None => {
                        parser.error(
                            Code::DanglingFlowRef,
                            r.pos,
                            Some(&id),
                            format!("{attr} `{}` names no flow node of process `{}`", r.value, process.id),
                        );
                        None
                    }
                    Some(&n) if process.node(n).parent != scope => {
                        parser.error(
                            Code::DanglingFlowRef,
                            r.pos,
                            Some(&id),
                            format!(
                                "{attr} `{}` is in another (sub)process than the flow; flows cannot cross scopes",
                                r.value
                            ),
                        );
                        None
                    }
                    Some(&n) => Some(n),
                }
            };
            let source = endpoint(self, "sourceRef");
            let target = endpoint(self, "targetRef");
            let mut bad_condition = false;
            let condition = match el.child(&Ns::Bpmn, "conditionExpression") {
                Some(c) if !c.text.trim().is_empty() => {
                    bad_condition = true;
                    if let Some(lang) = c.attr_value("language")
                        && !lang.to_ascii_lowercase().contains("feel")
                    {
                        self.error(
                            Code::Unsupported,
                            c.pos,
                            Some(&id),
                            format!("condition language `{lang}` is not supported; write FEEL"),
                        );
                        None
                    } else {
                        self.expr(&c.text, c.text_pos, Some(&id))
                    }
                }
                _ => None,
            };
            let (Some(source), Some(target)) = (source, target) else { continue };
            let idx = process.flows.len() as FlowIdx;
            flow_ids.insert(id.clone(), idx);
            process.flows.push(Flow {
                id,
                name: el.attr_value("name").map(str::to_owned),
                pos: el.pos,
                parent: scope,
                source,
                target,
                bad_condition: bad_condition && condition.is_none(),
                condition,
            });
            process.nodes[source as usize].outgoing.push(idx);
            process.nodes[target as usize].incoming.push(idx);
        }
        for (idx, el) in pending_boundaries {
            let node_id = process.node(idx).id.clone();
            let attached = match el.attr("attachedToRef") {
                None => {
                    self.error(
                        Code::BoundaryAttachedToNothing,
                        el.pos,
                        Some(&node_id),
                        "boundary event has no attachedToRef",
                    );
                    None
                }
                Some(r) => match process.index.get(r.value.as_str()).copied() {
                    Some(a) if process.node(a).is_activity() => Some(a),
                    Some(_) => {
                        self.error(
                            Code::BoundaryAttachedToNothing,
                            r.pos,
                            Some(&node_id),
                            format!("attachedToRef `{}` is not a task, subprocess or call activity", r.value),
                        );
                        None
                    }
                    None => {
                        self.error(
                            Code::BoundaryAttachedToNothing,
                            r.pos,
                            Some(&node_id),
                            format!("attachedToRef `{}` names no activity of process `{}`", r.value, process.id),
                        );
                        None
                    }
                },
            };
            if let Some(a) = attached {
                match &mut process.nodes[idx as usize].kind {
                    NodeKind::Boundary { attached_to, .. } => {
                        *attached_to = a;
                        process.nodes[a as usize].boundaries.push(idx);
                    }
                    NodeKind::Unsupported { attached_to, .. } => *attached_to = Some(a),
                    _ => {}
                }
            }
        }
        for (idx, attr) in pending_defaults {
            let node = &process.nodes[idx as usize];
            match flow_ids.get(attr.value.as_str()) {
                Some(&f) if process.flow(f).source == idx => process.nodes[idx as usize].default_flow = Some(f),
                _ => {
                    let id = node.id.clone();
                    self.error(
                        Code::DanglingFlowRef,
                        attr.pos,
                        Some(&id),
                        format!("default flow `{}` is not a sequence flow leaving `{id}`", attr.value),
                    );
                }
            }
        }
        Some(process)
    }
}

/// The fields of the official registry form (order 1367-r), in the form's column order.
pub const REGISTRY_FIELDS: &[&str] = &[
    "service",
    "act",
    "group",
    "owner",
    "reengineering",
    "client",
    "value",
    "inputs",
    "outputs",
    "links",
    "digital",
    "placement",
];

/// Flow-node element names Reglament executes.
const FLOW_NODES: &[&str] = &[
    "startEvent",
    "endEvent",
    "intermediateThrowEvent",
    "intermediateCatchEvent",
    "boundaryEvent",
    "task",
    "userTask",
    "serviceTask",
    "businessRuleTask",
    "sendTask",
    "receiveTask",
    "scriptTask",
    "manualTask",
    "exclusiveGateway",
    "parallelGateway",
    "inclusiveGateway",
    "eventBasedGateway",
    "subProcess",
    "callActivity",
];

/// Why `name` cannot name an email template (a file `NAME.txt` in the templates folder), if it
/// cannot: a path (`../../etc/passwd`), a hidden file, control characters, an expression.
pub fn template_name_problem(name: &str) -> Option<String> {
    let base = name.strip_suffix(".txt").unwrap_or(name);
    if base.trim().is_empty() {
        Some("the email template header is empty; give the name of a file in definitions/templates".into())
    } else if base.trim_start().starts_with('=') {
        Some(format!("the email template `{name}` must be a file name, not an expression"))
    } else if base.contains(['/', '\\'])
        || base.starts_with('.')
        || base.chars().any(char::is_control)
        || base.len() > 200
    {
        Some(format!(
            "the email template `{name}` is not a file name: give the name of a file in definitions/templates \
             (without folders, such as `task-reminder`)"
        ))
    } else {
        None
    }
}

/// The email templates a definition's tasks name (`zeebe:header key="template"`), with the
/// task: the adapters check that each file exists before the model is deployed.
pub fn email_templates(defs: &Definitions) -> Vec<(&Node, &str)> {
    let mut out = Vec::new();
    for process in &defs.processes {
        for node in &process.nodes {
            if let NodeKind::Task(task) = &node.kind
                && let Some(name) = task.header("template")
                && template_name_problem(name).is_none()
            {
                out.push((node, name.strip_suffix(".txt").unwrap_or(name)));
            }
        }
    }
    out
}

/// Service task types built into Reglament (DESIGN §3).
pub const BUILTIN_JOB_TYPES: &[&str] = &["email", "report", "registry-update", "directory-units"];

/// zeebe: extension elements Reglament reads somewhere.
const ZEEBE_KNOWN: &[&str] = &[
    "assignmentDefinition",
    "taskSchedule",
    "taskDefinition",
    "taskHeaders",
    "ioMapping",
    "loopCharacteristics",
    "subscription",
    "calledElement",
    "properties",
    "script",
    "userTask",
    "formDefinition",
    "priorityDefinition",
    "versionTag",
];

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

fn extension_elements(el: &XmlElement) -> impl Iterator<Item = &XmlElement> {
    el.children_named(&Ns::Bpmn, "extensionElements").flat_map(|e| e.children.iter())
}

/// `messageSenders="name=who,who; name2=who"`: message name → group ids or logins.
fn message_senders(text: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let bad = |why: &str| {
        format!(
            "messageSenders {why}: write `message=group,login; other=group` (e.g. `cur_signal=cur; cur_proposal=cur`), not `{text}`"
        )
    };
    let mut out = BTreeMap::new();
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, who) = entry.split_once('=').ok_or_else(|| bad("needs `=` in every entry"))?;
        let name = name.trim();
        let who: Vec<String> = who.split(',').map(str::trim).filter(|w| !w.is_empty()).map(str::to_owned).collect();
        let plain = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if !plain(name) || who.is_empty() || !who.iter().all(|w| plain(w)) {
            return Err(bad("names a message without senders or with spaces"));
        }
        if out.insert(name.to_string(), who).is_some() {
            return Err(bad(&format!("names `{name}` twice")));
        }
    }
    if out.is_empty() {
        return Err(bad("is empty"));
    }
    Ok(out)
}

fn properties(ext: &XmlElement) -> Vec<(String, String)> {
    ext.children_named(&Ns::Zeebe, "property")
        .map(|p| (p.attr_value("name").unwrap_or("").to_string(), p.attr_value("value").unwrap_or("").to_string()))
        .collect()
}
