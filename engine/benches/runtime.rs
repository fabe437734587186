//! The pure engine on the benchmark workloads of `../shared/bench/workloads/`, one thread, no
//! persistence: instances/s and the serialised size of a waiting instance.
//! Run: `cargo bench -p reglament-engine --bench runtime`.
#![allow(clippy::disallowed_methods)] // a benchmark measures wall-clock time

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeZone;
use reglament_engine::runtime::{self, Command, Env, ProcessDef, StartCommand, Status, Ts};

fn load(name: &str) -> ProcessDef {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/workloads").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (defs, diags) = reglament_engine::check(&bytes, &Default::default());
    assert!(diags.iter().all(|d| !d.is_error()), "{name}: {diags:?}");
    let id = defs.processes[0].id.clone();
    ProcessDef::new(Arc::new(defs), &id, 1, chrono_tz::Europe::Astrakhan).expect("process")
}

/// Runs `f` for about `budget`, returning operations per second (best of three rounds).
fn rate(budget: Duration, mut f: impl FnMut(u64)) -> f64 {
    let mut best = 0.0f64;
    let mut i = 0u64;
    for _ in 0..3 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < budget {
            for _ in 0..1000 {
                f(i);
                i += 1;
                n += 1;
            }
        }
        best = best.max(n as f64 / start.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let env = Env::default();
    let now: Ts = chrono::Utc.with_ymd_and_hms(2026, 12, 28, 6, 0, 0).unwrap();
    let budget = Duration::from_millis(700);
    let start_cmd = |i: u64| StartCommand { id: i.to_string(), ..StartCommand::default() };

    let a = load("a_straight.bpmn");
    let straight = rate(budget, |i| {
        let (state, t) = runtime::start(&a, &env, start_cmd(i), now).unwrap();
        assert_eq!(state.status, Status::Completed);
        black_box(t);
    });

    let b = load("b_user_task.bpmn");
    let mut vars = serde_json::Map::new();
    vars.insert("decision".into(), serde_json::json!("approve"));
    let user_task = rate(budget, |i| {
        let (state, t1) = runtime::start(&b, &env, start_cmd(i), now).unwrap();
        let (task, _, _) = state.open_tasks().next().unwrap();
        let cmd = Command::CompleteTask { task, variables: vars.clone() };
        let (state, t2) = runtime::handle(&b, &env, &state, cmd, now).unwrap();
        assert_eq!(state.status, Status::Completed);
        black_box((t1, t2));
    });

    let c = load("c_parallel.bpmn");
    let parallel = rate(budget, |i| {
        let (state, t) = runtime::start(&c, &env, start_cmd(i), now).unwrap();
        assert_eq!(state.status, Status::Completed);
        black_box(t);
    });

    let (waiting, _) = runtime::start(&b, &env, start_cmd(123_456), now).unwrap();
    let json = serde_json::to_vec(&waiting).unwrap();

    println!("workload                          instances/s   target");
    println!("a_straight (10 tasks, start→end) {straight:>12.0}   ≥ 100,000");
    println!("b_user_task (start + complete)    {user_task:>12.0}   ≥ 150,000");
    println!("c_parallel (10 branches)          {parallel:>12.0}   ≥ 30,000");
    println!("waiting b_user_task instance: {} bytes of state (JSON)   target ≤ 1024", json.len());
    println!("  {}", String::from_utf8_lossy(&json));
}
