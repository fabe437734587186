//! Helpers shared by the suites: paths and snapshot comparison.

use std::path::{Path, PathBuf};

/// The repository root (the folder holding Cargo.toml, engine/, tests/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("adapters/ has a parent").to_path_buf()
}

/// `../shared` beside the project root: design documents, corpus, workloads.
pub fn shared_dir() -> PathBuf {
    let dir = repo_root().parent().expect("the repo has a parent").join("shared");
    assert!(dir.is_dir(), "expected the shared folder at {}", dir.display());
    dir
}

/// Files under `dir` with the given extension, sorted by name.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

/// Compares `actual` with the file at `expected_path`; with `UPDATE_EXPECT=1` rewrites it.
/// Returns a description of the mismatch, so a suite can report every failing case at once.
pub fn check_snapshot(expected_path: &Path, actual: &str) -> Result<(), String> {
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(expected_path, actual).expect("write snapshot");
        return Ok(());
    }
    let expected = std::fs::read_to_string(expected_path).unwrap_or_default();
    if expected == actual {
        Ok(())
    } else {
        Err(format!(
            "{} differs (rerun with UPDATE_EXPECT=1 to accept):\n--- expected\n{expected}--- actual\n{actual}",
            expected_path.display()
        ))
    }
}
