//! The store conformance suite against the in-memory store.

use errand_core::MemoryStore;

errand_core::store_conformance!(|clock| async move { MemoryStore::with_clock(clock) });
