//! `reglament validate` on the models of `tests/validate/`: each `NAME.bpmn` has a
//! `NAME.expected` holding the exact output (`file:line:col: severity: message [id]`).
//! Broken models are named after the mistake they make; valid ones expect no output.

use std::process::Command;

use crate::support::{check_snapshot, files_with_ext, repo_root};

#[test]
fn models_give_exactly_the_expected_diagnostics() {
    let dir = repo_root().join("tests/validate");
    let models = files_with_ext(&dir, "bpmn");
    assert!(models.len() >= 25, "expected at least 25 validation cases, found {}", models.len());
    let mut failures = Vec::new();
    for model in &models {
        let name = model.file_name().unwrap().to_string_lossy().to_string();
        // The command resolves paths against the working directory; run it from the case folder.
        let output = Command::new(env!("CARGO_BIN_EXE_reglament"))
            .arg("validate")
            .arg(&name)
            .current_dir(&dir)
            .output()
            .expect("run reglament validate");
        let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
        let expected_exit = if stdout.lines().any(|l| l.contains(": error: ")) { 1 } else { 0 };
        if output.status.code() != Some(expected_exit) {
            failures.push(format!("{name}: exit {:?}, expected {expected_exit}", output.status.code()));
        }
        if let Err(e) = check_snapshot(&model.with_extension("expected"), &stdout) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn usage_and_io_errors_exit_2() {
    let missing = Command::new(env!("CARGO_BIN_EXE_reglament"))
        .args(["validate", "no-such-file.bpmn"])
        .output()
        .expect("run reglament");
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read no-such-file.bpmn"));
    let no_args = Command::new(env!("CARGO_BIN_EXE_reglament")).arg("validate").output().expect("run reglament");
    assert_eq!(no_args.status.code(), Some(2));
}

/// `tests/validate/forms/CASE/`: a `model.bpmn` with the Camunda Forms beside it (which
/// `reglament validate` takes when no `.form` is given) and the exact `expected` output.
#[test]
fn camunda_form_mistakes_name_the_file_and_component() {
    let root = repo_root().join("tests/validate/forms");
    let mut cases: Vec<_> =
        std::fs::read_dir(&root).expect("forms cases").filter_map(|e| e.ok().map(|e| e.path())).collect();
    cases.retain(|p| p.is_dir());
    cases.sort();
    assert!(cases.len() >= 4, "expected at least 4 form cases, found {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let output = Command::new(env!("CARGO_BIN_EXE_reglament"))
            .args(["validate", "model.bpmn"])
            .current_dir(case)
            .output()
            .expect("run reglament validate");
        let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
        if output.status.code() != Some(1) {
            failures.push(format!("{}: exit {:?}, expected 1", case.display(), output.status.code()));
        }
        if let Err(e) = check_snapshot(&case.join("expected"), &stdout) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Forms given on the command line go with every model, and their findings print once.
#[test]
fn forms_named_on_the_command_line_are_used_instead_of_the_folders() {
    let dir = repo_root().join("tests/validate/forms/missing-form");
    let output = Command::new(env!("CARGO_BIN_EXE_reglament"))
        .args(["validate", "model.bpmn", "../../../forms/review-decision.form", "model.bpmn"])
        .current_dir(&dir)
        .output()
        .expect("run reglament validate");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
    assert!(!stdout.contains("other-form"), "{stdout}");
    assert_eq!(stdout.matches("names no Camunda Form").count(), 2, "{stdout}");
}
