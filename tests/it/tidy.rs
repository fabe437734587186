//! Tidy checks over the sources (STYLE.md): the engine stays free of I/O, the crates keep
//! one-way arrows between their top-level modules, ARCHITECTURE.md's code map names every
//! module, the two migration folders match, every module says what it is, README's
//! configuration table is the one the settings render, and every element README calls
//! supported appears in a scenario's model.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::repo_root;

/// The crates and their source folders.
const CRATES: &[(&str, &str)] = &[
    ("reglament-engine", "engine/src"),
    ("reglament-store", "adapters/store/src"),
    ("reglament-server", "adapters/server/src"),
    ("reglament", "adapters/cli/src"),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without `//` comments (line comments and doc comments), so prose that names a
/// module or an API does not count as a use of it.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // `//` inside a string literal (a URL) is kept: the cut is only at a `//` preceded
            // by an even number of quotes.
            Some(i) if line[..i].matches('"').count() % 2 == 0 => &line[..i],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file belongs to (`None` for the crate root).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("inside src");
    let first = rel.components().next()?.as_os_str().to_string_lossy().to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib" && name != "main").then_some(name)
}

fn identifiers_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = item.trim().split("::").next().unwrap_or("").trim();
                out.push(name);
            }
        } else {
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
            out.push(&rest[..end]);
        }
    }
    out
}

/// Edges between the top-level modules of one crate: `a -> b` when a file of `a` names
/// `crate::b` (or, from a top-level file, `super::b`).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for file in &files {
        let Some(from) = top_module(src, file) else { continue };
        let code = code_of(&std::fs::read_to_string(file).expect("read source"));
        let top_level_file = file.parent() == Some(src);
        let mut names = identifiers_after(&code, "crate::");
        if top_level_file {
            names.extend(identifiers_after(&code, "super::"));
        }
        for name in names {
            if name != from && modules.contains(name) {
                graph.get_mut(&from).expect("known module").insert(name.to_string());
            }
        }
    }
    graph
}

/// A cycle of the graph, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in &graph[node] {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|n| n == next).expect("on the path");
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = visit(node, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_use_circle_between_top_level_modules() {
    let root = repo_root();
    let mut circles = Vec::new();
    for (krate, src) in CRATES {
        let graph = module_graph(&root.join(src));
        assert!(graph.len() > 2, "{krate}: expected its modules in {src}");
        if let Some(cycle) = find_cycle(&graph) {
            circles.push(format!("{krate}: {}", cycle.join(" -> ")));
        }
    }
    assert!(circles.is_empty(), "use circles between top-level modules:\n{}", circles.join("\n"));
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into_iter()
    .collect();
    assert_eq!(find_cycle(&graph), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    let code = "use crate::{driver::Runtime, email};\nlet x = crate::http::router();\nnotcrate::x";
    assert_eq!(identifiers_after(code, "crate::"), vec!["driver", "email", "http"]);
}

fn manifest_dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).expect("read Cargo.toml");
    let doc: toml::Table = toml::from_str(&text).expect("Cargo.toml parses");
    doc.get("dependencies").and_then(|d| d.as_table()).map(|t| t.keys().cloned().collect()).unwrap_or_default()
}

