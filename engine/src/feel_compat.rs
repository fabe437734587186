//! Camunda 8 FEEL on top of dsntk: the thin layer where DMN FEEL (dsntk) and the FEEL Camunda
//! documents differ.
//!
//! - Source: a line break inside a string literal is part of the string (the modeler writes
//!   them in multi-line fields), and a keyword directly followed by `(` (`if(a) then …`) reads as
//!   the keyword.
//! - Syntax tree, after parsing and before dsntk prepares it:
//!   - ordering comparisons (`<`, `<=`, `>`, `>=`, `between`) of date-times compare instants, as
//!     Camunda does: dsntk compares the wall-clock fields and gives null when the zones differ,
//!     so `now() > date and time("2026-03-02T04:00:00Z")` was false at 05:00Z. Each operand
//!     that is not a literal goes through [`INSTANT`], which turns a zoned date-time into the
//!     same instant in UTC and leaves every other value as it is;
//!   - calls of Camunda's extension functions that dsntk lacks (`is defined`, `get or else`,
//!     `trim`, `number(from)`, …) are bound to the functions of [`Extension`];
//!   - `random number()` becomes a reserved name bound from the evaluation's [`Clock`] seed.
//!
//! [`Clock`]: crate::feel::Clock

use dsntk_feel::context::FeelContext;
use dsntk_feel::values::Value as FeelValue;
use dsntk_feel::{FeelNumber, Name};
use dsntk_feel_parser::AstNode;
use dsntk_feel_temporal::{FeelDateTime, FeelZone};

/// The reserved name `random number()` is rewritten to.
pub const RANDOM_NAME: &str = "reglament_random";

/// The reserved name of the function that normalises date-times before an ordering comparison.
const INSTANT: &str = "reglament_instant";

/// Words of the extension functions' names that the identifier pre-scan must not take for
/// variables (so `random number()` parses as one name).
pub const EXTENSION_WORDS: &[&str] = &["random", "trim", "duplicate", "blank", "empty", "partition", "assert"];

/// The Camunda FEEL functions dsntk does not have (or has with other arities), bound by name
/// when an expression calls them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Extension {
    /// `is defined(value)`: false for null or a missing variable or entry (Camunda 8.4+).
    IsDefined,
    /// `get or else(value, default)`.
    GetOrElse,
    /// `assert(value, condition)`: the value when the condition is true, else a failure.
    Assert,
    /// `assert(value, condition, cause)`.
    AssertWithCause,
    /// `trim(string)`: without leading and trailing whitespace.
    Trim,
    /// `is blank(string)`: empty or whitespace only.
    IsBlank,
    /// `number(from)`: a number parsed from a string (dsntk only has the three-argument form).
    Number,
    /// `is empty(list)`.
    IsEmpty,
    /// `duplicate values(list)`: the values that occur more than once, each once.
    DuplicateValues,
    /// `partition(list, size)`: sublists of at most `size` items.
    Partition,
    /// `last day of month(date)`.
    LastDayOfMonth,
    /// The operand of an ordering comparison, date-times turned into UTC instants.
    Instant,
}

impl Extension {
    /// The extension called `name` with `arity` positional arguments, if any.
    fn called(name: &str, arity: usize) -> Option<Extension> {
        Some(match (name, arity) {
            ("is defined", 1) => Extension::IsDefined,
            ("get or else", 2) => Extension::GetOrElse,
            ("assert", 2) => Extension::Assert,
            ("assert", 3) => Extension::AssertWithCause,
            ("trim", 1) => Extension::Trim,
            ("is blank", 1) => Extension::IsBlank,
            ("number", 1) => Extension::Number,
            ("is empty", 1) => Extension::IsEmpty,
            ("duplicate values", 1) => Extension::DuplicateValues,
            ("partition", 2) => Extension::Partition,
            ("last day of month", 1) => Extension::LastDayOfMonth,
            _ => return None,
        })
    }

