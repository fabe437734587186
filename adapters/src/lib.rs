//! Everything around the pure engine that touches the outside world: reading files, the CLI
//! commands, storage, and (as they land) HTTP, email and scheduling.

/// The stack of every thread that runs engine work: the server's runtime threads (async
/// workers and the blocking pool) and the CLI's main thread. The engine bounds the depth of
/// what it evaluates; this is the room it is given (reserved address space, committed only
/// when touched), far above the 2 MiB default of spawned threads.
pub const ENGINE_THREAD_STACK: usize = 64 << 20;

pub mod calendars;
pub mod clock;
pub mod csv;
pub mod driver;
pub mod email;
pub mod http;
pub mod jobs;
pub mod password_cmd;
pub mod registry_cmd;
pub mod scheduler;
pub mod serve;
pub mod simulate_cmd;
pub mod store;
pub mod users_cmd;
pub mod validate_cmd;
pub mod web;
