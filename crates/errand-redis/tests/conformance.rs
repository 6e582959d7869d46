//! Core's store conformance suite against the Redis on 127.0.0.1:6379, each case under a key
//! prefix of its own, deleted when the case ends.

mod common;

errand_core::store_conformance!(|clock| async move { common::clean_store(clock).await });
