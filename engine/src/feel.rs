//! FEEL expressions, parsed and evaluated with DecisionToolkit's dsntk crates.
//!
//! Camunda 8 writes expressions with a leading `=` and never uses names with spaces; DMN FEEL
//! (which dsntk implements) allows spaces in names and resolves them against the names in scope.
//! To read Zeebe-style expressions unambiguously we pre-scan the expression for identifiers and
//! put each one into the parsing scope, so `if x then 1 else 2` parses as Zeebe means it. Words of
//! the multi-word built-in functions (`date and time`, `string length`, …) are left out of the
//! scope so those functions still resolve.
//!
//! Variables are JSON values ([`serde_json::Value`]); only the root names an expression mentions
//! are converted into FEEL values when it runs.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use dsntk_feel::context::FeelContext;
use dsntk_feel::values::Value as FeelValue;
use dsntk_feel::{FeelNumber, FeelScope, Name};
use serde_json::{Map, Value as Json};

use crate::diagnostics::Pos;
use crate::feel_budget::{self, Hooks};
use crate::feel_compat;

pub use crate::feel_budget::{Budget, Interrupt, Limits, MAX_STORED_NESTING, Overrun};

/// Variables visible to an expression.
pub type Vars = Map<String, Json>;

/// A compiled FEEL expression with its source and where it was written.
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    pub pos: Pos,
    names: Arc<[String]>,
    /// The variables named when an evaluation fails or gives null: `names` without the words
    /// of built-in functions, names the expression binds itself (`for x in`, context keys) and
    /// the implicit `item` of a filter.
    reported: Arc<[String]>,
    evaluator: Arc<dsntk_feel::Evaluator>,
    /// The expression calls `now()`, `today()` or `random number()`, which read the clock given
    /// to the evaluation.
    uses_clock: bool,
    /// Camunda's extension functions and `random number()`, bound when it runs.
    needs: Arc<feel_compat::Needs>,
    /// The budget's functions put into the tree ([`feel_budget::instrument`]), bound when it runs.
    hooks: Arc<Hooks>,
    /// The nesting depth of the syntax tree: where an evaluation's depth starts.
    nesting: u64,
}

/// The time an expression is evaluated at, for `now()` and `today()`. The engine never lets
/// dsntk read the system clock: those calls are rewritten to names bound from this.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: chrono::DateTime<chrono::Utc>,
    pub tz: chrono_tz::Tz,
    /// The seed of `random number()`, given by the host of the evaluation (the executor derives
    /// it from the instance, the command's time and its key counter), mixed with the
    /// expression's text: the same evaluation always gives the same number, and a replay
    /// reproduces it.
    pub seed: u64,
}

const NOW_NAME: &str = "reglament_now";
const TODAY_NAME: &str = "reglament_today";

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Why an expression could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub message: String,
}

/// Why an expression failed when it ran (becomes an incident).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub message: String,
}

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "if",
    "then",
    "else",
    "for",
    "in",
    "return",
    "some",
    "every",
    "satisfies",
    "between",
    "instance",
    "of",
    "function",
    "null",
    "true",
    "false",
    "external",
];

/// Words that are part of multi-word built-in function names.
const BUILTIN_WORDS: &[&str] = &[
    "date",
    "time",
    "years",
    "months",
    "duration",
    "days",
    "string",
    "length",
    "upper",
    "lower",
    "case",
    "substring",
    "before",
    "after",
    "starts",
    "ends",
    "with",
    "list",
    "contains",
    "insert",
    "index",
    "distinct",
    "values",
    "get",
    "value",
    "entries",
    "day",
    "week",
    "year",
    "month",
    "is",
    "defined",
    "replace",
    "remove",
    "append",
    "reverse",
    "flatten",
    "sort",
    "matches",
    "split",
    "join",
    "context",
    "put",
    "merge",
    "abs",
    "modulo",
    "sqrt",
    "log",
    "exp",
    "odd",
    "even",
    "floor",
    "ceiling",
    "decimal",
    "number",
    "count",
    "min",
    "max",
    "sum",
    "mean",
    "median",
    "stddev",
    "mode",
    "all",
    "any",
    "sublist",
    "concatenate",
    "union",
    "product",
    "now",
    "today",
    "range",
    "overlaps",
    "meets",
    "met",
    "by",
    "overlapped",
    "finishes",
    "finished",
    "includes",
    "during",
    "starts",
    "started",
    "coincides",
    "round",
    "up",
    "down",
    "half",
    "last",
    "first",
];

/// A word of a built-in or extension function's name, never a variable.
fn is_function_word(word: &str) -> bool {
    BUILTIN_WORDS.contains(&word) || feel_compat::EXTENSION_WORDS.contains(&word)
}

/// The most operators, brackets and operator keywords an expression may have. Parsing,
/// preparing and evaluating a FEEL expression recurse once per nesting level, and the number of
/// these tokens bounds the nesting, so this bounds the stack an expression needs: 2,000 levels fit
/// well inside the hosts' engine threads (64 MiB), while a 20,000-term sum would not.
pub const MAX_NESTING: usize = 2_000;

/// Keywords that are values, not operators.
const LITERAL_WORDS: &[&str] = &["null", "true", "false"];

/// An upper bound on the nesting depth of an expression's syntax tree, counted without parsing:
/// operator characters, opening brackets and the keywords that build nodes, outside string
/// literals.
fn nesting_bound(body: &str) -> usize {
    let mut count = 0;
    let mut chars = body.chars();
    let mut word = String::new();
    let flush = |word: &mut String, count: &mut usize| {
        // Keywords build syntax nodes; the literals among them do not.
        if KEYWORDS.contains(&word.as_str()) && !LITERAL_WORDS.contains(&word.as_str()) {
            *count += 1;
        }
        word.clear();
    };
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut count);
        match c {
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '+' | '-' | '*' | '/' | '<' | '>' | '=' | '!' | '(' | '[' | '{' | '.' => count += 1,
            _ => {}
        }
    }
    flush(&mut word, &mut count);
    count
}

