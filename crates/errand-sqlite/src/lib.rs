//! errand's embedded, durable task store on SQLite.
