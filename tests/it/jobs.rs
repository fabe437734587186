//! Built-in jobs through the real driver and worker: `registry-update` changes the registry,
//! `report` computes the statistics, a job that cannot succeed becomes an incident.

use std::time::{Duration, Instant};

use reglament_server::driver::{Op, Outcome, Runtime};
use serde_json::json;

use crate::store::{TestDb, runtime, vars};

const MODEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d" targetNamespace="urn:jobs">
  <bpmn:process id="jobs" name="Задания" isExecutable="true">
    <bpmn:startEvent id="s" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="apply" />
    <bpmn:serviceTask id="apply" name="Внести изменение в реестр">
      <bpmn:extensionElements><zeebe:taskDefinition type="registry-update" /><zeebe:taskHeaders><zeebe:header key="change" value="change" /></zeebe:taskHeaders></bpmn:extensionElements>
    </bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="apply" targetRef="report" />
    <bpmn:serviceTask id="report" name="Сформировать отчёт">
      <bpmn:extensionElements><zeebe:taskDefinition type="report" /></bpmn:extensionElements>
    </bpmn:serviceTask>
    <bpmn:sequenceFlow id="f3" sourceRef="report" targetRef="e" />
    <bpmn:endEvent id="e" />
  </bpmn:process>
</bpmn:definitions>"#;

async fn wait_for(
    rt: &Runtime,
    id: &str,
    what: impl Fn(&reglament_store::InstanceRow) -> bool,
) -> reglament_store::InstanceRow {
    let start = Instant::now();
    loop {
        let row = rt.store().instance(id).await.unwrap().unwrap();
        if what(&row) {
            return row;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "instance {id} did not get there: {:?}", row.state);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn jobs_update_the_registry_and_report(db: TestDb) {
    let rt = runtime(&db).await;
    rt.deploy(MODEL.as_bytes(), None).await.unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(reglament_server::jobs::run(rt.clone(), Duration::from_secs(30), stop_rx));
    let today = crate::support::test_now().with_timezone(&chrono_tz::Europe::Astrakhan).date_naive();
    let start = Op::Start {
        definition: "jobs".into(),
        business_key: None,
        variables: vars(json!({
            "change": {"processId": "registry_change", "action": "add",
                       "fields": {"name": "Изменение реестра процессов", "owner": "Отдел анализа и перспективного развития"}},
            "from": (today - chrono::Days::new(1)).to_string(),
            "to": (today + chrono::Days::new(1)).to_string(),
        })),
        start_event: None,
        by: None,
    };
    let Outcome::Started { id, .. } = rt.submit(start).await.unwrap() else { panic!("not started") };
    let row = wait_for(&rt, &id, |r| r.status == "completed").await;
    let variables = row.state.vars(0).unwrap();
    assert_eq!(variables["registryUpdated"], json!(true));
    let summary = &variables["reportSummary"];
    assert!(summary["total"].as_i64().unwrap() >= 1, "{summary}");
    let csv = variables["reportFile"]["content"].as_str().unwrap();
    assert!(csv.contains("Процесс,Обращений,В срок") && csv.contains("jobs,"), "{csv}");
    let registry = rt.store().registry_entries().await.unwrap();
    let entry = registry.iter().find(|e| e.key == "registry_change").expect("the change is in the registry");
    assert_eq!(entry.fields["owner"], "Отдел анализа и перспективного развития");
    assert_eq!(entry.name.as_deref(), Some("Изменение реестра процессов"));

    // A change without a process id cannot succeed: an incident, not a silent retry.
    let bad = Op::Start {
        definition: "jobs".into(),
        business_key: None,
        variables: vars(json!({"change": {"action": "modify"}})),
        start_event: None,
        by: None,
    };
    let Outcome::Started { id, .. } = rt.submit(bad).await.unwrap() else { panic!("not started") };
    let row = wait_for(&rt, &id, |r| r.incident).await;
    assert!(row.state.incidents[0].message.contains("processId"), "{:?}", row.state.incidents);
    let _ = stop.send(true);
    worker.await.unwrap();
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_jobs_update_the_registry_and_report() {
    jobs_update_the_registry_and_report(TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_jobs_update_the_registry_and_report() {
    jobs_update_the_registry_and_report(TestDb::postgres().await).await;
}
