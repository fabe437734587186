//! Task forms: Camunda Forms read from their JSON into the one form model of
//! [`crate::model::FormField`], linked to the user tasks that name them, and the check of a
//! task's completion against its form.
//!
//! A Camunda Form is the JSON the Camunda Modeler form editor writes (a `.form` file, or a
//! `zeebe:userTaskForm` embedded in the model). What the task page cannot show faithfully — a
//! component type it has no widget for, FEEL in a property, options from a variable, a
//! condition that hides a field — is an error naming the file and the component, so a model
//! never deploys with a form that would be shown wrong or not at all.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::diagnostics::{Code, Diagnostic, Pos};
use crate::feel::Vars;
use crate::model::{Definitions, FieldKind, FieldRules, FormField, FormTarget, Node, NodeKind, Process, TaskKind};

/// What is wrong with a submitted form, one problem per field, in the form's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormProblems(pub Vec<FieldProblem>);

/// One field's problem; `message` is the Russian sentence shown to the official
/// (`поле «Решение» (decision) обязательно`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldProblem {
    /// The field's id in the form.
    pub field: String,
    /// What is wrong: the field is required but empty, or its value is not of its kind.
    pub kind: FieldProblemKind,
    pub message: String,
}

/// The kinds of [`FieldProblem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FieldProblemKind {
    Required,
    WrongValue,
    /// A variable the task may not write: not a field of its form, not named by its output
    /// mappings, or protected by the process.
    NotWritable,
    /// A read-only field of the form (context shown to the official, never written back).
    ReadOnly,
}

impl std::fmt::Display for FormProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(&p.message)?;
        }
        Ok(())
    }
}

/// A Camunda Form: its id (what `formId` names), the file it came from (empty when embedded)
/// and its fields in the order shown.
#[derive(Debug, Clone, PartialEq)]
pub struct CamundaForm {
    /// Empty when the file could not be read far enough to know it.
    pub id: String,
    pub file: String,
    pub fields: Vec<FormField>,
    /// The form has errors (reported where they are): tasks linking it get no fields.
    pub broken: bool,
}

/// A `.form` file of a deployment: its name (for diagnostics) and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct FormFile<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// The component types the task page renders, for messages.
const SUPPORTED: &str = "textfield, textarea, number, checkbox, checklist, taglist, radio, select, datetime (date), text, group, separator, spacer";

/// Reads the `.form` files of a deployment. Diagnostics carry the file's name; a file that
/// cannot be read gives no form.
pub fn read_files(files: &[FormFile<'_>]) -> (Vec<CamundaForm>, Vec<Diagnostic>) {
    let mut forms: Vec<CamundaForm> = Vec::new();
    let mut diags = Vec::new();
    let mut seen: Vec<(String, &str)> = Vec::new();
    for file in files {
        let (form, found) = match std::str::from_utf8(file.bytes) {
            Ok(text) => read(text, Source::File(text)),
            Err(_) => (
                None,
                vec![Diagnostic::error(Code::BadValue, Pos { line: 1, col: 1 }, None, "the file is not valid UTF-8")],
            ),
        };
        let broken = found.iter().any(Diagnostic::is_error);
        diags.extend(found.into_iter().map(|d| d.in_file(file.name)));
        let mut form =
            form.unwrap_or_else(|| CamundaForm { id: String::new(), file: String::new(), fields: Vec::new(), broken });
        form.file = file.name.to_string();
        form.broken = broken;
        if !form.id.is_empty()
            && let Some((_, other)) = seen.iter().find(|(id, _)| *id == form.id)
        {
            diags.push(
                Diagnostic::error(
                    Code::DuplicateId,
                    Pos { line: 1, col: 1 },
                    None,
                    format!(
                        "form id `{}` is also the id of {other}; each form of a deployment needs its own id",
                        form.id
                    ),
                )
                .in_file(file.name),
            );
            continue;
        }
        seen.push((form.id.clone(), file.name));
        forms.push(form);
    }
    (forms, diags)
}

/// Where a form's JSON comes from: a file (positions from its text) or an element of the model
/// (positions are the element's).
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    File(&'a str),
    Embedded(Pos),
}

impl Source<'_> {
    /// Where the component with `id` is: the line and column of its `"id"` value in a file.
    fn pos_of(&self, id: Option<&str>) -> Pos {
        match *self {
            Source::Embedded(pos) => pos,
            Source::File(text) => id.and_then(|id| locate_id(text, id)).unwrap_or(Pos { line: 1, col: 1 }),
        }
    }
}

/// The position of `"id": "<id>"` in JSON text: form-js gives every component a unique id.
fn locate_id(text: &str, id: &str) -> Option<Pos> {
    let needle = format!("\"{id}\"");
    let mut from = 0;
    while let Some(found) = text[from..].find(&needle) {
        let at = from + found;
        let before = text[..at].trim_end();
        if let Some(rest) = before.strip_suffix(':')
            && rest.trim_end().ends_with("\"id\"")
        {
            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let line = text[..at].matches('\n').count() as u32 + 1;
            let col = text[line_start..at].chars().count() as u32 + 1;
            return Some(Pos { line, col });
        }
        from = at + needle.len();
    }
    None
}