    /// The name the function is bound to in the evaluation scope: reserved, so it can neither
    /// shadow a dsntk built-in of another arity nor be shadowed by a variable.
    fn binding(self) -> &'static str {
        match self {
            Extension::IsDefined => "reglament_is_defined",
            Extension::GetOrElse => "reglament_get_or_else",
            Extension::Assert => "reglament_assert",
            Extension::AssertWithCause => "reglament_assert_with_cause",
            Extension::Trim => "reglament_trim",
            Extension::IsBlank => "reglament_is_blank",
            Extension::Number => "reglament_number",
            Extension::IsEmpty => "reglament_is_empty",
            Extension::DuplicateValues => "reglament_duplicate_values",
            Extension::Partition => "reglament_partition",
            Extension::LastDayOfMonth => "reglament_last_day_of_month",
            Extension::Instant => INSTANT,
        }
    }

    fn arity(self) -> usize {
        match self {
            Extension::IsDefined
            | Extension::Trim
            | Extension::IsBlank
            | Extension::Number
            | Extension::IsEmpty
            | Extension::DuplicateValues
            | Extension::LastDayOfMonth
            | Extension::Instant => 1,
            Extension::GetOrElse | Extension::Assert | Extension::Partition => 2,
            Extension::AssertWithCause => 3,
        }
    }

    fn apply(self, args: &[FeelValue]) -> FeelValue {
        let null = || FeelValue::Null(None);
        match (self, args) {
            (Extension::IsDefined, [v]) => FeelValue::Boolean(!matches!(v, FeelValue::Null(_))),
            (Extension::GetOrElse, [v, default]) => match v {
                FeelValue::Null(_) => default.clone(),
                v => v.clone(),
            },
            (Extension::Assert, [v, condition]) => match condition {
                FeelValue::Boolean(true) => v.clone(),
                _ => FeelValue::Null(Some("[core::assert] the assertion failed".into())),
            },
            (Extension::AssertWithCause, [v, condition, cause]) => match (condition, cause) {
                (FeelValue::Boolean(true), _) => v.clone(),
                (_, FeelValue::String(cause)) => FeelValue::Null(Some(format!("[core::assert] {cause}"))),
                (_, _) => FeelValue::Null(Some("[core::assert] the assertion failed".into())),
            },
            (Extension::Trim, [FeelValue::String(s)]) => FeelValue::String(s.trim().to_string()),
            (Extension::IsBlank, [FeelValue::String(s)]) => FeelValue::Boolean(s.trim().is_empty()),
            (Extension::Number, [FeelValue::String(s)]) => match s.trim().parse::<FeelNumber>() {
                Ok(n) if !s.trim().is_empty() => FeelValue::Number(n),
                _ => null(),
            },
            (Extension::Number, [FeelValue::Number(n)]) => FeelValue::Number(*n),
            (Extension::IsEmpty, [FeelValue::List(items)]) => FeelValue::Boolean(items.is_empty()),
            (Extension::DuplicateValues, [FeelValue::List(items)]) => {
                let mut out: Vec<FeelValue> = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) && !out.contains(item) {
                        out.push(item.clone());
                    }
                }
                FeelValue::List(out)
            }
            (Extension::Partition, [FeelValue::List(items), FeelValue::Number(size)]) => {
                match size.to_string().parse::<usize>() {
                    Ok(size) if size > 0 => {
                        FeelValue::List(items.chunks(size).map(|c| FeelValue::List(c.to_vec())).collect())
                    }
                    _ => null(),
                }
            }
            (Extension::LastDayOfMonth, [v]) => {
                let date = match v {
                    FeelValue::Date(d) => d.to_string(),
                    FeelValue::DateTime(d) => d.date().to_string(),
                    _ => return null(),
                };
                match chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d") {
                    Ok(d) => {
                        let first_of_next = d
                            .with_day(1)
                            .and_then(|d| d.checked_add_months(chrono::Months::new(1)))
                            .and_then(|d| d.pred_opt());
                        match first_of_next.and_then(|last| last.format("%Y-%m-%d").to_string().parse().ok()) {
                            Some(last) => FeelValue::Date(last),
                            None => null(),
                        }
                    }
                    Err(_) => null(),
                }
            }
            (Extension::Instant, [FeelValue::DateTime(dt)]) => FeelValue::DateTime(instant(dt)),
            (Extension::Instant, [v]) => v.clone(),
            (_, _) => null(),
        }
    }

    /// The function as a FEEL value, to bind under [`Extension::binding`].
    fn value(self) -> FeelValue {
        crate::feel_budget::rust_function(self.arity(), move |_, args| self.apply(&args))
    }
}

use chrono::Datelike;

/// A zoned date-time as the same instant in UTC; a local one (no zone) as it is.
fn instant(dt: &FeelDateTime) -> FeelDateTime {
    if matches!(dt.time().zone(), FeelZone::Local | FeelZone::Utc) {
        return dt.clone();
    }
    let Ok(fixed) = chrono::DateTime::<chrono::FixedOffset>::try_from(dt.clone()) else {
        return dt.clone();
    };
    let utc = fixed.with_timezone(&chrono::Utc);
    use chrono::Timelike;
    FeelDateTime::utc(
        utc.year(),
        utc.month(),
        utc.day(),
        utc.hour() as u8,
        utc.minute() as u8,
        utc.second() as u8,
        u64::from(utc.nanosecond()),
    )
    .unwrap_or_else(|| dt.clone())
}

