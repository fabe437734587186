//! The stored format of instance state and history: an API (STYLE.md, item 12). Encoded here
//! only, versioned, and snapshot-tested, so a change to the engine's types that would make old
//! rows unreadable fails a test instead of a production upgrade.
//!
//! State: `{"v":1,"state":{…}}` — the engine's `Instance` as JSON. History: one row per
//! committed transition, `{"v":1,"events":[…]}` with the engine's `Event`s (tagged by `event`).

use reglament_engine::runtime::{Event, Instance};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// The current format version. Readers accept this version; a new version adds a migration
/// of old documents here.
pub const VERSION: u32 = 1;

#[derive(Serialize)]
struct StateOut<'a> {
    v: u32,
    state: &'a Instance,
}

#[derive(Deserialize)]
struct StateIn {
    v: u32,
    state: Instance,
}

#[derive(Serialize)]
struct EventsOut<'a> {
    v: u32,
    events: &'a [Event],
}

#[derive(Deserialize)]
struct EventsIn {
    v: u32,
    events: Vec<Event>,
}

pub fn encode_state(state: &Instance) -> String {
    serde_json::to_string(&StateOut { v: VERSION, state }).expect("instance state is serialisable")
}

pub fn decode_state(text: &str) -> Result<Instance, StoreError> {
    let doc: StateIn = serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("instance state: {e}")))?;
    if doc.v != VERSION {
        return Err(StoreError::Corrupt(format!(
            "instance state format v{} is not supported (this build reads v{VERSION})",
            doc.v
        )));
    }
    Ok(doc.state)
}

pub fn encode_events(events: &[Event]) -> String {
    serde_json::to_string(&EventsOut { v: VERSION, events }).expect("events are serialisable")
}

pub fn decode_events(text: &str) -> Result<Vec<Event>, StoreError> {
    let doc: EventsIn = serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("history: {e}")))?;
    if doc.v != VERSION {
        return Err(StoreError::Corrupt(format!(
            "history format v{} is not supported (this build reads v{VERSION})",
            doc.v
        )));
    }
    Ok(doc.events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reglament_engine::runtime::{Ei, EiData, TaskInfo, TimerSub};

    /// Documents as written by format v1. If this test fails, the stored format changed:
    /// bump VERSION and teach the decoder to read v1.
    const STATE_V1: &str = r#"{"v":1,"state":{"id":"i-1","process":"p","version":3,"status":"active","business_key":"REQ-1","started_at":"2026-12-28T06:00:00Z","next_key":4,"elements":[{"key":2,"node":1,"scope":0,"data":{"task":{"candidate_groups":["reviewers"],"due":"2027-01-12T14:00:00Z"}}}],"scopes":[[0,{"amount":5}]],"timers":[{"key":3,"node":4,"owner":2,"due":"2026-12-28T09:00:00Z","fired":0}]}}"#;
    const EVENTS_V1: &str = r#"{"v":1,"events":[{"event":"element_entered","key":2,"node":1,"scope":0},{"event":"task_created","key":2,"node":1,"task":{"candidate_groups":["reviewers"]}},{"event":"instance_completed"}]}"#;

    fn sample() -> Instance {
        let mut vars = serde_json::Map::new();
        vars.insert("amount".into(), serde_json::json!(5));
        Instance {
            id: "i-1".into(),
            process: "p".into(),
            version: 3,
            business_key: Some("REQ-1".into()),
            started_at: Some("2026-12-28T06:00:00Z".parse().unwrap()),
            next_key: 4,
            elements: vec![Ei {
                key: 2,
                node: 1,
                scope: 0,
                data: EiData::Task(Box::new(TaskInfo {
                    candidate_groups: vec!["reviewers".into()],
                    due: Some("2027-01-12T14:00:00Z".parse().unwrap()),
                    ..TaskInfo::default()
                })),
            }],
            scopes: vec![(0, vars)],
            timers: vec![TimerSub {
                key: 3,
                node: 4,
                owner: 2,
                due: "2026-12-28T09:00:00Z".parse().unwrap(),
                fired: 0,
            }],
            ..Instance::default()
        }
    }

    #[test]
    fn state_format_v1_is_stable() {
        assert_eq!(encode_state(&sample()), STATE_V1);
        assert_eq!(decode_state(STATE_V1).unwrap(), sample());
    }

    #[test]
    fn events_format_v1_is_stable() {
        let events = decode_events(EVENTS_V1).unwrap();
        assert_eq!(encode_events(&events), EVENTS_V1);
    }

    #[test]
    fn unknown_versions_and_garbage_are_reported() {
        assert!(decode_state(&STATE_V1.replace("\"v\":1", "\"v\":2")).unwrap_err().to_string().contains("v2"));
        assert!(decode_state("{").is_err());
        assert!(decode_events("[]").is_err());
    }
}