/// Reads one Camunda Form. All problems are reported, not just the first.
fn read(text: &str, source: Source<'_>) -> (Option<CamundaForm>, Vec<Diagnostic>) {
    let mut reader = Reader { source, diags: Vec::new(), keys: BTreeSet::new() };
    let root: Json = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let pos = match source {
                Source::File(_) => Pos { line: e.line().max(1) as u32, col: e.column().max(1) as u32 },
                Source::Embedded(pos) => pos,
            };
            let message = format!("not valid JSON: {e}");
            return (None, vec![Diagnostic::error(Code::BadValue, pos, None, message)]);
        }
    };
    let Some(root) = root.as_object() else {
        let d = Diagnostic::error(Code::BadValue, source.pos_of(None), None, "a Camunda Form is a JSON object");
        return (None, vec![d]);
    };
    let Some(components) = root.get("components").and_then(Json::as_array) else {
        let d = Diagnostic::error(
            Code::Missing,
            source.pos_of(None),
            None,
            "not a Camunda Form: it has no `components` list (save it from the Camunda Modeler form editor)",
        );
        return (None, vec![d]);
    };
    if let Some(kind) = root.get("type").and_then(Json::as_str)
        && kind != "default"
    {
        reader.error(None, format!("form type `{kind}` is not a Camunda Form (expected \"default\")"));
    }
    let id = root.get("id").and_then(Json::as_str).map(str::trim).filter(|s| !s.is_empty());
    if id.is_none() {
        reader.diags.push(Diagnostic::error(
            Code::MissingId,
            source.pos_of(None),
            None,
            "the form has no `id`: set «Form ID» in the form editor; a user task links it with zeebe:formDefinition formId",
        ));
    }
    let mut fields = Vec::new();
    reader.components(components, &mut fields);
    let broken = reader.diags.iter().any(Diagnostic::is_error);
    let form = id.map(|id| CamundaForm { id: id.to_string(), file: String::new(), fields, broken });
    (form, reader.diags)
}

struct Reader<'a> {
    source: Source<'a>,
    diags: Vec<Diagnostic>,
    keys: BTreeSet<String>,
}

/// What a component says of itself in messages: its type, label and key.
fn describe(c: &Map<String, Json>) -> String {
    let kind = c.get("type").and_then(Json::as_str).unwrap_or("?");
    let mut out = format!("component `{kind}`");
    if let Some(label) = c.get("label").and_then(Json::as_str).filter(|l| !l.is_empty()) {
        out.push_str(&format!(" «{label}»"));
    }
    if let Some(key) = c.get("key").and_then(Json::as_str).filter(|k| !k.is_empty()) {
        out.push_str(&format!(" (key `{key}`)"));
    }
    out
}

