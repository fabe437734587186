//! `reglament validate FILE...`: parse and validate BPMN files with their Camunda Forms and the
//! email templates of their folder, print diagnostics.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use reglament_engine::form::FormFile;
use reglament_engine::{Definitions, Diagnostic};

/// Outcome of validating a set of files.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: usize,
    pub warnings: usize,
    /// Files that could not be read at all (I/O), with the reason.
    pub unreadable: Vec<(String, String)>,
}

/// The `.form` files of the folder `model` is in, sorted by name: (path as shown, bytes).
fn forms_beside(model: &str, report: &mut Report) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(model).parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "form"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let shown = match Path::new(model).parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(_) => path.display().to_string(),
            None => path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        match std::fs::read(&path) {
            Ok(bytes) => out.push((shown, bytes)),
            Err(e) => report.unreadable.push((shown, e.to_string())),
        }
    }
    out
}

/// Validates `files` together, so a call activity may target a process of another file given
/// on the same command line. `.form` files among them are the Camunda Forms of every model;
/// when none is given, each model takes those of its folder. Diagnostics go to `out` in
/// `file:line:col: severity: msg [id]`; one in a form file is printed once.
pub fn run(files: &[String], out: &mut dyn Write) -> std::io::Result<Report> {
    let mut report = Report::default();
    let (form_args, models): (Vec<&String>, Vec<&String>) = files.iter().partition(|f| f.ends_with(".form"));
    let mut given = Vec::new();
    for file in form_args {
        match std::fs::read(file) {
            Ok(bytes) => given.push((file.clone(), bytes)),
            Err(e) => report.unreadable.push((file.clone(), e.to_string())),
        }
    }
    let mut parsed: Vec<(String, Definitions, Vec<Diagnostic>)> = Vec::new();
    for file in models {
        match std::fs::read(file) {
            Ok(bytes) => {
                let beside;
                let forms = if given.is_empty() {
                    beside = forms_beside(file, &mut report);
                    &beside
                } else {
                    &given
                };
                let forms: Vec<FormFile<'_>> = forms.iter().map(|(name, bytes)| FormFile { name, bytes }).collect();
                let (defs, diags) = reglament_engine::parse_with_forms(&bytes, &forms);
                parsed.push((file.clone(), defs, diags));
            }
            Err(e) => report.unreadable.push((file.clone(), e.to_string())),
        }
    }
    let deployed: BTreeSet<String> =
        parsed.iter().flat_map(|(_, defs, _)| defs.executable_processes().map(|p| p.id.clone())).collect();
    let mut printed_in_forms = BTreeSet::new();
    for (file, defs, mut diags) in parsed {
        reglament_engine::finish_check(&defs, &mut diags, &deployed);
        // Email templates, as `serve` checks them at deploy: `templates/` beside the model
        // (the layout of the definitions folder), when the model's folder has one.
        let dir = Path::new(&file).parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let templates = dir.join("templates");
        if templates.is_dir() {
            diags.extend(reglament_server::driver::missing_templates(&defs, &templates));
        }
        for d in &diags {
            let line = d.render(&file);
            if d.file.is_some() && !printed_in_forms.insert(line.clone()) {
                continue;
            }
            if d.is_error() {
                report.errors += 1;
            } else {
                report.warnings += 1;
            }
            writeln!(out, "{line}")?;
        }
    }
    Ok(report)
}