/// What a rewritten expression needs bound when it runs.
#[derive(Debug, Clone, Default)]
pub struct Needs {
    pub extensions: Vec<Extension>,
    pub random: bool,
}

impl Needs {
    /// Binds the extension functions the expression calls.
    pub fn bind(&self, ctx: &mut FeelContext) {
        for ext in &self.extensions {
            ctx.set_entry(&Name::from(ext.binding()), ext.value());
        }
    }
}

/// Line breaks inside string literals as escapes; a keyword directly followed by `(` spaced.
pub fn normalise_source(body: &str) -> String {
    const SPACED: &[&str] = &["if", "then", "else", "and", "or", "return", "in", "satisfies"];
    let mut out = String::with_capacity(body.len() + 8);
    let mut in_string = false;
    let mut chars = body.chars().peekable();
    let mut word = String::new();
    let mut words: Vec<String> = Vec::new();
    while let Some(c) = chars.next() {
        if in_string {
            match c {
                '\\' => {
                    out.push(c);
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                }
                '"' => {
                    in_string = false;
                    out.push(c);
                }
                '\n' => out.push_str("\\n"),
                '\r' if chars.peek() == Some(&'\n') => {}
                '\r' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            out.push(c);
            continue;
        }
        if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c == '(' {
            let last = words.last().map(String::as_str);
            // `get or else(` is a function name, not the keyword `else`.
            let function_name = last == Some("else")
                && words.len() >= 3
                && words[words.len() - 2] == "or"
                && words[words.len() - 3] == "get";
            if let Some(last) = last
                && SPACED.contains(&last)
                && !function_name
                && out.ends_with(last)
            {
                out.push(' ');
            }
        }
        if !c.is_whitespace() {
            words.clear();
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

/// Rewrites the syntax tree for Camunda's semantics (see the module documentation) and says
/// what the evaluation must bind.
pub fn rewrite(node: &mut AstNode) -> Needs {
    let mut needs = Needs::default();
    walk(node, &mut needs);
    needs.extensions.sort();
    needs.extensions.dedup();
    needs
}

fn is_literal(node: &AstNode) -> bool {
    matches!(node, AstNode::Numeric(..) | AstNode::String(_) | AstNode::Boolean(_) | AstNode::Null)
}

/// Wraps a comparison operand into a call of [`INSTANT`], unless it is a literal (never a
/// date-time).
fn wrap_instant(node: &mut Box<AstNode>, needs: &mut Needs) {
    if is_literal(node) {
        return;
    }
    let inner = std::mem::replace(node.as_mut(), AstNode::Null);
    **node = AstNode::FunctionInvocation(
        Box::new(AstNode::Name(Name::from(INSTANT))),
        Box::new(AstNode::PositionalParameters(vec![inner])),
    );
    needs.extensions.push(Extension::Instant);
}

fn walk(node: &mut AstNode, needs: &mut Needs) {
    // Calls of extension functions and of `random number()`.
    if let AstNode::FunctionInvocation(function, params) = node
        && let AstNode::Name(name) = function.as_ref()
        && let AstNode::PositionalParameters(args) = params.as_ref()
    {
        let name = name.to_string();
        if name == "random number" && args.is_empty() {
            needs.random = true;
            *node = AstNode::Name(Name::from(RANDOM_NAME));
            return;
        }
        if let Some(ext) = Extension::called(&name, args.len()) {
            needs.extensions.push(ext);
            **function = AstNode::Name(Name::from(ext.binding()));
        }
    }
    for child in crate::feel_budget::children(node) {
        walk(child, needs);
    }
    match node {
        AstNode::Lt(a, b) | AstNode::Le(a, b) | AstNode::Gt(a, b) | AstNode::Ge(a, b)
            if !(is_literal(a) && is_literal(b)) =>
        {
            wrap_instant(a, needs);
            wrap_instant(b, needs);
        }
        AstNode::Between(a, b, c) => {
            wrap_instant(a, needs);
            wrap_instant(b, needs);
            wrap_instant(c, needs);
        }
        _ => {}
    }
}

/// A pseudo-random number in [0, 1) from a seed: splitmix64, 53 bits.
pub fn random_number(seed: u64) -> FeelValue {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let fraction = (z >> 11) as f64 / (1u64 << 53) as f64;
    match format!("{fraction}").parse::<FeelNumber>() {
        Ok(n) => FeelValue::Number(n),
        Err(_) => FeelValue::Null(None),
    }
}

/// FNV-1a over bytes, to mix an expression's text into a seed.
pub fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    h
}
