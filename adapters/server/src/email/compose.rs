//! An outbox row → a MIME message: recipients from the rules, the text from the template,
//! links to the task and the instance, an optional CSV attachment.
//!
//! Cyrillic is handled by lettre: the subject and display names are RFC 2047 encoded words,
//! bodies are UTF-8 (`Content-Type: text/plain; charset=utf-8`, quoted-printable or base64,
//! whichever is shorter), an attachment's file name is RFC 2231 encoded. The message carries the
//! row's stable `Message-ID`, so a resend after a crash is recognisable as the same email.

use lettre::Message;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use minijinja::value::Value;
use reglament_engine::feel::Expr;
use reglament_engine::runtime::Email;
use serde_json::{Value as Json, json};

use super::recipients::{self, ResolveError, RuleContext, split_rules};
use super::templates::{Templates, to_value};
use reglament_store::outbox::OutboxRow;
use reglament_store::{Store, StoreError, TaskRow};

/// Why a row could not become a message.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// Retrying the same row cannot help until something is fixed (template, directory,
    /// address, variables): the email task gets an incident.
    #[error("{0}")]
    Permanent(String),
    /// The database failed; try again later.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ResolveError> for ComposeError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Rule(m) => ComposeError::Permanent(m),
            ResolveError::Store(e) => ComposeError::Store(e),
        }
    }
}

/// What every message needs besides its row.
#[derive(Debug)]
pub struct Composer {
    pub store: Store,
    pub templates: Templates,
    pub from: Mailbox,
    /// The public base URL, no trailing slash.
    pub base_url: String,
    /// Where addresses from variables may receive email.
    pub variable_domains: super::VariableDomains,
}

/// `Auto-Submitted: auto-generated` (RFC 3834): the message is a notification, so mail systems
/// do not answer it with vacation replies.
#[derive(Debug, Clone, Copy)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

impl Composer {
    pub async fn compose(&self, row: &OutboxRow) -> Result<Message, ComposeError> {
        let email: Email = serde_json::from_str(&row.payload)
            .map_err(|e| ComposeError::Permanent(format!("the outbox row holds no email: {e}")))?;
        let mut to = email.to.clone();
        if let Some((_, rules)) = email.headers.iter().find(|(k, _)| k == "recipients") {
            if rules.trim_start().starts_with('=') {
                to.push(rules.trim().to_string());
            } else {
                to.extend(split_rules(rules).map(str::to_owned));
            }
        }
        let process = self.store.instance_keys(&row.instance_id).await?.map(|k| k.0).unwrap_or_default();
        let cx = RuleContext {
            store: &self.store,
            instance: &row.instance_id,
            variables: &email.variables,
            process: &process,
            domains: &self.variable_domains,
            from_variables: &email.from_variables,
        };
        let recipients = recipients::resolve(&cx, &to, &email.cc).await?;

        let task_element = match header_value(&email, "task")? {
            Some(Json::String(element)) => Some(element),
            _ => None,
        };
        let context = self.context(row, &email, task_element.as_deref()).await?;
        // Only template files are templates: `subject` and `body` may hold what people typed
        // (through FEEL), and must never be evaluated.
        let (subject, text, html) = match &email.template {
            Some(name) => {
                let r = self.templates.render(name, &context).map_err(ComposeError::Permanent)?;
                (r.subject.unwrap_or_else(|| email.subject.clone()), r.text, r.html)
            }
            None => (email.subject.clone(), email.body.clone().unwrap_or_default(), None),
        };
        let subject = subject.lines().map(str::trim).collect::<Vec<_>>().join(" ");
        let subject = if subject.trim().is_empty() { "Уведомление".to_string() } else { subject };
        let text = if text.ends_with('\n') { text } else { format!("{text}\n") };

        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(row.message_id.clone()))
            .header(AutoSubmitted);
        for mailbox in recipients.to {
            builder = builder.to(mailbox);
        }
        for mailbox in recipients.cc {
            builder = builder.cc(mailbox);
        }
        let content = match html {
            Some(html) => Content::Multi(MultiPart::alternative_plain_html(text, html)),
            None => Content::Single(SinglePart::plain(text)),
        };
        let content = match attachment(&email)? {
            Some(file) => {
                let mixed = MultiPart::mixed();
                let mixed = match content {
                    Content::Single(part) => mixed.singlepart(part),
                    Content::Multi(part) => mixed.multipart(part),
                };
                Content::Multi(mixed.singlepart(file))
            }
            None => content,
        };
        let message = match content {
            Content::Single(part) => builder.singlepart(part),
            Content::Multi(part) => builder.multipart(part),
        };
        message.map_err(|e| ComposeError::Permanent(format!("the message cannot be built: {e}")))
    }

    /// The template's variables: the process variables plus `instanceId`, `definitionKey`,
    /// `businessKey`, `baseUrl`, `instanceUrl`, `subject`, and — when the email is about a user
    /// task (header `task` naming its element, else the instance's newest open task) — `task`
    /// (with `candidateGroupNames`) and `taskUrl`. Snake-case aliases (`task_url`, `instance_url`, …) are there too.
    async fn context(&self, row: &OutboxRow, email: &Email, task_element: Option<&str>) -> Result<Value, StoreError> {
        let mut vars = email.variables.clone();
        let keys = self.store.instance_keys(&row.instance_id).await?;
        let task = match task_element {
            Some(element) => self.store.task_of_element(&row.instance_id, element).await?,
            None => self.store.newest_open_task(&row.instance_id).await?,
        };
        let base = &self.base_url;
        let instance_url = format!("{base}/instances/{}", row.instance_id);
        let mut extra = vec![
            ("instanceId", json!(row.instance_id)),
            ("definitionKey", json!(keys.as_ref().map(|k| k.0.clone()))),
            ("businessKey", json!(keys.and_then(|k| k.1))),
            ("baseUrl", json!(base)),
            ("instanceUrl", json!(instance_url)),
            ("subject", json!(email.subject)),
        ];
        if let Some(task) = task {
            extra.push(("taskUrl", json!(format!("{base}/tasks/{}", task.id))));
            let names = self.store.group_names().await?;
            let assignee = match &task.assignee {
                Some(login) => self.store.user(login).await?.and_then(|u| u.name),
                None => None,
            };
            extra.push(("task", task_json(&task, &names, assignee)));
        }
        for (name, value) in extra {
            vars.entry(snake(name)).or_insert_with(|| value.clone());
            vars.entry(name.to_string()).or_insert(value);
        }
        Ok(to_value(&Json::Object(vars)))
    }
}

