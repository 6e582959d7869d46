//! Every store operation as SQL on one connection: the writes run on the writer thread inside
//! its transaction (see [`crate::writer`]), the reads on a read-only connection. Each mirrors
//! the reference `MemoryStore` operation of the same name, and lives in the module of its
//! concern.

mod actions;
mod claim;
mod enqueue;
mod leases;
mod meta;
mod reads;
mod sweep;
#[cfg(test)]
pub(crate) mod tests;

pub(crate) use actions::{cancel, retry};
pub(crate) use claim::{ClaimSpec, claim};
pub(crate) use enqueue::enqueue;
pub(crate) use leases::{Report, heartbeat, report, report_json, token};
pub(crate) use meta::{get_meta, swap_meta};
pub(crate) use reads::{depth, get, ping, record};
pub(crate) use sweep::{purge_expired, reap};
