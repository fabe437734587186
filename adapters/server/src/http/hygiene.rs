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

/// A text filter of a query (`actor=`, `target=`, …): one that no stored value can equal
/// (control characters, too long) is refused with 400 rather than sent to the database.
pub fn query_filter(param: &str, value: Option<&str>) -> Result<(), ApiError> {
    match value.and_then(|v| problem(v, false)) {
        Some(message) => Err(ApiError::BadRequest(format!("Параметр запроса `{param}` {message}"))),
        None => Ok(()),
    }
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

    /// The names of a variables object, and its numbers: an integer is kept exactly when it
    /// fits 64 bits; a larger one (which JSON parsing would round to a float) is refused. A
    /// value nested deeper than the stored state can be read back with is refused too. Other
    /// values are data and are not restricted.
    pub fn variable_names(mut self, field: &str, vars: &serde_json::Map<String, serde_json::Value>) -> Check {
        for (name, value) in vars {
            let path = format!("{field}.{}", name.escape_debug());
            if let Some(message) = problem(name, true) {
                self.errors
                    .push(FieldError {
                        field: Some(path.clone()), message: format!("имя переменной {message}")
                    });
            }
            if nesting(value) > reglament_engine::feel::MAX_STORED_NESTING {
                self.errors.push(FieldError {
                    field: Some(path.clone()),
                    message: format!(
                        "значение вложено глубже {} уровней и не может быть сохранено; упростите его",
                        reglament_engine::feel::MAX_STORED_NESTING
                    ),
                });
            }
            if let Some(number) = inexact_integer(value) {
                self.errors.push(FieldError {
                    field: Some(path),
                    message: format!(
                        "целое число {number} больше 64 бит и не может быть сохранено точно; передайте его строкой"
                    ),
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

/// How deep lists and objects nest in `value` (a scalar is 0).
fn nesting(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0)];
    while let Some((v, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        match v {
            serde_json::Value::Array(items) => pending.extend(items.iter().map(|i| (i, depth + 1))),
            serde_json::Value::Object(map) => pending.extend(map.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    deepest
}

/// The first integer in `value` too large to be kept exactly: parsed as a float (beyond 64
/// bits), whole, and above 2^53, where floats skip integers.
fn inexact_integer(value: &serde_json::Value) -> Option<&serde_json::Number> {
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        match v {
            serde_json::Value::Number(n) if !n.is_i64() && !n.is_u64() => {
                if let Some(f) = n.as_f64()
                    && f.fract() == 0.0
                    && f.abs() > 9_007_199_254_740_992.0
                {
                    return Some(n);
                }
            }
            serde_json::Value::Array(items) => pending.extend(items),
            serde_json::Value::Object(map) => pending.extend(map.values()),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_kept_exactly_within_64_bits_and_refused_beyond() {
        let text = r#"{"max": 18446744073709551615, "min": -9223372036854775808, "odd": 9007199254740993,
            "half": 1.5, "list": [1, {"deep": 100000000000000000000}]}"#;
        let vars: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
        assert_eq!(vars["odd"].as_u64(), Some(9_007_199_254_740_993), "2^53 + 1 is exact");
        let Err(ApiError::Validation { errors, .. }) = Check::default().variable_names("variables", &vars).done()
        else {
            panic!("the 21-digit integer is refused");
        };
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field.as_deref(), Some("variables.list"));
        assert!(errors[0].message.contains("больше 64 бит"), "{}", errors[0].message);
    }

    #[test]
    fn values_nested_deeper_than_the_state_can_store_are_refused() {
        let deep = |levels: usize| format!("{{\"v\": {}1{}}}", "[".repeat(levels), "]".repeat(levels));
        let ok: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&deep(100)).unwrap();
        assert!(Check::default().variable_names("variables", &ok).done().is_ok());
        let too_deep: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&deep(101)).unwrap();
        assert!(Check::default().variable_names("variables", &too_deep).done().is_err());
    }

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
