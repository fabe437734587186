//! Input hygiene at the edge: identifiers, keys and variable names that reach the database,
//! logs, emails and pages are checked here, with the same answer on SQLite and PostgreSQL (which
//! refuses NUL in text): no control characters (NUL, CR, LF, …), no bidirectional overrides
//! that make a request number read differently than it is stored, and a length limit.

use super::error::{ApiError, FieldError};

/// Longest key, name or identifier accepted (characters).
pub const MAX_KEY_CHARS: usize = 255;

/// What is wrong with one text value, in Russian, or `None` when it is fine.
fn problem(value: &str, required: bool) -> Option<String> {
    if required && value.trim().is_empty() {
        return Some("значение не может быть пустым".into());
    }
    if value.chars().count() > MAX_KEY_CHARS {
        return Some(format!("длиннее {MAX_KEY_CHARS} символов"));
    }
    if let Some(c) = value.chars().find(|c| c.is_control() || is_bidi_control(*c)) {
        return Some(format!(
            "содержит недопустимый управляющий символ U+{:04X}; уберите его и повторите запрос",
            c as u32
        ));
    }
    None
}

/// Unicode bidirectional embedding, override and isolate controls (and the marks).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether a path id could name a stored row: ids are short and have no control characters.
pub fn plausible_id(id: &str) -> bool {
    problem(id, true).is_none()
}

/// Collects the problems of a request's keys and variable names; answers 422 naming each field.
#[derive(Debug, Default)]
pub struct Check {
    errors: Vec<FieldError>,
}

impl Check {
    /// A key or identifier (`required`: it may not be empty).
    pub fn key(mut self, field: &str, value: &str, required: bool) -> Check {
        if let Some(message) = problem(value, required) {
            self.errors.push(FieldError { field: Some(field.to_string()), message });
        }
        self
    }

    /// The names of a variables object (its values are data and are not restricted).
    pub fn variable_names(mut self, field: &str, vars: &serde_json::Map<String, serde_json::Value>) -> Check {
        for name in vars.keys() {
            if let Some(message) = problem(name, true) {
                self.errors.push(FieldError {
                    field: Some(format!("{field}.{}", name.escape_debug())),
                    message: format!("имя переменной {message}"),
                });
            }
        }
        self
    }

    pub fn done(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            return Ok(());
        }
        Err(ApiError::Validation {
            detail: "Недопустимые символы или длина в полях запроса".into(),
            errors: self.errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_values_pass() {
        let vars = serde_json::json!({"решение": "да", "amount": 5}).as_object().cloned().unwrap();
        assert!(
            Check::default().key("businessKey", "З-2026-777", false).variable_names("variables", &vars).done().is_ok()
        );
        assert!(Check::default().key("businessKey", "", false).done().is_ok());
    }

    #[test]
    fn control_bidi_long_and_empty_values_are_refused_per_field() {
        let vars = serde_json::json!({"a\nb": 1, "": 2}).as_object().cloned().unwrap();
        let Err(ApiError::Validation { errors, .. }) = Check::default()
            .key("businessKey", "REQ\u{0}1", false)
            .key("definitionKey", "", true)
            .key("correlationKey", "\u{202E}777", false)
            .key("name", &"я".repeat(MAX_KEY_CHARS + 1), true)
            .variable_names("variables", &vars)
            .done()
        else {
            panic!("refused")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.clone().unwrap()).collect();
        assert_eq!(fields, ["businessKey", "definitionKey", "correlationKey", "name", "variables.a\\nb", "variables."]);
        assert!(errors[0].message.contains("U+0000"), "{}", errors[0].message);
        assert!(errors[2].message.contains("U+202E"));
    }
}