impl Expr {
    /// Compiles `source` (with or without Zeebe's leading `=`).
    pub fn compile(source: &str, pos: Pos) -> Result<Expr, ExprError> {
        let body = source.trim();
        let body = body.strip_prefix('=').unwrap_or(body).trim();
        if body.is_empty() {
            return Err(ExprError { message: "empty expression".into() });
        }
        let nesting = nesting_bound(body);
        if nesting > MAX_NESTING {
            return Err(ExprError {
                message: format!(
                    "the expression is too deep to evaluate safely: {nesting} operators and brackets, at most {MAX_NESTING}; split it into several script tasks or input mappings"
                ),
            });
        }
        let normalised = feel_compat::normalise_source(body);
        let rewritten = rewrite_clock_calls(&normalised);
        let mut uses_clock = rewritten != normalised;
        let body = rewritten.as_str();
        let idents = identifiers(body);
        let mut ctx = FeelContext::default();
        for (name, _) in &idents {
            if !KEYWORDS.contains(&name.as_str()) && !is_function_word(name) {
                ctx.set_entry(&Name::from(name.as_str()), FeelValue::Null(None));
            }
        }
        let scope: FeelScope = ctx.into();
        let mut ast = dsntk_feel_parser::parse_expression(&scope, body, false).map_err(|e| {
            // DMN FEEL allows spaces in names; Camunda 8 does not, and neither do we. If the
            // expression only parses with spaces in names, say so instead of "syntax error".
            let greedy = dsntk_feel_parser::parse_expression(&FeelScope::default(), body, false);
            let message = match greedy {
                Ok(_) => format!(
                    "FEEL names cannot contain spaces (as in Camunda 8): `{body}`; rename the variables without spaces, e.g. camelCase"
                ),
                Err(_) => clean_dsntk_message(&e.to_string()),
            };
            ExprError { message }
        })?;
        let needs = feel_compat::rewrite(&mut ast);
        uses_clock |= needs.random;
        let nesting = feel_budget::nesting(&mut ast) as u64;
        let hooks = feel_budget::instrument(&mut ast);
        let evaluator = dsntk_feel_evaluator::prepare(&ast);
        // Words after a dot are path segments (`a.b`), and words before `(` name functions:
        // neither is a variable to look up.
        let calls: BTreeSet<String> = function_names(body);
        let names: Vec<String> = idents
            .into_iter()
            .filter(|(n, after_dot)| !after_dot && !KEYWORDS.contains(&n.as_str()) && !calls.contains(n))
            .map(|(n, _)| n)
            .collect();
        let bound = bound_names(body);
        let reported: Vec<String> = names
            .iter()
            .filter(|n| {
                let implicit_item = n.as_str() == "item" && body.contains('[');
                !(is_function_word(n) || n.starts_with("reglament_") || bound.contains(n.as_str()) || implicit_item)
            })
            .cloned()
            .collect();
        Ok(Expr {
            source: Arc::from(source.trim()),
            pos,
            names: names.into(),
            reported: reported.into(),
            evaluator: Arc::new(evaluator),
            uses_clock,
            needs: Arc::new(needs),
            hooks: Arc::new(hooks),
            nesting,
        })
    }