impl Reader<'_> {
    fn error(&mut self, component: Option<&Map<String, Json>>, message: String) {
        let id = component.and_then(|c| c.get("id")).and_then(Json::as_str);
        let message = match component {
            Some(c) => format!("{}: {message}", describe(c)),
            None => message,
        };
        let code = if message.contains("not supported") { Code::Unsupported } else { Code::BadValue };
        self.diags.push(Diagnostic::error(code, self.source.pos_of(id), id, message));
    }

    fn components(&mut self, list: &[Json], fields: &mut Vec<FormField>) {
        for c in list {
            match c.as_object() {
                Some(c) => self.component(c, fields),
                None => self.error(None, "a component is not a JSON object".into()),
            }
        }
    }

    fn component(&mut self, c: &Map<String, Json>, fields: &mut Vec<FormField>) {
        let pos = self.source.pos_of(c.get("id").and_then(Json::as_str));
        let Some(kind) = c.get("type").and_then(Json::as_str) else {
            self.error(Some(c), "the component has no `type`".into());
            return;
        };
        if let Some(hide) = c.get("conditional").and_then(|v| v.get("hide")).filter(|v| !v.is_null()) {
            self.error(
                Some(c),
                format!("conditions (`conditional.hide` {hide}) are not supported: the task page shows every field"),
            );
        }
        for text_prop in ["label", "description", "text", "dateLabel"] {
            if let Some(v) = c.get(text_prop).and_then(Json::as_str)
                && v.trim_start().starts_with('=')
            {
                self.error(Some(c), format!("FEEL in `{text_prop}` is not supported: write the text itself"));
            }
        }
        let kind = match kind {
            "textfield" => {
                let email = c.get("validate").and_then(|v| v.get("validationType")).and_then(Json::as_str);
                match email {
                    None | Some("" | "custom") => FieldKind::Text,
                    Some("email") => FieldKind::Email,
                    Some(other) => {
                        self.error(
                            Some(c),
                            format!("validation type `{other}` is not supported (email or a custom pattern are)"),
                        );
                        return;
                    }
                }
            }
            "textarea" => FieldKind::Textarea,
            "number" => FieldKind::Number,
            "checkbox" => FieldKind::Boolean,
            "checklist" | "taglist" => FieldKind::Checklist,
            "radio" => FieldKind::Enum,
            "select" => FieldKind::Select,
            "datetime" => match c.get("subtype").and_then(Json::as_str).unwrap_or("date") {
                "date" => FieldKind::Date,
                other => {
                    self.error(Some(c), format!("datetime subtype `{other}` is not supported; use the date subtype"));
                    return;
                }
            },
            "text" => {
                let text = c.get("text").and_then(Json::as_str).unwrap_or("").trim();
                if text.contains("{{") {
                    self.error(Some(c), "templates ({{…}}) in text are not supported: write the text itself".into());
                }
                if !text.is_empty() {
                    fields.push(note(c, None, Some(text.to_string()), pos));
                }
                return;
            }
            "group" => {
                if c.get("path").and_then(Json::as_str).is_some_and(|p| !p.is_empty()) {
                    self.error(Some(c), "a group with a data path (nested variables) is not supported".into());
                }
                let title = c.get("label").and_then(Json::as_str).map(str::trim).filter(|l| !l.is_empty());
                if let Some(title) = title {
                    fields.push(note(c, Some(title.to_string()), None, pos));
                }
                let children = c.get("components").and_then(Json::as_array).map(Vec::as_slice).unwrap_or(&[]);
                self.components(children, fields);
                return;
            }
            "separator" | "spacer" => return,
            "button" => {
                let id = c.get("id").and_then(Json::as_str);
                self.diags.push(Diagnostic::warning(
                    Code::IgnoredExtension,
                    pos,
                    id,
                    format!("{}: buttons are not shown; the task page has its own «Выполнить задачу»", describe(c)),
                ));
                return;
            }
            other => {
                self.error(
                    Some(c),
                    format!("component type `{other}` is not supported; the task page renders {SUPPORTED}"),
                );
                return;
            }
        };
        self.field(c, kind, pos, fields);
    }

    fn field(&mut self, c: &Map<String, Json>, kind: FieldKind, pos: Pos, fields: &mut Vec<FormField>) {
        let key = c.get("key").and_then(Json::as_str).map(str::trim).unwrap_or("");
        if key.is_empty() {
            self.error(
                Some(c),
                "the field has no key: set «Key» in the form editor, it names the variable the field sets".into(),
            );
            return;
        }
        if key.contains('.') || key.contains('[') {
            self.error(
                Some(c),
                format!("key `{key}` is a nested path, which is not supported: use a plain variable name"),
            );
            return;
        }
        if !self.keys.insert(key.to_string()) {
            self.error(Some(c), format!("key `{key}` is used by another field of the form"));
            return;
        }
        for dynamic in ["valuesKey", "valuesExpression"] {
            if c.get(dynamic).is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty())) {
                self.error(
                    Some(c),
                    format!("options from a variable (`{dynamic}`) are not supported: list them as static options"),
                );
            }
        }
        for unsupported in ["increment", "disallowPassedDates", "serializeToString"] {
            if c.get(unsupported).is_some_and(|v| !v.is_null() && v != &Json::Bool(false) && v != "") {
                self.error(Some(c), format!("`{unsupported}` is not supported"));
            }
        }
        let flag = |reader: &mut Self, name: &str| match c.get(name) {
            None | Some(Json::Null) => false,
            Some(Json::Bool(b)) => *b,
            Some(other) => {
                reader.error(Some(c), format!("`{name}` {other} is not supported: only true or false (no FEEL)"));
                false
            }
        };
        let readonly = flag(self, "readonly") | flag(self, "disabled");
        let label = match kind {
            FieldKind::Date => c.get("dateLabel").or_else(|| c.get("label")),
            _ => c.get("label"),
        }
        .and_then(Json::as_str)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .unwrap_or(key)
        .to_string();
        let options = match kind {
            FieldKind::Enum | FieldKind::Select | FieldKind::Checklist => self.options(c),
            _ => Vec::new(),
        };
        let validate = c.get("validate").and_then(Json::as_object);
        let number = |name: &str| validate.and_then(|v| v.get(name)).and_then(Json::as_f64);
        let mut rules = FieldRules {
            min_length: number("minLength").map(|n| n.max(0.0) as u64),
            max_length: number("maxLength").map(|n| n.max(0.0) as u64),
            min: number("min"),
            max: number("max"),
            pattern: validate
                .and_then(|v| v.get("pattern"))
                .and_then(Json::as_str)
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            decimal_digits: c.get("decimalDigits").and_then(Json::as_u64).map(|d| d.min(20) as u32),
            must_check: kind == FieldKind::Boolean,
        };
        if let Some(pattern) = &rules.pattern
            && let Err(e) = regex::Regex::new(pattern)
        {
            let first = e.to_string().lines().last().unwrap_or("").trim().to_string();
            self.error(Some(c), format!("pattern `{pattern}` is not a regular expression Reglament reads: {first}"));
            rules.pattern = None;
        }
        let default = c.get("defaultValue").filter(|v| !v.is_null()).cloned();
        if let Some(Json::String(s)) = &default
            && s.trim_start().starts_with('=')
        {
            self.error(Some(c), "FEEL in `defaultValue` is not supported: write the value itself".into());
        }
        fields.push(FormField {
            id: key.to_string(),
            label,
            kind,
            required: validate.and_then(|v| v.get("required")).and_then(Json::as_bool).unwrap_or(false),
            hint: c
                .get("description")
                .and_then(Json::as_str)
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_owned),
            options,
            readonly,
            default,
            rules,
            pos,
        });
    }

    /// Static options (`values`): (value, label).
    fn options(&mut self, c: &Map<String, Json>) -> Vec<(String, String)> {
        let values = c.get("values").and_then(Json::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let mut out = Vec::new();
        for v in values {
            let value = match v.get("value") {
                Some(Json::String(s)) => s.clone(),
                Some(n @ (Json::Number(_) | Json::Bool(_))) => {
                    self.error(Some(c), format!("option value {n} is not supported: option values are text"));
                    continue;
                }
                _ => {
                    self.error(Some(c), "an option has no value".into());
                    continue;
                }
            };
            let label = v.get("label").and_then(Json::as_str).filter(|l| !l.is_empty()).unwrap_or(&value).to_string();
            out.push((value, label));
        }
        if out.is_empty() && !c.contains_key("valuesKey") && !c.contains_key("valuesExpression") {
            self.error(Some(c), "the field has no options: add static options in the form editor".into());
        }
        out
    }
}

