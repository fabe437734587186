//! `reglament validate FILE...`: parse and validate BPMN files, print diagnostics.

use std::collections::BTreeSet;
use std::io::Write;

use reglament_engine::{Definitions, Diagnostic};

/// Outcome of validating a set of files.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: usize,
    pub warnings: usize,
    /// Files that could not be read at all (I/O), with the reason.
    pub unreadable: Vec<(String, String)>,
}

/// Validates `files` together, so a call activity may target a process of another file given
/// on the same command line. Diagnostics go to `out` in `file:line:col: severity: msg [id]`.
pub fn run(files: &[String], out: &mut dyn Write) -> std::io::Result<Report> {
    let mut report = Report::default();
    let mut parsed: Vec<(String, Definitions, Vec<Diagnostic>)> = Vec::new();
    for file in files {
        match std::fs::read(file) {
            Ok(bytes) => {
                let (defs, diags) = reglament_engine::parse_definitions(&bytes);
                parsed.push((file.clone(), defs, diags));
            }
            Err(e) => report.unreadable.push((file.clone(), e.to_string())),
        }
    }
    let deployed: BTreeSet<String> =
        parsed.iter().flat_map(|(_, defs, _)| defs.executable_processes().map(|p| p.id.clone())).collect();
    for (file, defs, mut diags) in parsed {
        reglament_engine::finish_check(&defs, &mut diags, &deployed);
        for d in &diags {
            if d.is_error() {
                report.errors += 1;
            } else {
                report.warnings += 1;
            }
            writeln!(out, "{}", d.render(&file))?;
        }
    }
    Ok(report)
}
