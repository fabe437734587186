//! Recipient rules: who an email goes to, from the task's headers and the directory.
//!
//! Every entry of `to`, `cc` and `recipients` (lists separated by `,` `;` or new lines) is one
//! rule (docs/reglament-namespace.md, "Email tasks"):
//!
//! | rule | who |
//! | --- | --- |
//! | `ivanov@example.org`, `Иванов И. И. <ivanov@example.org>` | that address |
//! | `ivanov`, `user:ivanov` | the user with that login |
//! | `group:unit-heads` | the enabled members of the group |
//! | `role:cur-contact` | the enabled holders of the role |
//! | `unit:oapr` | the enabled members of the unit |
//! | `head-of:oapr` | the unit's head |
//! | `head-of:PEOPLE` (e.g. `head-of:assignee-of:draft`) | the head of each person's unit (of the parent unit for a person who heads their own) |
//! | `initiator` | the variable `initiator` (addresses or logins) |
//! | `assignee-of:draft` | the assignee of the task of element `draft`, or its candidates while unassigned |
//! | `=expression` | a FEEL expression over the variables giving addresses or logins |
//!
//! Any argument may be `=expression` (`head-of:=unitId`, `user:=clerk`). A rule that finds
//! nobody is an error (the email task gets an incident): an escalation that silently reaches no
//! one is worse than a stopped process.

use std::collections::BTreeSet;

use lettre::Address;
use lettre::message::Mailbox;
use reglament_engine::feel::{Expr, Vars};
use serde_json::Value as Json;

use reglament_store::outbox::Contact;
use reglament_store::{Store, StoreError};

/// Why recipients could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The rule cannot work as written or the directory lacks the people: fix and retry.
    #[error("{0}")]
    Rule(String),
    /// The database failed; try again later.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T> = std::result::Result<T, ResolveError>;

fn rule_error(message: impl Into<String>) -> ResolveError {
    ResolveError::Rule(message.into())
}

/// Who an email goes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients {
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
}

/// A person found by a rule: a directory user, or a bare address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Person {
    login: Option<String>,
    name: Option<String>,
    email: String,
}

impl From<Contact> for Person {
    fn from(c: Contact) -> Person {
        Person { login: Some(c.login), name: c.name.filter(|n| !n.trim().is_empty()), email: c.email }
    }
}

/// What rules read besides the directory.
#[derive(Debug)]
pub struct RuleContext<'a> {
    pub store: &'a Store,
    pub instance: &'a str,
    pub variables: &'a Vars,
    /// The instance's process key, for [`super::VariableDomains`].
    pub process: &'a str,
    /// Where addresses from variables may receive email.
    pub domains: &'a super::VariableDomains,
    /// Entries of `to`/`cc` the engine marked as addresses from variables.
    pub from_variables: &'a [String],
}

/// Splits a header value into rules.
pub fn split_rules(text: &str) -> impl Iterator<Item = &str> {
    text.split([',', ';', '\n']).map(str::trim).filter(|s| !s.is_empty())
}

/// Resolves `to` (plus `recipients`) and `cc` rules into mailboxes, without duplicates (an
/// address in both keeps its `To` place).
pub async fn resolve(cx: &RuleContext<'_>, to: &[String], cc: &[String]) -> Result<Recipients> {
    let mut seen = BTreeSet::new();
    let mut out = Recipients::default();
    for (rules, list) in [(to, &mut out.to), (cc, &mut out.cc)] {
        for rule in rules {
            for person in people(cx, rule).await? {
                if seen.insert(person.email.to_lowercase()) {
                    list.push(mailbox(&person)?);
                }
            }
        }
    }
    if out.to.is_empty() && out.cc.is_empty() {
        return Err(rule_error("the email has no recipients"));
    }
    if out.to.is_empty() {
        out.to = std::mem::take(&mut out.cc);
    }
    Ok(out)
}

fn mailbox(p: &Person) -> Result<Mailbox> {
    let email: Address = p.email.trim().parse().map_err(|e| {
        let who = p.login.as_deref().map(|l| format!(" of user `{l}`")).unwrap_or_default();
        rule_error(format!("`{}`{who} is not an email address: {e}", p.email))
    })?;
    Ok(Mailbox::new(p.name.as_deref().map(display_name).filter(|n| !n.is_empty()), email))
}