fn note(c: &Map<String, Json>, title: Option<String>, text: Option<String>, pos: Pos) -> FormField {
    FormField {
        id: c.get("id").and_then(Json::as_str).unwrap_or("note").to_string(),
        label: title.unwrap_or_default(),
        kind: FieldKind::Note,
        required: false,
        hint: text,
        options: Vec::new(),
        readonly: true,
        default: None,
        rules: FieldRules::default(),
        pos,
    }
}

/// Puts into each user task's `form` the fields of the Camunda Form it links: `forms` are the
/// `.form` files deployed with the model; embedded forms are read from the model. A link to a
/// form that is not there, a task with both a Camunda Form and `reglament:form`, and the
/// problems of embedded forms are reported on the task.
pub fn link(defs: &mut Definitions, forms: &[CamundaForm]) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for process in &mut defs.processes {
        let embedded = process.settings.embedded_forms.clone();
        for node in &mut process.nodes {
            let NodeKind::Task(task) = &mut node.kind else { continue };
            if task.kind != TaskKind::User {
                continue;
            }
            let Some(link) = task.form_link.clone() else { continue };
            let fields = match &link.target {
                FormTarget::FormId(id) => match forms.iter().find(|f| &f.id == id) {
                    Some(form) if form.broken => continue,
                    Some(form) => form.fields.clone(),
                    None => {
                        let known: Vec<&str> =
                            forms.iter().filter(|f| !f.id.is_empty()).map(|f| f.id.as_str()).collect();
                        let unread: Vec<&str> =
                            forms.iter().filter(|f| f.id.is_empty()).map(|f| f.file.as_str()).collect();
                        let known = match (known.is_empty(), unread.is_empty()) {
                            (true, true) => "no .form file was deployed with the model".to_string(),
                            (false, true) => format!("the deployed forms are {}", known.join(", ")),
                            (_, false) => format!("{} could not be read, see its errors", unread.join(", ")),
                        };
                        diags.push(Diagnostic::error(
                            Code::Missing,
                            link.pos,
                            Some(&node.id),
                            format!("formId `{id}` names no Camunda Form of this deployment ({known}): deploy the .form file whose id is `{id}` with the model"),
                        ));
                        continue;
                    }
                },
                FormTarget::Embedded(id) => match embedded.iter().find(|f| &f.id == id) {
                    Some(form) => {
                        let (read, found) = read(&form.json, Source::Embedded(form.pos));
                        diags.extend(found.into_iter().map(|mut d| {
                            d.message = format!("embedded form `{id}`: {}", d.message);
                            d
                        }));
                        match read {
                            Some(f) if !f.broken => f.fields,
                            _ => continue,
                        }
                    }
                    None => {
                        diags.push(Diagnostic::error(
                            Code::Missing,
                            link.pos,
                            Some(&node.id),
                            format!("formKey names the embedded form `{id}`, but the process has no <zeebe:userTaskForm id=\"{id}\">"),
                        ));
                        continue;
                    }
                },
            };
            if !task.form.is_empty() {
                diags.push(Diagnostic::error(
                    Code::BadValue,
                    link.pos,
                    Some(&node.id),
                    "the task has both a Camunda Form and <reglament:form>; keep one",
                ));
                continue;
            }
            task.form = fields;
        }
    }
    diags
}

