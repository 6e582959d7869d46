//! Core's store conformance suite against `PostgresStore`, each case on a database of its
//! own that is dropped when the case ends.

mod common;

use common::TempDb;
use errand_core::conformance::Guarded;

errand_core::store_conformance!(|clock| async move {
    let db = TempDb::new().await;
    let store = db.store(clock).await;
    Guarded::new(store, db)
});