/// A display name fit for a header: control characters (CR, LF, NUL, …) would break the header
/// or let a name inject one, so each becomes a space, and runs of spaces are folded.
fn display_name(name: &str) -> String {
    name.split(|c: char| c.is_control() || c.is_whitespace()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The people one rule names.
async fn people(cx: &RuleContext<'_>, rule: &str) -> Result<Vec<Person>> {
    let rule = rule.trim();
    let found = match rule.split_once(':') {
        _ if rule.starts_with('=') => people_of_values(cx, &evaluate(cx, rule)?, rule, true).await?,
        _ if rule == "initiator" => {
            let value = cx.variables.get("initiator").cloned().unwrap_or(Json::Null);
            people_of_values(cx, &strings(&value), "the variable `initiator`", true).await?
        }
        Some(("user", arg)) => {
            let mut out = Vec::new();
            for login in args(cx, arg)? {
                out.push(user(cx, &login).await?);
            }
            out
        }
        Some((kind @ ("group" | "role" | "unit"), arg)) => members(cx, arg, kind).await?,
        Some(("head-of", arg)) => heads(cx, arg).await?,
        Some(("assignee-of", arg)) => {
            let mut out = Vec::new();
            for element in args(cx, arg)? {
                out.extend(assignees(cx, &element).await?);
            }
            out
        }
        Some((kind, _)) if !rule.contains('@') => {
            return Err(rule_error(format!(
                "unknown recipient rule `{kind}:` in `{rule}`; use user:, group:, role:, unit:, head-of:, assignee-of:, \
                 initiator, an address or =expression"
            )));
        }
        _ => {
            let from_variables = cx.from_variables.iter().any(|v| v.trim() == rule);
            people_of_values(cx, &[rule.to_string()], rule, from_variables).await?
        }
    };
    if found.is_empty() {
        return Err(rule_error(format!("the recipient rule `{rule}` finds nobody")));
    }
    Ok(found)
}

/// Addresses stay addresses; other values are logins. Addresses `from_variables` must lie in
/// the domains the operator allows for the process.
async fn people_of_values(
    cx: &RuleContext<'_>,
    values: &[String],
    what: &str,
    from_variables: bool,
) -> Result<Vec<Person>> {
    let mut out = Vec::new();
    for v in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
        if v.contains('@') {
            let mailbox: Mailbox =
                v.parse().map_err(|e| rule_error(format!("`{v}` (from {what}) is not an email address: {e}")))?;
            if from_variables && !cx.domains.allows(cx.process, mailbox.email.as_ref()) {
                return Err(rule_error(format!(
                    "`{}` comes from the variables of process `{}`, and the setting mail_variable_domains allows \
                     addresses from variables of this process only in: {}; add its domain there or write the \
                     address in the model",
                    mailbox.email,
                    cx.process,
                    match cx.domains.for_process(cx.process) {
                        [] => "no domain".to_string(),
                        list => list.join(", "),
                    }
                )));
            }
            out.push(Person {
                login: None,
                name: mailbox.name.as_deref().map(display_name).filter(|n| !n.is_empty()),
                email: mailbox.email.to_string(),
            });
        } else {
            out.push(user(cx, v).await?);
        }
    }
    Ok(out)
}

async fn user(cx: &RuleContext<'_>, login: &str) -> Result<Person> {
    match cx.store.contact(login).await? {
        Some(c) if c.disabled => Err(rule_error(format!("user `{login}` is disabled"))),
        Some(c) => Ok(c.into()),
        None => Err(rule_error(format!("there is no user `{login}` in the directory"))),
    }
}

/// The enabled members of groups, roles or units.
async fn members(cx: &RuleContext<'_>, arg: &str, kind: &str) -> Result<Vec<Person>> {
    let mut out = Vec::new();
    for name in args(cx, arg)? {
        let found = match kind {
            "group" => cx.store.group_contacts(&name).await?,
            "role" => cx.store.role_contacts(&name).await?,
            _ => cx.store.unit_contacts(&name).await?,
        };
        if found.is_empty() {
            return Err(rule_error(format!("{kind} `{name}` has no enabled members in the directory")));
        }
        out.extend(found.into_iter().map(Person::from));
    }
    Ok(out)
}

/// `head-of:UNIT`, `head-of:=expr` (unit ids) or `head-of:PEOPLE-RULE`.
async fn heads(cx: &RuleContext<'_>, arg: &str) -> Result<Vec<Person>> {
    let people_rule = arg.starts_with("user:")
        || arg.starts_with("assignee-of:")
        || arg.starts_with("role:")
        || arg.starts_with("group:")
        || arg == "initiator";
    let mut out = Vec::new();
    if people_rule {
        for person in Box::pin(people(cx, arg)).await? {
            let login = person.login.ok_or_else(|| {
                rule_error(format!("head-of:{arg}: `{}` is not a user of the directory, so has no unit", person.email))
            })?;
            let units = cx.store.units_of(&login).await?;
            if units.is_empty() {
                return Err(rule_error(format!("head-of:{arg}: user `{login}` belongs to no unit")));
            }
            for unit in units {
                out.push(head_above(cx, &unit, &login).await?);
            }
        }
    } else {
        for unit in args(cx, arg)? {
            out.push(head_above(cx, &unit, "").await?);
        }
    }
    Ok(out)
}

/// The head of `unit`, or — when that is `login` themself — of the nearest unit above.
async fn head_above(cx: &RuleContext<'_>, unit: &str, login: &str) -> Result<Person> {
    let mut id = unit.to_string();
    for _ in 0..64 {
        let Some((name, head, parent)) = cx.store.unit(&id).await? else {
            return Err(rule_error(format!("there is no unit `{id}` in the directory")));
        };
        match (head, parent) {
            (Some(head), _) if head != login => return user(cx, &head).await,
            (_, Some(parent)) => id = parent,
            (None, None) => return Err(rule_error(format!("unit `{id}` ({name}) has no head in the directory"))),
            (Some(_), None) => {
                return Err(rule_error(format!("`{login}` heads unit `{id}` ({name}), which has no unit above it")));
            }
        }
    }
    Err(rule_error(format!("the units above `{unit}` form a loop")))
}

/// The assignee of the element's task, or its candidates while nobody has claimed it.
async fn assignees(cx: &RuleContext<'_>, element: &str) -> Result<Vec<Person>> {
    let task =
        cx.store.task_of_element(cx.instance, element).await?.ok_or_else(|| {
            rule_error(format!("assignee-of:{element}: the instance has no task of element `{element}`"))
        })?;
    if let Some(assignee) = task.assignee.as_deref().filter(|a| !a.is_empty()) {
        return Ok(vec![user(cx, assignee).await?]);
    }
    let mut out = Vec::new();
    for login in &task.candidate_users {
        out.push(user(cx, login).await?);
    }
    for group in &task.candidate_groups {
        out.extend(cx.store.group_contacts(group).await?.into_iter().map(Person::from));
    }
    Ok(out)
}

/// A rule argument: literal names, or `=expression` giving names.
fn args(cx: &RuleContext<'_>, arg: &str) -> Result<Vec<String>> {
    let arg = arg.trim();
    if arg.starts_with('=') {
        return evaluate(cx, arg);
    }
    if arg.is_empty() {
        return Err(rule_error("a recipient rule has an empty argument"));
    }
    Ok(vec![arg.to_string()])
}

fn evaluate(cx: &RuleContext<'_>, source: &str) -> Result<Vec<String>> {
    let expr = Expr::compile(source, Default::default())
        .map_err(|e| rule_error(format!("`{source}` is not a FEEL expression: {}", e.message)))?;
    let value = expr.eval(cx.variables).map_err(|e| rule_error(format!("`{source}` failed: {e:?}")))?;
    let values = strings(&value);
    if values.is_empty() {
        return Err(rule_error(format!("`{source}` gives no value (is the variable set?)")));
    }
    Ok(values)
}

/// A JSON value as a list of strings (a list, or a text that may itself be a list).
fn strings(value: &Json) -> Vec<String> {
    match value {
        Json::Null => Vec::new(),
        Json::String(s) => split_rules(s).map(str::to_owned).collect(),
        Json::Array(items) => items.iter().flat_map(strings).collect(),
        other => vec![other.to_string()],
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_in_a_display_name_never_reach_a_header() {
        let person = Person {
            login: Some("smirnova".into()),
            name: Some("Смирнова\r\nBcc: all@example.org\u{0}".into()),
            email: "smirnova@example.org".into(),
        };
        let mailbox = super::mailbox(&person).expect("a mailbox");
        assert_eq!(mailbox.name.as_deref(), Some("Смирнова Bcc: all@example.org"));
        let message = lettre::Message::builder()
            .from(mailbox.clone())
            .to(mailbox)
            .subject("Проверка")
            .body(String::from("текст"))
            .expect("the message builds");
        let text = String::from_utf8(message.formatted()).expect("utf-8");
        assert!(!text.lines().any(|l| l.starts_with("Bcc:")), "{text}");
        let blank = Person { login: None, name: Some("\r\n".into()), email: "x@example.org".into() };
        assert_eq!(super::mailbox(&blank).expect("a mailbox").name, None);
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn values_become_lists() {
        assert_eq!(strings(&json!("a@x.ru; b@x.ru")), vec!["a@x.ru", "b@x.ru"]);
        assert_eq!(strings(&json!(["a", ["b"], null])), vec!["a", "b"]);
        assert!(strings(&Json::Null).is_empty());
        assert_eq!(split_rules("group:a,\n initiator ;").collect::<Vec<_>>(), vec!["group:a", "initiator"]);
    }
}