/// The `formId`s the user tasks of `defs` link: the `.form` files a deployment keeps.
pub fn linked_ids(defs: &Definitions) -> BTreeSet<String> {
    defs.processes
        .iter()
        .flat_map(|p| &p.nodes)
        .filter_map(|n| match &n.kind {
            NodeKind::Task(t) => match &t.form_link {
                Some(crate::model::FormLink { target: FormTarget::FormId(id), .. }) => Some(id.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The Russian plural of a count: 1 символ, 2 символа, 5 символов.
fn plural<'a>(n: u64, one: &'a str, few: &'a str, many: &'a str) -> &'a str {
    match (n % 10, n % 100) {
        (1, r) if r != 11 => one,
        (2..=4, r) if !(12..=14).contains(&r) => few,
        _ => many,
    }
}

/// A number as an official reads it: 3,5 and 10.
fn number_text(n: f64) -> String {
    let text = if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { n.to_string() };
    text.replace('.', ",")
}

/// What a value of `field` has to be, when `value` (not empty) is not one; `None` when it fits.
fn expectation(field: &FormField, value: &Json) -> Option<String> {
    let of_kind = match field.kind {
        FieldKind::Text | FieldKind::Textarea => value.is_string(),
        FieldKind::Number => value.is_number(),
        FieldKind::Boolean => value.is_boolean(),
        FieldKind::Date => value.as_str().is_some_and(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()),
        FieldKind::Email => value.as_str().is_some_and(|s| {
            let mut parts = s.split('@');
            matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if !a.is_empty() && b.contains('.'))
        }),
        FieldKind::Enum | FieldKind::Select => value.as_str().is_some_and(|s| field.options.iter().any(|(v, _)| v == s)),
        FieldKind::Checklist => value.as_array().is_some_and(|items| {
            items.iter().all(|i| i.as_str().is_some_and(|s| field.options.iter().any(|(v, _)| v == s)))
        }),
        FieldKind::Note => true,
    };
    if !of_kind {
        let values = || field.options.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>().join(", ");
        return Some(match field.kind {
            FieldKind::Text | FieldKind::Textarea => "текст".to_string(),
            FieldKind::Number => "число".to_string(),
            FieldKind::Boolean => "да/нет (true/false)".to_string(),
            FieldKind::Date => "дата ГГГГ-ММ-ДД".to_string(),
            FieldKind::Email => "адрес электронной почты".to_string(),
            FieldKind::Enum | FieldKind::Select => format!("одно из значений: {}", values()),
            FieldKind::Checklist => format!("список из значений: {}", values()),
            FieldKind::Note => String::new(),
        });
    }
    let rules = &field.rules;
    if let Some(text) = value.as_str() {
        let length = text.trim().chars().count() as u64;
        if let Some(min) = rules.min_length
            && length < min
        {
            return Some(format!(
                "не меньше {min} {} (сейчас {length})",
                plural(min, "символа", "символов", "символов")
            ));
        }
        if let Some(max) = rules.max_length
            && length > max
        {
            return Some(format!(
                "не больше {max} {} (сейчас {length})",
                plural(max, "символа", "символов", "символов")
            ));
        }
        if let Some(pattern) = &rules.pattern
            && regex::Regex::new(pattern).is_ok_and(|re| !re.is_match(text))
        {
            return Some(format!("значение по образцу {pattern}"));
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = rules.min
            && n < min
        {
            return Some(format!("число не меньше {}", number_text(min)));
        }
        if let Some(max) = rules.max
            && n > max
        {
            return Some(format!("число не больше {}", number_text(max)));
        }
        if let Some(digits) = rules.decimal_digits {
            let text = value.to_string();
            let decimals = text.split_once('.').map_or(0, |(_, d)| d.trim_end_matches('0').len()) as u32;
            if decimals > digits {
                return Some(match digits {
                    0 => "целое число".to_string(),
                    d => format!(
                        "число не более чем с {d} {} после запятой",
                        plural(d.into(), "знаком", "знаками", "знаками")
                    ),
                });
            }
        }
    }
    None
}

/// What a completion of user task `node` may write (the trust rules): with a form, only its
/// fields that are not read-only; without one, the variables its output mappings read, or, when
/// it has none, any variable (as Camunda does) except those the process protects
/// (`reglament:settings protected`). Each refused variable is named, in Russian.
pub fn check_writes(process: &Process, node: &Node, form: &[FormField], vars: &Vars) -> Result<(), FormProblems> {
    let mut problems = Vec::new();
    let mut refuse = |name: &str, kind: FieldProblemKind, message: String| {
        problems.push(FieldProblem { field: name.to_string(), kind, message })
    };
    let fields: Vec<&FormField> = form.iter().filter(|f| f.kind != FieldKind::Note).collect();
    if !fields.is_empty() {
        for name in vars.keys() {
            match fields.iter().find(|f| &f.id == name) {
                Some(f) if f.readonly => refuse(
                    name,
                    FieldProblemKind::ReadOnly,
                    format!("поле «{}» ({name}) только для чтения: задача его не меняет", f.label),
                ),
                Some(_) => {}
                None => refuse(
                    name,
                    FieldProblemKind::NotWritable,
                    format!("поля `{name}` нет в форме задачи: выполнение задачи записывает только поля её формы"),
                ),
            }
        }
    } else if !node.io.outputs.is_empty() {
        let read: BTreeSet<&str> =
            node.io.outputs.iter().flat_map(|m| m.source.variables().iter().map(String::as_str)).collect();
        for name in vars.keys().filter(|n| !read.contains(n.as_str())) {
            refuse(
                name,
                FieldProblemKind::NotWritable,
                format!(
                    "переменную `{name}` задача не принимает: она записывает только то, что читают её выходные сопоставления ({})",
                    read.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    } else {
        for name in vars.keys().filter(|n| process.settings.protected.contains(n)) {
            refuse(
                name,
                FieldProblemKind::NotWritable,
                format!("переменная `{name}` защищена процессом: выполнение задачи её не меняет"),
            );
        }
    }
    problems.sort_by(|a, b| a.field.cmp(&b.field));
    if problems.is_empty() { Ok(()) } else { Err(FormProblems(problems)) }
}

/// Checks a task's completion variables against its form. Messages are in Russian: they are
/// shown to the official who filled in the form. Read-only fields and notes are not checked:
/// the form does not submit them.
pub fn check(form: &[FormField], vars: &Vars) -> Result<(), FormProblems> {
    let mut problems = Vec::new();
    for field in form.iter().filter(|f| !f.readonly && f.kind != FieldKind::Note) {
        let value = vars.get(&field.id).filter(|v| {
            !v.is_null()
                && v.as_str() != Some("")
                && v.as_array().is_none_or(|a| !a.is_empty())
                && !(field.rules.must_check && field.required && v == &&Json::Bool(false))
        });
        let Some(value) = value else {
            if field.required {
                problems.push(FieldProblem {
                    field: field.id.clone(),
                    kind: FieldProblemKind::Required,
                    message: format!("поле «{}» ({}) обязательно", field.label, field.id),
                });
            }
            continue;
        };
        if let Some(expected) = expectation(field, value) {
            problems.push(FieldProblem {
                field: field.id.clone(),
                kind: FieldProblemKind::WrongValue,
                message: format!("поле «{}» ({}): ожидается {expected}", field.label, field.id),
            });
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(FormProblems(problems)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &str = r#"{
  "components": [
    { "type": "text", "id": "Intro", "text": "Проверьте запрос и примите решение." },
    { "label": "Решение", "type": "radio", "id": "Field_decision", "key": "decision",
      "validate": { "required": true },
      "values": [ { "label": "Согласовать", "value": "approve" }, { "label": "Отклонить", "value": "reject" } ] },
    { "label": "Комментарий", "type": "textarea", "id": "Field_comment", "key": "comment",
      "description": "Коротко, для заявителя", "validate": { "minLength": 5, "maxLength": 200 } },
    { "type": "group", "id": "Group_1", "label": "Сведения", "components": [
      { "label": "Сумма", "type": "number", "id": "Field_sum", "key": "sum", "decimalDigits": 0,
        "validate": { "min": 1, "max": 100 } },
      { "label": "Заявитель", "type": "textfield", "id": "Field_who", "key": "requester", "readonly": true },
      { "label": "Адрес", "type": "textfield", "id": "Field_mail", "key": "mail",
        "validate": { "validationType": "email" } },
      { "label": "Отдел", "type": "select", "id": "Field_unit", "key": "unit", "defaultValue": "a",
        "values": [ { "label": "А", "value": "a" }, { "label": "Б", "value": "b" } ] },
      { "label": "Каналы", "type": "checklist", "id": "Field_ch", "key": "channels",
        "values": [ { "label": "Почта", "value": "mail" }, { "label": "Сайт", "value": "site" } ] },
      { "type": "datetime", "subtype": "date", "dateLabel": "Дата ответа", "id": "Field_date", "key": "answerDate" },
      { "label": "Согласен", "type": "checkbox", "id": "Field_ok", "key": "agreed", "validate": { "required": true } },
      { "label": "Код", "type": "textfield", "id": "Field_code", "key": "code", "validate": { "pattern": "^[0-9]{3}$" } }
    ] },
    { "type": "separator", "id": "Sep" },
    { "type": "spacer", "id": "Space" }
  ],
  "type": "default",
  "id": "decision-form",
  "executionPlatform": "Camunda Cloud",
  "executionPlatformVersion": "8.6.0",
  "schemaVersion": 16
}"#;

    #[test]
    fn a_completion_writes_only_what_the_task_may_change() {
        let model = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" xmlns:reglament="urn:reglament:bpmn:1.0" id="d" targetNamespace="urn:t">
  <bpmn:process id="p" isExecutable="true">
    <bpmn:extensionElements><reglament:settings protected="requestNo, registeredAt" /></bpmn:extensionElements>
    <bpmn:startEvent id="s" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="formed" />
    <bpmn:userTask id="formed"><bpmn:extensionElements><reglament:form>
      <reglament:field id="decision" label="Решение" type="text" />
      <reglament:field id="requester" label="Заявитель" type="text" readonly="true" />
    </reglament:form></bpmn:extensionElements></bpmn:userTask>
    <bpmn:sequenceFlow id="f2" sourceRef="formed" targetRef="mapped" />
    <bpmn:userTask id="mapped"><bpmn:extensionElements><zeebe:ioMapping>
      <zeebe:output source="=upper case(answer) + suffix" target="reply" />
    </zeebe:ioMapping></bpmn:extensionElements></bpmn:userTask>
    <bpmn:sequenceFlow id="f3" sourceRef="mapped" targetRef="free" />
    <bpmn:userTask id="free" />
    <bpmn:sequenceFlow id="f4" sourceRef="free" targetRef="e" />
    <bpmn:endEvent id="e" />
  </bpmn:process>
</bpmn:definitions>"#;
        let (defs, diags) = crate::parse_definitions(model.as_bytes());
        assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
        let p = &defs.processes[0];
        let refused = |node: &str, vars: Json| -> Vec<(String, FieldProblemKind)> {
            let n = p.node(p.index[node]);
            let NodeKind::Task(t) = &n.kind else { panic!("a task") };
            let vars = vars.as_object().unwrap().clone();
            match check_writes(p, n, &t.form, &vars) {
                Ok(()) => Vec::new(),
                Err(FormProblems(v)) => v.into_iter().map(|x| (x.field, x.kind)).collect(),
            }
        };
        let none: Vec<(String, FieldProblemKind)> = Vec::new();
        assert_eq!(refused("formed", serde_json::json!({"decision": "ok"})), none);
        assert_eq!(
            refused("formed", serde_json::json!({"decision": "ok", "requester": "x", "extensionGranted": 90})),
            [
                ("extensionGranted".to_string(), FieldProblemKind::NotWritable),
                ("requester".into(), FieldProblemKind::ReadOnly)
            ]
        );
        assert_eq!(refused("mapped", serde_json::json!({"answer": "a", "suffix": "!"})), none);
        assert_eq!(
            refused("mapped", serde_json::json!({"answer": "a", "reply": "b"})),
            [("reply".to_string(), FieldProblemKind::NotWritable)]
        );
        assert_eq!(refused("free", serde_json::json!({"anything": 1})), none);
        assert_eq!(
            refused("free", serde_json::json!({"anything": 1, "registeredAt": "2020-01-01"})),
            [("registeredAt".to_string(), FieldProblemKind::NotWritable)]
        );
    }

    fn one(text: &str) -> (Option<CamundaForm>, Vec<Diagnostic>) {
        let (mut forms, diags) = read_files(&[FormFile { name: "f.form", bytes: text.as_bytes() }]);
        (forms.pop(), diags)
    }

    fn messages(diags: &[Diagnostic]) -> Vec<String> {
        diags.iter().map(|d| d.render("model.bpmn")).collect()
    }

    #[test]
    fn camunda_components_map_onto_the_form_model() {
        let (form, diags) = one(FORM);
        assert!(diags.is_empty(), "{:?}", messages(&diags));
        let form = form.expect("the form reads");
        assert_eq!(form.id, "decision-form");
        let kinds: Vec<(&str, FieldKind)> = form.fields.iter().map(|f| (f.id.as_str(), f.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("Intro", FieldKind::Note),
                ("decision", FieldKind::Enum),
                ("comment", FieldKind::Textarea),
                ("Group_1", FieldKind::Note),
                ("sum", FieldKind::Number),
                ("requester", FieldKind::Text),
                ("mail", FieldKind::Email),
                ("unit", FieldKind::Select),
                ("channels", FieldKind::Checklist),
                ("answerDate", FieldKind::Date),
                ("agreed", FieldKind::Boolean),
                ("code", FieldKind::Text),
            ]
        );
        let field = |id: &str| form.fields.iter().find(|f| f.id == id).unwrap();
        assert_eq!(field("Intro").hint.as_deref(), Some("Проверьте запрос и примите решение."));
        assert_eq!(field("Group_1").label, "Сведения");
        assert!(field("decision").required);
        assert_eq!(field("decision").options[1], ("reject".to_string(), "Отклонить".to_string()));
        assert_eq!(field("comment").hint.as_deref(), Some("Коротко, для заявителя"));
        assert_eq!((field("comment").rules.min_length, field("comment").rules.max_length), (Some(5), Some(200)));
        assert_eq!(
            (field("sum").rules.min, field("sum").rules.max, field("sum").rules.decimal_digits),
            (Some(1.0), Some(100.0), Some(0))
        );
        assert!(field("requester").readonly);
        assert_eq!(field("unit").default, Some(Json::from("a")));
        assert_eq!(field("answerDate").label, "Дата ответа");
        assert_eq!(field("Intro").pos, Pos { line: 3, col: 29 });
    }

    fn vars(v: Json) -> Vars {
        v.as_object().unwrap().clone()
    }

    fn problems(form: &CamundaForm, v: Json) -> Vec<(String, String)> {
        match check(&form.fields, &vars(v)) {
            Ok(()) => Vec::new(),
            Err(p) => p.0.into_iter().map(|p| (p.field, p.message)).collect(),
        }
    }

    #[test]
    fn completions_are_checked_against_required_fields_and_rules() {
        let form = one(FORM).0.unwrap();
        let missing = problems(&form, serde_json::json!({"agreed": false}));
        assert_eq!(
            missing,
            [
                ("decision".to_string(), "поле «Решение» (decision) обязательно".to_string()),
                ("agreed".to_string(), "поле «Согласен» (agreed) обязательно".to_string()),
            ]
        );
        let wrong = problems(
            &form,
            serde_json::json!({
                "decision": "maybe", "comment": "  abc ", "sum": 2.5, "mail": "nobody", "unit": "a",
                "channels": ["mail", "fax"], "answerDate": "31.12.2026", "agreed": true, "code": "12a",
                "requester": 17,
            }),
        );
        let expected = [
            ("decision", "поле «Решение» (decision): ожидается одно из значений: approve, reject"),
            ("comment", "поле «Комментарий» (comment): ожидается не меньше 5 символов (сейчас 3)"),
            ("sum", "поле «Сумма» (sum): ожидается целое число"),
            ("mail", "поле «Адрес» (mail): ожидается адрес электронной почты"),
            ("channels", "поле «Каналы» (channels): ожидается список из значений: mail, site"),
            ("answerDate", "поле «Дата ответа» (answerDate): ожидается дата ГГГГ-ММ-ДД"),
            ("code", "поле «Код» (code): ожидается значение по образцу ^[0-9]{3}$"),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(wrong, expected);
        assert_eq!(
            problems(&form, serde_json::json!({"decision": "approve", "agreed": true, "sum": 500})),
            [("sum".to_string(), "поле «Сумма» (sum): ожидается число не больше 100".to_string())]
        );
        let right = serde_json::json!({
            "decision": "approve", "comment": "Всё верно", "sum": 7, "mail": "a@b.ru", "unit": "b",
            "channels": ["site"], "answerDate": "2026-12-31", "agreed": true, "code": "123",
        });
        assert_eq!(problems(&form, right), []);
    }

    #[test]
    fn what_the_page_cannot_show_is_an_error_naming_the_component() {
        let text = r#"{
  "components": [
    { "label": "Файл", "type": "filepicker", "id": "Field_file", "key": "file" },
    { "label": "Без ключа", "type": "textfield", "id": "Field_nokey" },
    { "label": "Скрытое", "type": "textfield", "id": "Field_hidden", "key": "hidden", "conditional": { "hide": "=x" } },
    { "label": "Из переменной", "type": "select", "id": "Field_dyn", "key": "dyn", "valuesKey": "options" },
    { "label": "Время", "type": "datetime", "subtype": "time", "id": "Field_time", "key": "at" },
    { "label": "Образец", "type": "textfield", "id": "Field_re", "key": "re", "validate": { "pattern": "(?<=a)b" } },
    { "label": "Повтор", "type": "textfield", "id": "Field_dup", "key": "hidden" },
    { "label": "Кнопка", "type": "button", "id": "Field_btn" }
  ],
  "type": "default",
  "id": "bad"
}"#;
        let (form, diags) = one(text);
        assert!(form.expect("the id is known").broken);
        let lines = messages(&diags);
        assert_eq!(lines.len(), 8, "{lines:#?}");
        assert!(lines[0].starts_with("f.form:3:52: error: component `filepicker` «Файл» (key `file`): component type `filepicker` is not supported; the task page renders textfield"), "{}", lines[0]);
        assert!(lines[0].ends_with("[Field_file]"));
        assert!(lines[1].contains("«Без ключа»: the field has no key"), "{}", lines[1]);
        assert!(
            lines[2].contains("(key `hidden`): conditions (`conditional.hide` \"=x\") are not supported"),
            "{}",
            lines[2]
        );
        assert!(lines[3].contains("options from a variable (`valuesKey`) are not supported"), "{}", lines[3]);
        assert!(lines[4].contains("datetime subtype `time` is not supported"), "{}", lines[4]);
        assert!(lines[5].contains("pattern `(?<=a)b` is not a regular expression Reglament reads"), "{}", lines[5]);
        assert!(lines[6].contains("key `hidden` is used by another field"), "{}", lines[6]);
        assert!(lines[7].starts_with("f.form:10:") && lines[7].contains("warning: component `button`"), "{}", lines[7]);

        let (_, diags) = one("{ \"components\": [ }");
        assert_eq!(messages(&diags), ["f.form:1:19: error: not valid JSON: expected value at line 1 column 19"]);
        let (_, diags) = one(r#"{ "components": [] }"#);
        assert!(messages(&diags)[0].contains("the form has no `id`"));
        let (_, diags) = one(r#"{ "id": "x" }"#);
        assert!(messages(&diags)[0].contains("it has no `components` list"));
    }

    const MODEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d" targetNamespace="urn:t">
  <bpmn:process id="p" isExecutable="true">
    <bpmn:extensionElements>
      <zeebe:userTaskForm id="userTaskForm_1">{ "components": [ { "label": "Итог", "type": "textfield", "id": "F1", "key": "result", "validate": { "required": true } } ], "type": "default", "id": "embedded" }</zeebe:userTaskForm>
    </bpmn:extensionElements>
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="review" />
    <bpmn:userTask id="review">
      <bpmn:extensionElements><zeebe:formDefinition formId="decision-form" /></bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="sum" />
    <bpmn:userTask id="sum">
      <bpmn:extensionElements><zeebe:formDefinition formKey="camunda-forms:bpmn:userTaskForm_1" /></bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f3" sourceRef="sum" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>"#;

    fn form_of<'d>(defs: &'d Definitions, task: &str) -> &'d [FormField] {
        let p = &defs.processes[0];
        match &p.node(p.node_by_id(task).unwrap()).kind {
            NodeKind::Task(t) => &t.form,
            _ => unreachable!(),
        }
    }

    #[test]
    fn user_tasks_get_the_fields_of_the_forms_they_link() {
        let file = FormFile { name: "decision.form", bytes: FORM.as_bytes() };
        let (defs, diags) = crate::parse_with_forms(MODEL.as_bytes(), &[file]);
        assert!(diags.iter().all(|d| !d.is_error()), "{:?}", messages(&diags));
        assert_eq!(form_of(&defs, "review").len(), 12);
        assert_eq!(form_of(&defs, "sum")[0].id, "result");

        let (defs, diags) = crate::parse_with_forms(MODEL.as_bytes(), &[]);
        let errors: Vec<String> = diags.iter().filter(|d| d.is_error()).map(|d| d.render("model.bpmn")).collect();
        assert_eq!(
            errors,
            [
                "model.bpmn:10:61: error: formId `decision-form` names no Camunda Form of this deployment (no .form file was deployed with the model): deploy the .form file whose id is `decision-form` with the model [review]"
            ]
        );
        assert!(form_of(&defs, "review").is_empty());
    }

    #[test]
    fn forms_outside_the_model_are_refused_at_parse_time() {
        let model = MODEL
            .replace(r#"formId="decision-form""#, r#"externalReference="https://forms.example/x""#)
            .replace("camunda-forms:bpmn:userTaskForm_1", "camunda-forms:bpmn:nope");
        let (_, diags) = crate::parse_with_forms(model.as_bytes(), &[]);
        let errors: Vec<String> = diags.iter().filter(|d| d.is_error()).map(|d| d.message.clone()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("externalReference `https://forms.example/x` is a form of another application"));
        assert!(
            errors[1].contains("the embedded form `nope`, but the process has no <zeebe:userTaskForm id=\"nope\">")
        );
    }

    #[test]
    fn russian_plurals() {
        assert_eq!(
            [1, 2, 5, 11, 21, 22, 112].map(|n| plural(n, "символ", "символа", "символов")),
            ["символ", "символа", "символов", "символов", "символ", "символа", "символов"]
        );
    }
}
