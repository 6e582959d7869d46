//! Core's store conformance suite against `SqliteStore`, each case on a fresh file that is
//! removed when the case ends.

use errand_core::conformance::Guarded;
use errand_sqlite::{SqliteConfig, SqliteStore};

errand_core::store_conformance!(|clock| async move {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = SqliteConfig {
        clock,
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open(dir.path().join("errand.db"), config).expect("store opens");
    Guarded::new(store, dir)
});