    /// The FEEL string literal of a static value (`GET` is `="GET"`).
    pub fn string_literal(text: &str, pos: Pos) -> Option<Expr> {
        let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
        Expr::compile(&format!("=\"{escaped}\""), pos).ok()
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The variables the expression reads (root names; not built-in function words nor names
    /// it binds itself).
    pub fn variables(&self) -> &[String] {
        &self.reported
    }

    pub fn uses_clock(&self) -> bool {
        self.uses_clock
    }

    /// Evaluates with the given variables looked up by `lookup` (innermost scope first).
    pub fn eval_with(&self, lookup: &dyn Fn(&str) -> Option<Json>) -> Result<Json, EvalError> {
        self.eval_at(lookup, None)
    }

    /// Evaluates at a given time: `now()` and `today()` answer from `clock`; with a budget of
    /// its own ([`Limits::default`]).
    pub fn eval_at(&self, lookup: &dyn Fn(&str) -> Option<Json>, clock: Option<Clock>) -> Result<Json, EvalError> {
        self.eval_in(lookup, clock, &Budget::default())
    }

    /// Evaluates at a given time within `budget`, which the evaluations of one command share.
    pub fn eval_in(
        &self,
        lookup: &dyn Fn(&str) -> Option<Json>,
        clock: Option<Clock>,
        budget: &Budget,
    ) -> Result<Json, EvalError> {
        let value = self.eval_raw(lookup, clock, budget)?;
        if feel_budget::value_nesting(&value, feel_budget::MAX_STORED_NESTING) > feel_budget::MAX_STORED_NESTING {
            return Err(EvalError {
                message: format!(
                    "`{}`: the result nests lists or contexts more than {} levels deep, which cannot be stored as a variable",
                    self.source,
                    feel_budget::MAX_STORED_NESTING
                ),
            });
        }
        to_json(&value).map_err(|e| self.conversion_error(lookup, e))
    }

    /// The error of an evaluation stopped by its budget.
    fn overrun_error(&self, overrun: Overrun) -> EvalError {
        EvalError { message: format!("`{}`: {overrun}", self.source) }
    }

    /// Why evaluating failed, for people: the referenced variables that are not set or null
    /// when there are any (the usual cause), else what FEEL reported, in words.
    fn conversion_error(&self, lookup: &dyn Fn(&str) -> Option<Json>, e: ToJsonError) -> EvalError {
        let message = match e {
            ToJsonError::Failed(reason) => match self.unset_variables(lookup) {
                Some(unset) => format!("`{}`: {unset}", self.source),
                None => format!("`{}`: {}", self.source, describe_failure(&reason)),
            },
            ToJsonError::NotStorable(message) => format!("`{}`: {message}", self.source),
        };
        EvalError { message }
    }

    /// The variables the expression reads that are not set or are null, in words ("variable
    /// `amount` is not set"), or `None` when all have values.
    pub fn unset_variables(&self, lookup: &dyn Fn(&str) -> Option<Json>) -> Option<String> {
        let (missing, null) = self.unset_names(lookup);
        describe_unset(&missing, &null)
    }

    /// The variables the expression reads that are not set, and those that are null.
    pub fn unset_names(&self, lookup: &dyn Fn(&str) -> Option<Json>) -> (Vec<String>, Vec<String>) {
        let mut missing = Vec::new();
        let mut null = Vec::new();
        for name in self.reported.iter() {
            match lookup(name) {
                None => missing.push(name.clone()),
                Some(Json::Null) => null.push(name.clone()),
                Some(_) => {}
            }
        }
        (missing, null)
    }

    /// "`=x` is null", with the referenced variables that are not set or null: for a result
    /// that is null where a value is needed.
    pub fn null_message(&self, lookup: &dyn Fn(&str) -> Option<Json>) -> String {
        match self.unset_variables(lookup) {
            Some(unset) => format!("`{}` is null: {unset}", self.source),
            None => format!("`{}` is null", self.source),
        }
    }

    fn eval_raw(
        &self,
        lookup: &dyn Fn(&str) -> Option<Json>,
        clock: Option<Clock>,
        budget: &Budget,
    ) -> Result<FeelValue, EvalError> {
        budget.begin(self.nesting).map_err(|o| self.overrun_error(o))?;
        let mut ctx = FeelContext::default();
        for name in self.names.iter() {
            // As in Camunda 8, a variable that does not exist is null, not an error.
            let value = lookup(name).map(|v| json_to_feel(&v)).unwrap_or(FeelValue::Null(None));
            ctx.set_entry(&Name::from(name.as_str()), value);
        }
        if self.uses_clock {
            let Some(clock) = clock else {
                return Err(EvalError {
                    message: format!(
                        "`{}` calls now(), today() or random number(), which are not available here",
                        self.source
                    ),
                });
            };
            let local = clock.now.with_timezone(&clock.tz);
            let stamp = format!("{}@{}", local.format("%Y-%m-%dT%H:%M:%S"), clock.tz.name());
            let now = dsntk_feel_temporal::FeelDateTime::try_from(stamp.as_str())
                .map_err(|e| EvalError { message: format!("now(): {e}") })?;
            let today = local
                .format("%Y-%m-%d")
                .to_string()
                .parse::<dsntk_feel_temporal::FeelDate>()
                .map_err(|e| EvalError { message: format!("today(): {e}") })?;
            ctx.set_entry(&Name::from(NOW_NAME), FeelValue::DateTime(now));
            ctx.set_entry(&Name::from(TODAY_NAME), FeelValue::Date(today));
            if self.needs.random {
                let seed = feel_compat::fnv1a(self.source.as_bytes(), clock.seed);
                ctx.set_entry(&Name::from(feel_compat::RANDOM_NAME), feel_compat::random_number(seed));
            }
        }
        self.needs.bind(&mut ctx);
        self.hooks.bind(&mut ctx, budget);
        let scope: FeelScope = ctx.into();
        let value = feel_budget::catch(|| (self.evaluator)(&scope)).map_err(|o| self.overrun_error(o))?;
        budget.check_size(&value).map_err(|o| self.overrun_error(o))?;
        Ok(value)
    }

    pub fn eval(&self, vars: &Vars) -> Result<Json, EvalError> {
        self.eval_with(&|name| vars.get(name).cloned())
    }

    /// Evaluates a condition; anything but `true` or `false` is an error, as in Zeebe.
    pub fn eval_bool_with(&self, lookup: &dyn Fn(&str) -> Option<Json>) -> Result<bool, EvalError> {
        self.eval_bool_at(lookup, None)
    }

    /// [`Expr::eval_bool_with`] at a given time.
    pub fn eval_bool_at(&self, lookup: &dyn Fn(&str) -> Option<Json>, clock: Option<Clock>) -> Result<bool, EvalError> {
        self.eval_bool_in(lookup, clock, &Budget::default())
    }

    /// [`Expr::eval_bool_at`] within `budget`.
    pub fn eval_bool_in(
        &self,
        lookup: &dyn Fn(&str) -> Option<Json>,
        clock: Option<Clock>,
        budget: &Budget,
    ) -> Result<bool, EvalError> {
        // A condition that comes out null (e.g. it compares a variable that does not exist)
        // is false, as in Camunda 8: the flow is not taken.
        match self.eval_raw(lookup, clock, budget)? {
            FeelValue::Boolean(b) => Ok(b),
            FeelValue::Null(_) => Ok(false),
            other => match to_json(&other) {
                Ok(json) => {
                    Err(EvalError { message: format!("`{}` gave {json}, expected true or false", self.source) })
                }
                Err(e) => Err(self.conversion_error(lookup, e)),
            },
        }
    }
}

fn clean_dsntk_message(message: &str) -> String {
    let message = message.trim_start_matches("<ParserError> ").trim_start_matches("<LexerError> ");
    if let Some(rest) = message.strip_prefix("syntax error: ") {
        format!("FEEL syntax error in `{rest}`")
    } else {
        format!("FEEL: {message}")
    }
}

/// Replaces calls `now()` and `today()` (outside string literals) by reserved names.
fn rewrite_clock_calls(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    let mut in_string = false;
    let mut after_name_char = false;
    while let Some(ch) = rest.chars().next() {
        if in_string {
            out.push(ch);
            rest = &rest[ch.len_utf8()..];
            if ch == '\\' {
                if let Some(next) = rest.chars().next() {
                    out.push(next);
                    rest = &rest[next.len_utf8()..];
                }
            } else if ch == '"' {
                in_string = false;
            }
            continue;
        }
        if ch == '"' {
            in_string = true;
        } else if !after_name_char && let Some((name, after)) = clock_call(rest) {
            out.push_str(name);
            rest = after;
            after_name_char = false;
            continue;
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
        after_name_char = ch.is_alphanumeric() || ch == '_';
    }
    out
}

/// `now()` or `today()` at the start of `s`: the reserved name and the text after the call.
fn clock_call(s: &str) -> Option<(&'static str, &str)> {
    for (call, name) in [("now", NOW_NAME), ("today", TODAY_NAME)] {
        if let Some(after) = s.strip_prefix(call) {
            if after.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                return None;
            }
            let after = after.trim_start().strip_prefix('(')?.trim_start().strip_prefix(')')?;
            return Some((name, after));
        }
    }
    None
}

/// Words directly followed by `(` (function calls), outside string literals.
fn function_names(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut word = String::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut last_word = String::new();
    for c in source.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            last_word = std::mem::take(&mut word);
        }
        if c == '(' && !last_word.is_empty() {
            out.insert(std::mem::take(&mut last_word));
        } else if !c.is_whitespace() {
            last_word.clear();
        }
        if c == '"' {
            in_string = true;
        }
    }
    out
}

