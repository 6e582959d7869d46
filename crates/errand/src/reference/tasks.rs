//! The reference pipeline's tasks: `ingest_document` and `persist_conversation`.

use super::embed;
use super::library::{Library, LibraryError, Message};
use errand_core::{Owner, Task, TaskCx, TaskError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Largest document accepted, in bytes.
pub const MAX_CONTENT_BYTES: usize = 2 * 1024 * 1024;

/// Chunks, embeds and indexes a document into the submitting user's search index, in four
/// steps: `chunk` → `embed` → `index` → `freshness`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestDocument {
    /// The document's title.
    pub title: String,
    /// Its text; paragraphs separated by blank lines.
    pub content: String,
}

/// What `ingest_document` returns.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ingested {
    /// Chunks indexed.
    pub chunks: usize,
    /// Distinct terms in the document.
    pub terms: usize,
    /// The document's id in the user's index.
    pub document_id: i64,
    /// Older documents of the same title this one replaced in search.
    pub superseded: usize,
}

/// The owner of the running task, required by every reference task.
fn owner(cx: &TaskCx) -> Result<Owner, TaskError> {
    let ctx = cx.context().ok_or_else(|| no_user(cx))?;
    let user = ctx.user_id().ok_or_else(|| no_user(cx))?;
    Ok(Owner::new(user, ctx.tenant().map(str::to_string)))
}

fn no_user(cx: &TaskCx) -> TaskError {
    TaskError::fatal(format!(
        "{} needs a user: it was submitted without a user context",
        cx.name()
    ))
    .with_kind("no_user")
}

fn library_error(e: LibraryError) -> TaskError {
    match e {
        LibraryError::NoUser => TaskError::fatal(e.to_string()).with_kind("no_user"),
        other => TaskError::retryable(other.to_string()).with_kind("index_unavailable"),
    }
}

/// Runs blocking index work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LibraryError> + Send + 'static,
) -> Result<T, TaskError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TaskError::retryable(format!("index worker thread failed: {e}")))?
        .map_err(library_error)
}

/// Stops the work once the task is cancelled (by its user, or by a worker shutting down), so a
/// cancelled document does not land in the index. The worker records the outcome.
async fn stop_if_cancelled(cx: &TaskCx) -> Result<(), TaskError> {
    if !cx.is_cancelled() {
        return Ok(());
    }
    Err(TaskError::retryable("the task was cancelled").with_kind("cancelled"))
}

/// Checks the content before chunking; the error says what is wrong and where.
fn validate(title: &str, content: &str) -> Result<(), TaskError> {
    let invalid = |kind: &str, message: String, details: serde_json::Value| {
        Err(TaskError::fatal(message)
            .with_kind(kind)
            .with_details(details))
    };
    if content.trim().is_empty() {
        return invalid(
            "empty_content",
            "the document's content is empty: there is nothing to index".into(),
            json!({"title": title, "length": content.len()}),
        );
    }
    if content.len() > MAX_CONTENT_BYTES {
        return invalid(
            "content_too_large",
            format!(
                "the document is {} bytes; the limit is {MAX_CONTENT_BYTES}",
                content.len()
            ),
            json!({"title": title, "length": content.len(), "limit": MAX_CONTENT_BYTES}),
        );
    }
    if let Some(offset) = content
        .char_indices()
        .find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        .map(|(i, _)| i)
    {
        return invalid(
            "binary_content",
            format!(
                "the content holds a control character at byte {offset}: it looks binary, not text"
            ),
            json!({"title": title, "offset": offset}),
        );
    }
    Ok(())
}

impl Task for IngestDocument {
    const NAME: &'static str = "ingest_document";
    type Output = Ingested;

    async fn run(self, cx: TaskCx) -> Result<Ingested, TaskError> {
        let library = cx.resource::<Library>()?;
        let owner = owner(&cx)?;
        cx.plan_steps(["chunk", "embed", "index", "freshness"]);
        tracing::info!(title = %self.title, bytes = self.content.len(), "ingesting document");

        let chunks = cx
            .step("chunk", async {
                validate(&self.title, &self.content)?;
                Ok(embed::chunk(&self.content))
            })
            .await?;

        let total = chunks.len() as u64;
        let embedded = cx
            .step("embed", async {
                let mut out = Vec::with_capacity(chunks.len());
                let mut vocabulary = HashSet::new();
                for (i, text) in chunks.into_iter().enumerate() {
                    vocabulary.extend(embed::terms(&text));
                    let vector = embed::embed(&text);
                    out.push((text, vector));
                    stop_if_cancelled(&cx).await?;
                    cx.progress(
                        i as u64 + 1,
                        total,
                        Some(format!("embedded chunk {} of {total}", i + 1)),
                    );
                    tokio::task::yield_now().await;
                }
                if vocabulary.is_empty() {
                    return Err(TaskError::fatal(
                        "the content has no indexable terms (only punctuation or symbols)",
                    )
                    .with_kind("no_terms")
                    .with_details(json!({"title": self.title, "chunks": total})));
                }
                Ok((out, vocabulary.len()))
            })
            .await?;
        let (embedded, terms) = embedded;
        let chunk_count = embedded.len();
        stop_if_cancelled(&cx).await?;

        let indexed = cx
            .step("index", {
                let (library, owner) = (Arc::clone(&library), owner.clone());
                let (task_id, title) = (cx.id().to_string(), self.title.clone());
                blocking(move || library.add_document(&owner, &task_id, &title, &embedded))
            })
            .await?;

        let superseded = cx
            .step("freshness", {
                let (task_id, title) = (cx.id().to_string(), self.title.clone());
                blocking(move || library.supersede_older(&owner, &task_id, &title))
            })
            .await?;

        Ok(Ingested {
            chunks: chunk_count,
            terms,
            document_id: indexed.document_id,
            superseded,
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(120)
    }
}

/// Appends messages to the submitting user's conversation history.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PersistConversation {
    /// The conversation.
    pub session_id: String,
    /// Messages to append, in order.
    pub messages: Vec<Message>,
}

/// What `persist_conversation` returns.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Persisted {
    /// The conversation.
    pub session_id: String,
    /// Messages appended by this task.
    pub stored: usize,
    /// Messages in the conversation now.
    pub total: usize,
}

