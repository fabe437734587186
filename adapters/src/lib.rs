//! Everything around the pure engine that touches the outside world: reading files, the CLI
//! commands, and (as they land) storage, HTTP, email and scheduling.

pub mod calendars;
pub mod simulate_cmd;
pub mod validate_cmd;
