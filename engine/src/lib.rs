//! Reglament's pure core.
//!
//! BPMN 2.0 XML goes in as bytes ([`parse`]), comes out as a typed [`model`] with source
//! positions, is checked by [`validate`], and (later) executed by the runtime as
//! `(state, command, now) -> transition`. Nothing here reads a clock, a file or a random
//! source: see `clippy.toml` beside this crate and ARCHITECTURE.md.

pub mod calendar;
pub mod diagnostics;
pub mod feel;
mod feel_budget;
mod feel_compat;
pub mod form;
pub mod model;
pub mod parse;
pub mod runtime;
pub mod sim;
pub mod timer;
pub mod validate;
pub mod xml;

use std::collections::BTreeSet;

pub use diagnostics::{Code, Diagnostic, Pos, Severity};
pub use model::Definitions;

/// Reads a BPMN document: the model (possibly partial) and what parsing had to say. A user
/// task that links a Camunda Form by `formId` is an error here: no `.form` file came with it
/// (see [`parse_with_forms`]).
pub fn parse_definitions(bytes: &[u8]) -> (Definitions, Vec<Diagnostic>) {
    parse_with_forms(bytes, &[])
}

/// Reads a BPMN document with the Camunda Forms (`.form` files) deployed beside it: each user
/// task that links a form gets its fields ([`form::link`]). Findings in a form file name it.
pub fn parse_with_forms(bytes: &[u8], forms: &[form::FormFile<'_>]) -> (Definitions, Vec<Diagnostic>) {
    let (mut defs, mut diags) = parse::parse(bytes, &xml::Limits::default());
    let (forms, form_diags) = form::read_files(forms);
    diags.extend(form_diags);
    diags.extend(form::link(&mut defs, &forms));
    (defs, diags)
}

/// Parses and validates one document. `deployed` names the processes that call activities may
/// target besides this file's own. Diagnostics come sorted by position.
pub fn check(bytes: &[u8], deployed: &BTreeSet<String>) -> (Definitions, Vec<Diagnostic>) {
    check_with_forms(bytes, &[], deployed)
}

/// [`check`] of a document deployed with its `.form` files.
pub fn check_with_forms(
    bytes: &[u8],
    forms: &[form::FormFile<'_>],
    deployed: &BTreeSet<String>,
) -> (Definitions, Vec<Diagnostic>) {
    let (defs, mut diags) = parse_with_forms(bytes, forms);
    finish_check(&defs, &mut diags, deployed);
    (defs, diags)
}

/// The validation half of [`check`], for callers that parsed several files first.
pub fn finish_check(defs: &Definitions, diags: &mut Vec<Diagnostic>, deployed: &BTreeSet<String>) {
    let readable = !diags.iter().any(|d| matches!(d.code, Code::MalformedXml | Code::NotBpmn));
    if readable {
        diags.extend(validate::validate(defs, deployed));
        if defs.executable_processes().next().is_none() {
            diags.push(not_executable(defs));
        } else {
            drop_descriptive_findings(defs, diags);
        }
    }
    diagnostics::sort(diags);
}

/// In a file with an executable process, the other (non-executable) pools are descriptive: what
/// they hold is never run, so findings about their elements are not reported. Document-wide
/// findings (duplicate ids) stay.
fn drop_descriptive_findings(defs: &Definitions, diags: &mut Vec<Diagnostic>) {
    let ids = |p: &model::Process| -> Vec<String> {
        std::iter::once(p.id.clone())
            .chain(p.nodes.iter().map(|n| n.id.clone()))
            .chain(p.flows.iter().map(|f| f.id.clone()))
            .collect()
    };
    let executable: BTreeSet<String> = defs.executable_processes().flat_map(ids).collect();
    let descriptive: BTreeSet<String> =
        defs.processes.iter().filter(|p| !p.executable).flat_map(ids).filter(|id| !executable.contains(id)).collect();
    diags.retain(|d| {
        matches!(d.code, Code::DuplicateId) || !d.element.as_ref().is_some_and(|e| descriptive.contains(e))
    });
}

fn not_executable(defs: &Definitions) -> Diagnostic {
    match defs.processes.first() {
        None if defs.has_collaboration => Diagnostic::error(
            Code::NotExecutable,
            defs.pos,
            defs.id.as_deref(),
            "the file holds only a collaboration (pools, message flows) and no process: there is nothing to execute",
        ),
        None => {
            Diagnostic::error(Code::NotExecutable, defs.pos, defs.id.as_deref(), "the file has no process to execute")
        }
        Some(p) => Diagnostic::error(
            Code::NotExecutable,
            p.pos,
            Some(&p.id),
            format!("no process in this file is executable: set isExecutable=\"true\" on process `{}` to run it", p.id),
        ),
    }
}