#[test]
fn the_engine_is_pure() {
    let root = repo_root();
    // Crates that do I/O, read clocks or randomness, or bring a runtime.
    const IO_CRATES: &[&str] = &[
        "tokio",
        "sqlx",
        "axum",
        "hyper",
        "reqwest",
        "lettre",
        "tower",
        "tower-http",
        "getrandom",
        "rand",
        "uuid",
        "tracing-subscriber",
        "anyhow",
        "minijinja",
        "reglament-store",
        "reglament-server",
        "reglament",
    ];
    let deps = manifest_dependencies(&root.join("engine/Cargo.toml"));
    let bad: Vec<&String> = deps.iter().filter(|d| IO_CRATES.contains(&d.as_str())).collect();
    assert!(bad.is_empty(), "the engine depends on I/O crates: {bad:?}");

    const FORBIDDEN: &[&str] = &[
        "std::fs",
        "std::env",
        "std::net",
        "std::process",
        "SystemTime",
        "Instant::now",
        "Utc::now",
        "Local::now",
        "thread::sleep",
        "File::open",
    ];
    let mut files = Vec::new();
    rust_files(&root.join("engine/src"), &mut files);
    let mut found = Vec::new();
    for file in &files {
        let code = code_of(&std::fs::read_to_string(file).expect("read"));
        for (n, line) in code.lines().enumerate() {
            for word in FORBIDDEN {
                if line.contains(word) {
                    found.push(format!("{}:{}: {word}", file.strip_prefix(&root).unwrap().display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "engine/src must do no I/O and read no clock:\n{}", found.join("\n"));
}

#[test]
fn only_the_binary_uses_anyhow_and_only_the_store_uses_sqlx() {
    let root = repo_root();
    for (krate, manifest) in [
        ("reglament-engine", "engine/Cargo.toml"),
        ("reglament-store", "adapters/store/Cargo.toml"),
        ("reglament-server", "adapters/server/Cargo.toml"),
    ] {
        let deps = manifest_dependencies(&root.join(manifest));
        assert!(!deps.iter().any(|d| d == "anyhow"), "{krate} must not use anyhow (typed errors; anyhow is the CLI's)");
        if krate != "reglament-store" {
            assert!(!deps.iter().any(|d| d == "sqlx"), "{krate} must not use sqlx (SQL lives in the store crate)");
        }
    }
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect()
}

#[test]
fn the_migration_folders_have_the_same_files() {
    let root = repo_root().join("adapters/store/migrations");
    let sqlite = file_names(&root.join("sqlite"));
    let postgres = file_names(&root.join("postgres"));
    assert!(!sqlite.is_empty());
    let only_sqlite: Vec<_> = sqlite.difference(&postgres).collect();
    let only_postgres: Vec<_> = postgres.difference(&sqlite).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "migrations differ: only in sqlite/ {only_sqlite:?}, only in postgres/ {only_postgres:?}"
    );
}

#[test]
fn every_module_starts_with_a_doc_line() {
    let root = repo_root();
    let mut files = Vec::new();
    for (_, src) in CRATES {
        rust_files(&root.join(src), &mut files);
    }
    for extra in ["engine/benches", "adapters/server/benches", "tests/it"] {
        rust_files(&root.join(extra), &mut files);
    }
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).expect("read");
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(missing.is_empty(), "modules without a `//!` first line:\n{}", missing.join("\n"));
}

/// The part of ARCHITECTURE.md under the heading that names `folder/`, up to the next heading
/// of the same or a higher level.
fn architecture_section<'a>(architecture: &'a str, folder: &str) -> Option<&'a str> {
    let lines: Vec<&str> = architecture.lines().collect();
    let level = |l: &str| l.chars().take_while(|c| *c == '#').count();
    let start = lines.iter().position(|l| l.starts_with('#') && l.contains(&format!("`{folder}/`")))?;
    let own = level(lines[start]);
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with('#') && level(l) <= own)
        .map_or(lines.len(), |i| start + 1 + i);
    let from = lines[..start].iter().map(|l| l.len() + 1).sum::<usize>();
    let to = lines[..end].iter().map(|l| l.len() + 1).sum::<usize>().min(architecture.len());
    Some(&architecture[from..to])
}

