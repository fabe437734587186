//! `reglament simulate SCENARIO.toml`: runs a scenario on the pure engine and prints the trace
//! as JSON lines (DESIGN §6).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reglament_engine::runtime::Env;

use reglament_server::calendars;

/// How a simulation ended, for the exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every step applied.
    Ok,
    /// The model is invalid or a step could not apply (exit 1).
    Failed,
}

/// Runs the scenario at `path`, writing the trace to `out` and problems to `err`.
/// I/O problems (missing files) are returned as `Err` (exit 2).
pub fn run(path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read scenario {}: {e}", path.display()))?;
    let scenario = match reglament_engine::sim::parse_scenario(&text) {
        Ok(s) => s,
        Err(e) => {
            writeln!(err, "{}: {e}", path.display())?;
            return Ok(Outcome::Failed);
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let bpmn_path = base.join(&scenario.definition);
    let bytes = std::fs::read(&bpmn_path)
        .map_err(|e| anyhow::anyhow!("cannot read definition {}: {e}", bpmn_path.display()))?;
    let (defs, diags) = reglament_engine::check(&bytes, &Default::default());
    let shown = bpmn_path.display().to_string();
    let mut invalid = false;
    for d in diags.iter().filter(|d| d.is_error()) {
        writeln!(err, "{}", d.render(&shown))?;
        invalid = true;
    }
    if invalid {
        writeln!(err, "{}: the definition has errors; fix them before simulating", path.display())?;
        return Ok(Outcome::Failed);
    }
    let env = Env { calendars: calendars::load(&calendar_dirs(base))?, ..Env::default() };
    let (trace, failure) = reglament_engine::sim::run(Arc::new(defs), &env, &scenario);
    for line in &trace {
        writeln!(out, "{}", serde_json::to_string(line)?)?;
    }
    match failure {
        None => Ok(Outcome::Ok),
        Some(f) => {
            writeln!(err, "{}: {}", path.display(), f.message)?;
            Ok(Outcome::Failed)
        }
    }
}

/// Where calendars may live: `definitions/calendars` in the scenario's folder or any folder
/// above it, then in the working directory.
fn calendar_dirs(base: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = base.ancestors().map(|a| a.join("definitions/calendars")).collect();
    dirs.push(PathBuf::from("definitions/calendars"));
    dirs
}
