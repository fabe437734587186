//! Email templates (minijinja): `definitions/templates/NAME.txt` (plain text, required) and
//! `NAME.html` (optional; sent as the HTML alternative). A first line `Subject: …` (or
//! `Тема: …`) of the rendered text replaces the email task's subject.
//!
//! Files are read on every render, so an edited template takes effect for the next email
//! without a restart. HTML templates escape values automatically; text templates do not.
//!
//! Besides the variables, templates get two filters made for Russian letters:
//! `{{ due | date }}` (an RFC 3339 instant or a date → `31.12.2026 18:00` in the server's zone)
//! and `{{ n | plural("день", "дня", "дней") }}` (the Russian plural form for a number).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};

/// The rendered parts of an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// From a `Subject:` first line, when the template has one.
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
}

/// The template folder and the rendering environment.
#[derive(Debug)]
pub struct Templates {
    dir: PathBuf,
    env: Environment<'static>,
}

impl Templates {
    pub fn new(dir: impl Into<PathBuf>, tz: chrono_tz::Tz) -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        let syntax = SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build();
        env.set_syntax(syntax.expect("the default delimiters are valid"));
        env.add_filter("date", move |value: Value, format: Option<String>| format_date(&value, format.as_deref(), tz));
        env.add_filter("plural", plural);
        // minijinja's HTML escaping also turns `/` into `&#x2f;`, which makes every link in a
        // letter unreadable in its source; `&<>"'` are what HTML needs.
        env.set_formatter(|out, state, value| match (state.auto_escape(), value.as_str()) {
            (AutoEscape::Html, Some(text)) if !value.is_safe() => out
                .write_str(&escape_html(text))
                .map_err(|_| minijinja::Error::from(minijinja::ErrorKind::WriteFailure)),
            _ => minijinja::escape_formatter(out, state, value),
        });
        Templates { dir: dir.into(), env }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Renders template `name` (with or without `.txt`) with `context`.
    pub fn render(&self, name: &str, context: &Value) -> Result<Rendered, String> {
        if let Some(problem) = reglament_engine::parse::template_name_problem(name) {
            return Err(problem);
        }
        let base = name.strip_suffix(".txt").unwrap_or(name);
        let text_file = self.dir.join(format!("{base}.txt"));
        let source = std::fs::read_to_string(&text_file)
            .map_err(|e| format!("template {} cannot be read: {e}", text_file.display()))?;
        let text = self.render_str(&format!("{base}.txt"), &source, context)?;
        let (subject, text) = split_subject(&text);
        let html_file = self.dir.join(format!("{base}.html"));
        let html = match std::fs::read_to_string(&html_file) {
            Ok(source) => {
                let html = self.render_str(&format!("{base}.html"), &source, context)?;
                Some(split_subject(&html).1)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("template {} cannot be read: {e}", html_file.display())),
        };
        Ok(Rendered { subject, text, html })
    }

    /// Renders a short text (a `body` or `subject` header) as a template.
    pub fn render_str(&self, name: &str, source: &str, context: &Value) -> Result<String, String> {
        self.env.render_named_str(name, source, context.clone()).map_err(|e| {
            let mut message = format!("template {name}: {e}");
            if let Some(line) = e.line() {
                message = format!("template {name}, line {line}: {}", e.detail().unwrap_or(&e.to_string()));
            }
            message
        })
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Takes a `Subject:`/`Тема:` first line off a rendered text (and one blank line after it).
fn split_subject(text: &str) -> (Option<String>, String) {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let first = first.trim_end_matches('\r');
    let subject = ["Subject:", "subject:", "Тема:", "тема:"].iter().find_map(|p| first.strip_prefix(p));
    match subject {
        Some(s) => {
            let rest = rest.strip_prefix("\r\n").or_else(|| rest.strip_prefix('\n')).unwrap_or(rest);
            (Some(s.trim().to_string()).filter(|s| !s.is_empty()), rest.to_string())
        }
        None => (None, text.to_string()),
    }
}

/// `31.12.2026 18:00` for an instant (in `tz`), `31.12.2026` for a date; anything else as is.
fn format_date(value: &Value, format: Option<&str>, tz: chrono_tz::Tz) -> String {
    let Some(text) = value.as_str() else { return value.to_string() };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return t.with_timezone(&tz).format(format.unwrap_or("%d.%m.%Y %H:%M")).to_string();
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return d.format(format.unwrap_or("%d.%m.%Y")).to_string();
    }
    text.to_string()
}

/// The Russian plural form for `n`: `one` (1, 21, …), `few` (2–4, 22–24, …), `many` (the rest).
fn plural(n: Value, one: String, few: String, many: String) -> String {
    let n = i64::try_from(n).unwrap_or(0).unsigned_abs();
    let (last, last_two) = (n % 10, n % 100);
    if last == 1 && last_two != 11 {
        one
    } else if (2..=4).contains(&last) && !(12..=14).contains(&last_two) {
        few
    } else {
        many
    }
}

/// JSON variables as template values.
pub fn to_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::from(items.iter().map(to_value).collect::<Vec<_>>()),
        serde_json::Value::Object(map) => {
            Value::from(map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect::<BTreeMap<String, Value>>())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn templates(files: &[(&str, &str)]) -> (Templates, PathBuf) {
        let dir = std::env::temp_dir().join(format!("reglament-templates-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        (Templates::new(&dir, chrono_tz::Europe::Astrakhan), dir)
    }

    #[test]
    fn subject_line_text_and_html() {
        let (t, dir) = templates(&[
            ("notice.txt", "Subject: Заявка {{ n }} принята\n\nЗдравствуйте, {{ name }}!\n"),
            ("notice.html", "<p>Здравствуйте, {{ name }}!</p> <a href=\"{{ url }}\">ссылка</a>\n"),
        ]);
        let r = t
            .render(
                "notice",
                &to_value(&json!({"n": "REQ-1", "name": "Иван <b>", "url": "https://x.ru/a?b=1&c=\"2\""})),
            )
            .unwrap();
        assert_eq!(r.subject.as_deref(), Some("Заявка REQ-1 принята"));
        assert_eq!(r.text, "Здравствуйте, Иван <b>!");
        let html = "<p>Здравствуйте, Иван &lt;b&gt;!</p> <a href=\"https://x.ru/a?b=1&amp;c=&quot;2&quot;\">ссылка</a>";
        assert_eq!(r.html.as_deref(), Some(html));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn filters_for_russian_letters() {
        let (t, dir) = templates(&[(
            "f.txt",
            "{{ due | date }}; {{ day | date }}; {% for n in [1, 2, 5, 11, 22] %}{{ n }} {{ n | plural('день', 'дня', 'дней') }}, {% endfor %}",
        )]);
        let r = t.render("f", &to_value(&json!({"due": "2026-12-31T14:00:00Z", "day": "2027-01-11"}))).unwrap();
        assert_eq!(r.text, "31.12.2026 18:00; 11.01.2027; 1 день, 2 дня, 5 дней, 11 дней, 22 дня, ");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_names_and_missing_files_are_reported() {
        let (t, dir) = templates(&[("bad.txt", "{% if %}")]);
        assert!(t.render("../etc/passwd", &Value::from(())).unwrap_err().contains("is not a file name"));
        assert!(t.render("missing", &Value::from(())).unwrap_err().contains("missing.txt cannot be read"));
        assert!(t.render("bad", &Value::from(())).unwrap_err().contains("line 1"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