enum Content {
    Single(SinglePart),
    Multi(MultiPart),
}

/// The task as templates see it; `candidateGroupNames` are the groups by the directory's
/// names (the id where a group has none) and `assigneeName` the assignee's full name, for the
/// text an official reads.
fn task_json(
    task: &TaskRow,
    group_names: &std::collections::BTreeMap<String, String>,
    assignee_name: Option<String>,
) -> Json {
    let names: Vec<&str> =
        task.candidate_groups.iter().map(|g| group_names.get(g).map_or(g.as_str(), String::as_str)).collect();
    json!({
        "id": task.id,
        "elementId": task.element_id,
        "name": task.name,
        "assignee": task.assignee,
        "assigneeName": assignee_name,
        "candidateGroups": task.candidate_groups,
        "candidateGroupNames": names,
        "due": task.due.map(|d| d.to_rfc3339()),
        "createdAt": task.created_at.to_rfc3339(),
        "state": task.state,
    })
}

fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// An extra header of the email task: literal text, or `=FEEL` over the task's variables.
fn header_value(email: &Email, name: &str) -> Result<Option<Json>, ComposeError> {
    let Some(text) = email.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()) else { return Ok(None) };
    if !text.starts_with('=') {
        return Ok(Some(Json::String(text.to_string())).filter(|_| !text.is_empty()));
    }
    let expr = Expr::compile(text, Default::default())
        .map_err(|e| ComposeError::Permanent(format!("header `{name}`: `{text}` is not FEEL: {}", e.message)))?;
    let value = expr.eval(&email.variables).map_err(|e| ComposeError::Permanent(format!("header `{name}`: {e:?}")))?;
    Ok(Some(value).filter(|v| !v.is_null()))
}

/// Header `attachment` names a variable (or is `=expression`) holding the file: its text, or
/// `{name, content}`. `attachmentName` and `attachmentType` (default `text/csv`) may set the
/// file name and type. CSV gets a UTF-8 byte order mark, so spreadsheet programs read the
/// Cyrillic right.
fn attachment(email: &Email) -> Result<Option<SinglePart>, ComposeError> {
    let raw = email.headers.iter().find(|(k, _)| k == "attachment").map(|(_, v)| v.trim());
    let (value, label) = match raw {
        None | Some("") => return Ok(None),
        Some(expr) if expr.starts_with('=') => {
            (header_value(email, "attachment")?.unwrap_or(Json::Null), expr.trim_start_matches('=').trim().to_string())
        }
        Some(variable) => (email.variables.get(variable).cloned().unwrap_or(Json::Null), variable.to_string()),
    };
    let (mut name, content) = match value {
        Json::String(text) => (None, text),
        Json::Object(file) => (
            file.get("name").and_then(Json::as_str).map(str::to_owned),
            file.get("content").and_then(Json::as_str).unwrap_or_default().to_string(),
        ),
        Json::Null => {
            return Err(ComposeError::Permanent(format!("the attachment `{label}` is not set")));
        }
        other => {
            return Err(ComposeError::Permanent(format!("the attachment `{label}` holds {other}, not file text")));
        }
    };
    if let Some(Json::String(n)) = header_value(email, "attachmentName")? {
        name = Some(n);
    }
    let kind = match header_value(email, "attachmentType")? {
        Some(Json::String(t)) => t,
        _ => "text/csv".to_string(),
    };
    let kind = if kind.contains("charset") { kind } else { format!("{kind}; charset=utf-8") };
    let content_type = ContentType::parse(&kind)
        .map_err(|e| ComposeError::Permanent(format!("attachmentType `{kind}` is not a media type: {e}")))?;
    let csv = kind.starts_with("text/csv");
    let default_name = if csv { format!("{label}.csv") } else { label.clone() };
    let name = name.filter(|n| !n.trim().is_empty()).unwrap_or(default_name);
    let name: String = name.chars().filter(|c| !matches!(c, '/' | '\\' | '\r' | '\n')).collect();
    let body = if csv && !content.starts_with('\u{feff}') { format!("\u{feff}{content}") } else { content };
    Ok(Some(Attachment::new(name).body(body, content_type)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn snake_case_aliases() {
        assert_eq!(super::snake("taskUrl"), "task_url");
        assert_eq!(super::snake("instanceId"), "instance_id");
    }
}
