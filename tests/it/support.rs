//! Helpers shared by the suites: paths and snapshot comparison.

use std::path::{Path, PathBuf};

/// The repository root (the folder holding Cargo.toml, engine/, tests/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the crate sits two folders below the repository root")
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

/// The instant every test's clock starts at: a Wednesday morning before working hours in
/// Astrakhan. Servers and runtimes under test run on a clock that read this when the test binary
/// started and runs on at the system clock's pace ([`test_now`]), so no test depends on the date
/// or the time of day it runs at.
pub const TEST_EPOCH: &str = "2026-12-02T06:00:00+04:00";

/// The tests' time now: [`TEST_EPOCH`] plus the time since the test binary first asked.
/// The one place the suites read the system clock.
pub fn test_now() -> chrono::DateTime<chrono::Utc> {
    static START: std::sync::OnceLock<(chrono::DateTime<chrono::Utc>, std::time::Instant)> = std::sync::OnceLock::new();
    let (epoch, started) = START.get_or_init(|| {
        let epoch = chrono::DateTime::parse_from_rfc3339(TEST_EPOCH).expect("TEST_EPOCH").with_timezone(&chrono::Utc);
        (epoch, std::time::Instant::now())
    });
    *epoch + chrono::Duration::from_std(started.elapsed()).expect("elapsed")
}

/// A server or runtime clock that reads [`test_now`] now; `controlled` lets the test move it.
pub fn test_clock(controlled: bool) -> reglament_server::clock::Clock {
    reglament_server::clock::Clock::starting_at(test_now(), controlled)
}

/// The environment that starts `reglament serve` on the tests' clock.
pub fn clock_env() -> (&'static str, String) {
    ("REGLAMENT_CLOCK_START", test_now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}