#[test]
fn architecture_names_every_crate_and_module() {
    let root = repo_root();
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut missing = Vec::new();
    for (krate, src) in CRATES {
        let folder = src.trim_end_matches("/src");
        let Some(section) = architecture_section(&architecture, folder) else {
            missing.push(format!("a section headed with `{folder}/`"));
            continue;
        };
        if !section.contains(&format!("`{krate}`")) {
            missing.push(format!("{folder}: the crate name `{krate}`"));
        }
        let mut files = Vec::new();
        rust_files(&root.join(src), &mut files);
        let modules: BTreeSet<String> = files
            .iter()
            .filter_map(|f| {
                let rel = f.strip_prefix(root.join(src)).unwrap();
                let mut parts = rel.components();
                let first = parts.next()?.as_os_str().to_string_lossy().to_string();
                Some(if parts.next().is_some() { format!("{first}/") } else { first })
            })
            .collect();
        for module in modules {
            if !section.contains(&format!("`{module}`")) {
                missing.push(format!("{folder}: `{module}`"));
            }
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md's code map does not name:\n{}", missing.join("\n"));
}

const SETTINGS_BEGIN: &str =
    "<!-- settings: rendered from adapters/server/src/settings.rs (KEYS); the tidy test checks it -->\n";
const SETTINGS_END: &str = "<!-- end of settings -->";

#[test]
fn readme_documents_every_setting() {
    let path = repo_root().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let start = readme.find(SETTINGS_BEGIN).expect("README has the settings markers") + SETTINGS_BEGIN.len();
    let end = start + readme[start..].find(SETTINGS_END).expect("README has the end marker");
    let table = reglament_server::settings::readme_table();
    if readme[start..end] != table {
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(&path, format!("{}{table}{}", &readme[..start], &readme[end..])).expect("write README");
        } else {
            panic!(
                "README's configuration table differs from settings::KEYS (UPDATE_EXPECT=1 rewrites it):\n{}",
                table
            );
        }
    }
}

/// For each row of README's "Supported BPMN" table that says `yes`, XML an executed model must
/// contain (namespace prefix removed) to show the row's elements are exercised by a scenario.
const SUPPORTED: &[(&str, &[&str])] = &[
    ("start event: none, timer (date, cycle), message", &["<startEvent", "<timeDate", "<timeCycle"]),
    (
        "end event: none, terminate, error, message",
        &["<endEvent", "<terminateEventDefinition", "<errorEventDefinition"],
    ),
    (
        "intermediate catch: timer, message; intermediate throw: none, message",
        &["<intermediateCatchEvent", "<intermediateThrowEvent"],
    ),
    (
        "boundary event: timer (interrupting or not, cycles for reminders), message, error",
        &["<boundaryEvent", "cancelActivity=\"false\""],
    ),
    (
        "user, service, send, receive, script (FEEL), manual, plain tasks",
        &["<userTask", "<serviceTask", "<sendTask", "<receiveTask", "<scriptTask", "<manualTask", "<task "],
    ),
    (
        "exclusive (with default flow), parallel, inclusive, event-based gateways",
        &["<exclusiveGateway", "<parallelGateway", "<inclusiveGateway", "<eventBasedGateway"],
    ),
    (
        "embedded subprocess, event subprocess, call activity",
        &["<subProcess", "triggeredByEvent=\"true\"", "<callActivity"],
    ),
    (
        "multi-instance, parallel and sequential (`zeebe:loopCharacteristics`)",
        &["<multiInstanceLoopCharacteristics", "isSequential=\"true\"", "zeebe:loopCharacteristics"],
    ),
];

#[test]
fn every_supported_element_has_a_scenario() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let section = &readme[readme.find("## Supported BPMN").expect("README has the table")..];
    let rows: Vec<&str> = section
        .lines()
        .skip_while(|l| !l.starts_with("| ---"))
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .filter(|l| l.split('|').nth(2).is_some_and(|support| support.trim().starts_with("yes")))
        .map(|l| l.split('|').nth(1).unwrap_or("").trim())
        .collect();
    let known: Vec<&str> = SUPPORTED.iter().map(|(row, _)| *row).collect();
    assert_eq!(rows, known, "README's supported rows and this test's list must match; add the new row's evidence here");

    let mut models = Vec::new();
    fn bpmn_files(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read").map(|e| e.expect("entry").path()) {
            if entry.is_dir() {
                bpmn_files(&entry, out);
            } else if entry.extension().is_some_and(|e| e == "bpmn") {
                let text = std::fs::read_to_string(&entry).expect("read model");
                // The BPMN namespace may be the default one or have one of the usual prefixes.
                out.push(text.replace("<bpmn2:", "<").replace("<bpmn:", "<").replace("<semantic:", "<"));
            }
        }
    }
    bpmn_files(&root.join("tests/scenarios"), &mut models);
    let mut missing = Vec::new();
    for (row, evidence) in SUPPORTED {
        for needle in *evidence {
            if !models.iter().any(|m| m.contains(needle)) {
                missing.push(format!("{row}: no scenario model contains {needle}"));
            }
        }
    }
    assert!(missing.is_empty(), "supported elements without a scenario:\n{}", missing.join("\n"));
}
