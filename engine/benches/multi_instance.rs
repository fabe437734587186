//! A sequential multi-instance over a script task with 100,000 items, in one command: the time,
//! and the state before and after (the loop runs from the step queue, so it needs no stack and
//! keeps only the body's collection and outputs, not what each done item left).
//! Run: `cargo bench -p reglament-engine --bench multi_instance`; its peak memory with
//! `/usr/bin/time -v target/release/deps/multi_instance-*`.
#![allow(clippy::disallowed_methods)] // a benchmark measures wall-clock time

use std::sync::Arc;
use std::time::Instant;

use chrono::TimeZone;
use reglament_engine::runtime::{self, Env, ProcessDef, StartCommand, Status, Ts};
use serde_json::Value as Json;

const ITEMS: u32 = 100_000;

const MODEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="defs" targetNamespace="urn:bench">
  <bpmn:process id="loop" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="double" />
    <bpmn:scriptTask id="double">
      <bpmn:extensionElements>
        <zeebe:script expression="=n * 2" resultVariable="doubled" />
      </bpmn:extensionElements>
      <bpmn:multiInstanceLoopCharacteristics isSequential="true">
        <bpmn:extensionElements>
          <zeebe:loopCharacteristics inputCollection="=items" inputElement="n" outputCollection="results" outputElement="=doubled" />
        </bpmn:extensionElements>
      </bpmn:multiInstanceLoopCharacteristics>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="double" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>"#;

fn main() {
    let (defs, diags) = reglament_engine::check(MODEL.as_bytes(), &Default::default());
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let def = ProcessDef::new(Arc::new(defs), "loop", 1, chrono_tz::Europe::Astrakhan).expect("process");
    let now: Ts = chrono::Utc.with_ymd_and_hms(2026, 3, 2, 5, 0, 0).unwrap();
    let mut variables = serde_json::Map::new();
    variables.insert("items".into(), Json::Array((1..=ITEMS).map(Json::from).collect()));
    let input_size = serde_json::to_vec(&variables).expect("json").len();
    let cmd = StartCommand { id: "bench".into(), variables, ..StartCommand::default() };
    // The engine's own thread size: an 8 MiB main thread, no larger stack needed.
    let started = Instant::now();
    let (state, transition) = runtime::start(&def, &Env::default(), cmd, now).expect("start");
    let elapsed = started.elapsed();
    assert_eq!(state.status, Status::Completed);
    let state_size = serde_json::to_vec(&state).expect("json").len();
    println!(
        "sequential multi-instance, script task, {ITEMS} items in one command: {:.2} s ({:.1} µs/item), {} events; input {} KB, final state {} KB",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / f64::from(ITEMS),
        transition.events.len(),
        input_size / 1024,
        state_size / 1024,
    );
}
