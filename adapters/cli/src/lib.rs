//! The `reglament` command line's commands, each a function the binary (`main.rs`) calls and
//! the tests call directly: `validate`, `simulate`, `users`, `registry export`. `serve` is
//! `reglament_server::serve`. Errors here are `anyhow`: they end as a message on stderr.

pub mod password_cmd;
pub mod registry_cmd;
pub mod simulate_cmd;
pub mod users_cmd;
pub mod validate_cmd;
