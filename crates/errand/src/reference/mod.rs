//! The reference pipeline: the real work `errand serve` does out of the box, and the example of
//! how a service uses errand.
//!
//! - `ingest_document {title, content}` chunks a document, embeds each chunk with a
//!   deterministic local embedding, indexes it into the submitting user's own full-text index
//!   and marks older versions stale: steps `chunk` → `embed` → `index` → `freshness`, with
//!   progress per chunk. Result `{chunks, terms, document_id, superseded}`.
//! - `persist_conversation {session_id, messages}` appends to the user's conversation history.
//! - Routes: `GET /v1/search?q=` searches only the caller's documents;
//!   `GET /v1/conversations/{session_id}` reads the caller's conversation back.
//!
//! Every piece of data is attributed to the user of the task's [`Context`](errand_core::Context),
//! captured when the request submitted it: the task never takes a user id as an argument.

mod embed;
mod library;
mod routes;
mod tasks;

pub use library::{Hit, Library, LibraryError, Message, StoredMessage};
pub use routes::routes;
pub use tasks::{IngestDocument, Ingested, PersistConversation, Persisted};

use errand_core::{Registry, RegistryError};

/// Registers the reference tasks.
pub fn register(registry: &mut Registry) -> Result<(), RegistryError> {
    registry
        .register::<IngestDocument>()?
        .register::<PersistConversation>()?;
    Ok(())
}
