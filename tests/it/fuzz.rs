//! The OpenAPI document against the real server (issue 12): PyPI's schemathesis generates
//! requests from `/openapi.json` — valid ones and broken ones, NUL and control characters
//! included — and checks every answer: no 5xx, only documented statuses, and bodies, content
//! types and headers as documented. On SQLite and on PostgreSQL (which refuses NUL in text).
//!
//! The run is bounded and reproducible (a fixed seed and a number of cases per operation, in
//! `tests/tools/schemathesis.toml`); `fuzz_hooks.py` beside it gives each generated
//! `Idempotency-Key` a unique value so writes reach their handlers. The fuzzer signs in as a
//! plain user (`fuzz-clerk`), then as an admin (who may also deploy); routes on a user act on
//! `fuzz-target`. The clock is not controlled, so moving it answers 409 (documented) and the
//! timers of the run stay put; the directory the fuzzer loads can disable only people it
//! loaded itself, never the admin (422, documented).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::json;

use crate::http::{APPROVAL, WAITER};
use crate::server::{Server, add_user, call};
use crate::store::TestDb;
use crate::support::repo_root;

/// Starts a server on `url` with two models and a few instances, and fuzzes it.
fn fuzz(url: &str) {
    let dir = std::env::temp_dir().join(format!("reglament-fuzz-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(dir.join("definitions")).expect("definitions");
    std::fs::write(dir.join("definitions/approval.bpmn"), APPROVAL).expect("model");
    std::fs::write(dir.join("definitions/waiter.bpmn"), WAITER).expect("model");
    let admin = add_user(&dir, url, "fuzz-admin", "admins,process-owners,reviewers");
    let plain = add_user(&dir, url, "fuzz-clerk", "reviewers");
    add_user(&dir, url, "fuzz-target", "reviewers");
    let server = Server::start(&dir, &[("REGLAMENT_DATABASE_URL", url.to_string())]);
    // Something to find: instances with open tasks, one waiting for a message.
    for i in 0..3 {
        let body = json!({"definitionKey": "approval", "businessKey": format!("FZ-{i}"), "variables": {}});
        let (status, answer) = call(&server.addr, &admin, "POST", "/api/process-instances", Some(&body));
        assert_eq!(status, 201, "{answer}");
    }
    let body = json!({"definitionKey": "waiter", "variables": {"requestId": "R-1"}});
    let (status, answer) = call(&server.addr, &admin, "POST", "/api/process-instances", Some(&body));
    assert_eq!(status, 201, "{answer}");

    // Briefly as a plain user, whose answers are the refusals (403, and 404 for what they may
    // not see); then as the admin, who reaches everything (and disables `fuzz-target`, so the
    // plain user is another person).
    for (who, token, cases) in [("plain user", &plain, Some(5)), ("admin", &admin, None)] {
        let started = Instant::now();
        let (ok, output) = schemathesis(&dir, &server.addr, token, cases);
        let took = started.elapsed();
        eprintln!("schemathesis as the {who} ran {took:?} on {}", url.split(':').next().unwrap_or(url));
        if !ok {
            let log = std::fs::read_to_string(&server.log).unwrap_or_default();
            let failed: Vec<&str> = log.lines().filter(|l| l.contains("request failed")).take(20).collect();
            panic!("schemathesis as the {who} found failures:\n{output}\nserver errors logged:\n{}", failed.join("\n"));
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `st run` from the test tools' Python against the server, signed in with `token`, with
/// `cases` per operation instead of the configured number; whether it passed, and what it
/// printed.
fn schemathesis(dir: &Path, addr: &str, token: &str, cases: Option<u32>) -> (bool, String) {
    let tools = repo_root().join("tests/tools");
    let mut cmd = Command::new(crate::tools::python());
    cmd.args([
        "-c",
        "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'st'; sys.exit(schemathesis())",
    ])
    .arg("--config-file")
    .arg(tools.join("schemathesis.toml"))
    .args(["run", "--no-color", "--header"])
    .arg(format!("Authorization: Bearer {token}"));
    if let Some(n) = cases {
        cmd.arg(format!("--max-examples={n}"));
    }
    let out = cmd
        .arg(format!("http://{addr}/openapi.json"))
        .env("SCHEMATHESIS_HOOKS", tools.join("fuzz_hooks.py"))
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the test tools' python runs schemathesis");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// [`fuzz`] on a fresh database, dropped afterwards.
fn fuzz_on(db: impl std::future::Future<Output = TestDb>) {
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let db = tokio.block_on(db);
    fuzz(&db.url);
    tokio.block_on(db.drop_db());
}

#[test]
fn sqlite_answers_as_documented() {
    fuzz_on(TestDb::sqlite());
}

#[test]
fn postgres_answers_as_documented() {
    fuzz_on(TestDb::postgres());
}
