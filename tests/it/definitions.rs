//! The shipped processes (definitions/): valid for Reglament without a single diagnostic, valid
//! against the OMG BPMN 2.0 schema, and listed in the registry with all 13 columns filled.

use std::process::Command;

use crate::support::{files_with_ext, repo_root, shared_dir};
use crate::tools;

fn shipped() -> Vec<std::path::PathBuf> {
    let files = files_with_ext(&repo_root().join("definitions"), "bpmn");
    assert_eq!(
        files.len(),
        10,
        "the seven processes of DESIGN §2, the 59-FZ appeal, the press request and the intake are shipped"
    );
    files
}

#[test]
fn shipped_processes_validate_without_diagnostics() {
    let files = shipped();
    let out = Command::new(env!("CARGO_BIN_EXE_reglament")).arg("validate").args(&files).output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "diagnostics:\n{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn shipped_processes_validate_against_the_omg_schema() {
    let schema = shared_dir().join("schema/bpmn20/BPMN20.xsd");
    let out = Command::new(tools::xmllint())
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .args(shipped())
        .output()
        .expect("xmllint runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn registry_export_lists_every_shipped_process_with_all_columns() {
    let dir = std::env::temp_dir().join(format!("reglament-registry-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(dir.join("definitions/calendars")).unwrap();
    for f in shipped() {
        std::fs::copy(&f, dir.join("definitions").join(f.file_name().unwrap())).unwrap();
    }
    // The email templates the models name are part of the folder: a model naming one that is
    // not there is refused at deploy.
    let templates = repo_root().join("definitions/templates");
    std::fs::create_dir_all(dir.join("definitions/templates")).unwrap();
    for entry in std::fs::read_dir(&templates).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join("definitions/templates").join(path.file_name().unwrap())).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_reglament"))
        .args(["registry", "export", "--format", "csv"])
        .current_dir(&dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut lines = text.trim_start_matches('\u{feff}').lines();
    let header = lines.next().expect("a header");
    assert!(header.contains("Регулирующий акт") && header.contains("Точка размещения"), "{header}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 10, "one row per shipped process:\n{text}");
    for row in rows {
        // 14 columns (13 of the form and the id); naive split is enough to see none is empty.
        assert!(!row.contains(",,") && !row.ends_with(','), "a column is empty: {row}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
