//! The server around the pure engine: its settings, the clock, the driver that runs commands
//! in group-committed batches, the scheduler, the built-in job worker, the email dispatcher and
//! the HTTP API. Storage is the `reglament-store` crate; the command line is the `reglament`
//! crate.

/// The stack of every thread that runs engine work: the server's runtime threads (async
/// workers and the blocking pool) and the CLI's main thread. The engine bounds the depth of
/// what it evaluates; this is the room it is given (reserved address space, committed only
/// when touched), far above the 2 MiB default of spawned threads.
pub const ENGINE_THREAD_STACK: usize = 64 << 20;

pub mod access;
pub mod accounts;
pub mod calendars;
pub mod clock;
pub mod csv;
pub mod driver;
pub mod email;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod listen;
pub mod scheduler;
pub mod serve;
pub mod settings;
pub mod web;
