//! Core's store conformance suite against `SqliteStore`, each case on a fresh file.

use errand_sqlite::{SqliteConfig, SqliteStore};

errand_core::store_conformance!(|clock| async move {
    // Kept under the target directory: the store holds the file open beyond the test body.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep();
    let config = SqliteConfig {
        clock,
        ..SqliteConfig::default()
    };
    SqliteStore::open(dir.join("errand.db"), config).expect("store opens")
});
