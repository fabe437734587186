//! Parse-and-validate throughput on generated models (issue: ≥ 50 MB/s of XML parsed,
//! validation linear in model size). Run: `cargo bench -p reglament-engine --bench parse`.
#![allow(clippy::disallowed_methods)] // a benchmark measures wall-clock time

use std::collections::BTreeSet;
use std::fmt::Write;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A process of `n` flow nodes: chains of user tasks with FEEL conditions on exclusive
/// gateways every 10 nodes, with diagram information as a modeler would write it.
fn generate(n: usize) -> String {
    let mut x = String::with_capacity(n * 600);
    x.push_str(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" xmlns:di="http://www.omg.org/spec/DD/20100524/DI" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="defs" targetNamespace="urn:bench">
  <bpmn:process id="big" name="Большой процесс" isExecutable="true">
    <bpmn:startEvent id="n0" name="Начало" />
"#,
    );
    let mut prev = "n0".to_string();
    let mut flows = 0;
    let mut i = 1;
    while i < n - 1 {
        if i % 10 == 0 && i + 3 < n - 1 {
            let (g, a, b, j) = (format!("n{i}"), format!("n{}", i + 1), format!("n{}", i + 2), format!("n{}", i + 3));
            writeln!(x, r#"    <bpmn:exclusiveGateway id="{g}" name="Решение?" default="f{}" />"#, flows + 2).unwrap();
            writeln!(x, r#"    <bpmn:sequenceFlow id="f{flows}" sourceRef="{prev}" targetRef="{g}" />"#).unwrap();
            writeln!(x, r#"    <bpmn:sequenceFlow id="f{}" sourceRef="{g}" targetRef="{a}"><bpmn:conditionExpression xsi:type="bpmn:tFormalExpression" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">=decision = "approve" and amount &gt; {i}</bpmn:conditionExpression></bpmn:sequenceFlow>"#, flows + 1).unwrap();
            writeln!(x, r#"    <bpmn:sequenceFlow id="f{}" sourceRef="{g}" targetRef="{b}" />"#, flows + 2).unwrap();
            for t in [&a, &b] {
                writeln!(x, r#"    <bpmn:task id="{t}" name="Шаг {t}" />"#).unwrap();
            }
            writeln!(x, r#"    <bpmn:exclusiveGateway id="{j}" />"#).unwrap();
            writeln!(x, r#"    <bpmn:sequenceFlow id="f{}" sourceRef="{a}" targetRef="{j}" />"#, flows + 3).unwrap();
            writeln!(x, r#"    <bpmn:sequenceFlow id="f{}" sourceRef="{b}" targetRef="{j}" />"#, flows + 4).unwrap();
            flows += 5;
            prev = j;
            i += 4;
        } else {
            let t = format!("n{i}");
            writeln!(x, r#"    <bpmn:userTask id="{t}" name="Рассмотреть заявку {i}"><bpmn:extensionElements><zeebe:assignmentDefinition candidateGroups="reviewers" /><zeebe:ioMapping><zeebe:output source="=decision" target="d{i}" /></zeebe:ioMapping></bpmn:extensionElements></bpmn:userTask>"#).unwrap();
            writeln!(x, r#"    <bpmn:sequenceFlow id="f{flows}" sourceRef="{prev}" targetRef="{t}" />"#).unwrap();
            flows += 1;
            prev = t;
            i += 1;
        }
    }
    writeln!(x, r#"    <bpmn:endEvent id="end" />"#).unwrap();
    writeln!(x, r#"    <bpmn:sequenceFlow id="f{flows}" sourceRef="{prev}" targetRef="end" />"#).unwrap();
    x.push_str("  </bpmn:process>\n  <bpmndi:BPMNDiagram id=\"d\"><bpmndi:BPMNPlane id=\"p\" bpmnElement=\"big\">\n");
    for k in 0..i {
        writeln!(x, r#"    <bpmndi:BPMNShape id="s{k}" bpmnElement="n{k}"><dc:Bounds x="{}" y="100" width="100" height="80" /></bpmndi:BPMNShape>"#, k * 150).unwrap();
    }
    x.push_str("  </bpmndi:BPMNPlane></bpmndi:BPMNDiagram>\n</bpmn:definitions>\n");
    x
}

fn measure(f: impl Fn()) -> Duration {
    // Warm up, then take the best of several runs of enough iterations to last ~0.3 s.
    f();
    let start = Instant::now();
    f();
    let one = start.elapsed().max(Duration::from_micros(1));
    let iters = (Duration::from_millis(300).as_nanos() / one.as_nanos()).clamp(1, 10_000) as u32;
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed() / iters
        })
        .min()
        .expect("five runs")
}

fn main() {
    let deployed = BTreeSet::new();
    println!(
        "{:>8} {:>8} {:>10} {:>12} {:>12} {:>14} {:>14} {:>12}",
        "layout", "nodes", "bytes", "xml MB/s", "parse ms", "validate ms", "elements/s", "µs/element"
    );
    // The same models pretty-printed and written on one line (column counting must not be
    // quadratic in the line's length).
    let pretty = [1_000, 5_000, 25_000, 50_000].map(|n| ("pretty", generate(n)));
    // The issue's case: a 10 MB model (25,000 nodes) and a 21 MB one, each also on one line.
    let one_line = [25_000, 50_000].map(|n| ("one line", generate(n).replace('\n', " ")));
    for (layout, xml) in pretty.into_iter().chain(one_line) {
        let bytes = xml.as_bytes();
        let (defs, diags) = reglament_engine::check(bytes, &deployed);
        assert!(diags.iter().all(|d| !d.is_error()), "generated model is invalid: {:?}", &diags[..diags.len().min(3)]);
        let elements = defs.processes[0].nodes.len() + defs.processes[0].flows.len();
        let tree = measure(|| {
            black_box(reglament_engine::xml::parse_document(black_box(bytes), &Default::default()).unwrap());
        });
        let parse = measure(|| {
            black_box(reglament_engine::parse_definitions(black_box(bytes)));
        });
        let validate = measure(|| {
            black_box(reglament_engine::validate::validate(black_box(&defs), &deployed));
        });
        let total = parse + validate;
        println!(
            "{:>8} {:>8} {:>10} {:>12.1} {:>12.2} {:>14.3} {:>14.0} {:>12.3}",
            layout,
            elements,
            bytes.len(),
            bytes.len() as f64 / tree.as_secs_f64() / 1e6,
            parse.as_secs_f64() * 1e3,
            validate.as_secs_f64() * 1e3,
            elements as f64 / total.as_secs_f64(),
            validate.as_secs_f64() * 1e6 / elements as f64,
        );
    }
    println!(
        "xml MB/s: XML to position-keeping tree; parse: XML to typed model incl. FEEL compilation; validate: graph checks"
    );
}
