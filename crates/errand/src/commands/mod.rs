//! The `errand` subcommands that run a service: `serve`, `worker`, `token`, `ui`, `bench`.

pub mod bench;
pub mod runtime;
pub mod serve;
pub mod token;
pub mod ui;
pub mod worker;