impl Task for PersistConversation {
    const NAME: &'static str = "persist_conversation";
    type Output = Persisted;

    async fn run(self, cx: TaskCx) -> Result<Persisted, TaskError> {
        let library = cx.resource::<Library>()?;
        let owner = owner(&cx)?;
        if self.session_id.trim().is_empty() || self.session_id.len() > 200 {
            return Err(TaskError::fatal("session_id must be 1 to 200 characters")
                .with_kind("invalid_session"));
        }
        if self.messages.is_empty() {
            return Err(
                TaskError::fatal("there are no messages to persist").with_kind("no_messages")
            );
        }
        tracing::info!(session_id = %self.session_id, messages = self.messages.len(), "persisting conversation");
        let stored = self.messages.len();
        let (task_id, session_id) = (cx.id().to_string(), self.session_id.clone());
        let messages = self.messages;
        let total = cx
            .step(
                "persist",
                blocking(move || library.append_messages(&owner, &task_id, &session_id, &messages)),
            )
            .await?;
        Ok(Persisted {
            session_id: self.session_id,
            stored,
            total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use errand_core::{Context, Resources, StepStatus, TaskId};

    fn cx(user: Option<&str>, library: &Library) -> TaskCx {
        let mut resources = Resources::new();
        resources.insert(Arc::new(library.clone()));
        let ctx = user.map(|u| Context::builder().user_id(u).tenant("acme").build());
        TaskCx::detached(TaskId::new(), IngestDocument::NAME, ctx.clone(), resources)
    }

    #[tokio::test]
    async fn ingest_runs_all_steps_and_is_searchable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = Library::new(dir.path());
        let c = cx(Some("alice"), &lib);
        let doc = IngestDocument {
            title: "Field notes".into(),
            content: "Otters sleep holding hands.\n\nThey also use rocks as tools.".into(),
        };
        let out = doc.run(c.clone()).await.expect("ingested");
        assert_eq!(out.chunks, 1);
        assert!(out.terms >= 9);
        let steps = c.draft().steps.expect("steps");
        assert!(
            steps.iter().all(|s| s.status == StepStatus::Success),
            "{steps:?}"
        );
        let hits = lib
            .search(&Owner::new("alice", Some("acme".into())), "rocks", 5)
            .expect("search");
        assert_eq!(hits.len(), 1);
    }

    #[tokio::test]
    async fn invalid_content_fails_at_its_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = Library::new(dir.path());
        for (content, step, kind) in [
            ("", "chunk", "empty_content"),
            ("ok\u{0}binary", "chunk", "binary_content"),
            ("!!! ??? ...", "embed", "no_terms"),
        ] {
            let c = cx(Some("alice"), &lib);
            let err = IngestDocument {
                title: "t".into(),
                content: content.into(),
            }
            .run(c.clone())
            .await
            .expect_err("fails");
            assert_eq!(err.kind(), kind);
            let steps = c.draft().steps.expect("steps");
            let failed: Vec<&str> = steps
                .iter()
                .filter(|s| s.status == StepStatus::Failed)
                .map(|s| s.name.as_str())
                .collect();
            assert_eq!(failed, [step]);
        }
    }

    #[tokio::test]
    async fn a_cancelled_ingestion_stops_before_the_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = Library::new(dir.path());
        let mut resources = Resources::new();
        resources.insert(Arc::new(lib.clone()));
        let ctx = Context::builder().user_id("alice").tenant("acme").build();
        let token = tokio_util::sync::CancellationToken::new();
        token.cancel();
        let c = TaskCx::detached_with_token(
            TaskId::new(),
            IngestDocument::NAME,
            Some(ctx),
            resources,
            token,
        );
        let err = IngestDocument {
            title: "t".into(),
            content: "Cormorants dry their wings in the sun.".into(),
        }
        .run(c.clone())
        .await
        .expect_err("stops");
        assert_eq!(err.kind(), "cancelled");
        let owner = Owner::new("alice", Some("acme".into()));
        assert!(
            lib.search(&owner, "cormorants", 5)
                .expect("search")
                .is_empty()
        );
        let steps = c.draft().steps.expect("steps");
        assert!(
            steps
                .iter()
                .all(|s| !(s.name == "index" && s.status == StepStatus::Success))
        );
    }

    #[tokio::test]
    async fn no_user_is_a_fatal_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = Library::new(dir.path());
        let err = IngestDocument {
            title: "t".into(),
            content: "x".into(),
        }
        .run(cx(None, &lib))
        .await
        .expect_err("fails");
        assert_eq!((err.kind(), err.is_retryable()), ("no_user", false));
    }
}
