//! errand: background work for tokio/axum services that never forgets who it is for.
pub use errand_core::*;

pub mod reference;
