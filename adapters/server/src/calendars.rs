//! Loading working-day calendars from `definitions/calendars/*.json`.
//!
//! The Russian production calendar shipped in the repository is compiled in as a fallback, so
//! the binary works from any directory; a `definitions/calendars/` folder found on disk wins,
//! which lets an administrator add next year's calendar without recompiling.

use std::collections::BTreeMap;
use std::path::PathBuf;

use reglament_engine::calendar::WorkCalendar;

const BUILT_IN_RU: &str = include_str!("../../../definitions/calendars/ru.json");

/// A calendar file that cannot be read or is not a valid calendar.
#[derive(Debug, thiserror::Error)]
#[error("calendar {path}: {message}")]
pub struct CalendarError {
    pub path: PathBuf,
    pub message: String,
}

/// Loads every `*.json` of the first existing folder of `dirs`, plus the built-in `ru`
/// calendar when no folder provides one.
pub fn load(dirs: &[PathBuf]) -> Result<BTreeMap<String, WorkCalendar>, CalendarError> {
    let mut calendars = BTreeMap::new();
    if let Some(dir) = dirs.iter().find(|d| d.is_dir()) {
        let fail = |path: &PathBuf, message: String| CalendarError { path: path.clone(), message };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| fail(dir, format!("cannot list the folder: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| fail(&path, format!("cannot read it: {e}")))?;
            let calendar = WorkCalendar::from_json(&name, &text).map_err(|e| fail(&path, e.to_string()))?;
            calendars.insert(name, calendar);
        }
    }
    if !calendars.contains_key("ru") {
        let calendar = WorkCalendar::from_json("ru", BUILT_IN_RU)
            .map_err(|e| CalendarError { path: PathBuf::from("(built-in ru)"), message: e.to_string() })?;
        calendars.insert("ru".to_string(), calendar);
    }
    Ok(calendars)
}
