//! Scenario tests (DESIGN §6): every `tests/scenarios/**/NAME.toml` runs through
//! `reglament simulate`; its JSON-lines trace must equal `NAME.trace` byte for byte. When the
//! simulation fails (invalid model, a step that cannot apply), the expected file ends with
//! `# failed` and what the command printed on stderr. Refresh with `UPDATE_EXPECT=1`.

use std::path::{Path, PathBuf};

use crate::support::{check_snapshot, repo_root};

fn scenarios(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).expect("read scenarios folder").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            scenarios(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
}

/// Runs one scenario and renders what the command printed, as the snapshot stores it.
pub fn render(path: &Path) -> String {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let outcome = reglament::simulate_cmd::run(path, &mut out, &mut err).expect("scenario files are readable");
    let mut text = String::from_utf8(out).expect("utf-8 trace");
    if outcome == reglament::simulate_cmd::Outcome::Failed {
        let root = repo_root().display().to_string();
        text.push_str("# failed\n");
        for line in String::from_utf8_lossy(&err).lines() {
            text.push_str("# ");
            text.push_str(&line.replace(&root, "."));
            text.push('\n');
        }
    }
    text
}

#[test]
fn scenarios_produce_their_expected_traces() {
    let mut files = Vec::new();
    scenarios(&repo_root().join("tests/scenarios"), &mut files);
    let mut failures = Vec::new();
    for file in &files {
        if let Err(e) = check_snapshot(&file.with_extension("trace"), &render(file)) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{} of {} scenarios differ:\n{}", failures.len(), files.len(), failures.join("\n"));
    assert!(files.len() >= 60, "expected at least 60 scenarios, found {}", files.len());
}

#[test]
fn simulate_is_deterministic() {
    let mut files = Vec::new();
    scenarios(&repo_root().join("tests/scenarios"), &mut files);
    assert!(!files.is_empty());
    for file in files.iter().take(20) {
        let runs: Vec<std::process::Output> = (0..3)
            .map(|_| {
                std::process::Command::new(env!("CARGO_BIN_EXE_reglament"))
                    .arg("simulate")
                    .arg(file)
                    .output()
                    .expect("run reglament simulate")
            })
            .collect();
        assert!(runs.windows(2).all(|w| w[0].stdout == w[1].stdout), "{} is not deterministic", file.display());
    }
}
