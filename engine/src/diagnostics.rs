//! Diagnostics: everything validation has to say about a model, with positions.

use std::fmt;

use serde::Serialize;

/// A 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// The closed vocabulary of things validation reports. The kebab-case name is stable: the HTTP
/// API and tests refer to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// Not well-formed XML, bad encoding, limits exceeded, DTDs.
    MalformedXml,
    /// Well-formed XML whose root is not `bpmn:definitions`.
    NotBpmn,
    /// The file has no process marked `isExecutable="true"`.
    NotExecutable,
    DuplicateId,
    MissingId,
    /// A sequence flow's `sourceRef`/`targetRef` names nothing, or something in another scope.
    DanglingFlowRef,
    NoStartEvent,
    Unreachable,
    CannotReachEnd,
    /// An exclusive or inclusive gateway splits without conditions or default.
    GatewayWithoutConditions,
    /// A conditional flow out of a parallel gateway.
    ConditionOnParallelFlow,
    BoundaryAttachedToNothing,
    UnknownMessage,
    UnknownError,
    UnknownCalledElement,
    MultiInstanceWithoutCollection,
    /// An element, event type or attribute the engine cannot execute.
    Unsupported,
    BadExpression,
    BadTimer,
    /// A required attribute or child is absent.
    Missing,
    /// An attribute or text with a value of the wrong form.
    BadValue,
    /// A shape that is legal but usually a mistake (warning).
    Suspicious,
    /// A vendor extension Reglament does not read (warning).
    IgnoredExtension,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::MalformedXml => "malformed-xml",
            Code::NotBpmn => "not-bpmn",
            Code::NotExecutable => "not-executable",
            Code::DuplicateId => "duplicate-id",
            Code::MissingId => "missing-id",
            Code::DanglingFlowRef => "dangling-flow-ref",
            Code::NoStartEvent => "no-start-event",
            Code::Unreachable => "unreachable",
            Code::CannotReachEnd => "cannot-reach-end",
            Code::GatewayWithoutConditions => "gateway-without-conditions",
            Code::ConditionOnParallelFlow => "condition-on-parallel-flow",
            Code::BoundaryAttachedToNothing => "boundary-attached-to-nothing",
            Code::UnknownMessage => "unknown-message",
            Code::UnknownError => "unknown-error",
            Code::UnknownCalledElement => "unknown-called-element",
            Code::MultiInstanceWithoutCollection => "multi-instance-without-collection",
            Code::Unsupported => "unsupported",
            Code::BadExpression => "bad-expression",
            Code::BadTimer => "bad-timer",
            Code::Missing => "missing",
            Code::BadValue => "bad-value",
            Code::Suspicious => "suspicious",
            Code::IgnoredExtension => "ignored-extension",
        }
    }
}

/// One finding: where, how bad, what, and on which element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    pub pos: Pos,
    pub message: String,
    /// The id of the element the finding is about, when it has one.
    pub element: Option<String>,
    /// The file the finding is in when it is not the model itself (a `.form` file deployed
    /// with it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, pos: Pos, element: Option<&str>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            pos,
            message: one_line(&message.into()),
            element: element.map(one_line),
            file: None,
        }
    }

    pub fn warning(code: Code, pos: Pos, element: Option<&str>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            code,
            pos,
            message: one_line(&message.into()),
            element: element.map(one_line),
            file: None,
        }
    }

    /// The same finding, in `file` rather than in the model.
    pub fn in_file(mut self, file: &str) -> Self {
        self.file = Some(file.to_string());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col: error: message [element]`, the format of DESIGN §6; `file` is the
    /// model's name, used unless the finding is in another file.
    pub fn render(&self, file: &str) -> String {
        let file = self.file.as_deref().unwrap_or(file);
        let mut out = format!("{file}:{}:{}: {}: {}", self.pos.line, self.pos.col, self.severity, self.message);
        if let Some(element) = &self.element {
            out.push_str(" [");
            out.push_str(element);
            out.push(']');
        }
        out
    }
}

/// A diagnostic is one line: element names written on several lines in the modeler (and any
/// other whitespace run with a line break) become one space, other control characters escapes.
fn one_line(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\r' | '\t' => {
                while out.ends_with(' ') {
                    out.pop();
                }
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                out.push(' ');
            }
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out
}

/// Sorts diagnostics by file (the model's own first), position, then severity, so output is
/// stable.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        (&a.file, a.pos, a.severity, &a.element, &a.message).cmp(&(&b.file, b.pos, b.severity, &b.element, &b.message))
    });
}
