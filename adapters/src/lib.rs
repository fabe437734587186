//! Everything around the pure engine that touches the outside world: reading files, the CLI
//! commands, storage, and (as they land) HTTP, email and scheduling.

pub mod calendars;
pub mod clock;
pub mod driver;
pub mod email;
pub mod http;
pub mod jobs;
pub mod registry_cmd;
pub mod scheduler;
pub mod serve;
pub mod simulate_cmd;
pub mod store;
pub mod users_cmd;
pub mod validate_cmd;