/// The identifiers in an expression, outside string literals, in order of first appearance,
/// each with whether it follows a dot (a path segment such as `b` in `a.b`).
fn identifiers(source: &str) -> Vec<(String, bool)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut chars = source.char_indices().peekable();
    let mut after_dot = false;
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            let mut escaped = false;
            for (_, c) in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    break;
                }
            }
            after_dot = false;
        } else if c.is_alphabetic() || c == '_' || c == '?' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &source[i..end];
            if seen.insert((word.to_string(), after_dot)) {
                out.push((word.to_string(), after_dot));
            }
            after_dot = false;
        } else if c == '.' && chars.peek().is_some_and(|&(_, d)| d == '.') {
            // `1..n`: a range, not a path; the name after it is a variable.
            chars.next();
            after_dot = false;
        } else if c == '.' {
            after_dot = true;
        } else if !c.is_whitespace() {
            after_dot = false;
        }
    }
    out
}

/// Names an expression binds itself: iteration variables (`for x in`, `some x in`,
/// `every x in`) and the keys of context literals (`{total: …}`).
fn bound_names(source: &str) -> BTreeSet<String> {
    let mut bound = BTreeSet::new();
    let mut previous: Option<String> = None;
    let mut chars = source.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            let mut escaped = false;
            for (_, c) in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    break;
                }
            }
            previous = None;
        } else if c.is_alphabetic() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &source[i..end];
            let next = source[end..].trim_start().chars().next();
            if matches!(previous.as_deref(), Some("for" | "some" | "every")) || next == Some(':') {
                bound.insert(word.to_string());
            }
            previous = Some(word.to_string());
        } else if !c.is_whitespace() {
            previous = None;
        }
    }
    bound
}

/// Variables not set and variables that are null, in words: "variable `a` is not set",
/// "variables `a` and `b` are not set; variable `c` is null"; `None` when there are none.
pub fn describe_unset(missing: &[String], null: &[String]) -> Option<String> {
    let phrase = |names: &[String], what: &str| -> Option<String> {
        let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        match quoted.as_slice() {
            [] => None,
            [one] => Some(format!("variable {one} is {what}")),
            [init @ .., last] => Some(format!("variables {} and {last} are {what}", init.join(", "))),
        }
    };
    let parts: Vec<String> = [phrase(missing, "not set"), phrase(null, "null")].into_iter().flatten().collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Converts a JSON value into a FEEL value.
pub fn json_to_feel(value: &Json) -> FeelValue {
    match value {
        Json::Null => FeelValue::Null(None),
        Json::Bool(b) => FeelValue::Boolean(*b),
        Json::Number(n) => match n.to_string().parse::<FeelNumber>() {
            Ok(num) => FeelValue::Number(num),
            Err(_) => FeelValue::Null(Some(format!("number {n} out of range"))),
        },
        Json::String(s) => FeelValue::String(s.clone()),
        Json::Array(items) => FeelValue::List(items.iter().map(json_to_feel).collect()),
        Json::Object(map) => {
            let mut ctx = FeelContext::default();
            for (k, v) in map {
                ctx.set_entry(&Name::from(k.as_str()), json_to_feel(v));
            }
            FeelValue::Context(ctx)
        }
    }
}

/// Converts a FEEL value back into JSON. Temporal values become their ISO 8601 strings.
pub fn feel_to_json(value: &FeelValue) -> Result<Json, String> {
    to_json(value).map_err(|e| match e {
        ToJsonError::Failed(reason) => describe_failure(&reason),
        ToJsonError::NotStorable(message) => message,
    })
}

/// Why a FEEL value has no JSON form.
enum ToJsonError {
    /// The evaluation failed: dsntk's reason.
    Failed(String),
    /// A value (a function, a range) that cannot be a variable.
    NotStorable(String),
}

fn to_json(value: &FeelValue) -> Result<Json, ToJsonError> {
    Ok(match value {
        FeelValue::Null(None) => Json::Null,
        FeelValue::Null(Some(reason)) => return Err(ToJsonError::Failed(reason.clone())),
        FeelValue::Boolean(b) => Json::Bool(*b),
        FeelValue::Number(n) => number_to_json(n),
        FeelValue::String(s) => Json::String(s.clone()),
        FeelValue::List(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        FeelValue::Context(ctx) => {
            let mut map = Map::new();
            for (k, v) in ctx.iter() {
                map.insert(k.to_string(), to_json(v)?);
            }
            Json::Object(map)
        }
        FeelValue::Date(d) => Json::String(d.to_string()),
        FeelValue::DateTime(d) => Json::String(d.to_string()),
        FeelValue::Time(t) => Json::String(t.to_string()),
        FeelValue::DaysAndTimeDuration(d) => Json::String(d.to_string()),
        FeelValue::YearsAndMonthsDuration(d) => Json::String(d.to_string()),
        other => {
            return Err(ToJsonError::NotStorable(format!(
                "value of type {} cannot be stored as a variable",
                other.type_of()
            )));
        }
    })
}

/// dsntk's reason for a failed evaluation, in words. Its reasons are internal names
/// (`eval_greater_then`), a bare function name (`duration`) or `[module::function] text`.
fn describe_failure(reason: &str) -> String {
    let reason = reason.trim();
    if let Some(op) = reason.strip_prefix("eval_") {
        let operator = [
            ("greater_or_equal", ">="),
            ("greater_then", ">"),
            ("greater", ">"),
            ("less_or_equal", "<="),
            ("less_then", "<"),
            ("less", "<"),
            ("in_unary_greater_or_equal", ">="),
            ("in_unary_greater", ">"),
            ("in_unary_less_or_equal", "<="),
            ("in_unary_less", "<"),
            ("in_range", "a range test"),
        ]
        .iter()
        .find(|(prefix, _)| op.starts_with(prefix))
        .map(|(_, operator)| *operator);
        return match operator {
            Some("a range test") => "the value cannot be tested against the range (different types, or null)".into(),
            Some(operator) => format!("the two sides of `{operator}` cannot be compared (different types, or null)"),
            None => format!("the expression cannot be evaluated ({reason})"),
        };
    }
    if let Some(rest) = reason.strip_prefix('[')
        && let Some((place, text)) = rest.split_once("] ")
    {
        return match place.strip_prefix("core::") {
            Some(function) => format!("{function}(): {text}"),
            None => text.to_string(),
        };
    }
    // A bare function name: the function refused its arguments.
    if reason.chars().next().is_some_and(char::is_lowercase) && reason.chars().all(|c| c.is_alphanumeric() || c == '_')
    {
        return format!("{reason}() was given an argument it cannot use (of the wrong type, null or badly formed)");
    }
    reason.to_string()
}

fn number_to_json(n: &FeelNumber) -> Json {
    let text = n.to_string();
    if n.is_integer() {
        // Exact within 64 bits, signed or not.
        if let Ok(i) = text.parse::<i64>() {
            return Json::from(i);
        }
        if let Ok(u) = text.parse::<u64>() {
            return Json::from(u);
        }
    }
    text.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Json::Number).unwrap_or(Json::String(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Json) -> Vars {
        v.as_object().unwrap().clone()
    }

    fn eval(src: &str, v: Json) -> Json {
        Expr::compile(src, Pos::default()).unwrap().eval(&vars(v)).unwrap()
    }

    #[test]
    fn zeebe_style_expressions() {
        assert_eq!(eval("=decision = \"approve\"", json!({"decision": "approve"})), json!(true));
        assert_eq!(eval("=if x then 1 else 2", json!({"x": false})), json!(2));
        assert_eq!(eval("=count(items) + 1", json!({"items": [1, 2]})), json!(3));
        assert_eq!(eval("=a.b[1]", json!({"a": {"b": [7, 8]}})), json!(7));
        assert_eq!(eval("=amount * 1.5", json!({"amount": 3})), json!(4.5));
        assert_eq!(eval("=string length(name)", json!({"name": "Иван"})), json!(4));
        assert_eq!(eval("={total: sum(xs)}", json!({"xs": [1, 2]})), json!({"total": 3}));
        assert_eq!(eval("=for i in items return i * 2", json!({"items": [1, 2]})), json!([2, 4]));
        assert_eq!(eval("=missing = null", json!({})), json!(true));
        let closed = Expr::compile("=closed = true", Pos::default()).unwrap();
        assert_eq!(closed.eval_bool_with(&|_| None), Ok(false), "a missing variable makes a comparison false");
        assert_eq!(eval("=a.b + \"c\"", json!({"a": {"b": "x"}})), json!("xc"));
        assert_eq!(eval("=if a.b then 1 else 2", json!({"a": {"b": true}})), json!(1));
    }

    #[test]
    fn now_and_today_come_from_the_given_clock() {
        use chrono::TimeZone;
        let clock = Clock {
            now: chrono::Utc.with_ymd_and_hms(2026, 12, 31, 21, 30, 0).unwrap(),
            tz: chrono_tz::Europe::Astrakhan,
            seed: 0,
        };
        let e = Expr::compile("=today() = date(\"2027-01-01\")", Pos::default()).unwrap();
        assert!(e.uses_clock());
        assert_eq!(e.eval_at(&|_| None, Some(clock)).unwrap(), json!(true));
        let e =
            Expr::compile("=string(date(today().year, today().month, 5) + duration(\"P1M\"))", Pos::default()).unwrap();
        assert_eq!(e.eval_at(&|_| None, Some(clock)).unwrap(), json!("2027-02-05"));
        let e = Expr::compile("=now() + duration(\"PT3H\") > now()", Pos::default()).unwrap();
        assert_eq!(e.eval_at(&|_| None, Some(clock)).unwrap(), json!(true));
        assert!(e.eval(&Vars::new()).is_err(), "without a clock, now() is an error, never the system time");
        let e = Expr::compile("=\"now()\" + nowhere", Pos::default()).unwrap();
        assert!(!e.uses_clock());
    }

    #[test]
    fn names_with_spaces_are_explained() {
        let err = Expr::compile("Vacation Approval = \"Approved\"", Pos::default()).unwrap_err();
        assert!(err.message.contains("cannot contain spaces"), "{}", err.message);
    }

    #[test]
    fn syntax_errors_are_reported() {
        let err = Expr::compile("=decision = ", Pos::default()).unwrap_err();
        assert!(err.message.contains("FEEL syntax error"), "{}", err.message);
        assert!(Expr::compile("=", Pos::default()).is_err());
    }

    #[test]
    fn non_boolean_condition_is_an_error() {
        let e = Expr::compile("=x + 1", Pos::default()).unwrap();
        let v = vars(json!({"x": 1}));
        assert!(e.eval_bool_with(&|n| v.get(n).cloned()).is_err());
    }

    #[test]
    fn a_variable_named_item_can_be_read_and_filters_still_work() {
        assert_eq!(eval("=item", json!({"item": 5})), json!(5));
        assert_eq!(eval("=item.name", json!({"item": {"name": "Иванов"}})), json!("Иванов"));
        assert_eq!(eval("=item > 3", json!({"item": 5})), json!(true));
        assert_eq!(eval("=items[item > 1]", json!({"items": [1, 2, 3]})), json!([2, 3]));
        // A variable named `item` does not disturb the filter's own `item`.
        assert_eq!(eval("=items[item > 1]", json!({"items": [1, 2, 3], "item": 0})), json!([2, 3]));
        assert_eq!(eval("=items[item.n > 1].n", json!({"items": [{"n": 1}, {"n": 2}]})), json!([2]));
        assert_eq!(eval("=for item in items return item * 2", json!({"items": [1, 2]})), json!([2, 4]));
    }

    fn eval_err(src: &str, v: Json) -> String {
        let v = vars(v);
        Expr::compile(src, Pos::default()).unwrap().eval(&v).unwrap_err().message
    }

    #[test]
    fn failures_name_the_variables_that_are_not_set_or_null() {
        assert_eq!(eval_err("=amount > 1000", json!({})), "`=amount > 1000`: variable `amount` is not set");
        assert_eq!(eval_err("=amount > 1000", json!({"amount": null})), "`=amount > 1000`: variable `amount` is null");
        let duration = r#"=duration("PT" + string(hours) + "H")"#;
        assert_eq!(eval_err(duration, json!({})), format!("`{duration}`: variable `hours` is not set"));
        assert_eq!(
            eval_err("=a + c > limit", json!({"limit": null})),
            "`=a + c > limit`: variables `a` and `c` are not set; variable `limit` is null"
        );
        // With every variable set, the failure itself is told in words, not dsntk's names.
        assert_eq!(
            eval_err("=amount > 1000", json!({"amount": "много"})),
            "`=amount > 1000`: the two sides of `>` cannot be compared (different types, or null)"
        );
        assert_eq!(eval_err("=date(x)", json!({"x": "garbage"})), "`=date(x)`: date(): invalid date string 'garbage'");
        assert_eq!(eval_err("=1 / 0", json!({})), "`=1 / 0`: division by zero");
        let e = Expr::compile(r#"=duration("P" + x)"#, Pos::default()).unwrap();
        let message = e.eval(&vars(json!({"x": "nonsense"}))).unwrap_err().message;
        assert!(message.contains("duration() was given an argument it cannot use"), "{message}");
    }

    #[test]
    fn deep_expressions_are_refused_before_parsing_and_the_deepest_allowed_one_runs() {
        let allowed = vec!["1"; MAX_NESTING].join("+");
        let deep = vec!["1"; 20_000].join("+");
        let nested_not = format!("{}true{}", "not(".repeat(MAX_NESTING + 1), ")".repeat(MAX_NESTING + 1));
        // The hosts give engine work 64 MiB (reglament::ENGINE_THREAD_STACK); check with that.
        let result = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || {
                let refused = Expr::compile(&format!("={deep}"), Pos::default()).expect_err("refused");
                assert!(refused.message.contains("too deep"), "{}", refused.message);
                let refused = Expr::compile(&nested_not, Pos::default()).expect_err("refused");
                assert!(refused.message.contains("at most 2000"), "{}", refused.message);
                Expr::compile(&format!("={allowed}"), Pos::default())
                    .expect("allowed")
                    .eval(&Vars::new())
                    .expect("runs")
            })
            .expect("thread")
            .join()
            .expect("no overflow");
        assert_eq!(result, json!(MAX_NESTING));
        assert_eq!(nesting_bound(r#"x + "a+b(c" - y.z"#), 3, "operators inside strings do not count");
    }

    #[test]
    fn null_results_name_the_variables() {
        let e = Expr::compile("=reminderCycle", Pos::default()).unwrap();
        assert_eq!(e.null_message(&|_| None), "`=reminderCycle` is null: variable `reminderCycle` is not set");
        assert_eq!(e.null_message(&|_| Some(Json::Null)), "`=reminderCycle` is null: variable `reminderCycle` is null");
        let e = Expr::compile("=if x then null else 1", Pos::default()).unwrap();
        assert_eq!(e.null_message(&|_| Some(json!(true))), "`=if x then null else 1` is null");
        // Names the expression binds itself, built-in function words and a filter's `item` are
        // not variables to report.
        let e = Expr::compile("={total: sum(xs), first: xs[item > 1]}", Pos::default()).unwrap();
        assert_eq!(e.unset_variables(&|_| None), Some("variable `xs` is not set".into()));
        let e = Expr::compile("=for x in xs return string length(x)", Pos::default()).unwrap();
        assert_eq!(e.unset_variables(&|_| None), Some("variable `xs` is not set".into()));
        let e = Expr::compile("=some x in xs satisfies x > limit", Pos::default()).unwrap();
        assert_eq!(e.unset_variables(&|_| None), Some("variables `xs` and `limit` are not set".into()));
    }

    #[test]
    fn camunda_extensions_and_instant_comparisons() {
        use chrono::TimeZone;
        let clock = Clock {
            now: chrono::Utc.with_ymd_and_hms(2026, 3, 2, 5, 0, 0).unwrap(),
            tz: chrono_tz::Europe::Astrakhan,
            seed: 7,
        };
        let v = vars(json!({"x": 5, "s": " ab ", "n": null, "ctx": {"a": 1}}));
        let at = |src: &str| {
            Expr::compile(src, Pos::default()).unwrap().eval_at(&|k| v.get(k).cloned(), Some(clock)).unwrap()
        };
        for (src, expected) in [
            ("=is defined(x)", json!(true)),
            ("=is defined(n)", json!(false)),
            ("=is defined(ctx.zz)", json!(false)),
            ("=get or else(n, 7)", json!(7)),
            ("=get or else(x, 7)", json!(5)),
            ("=trim(s)", json!("ab")),
            ("=number(\"12\")", json!(12)),
            ("=number(\"1,200.5\", \",\", \".\")", json!(1200.5)),
            ("=number(\"twelve\")", json!(null)),
            ("=\"a\nb\"", json!("a\nb")),
            ("=if(x > 1) then(1) else(2)", json!(1)),
            ("=x > 1 and(x < 10)", json!(true)),
            ("=now() > date and time(\"2026-03-02T04:00:00Z\")", json!(true)),
            ("=now() > date and time(\"2026-03-02T06:00:00Z\")", json!(false)),
            ("=now() > date and time(\"2026-03-02T08:00:00+04:00\")", json!(true)),
            ("=date and time(\"2026-03-02T04:00:00Z\") < date and time(\"2026-03-02T09:00:00+04:00\")", json!(true)),
            ("=date(\"2026-03-02\") < date(\"2026-03-03\")", json!(true)),
            ("=string(now())", json!("2026-03-02T09:00:00@Europe/Astrakhan")),
        ] {
            assert_eq!(at(src), expected, "{src}");
        }
        let random = at("=random number()");
        let r = random.as_f64().unwrap();
        assert!((0.0..1.0).contains(&r), "{r}");
        assert_eq!(at("=random number()"), random, "the same seed gives the same number");
        let other = Expr::compile("=random number()", Pos::default())
            .unwrap()
            .eval_at(&|_| None, Some(Clock { seed: 8, ..clock }))
            .unwrap();
        assert_ne!(other, random, "another seed gives another number");
        assert!(Expr::compile("=random number()", Pos::default()).unwrap().eval(&Vars::new()).is_err());
    }
}

/// The evaluation budget ([`crate::feel_budget`]) through [`Expr`].
#[cfg(test)]
mod budget_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use serde_json::json;

    /// Runs on a thread with the hosts' engine stack (64 MiB): a stack overflow would abort the
    /// test binary, so passing means none happened.
    fn on_engine_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new().stack_size(64 << 20).spawn(f).expect("thread").join().expect("no panic")
    }

    fn run(src: &str, vars: Json, budget: &Budget) -> Result<Json, String> {
        let vars: Vars = vars.as_object().expect("object").clone();
        Expr::compile(src, Pos::default())
            .expect("compiles")
            .eval_in(&|n| vars.get(n).cloned(), None, budget)
            .map_err(|e| e.message)
    }

    const RECURSIVE: &str = "={f: function(k) if k <= 0 then 0 else 1 + f(k - 1), r: f(n)}.r";

    #[test]
    fn a_recursion_whose_depth_comes_from_a_variable_is_stopped_with_a_message() {
        let (shallow, deep) = on_engine_stack(|| {
            (
                run(RECURSIVE, json!({"n": 100}), &Budget::default()),
                run(RECURSIVE, json!({"n": 1000}), &Budget::default()),
            )
        });
        assert_eq!(shallow, Ok(json!(100)));
        let message = deep.expect_err("too deep");
        assert!(message.contains("function calls nest deeper than the evaluation allows (6000 levels"), "{message}");
        // A function whose body is as deep as an expression may be: a few calls use the whole
        // depth, and the stack holds it.
        let fat =
            format!("={{f: function(k) if k <= 0 then 0 else {} + f(k - 1), r: f(n)}}.r", vec!["1"; 1900].join("+"));
        let message = on_engine_stack(move || run(&fat, json!({"n": 50}), &Budget::default())).expect_err("too deep");
        assert!(message.contains("nest deeper"), "{message}");
    }

    #[test]
    fn for_loops_are_linear_and_count_one_step_per_item() {
        assert!(std::mem::size_of::<FeelValue>() <= 128, "{}", std::mem::size_of::<FeelValue>());
        let budget = Budget::default();
        let src = "=count(for i in 1..(n) return i)";
        assert_eq!(run(src, json!({"n": 100_000}), &budget), Ok(json!(100_000)));
        let spent = budget.spent();
        assert!((100_000..300_000).contains(&spent), "{spent} steps for 100,000 items");
        // Twice the items, twice the steps (dsntk's own loop was quadratic).
        let twice = Budget::default();
        assert_eq!(run(src, json!({"n": 200_000}), &twice), Ok(json!(200_000)));
        assert!(twice.spent() < spent * 5 / 2, "{} after {spent}", twice.spent());
    }

    #[test]
    fn a_range_may_end_in_a_bare_name() {
        let b = Budget::default();
        // `1..n` once read `n` as a path segment (`x.n`) and failed where `1..(n)` worked.
        for (src, vars, want) in [
            ("=for i in 1..n return i", json!({"n": 3}), json!([1, 2, 3])),
            ("=for i in a..b return i * 10", json!({"a": 2, "b": 3}), json!([20, 30])),
            ("=count(for i in 1..n return i)", json!({"n": 5}), json!(5)),
            ("=for i in 1..x.n return i", json!({"x": {"n": 2}}), json!([1, 2])),
        ] {
            assert_eq!(run(src, vars, &b), Ok(want), "{src}");
        }
    }

    #[test]
    fn the_rust_loop_gives_what_dsntk_gives() {
        let b = Budget::default();
        let cases = [
            ("=for x in xs return x * 2", json!({"xs": [1, 2, 3]}), json!([2, 4, 6])),
            ("=for x in xs return x", json!({"xs": []}), json!([])),
            ("=for i in 3..1 return i", json!({}), json!([3, 2, 1])),
            ("=for i in [1..3] return i", json!({}), json!([1, 2, 3])),
            (
                "=for d in date(\"2026-02-27\")..date(\"2026-03-02\") return string(d)",
                json!({}),
                json!(["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02"]),
            ),
            ("=for x in xs return for y in x return y + 1", json!({"xs": [[1], [2, 3]]}), json!([[2], [3, 4]])),
            ("=for i in 1..4 return if i = 1 then 1 else partial[-1] * 2", json!({}), json!([1, 2, 4, 8])),
            ("=for i in [1, 2], j in [10, 20] return i + j", json!({}), json!([11, 21, 12, 22])),
            ("=xs[item > 1]", json!({"xs": [1, 2, 3]}), json!([2, 3])),
            ("=xs[2]", json!({"xs": [1, 2, 3]}), json!(2)),
            ("=some x in xs satisfies x > 2", json!({"xs": [1, 2, 3]}), json!(true)),
            ("=every x in xs satisfies x > 2", json!({"xs": [1, 2, 3]}), json!(false)),
            ("=distinct values(xs)", json!({"xs": [1, 1, 2]}), json!([1, 2])),
            ("={double: function(v) v * 2, r: double(21)}.r", json!({}), json!(42)),
            ("=sort(xs, function(a, b) a > b)", json!({"xs": [1, 3, 2]}), json!([3, 2, 1])),
        ];
        for (src, vars, expected) in cases {
            assert_eq!(run(src, vars, &b), Ok(expected), "{src}");
        }
    }

    #[test]
    fn the_steps_of_a_command_are_shared_by_its_evaluations() {
        let budget = Budget::new(Limits { steps: 50_000, ..Limits::default() });
        assert!(run("=count(for i in 1..(n) return i)", json!({"n": 30_000}), &budget).is_ok());
        let message = run("=count(for i in 1..(n) return i)", json!({"n": 30_000}), &budget).expect_err("spent");
        assert!(message.contains("evaluation budget of 50000 steps is spent"), "{message}");
        // Once spent, it stays spent for the rest of the command.
        assert!(run("=1", json!({}), &budget).is_err());
        // Loops inside loops, filters and `some`/`every` inside loops, and pairwise list
        // functions all count.
        let small = || Budget::new(Limits { steps: 100_000, ..Limits::default() });
        for (src, vars) in [
            ("=for i in 1..(n) return count(for j in 1..(n) return j)", json!({"n": 1000})),
            ("=for i in 1..(n) return count(xs[item > i])", json!({"n": 1000, "xs": (0..1000).collect::<Vec<_>>()})),
            (
                "=for i in 1..(n) return some x in xs satisfies x < 0",
                json!({"n": 1000, "xs": (0..1000).collect::<Vec<_>>()}),
            ),
            ("=count(distinct values(for i in 1..(n) return i))", json!({"n": 10_000})),
            ("=count(for i in 1..(n), j in 1..(n) return j)", json!({"n": 1000})),
        ] {
            let message = run(src, vars, &small()).expect_err(src);
            assert!(message.contains("evaluation budget of 100000 steps is spent"), "{src}: {message}");
        }
    }

    #[test]
    fn values_built_at_run_time_are_capped() {
        let doubling: Vec<String> = (1..=40).map(|i| format!("s{i}: s{} + s{}", i - 1, i - 1)).collect();
        let src = format!("={{s0: \"ab\", {}}}.s40", doubling.join(", "));
        let message = run(&src, json!({}), &Budget::default()).expect_err("too large");
        assert!(message.contains("a value grew past 64 MiB"), "{message}");
        let message = run("=for i in 1..40 return partial", json!({}), &Budget::default()).expect_err("too large");
        assert!(message.contains("grew past"), "{message}");
        let strings = "={f: function(s, k) if k = 0 then s else f(s + s, k - 1), r: f(\"x\", n)}.r";
        assert!(run(strings, json!({"n": 10}), &Budget::default()).is_ok());
        let message = run(strings, json!({"n": 40}), &Budget::default()).expect_err("too large");
        assert!(message.contains("grew past"), "{message}");
        let nested = "={f: function(k) if k = 0 then 0 else [f(k - 1)], r: f(n)}.r";
        assert!(run(nested, json!({"n": 50}), &Budget::default()).is_ok());
        let message = run(nested, json!({"n": 150}), &Budget::default()).expect_err("cannot be stored");
        assert!(message.contains("more than 100 levels deep"), "{message}");
    }

    #[test]
    fn the_host_can_interrupt_a_long_command() {
        let asked = Arc::new(AtomicU64::new(0));
        let counter = asked.clone();
        let budget = Budget::with_interrupt(
            Limits::default(),
            Arc::new(move || {
                (counter.fetch_add(1, Ordering::Relaxed) >= 2).then(|| "the command ran past its 1 s".to_string())
            }),
        );
        let message = run("=count(for i in 1..(n) return i)", json!({"n": 1_000_000}), &budget).expect_err("stopped");
        assert!(message.ends_with("the command ran past its 1 s"), "{message}");
        assert_eq!(asked.load(Ordering::Relaxed), 3, "asked every few thousand steps, not at every step");
        assert_eq!(budget.overrun(), Some(Overrun::Interrupted("the command ran past its 1 s".into())));
    }
}
