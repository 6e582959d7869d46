//! [`Library`]: each user's documents and conversations, in a SQLite file of their own (with a
//! full-text index), so one user's data can never turn up in another's search.
//!
//! Writes are idempotent per task id, because errand delivers at least once: a retried or
//! redelivered task replaces what its earlier attempt wrote instead of adding to it, and which
//! version of a document is current is decided by task id (submission order), not by when an
//! attempt ran.

use super::embed;
use errand_core::Owner;
use errand_sqlite::private::{private_dir, private_file};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SCHEMA: &str = include_str!("schema.sql");

/// The directory of users without a tenant: [`encode`] escapes `@`, so no tenant's directory
/// can have this name (a tenant named `_` or `@none` gets a directory of its own).
const NO_TENANT_DIR: &str = "@none";

/// The per-user data of the reference pipeline, under one directory.
#[derive(Debug, Clone)]
pub struct Library {
    root: PathBuf,
    /// Per file: whether this process has brought it to the current schema.
    ready: Arc<Mutex<HashMap<PathBuf, Arc<Mutex<bool>>>>>,
}

/// A library operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// The work has no user to attribute it to.
    #[error("the reference pipeline needs a user: the task has no user context")]
    NoUser,
    /// The index directory or file could not be used.
    #[error("the index at {path} cannot be used: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("the index at {path} failed: {source}")]
    Sqlite {
        /// The path.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
}

/// One search hit: the best-matching chunk of a document.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// The document.
    pub document_id: i64,
    /// Its title.
    pub title: String,
    /// The task that indexed it.
    pub task_id: String,
    /// The matching text, terms in `[brackets]`.
    pub snippet: String,
    /// Relevance (higher is better): keyword rank plus embedding similarity.
    pub score: f64,
    /// Cosine similarity of the query's embedding and the chunk's.
    pub similarity: f64,
}

/// One conversation message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Message {
    /// Who said it (`user`, `assistant`, ...).
    pub role: String,
    /// What was said.
    pub content: String,
}

/// A stored message, with when it was stored.
#[derive(Debug, Clone, Serialize)]
pub struct StoredMessage {
    /// Position in the conversation, from 1.
    pub seq: i64,
    /// Who said it.
    pub role: String,
    /// What was said.
    pub content: String,
    /// When it was stored (RFC 3339).
    pub stored_at: String,
}

/// What indexing a document wrote.
#[derive(Debug, Clone, Copy)]
pub struct Indexed {
    /// The document's id in the user's index.
    pub document_id: i64,
    /// Chunks stored.
    pub chunks: usize,
}

impl Library {
    /// A library under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            ready: Arc::default(),
        }
    }

    /// The directory holding the per-user files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file holding `owner`'s data: `<root>/<tenant>/<user>.sqlite`, names percent-encoded;
    /// users without a tenant are under [`NO_TENANT_DIR`].
    fn path_for(&self, owner: &Owner) -> Result<PathBuf, LibraryError> {
        let user = owner.user_id.as_deref().ok_or(LibraryError::NoUser)?;
        let tenant = owner
            .tenant
            .as_deref()
            .map_or_else(|| NO_TENANT_DIR.to_string(), encode);
        Ok(self
            .root
            .join(tenant)
            .join(format!("{}.sqlite", encode(user))))
    }

    fn connect(&self, owner: &Owner, create: bool) -> Result<Option<Connection>, LibraryError> {
        let path = self.path_for(owner)?;
        if !create && !path.exists() {
            return Ok(None);
        }
        if let Some(dir) = path.parent() {
            private_dir(dir).map_err(|source| LibraryError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // A user's index is theirs alone: created 0600 before SQLite opens it.
        private_file(&path).map_err(|source| LibraryError::Io {
            path: path.clone(),
            source,
        })?;
        let sqlite = |source| LibraryError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        // The schema (and WAL mode, which the file keeps) once per file and process: first
        // opens of one file wait for each other (switching to WAL needs the file to itself),
        // other users' files are not held up.
        let file_lock = Arc::clone(
            self.ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(path.clone())
                .or_default(),
        );
        let mut ready = file_lock.lock().unwrap_or_else(|p| p.into_inner());
        if !*ready {
            conn.execute_batch(SCHEMA).map_err(sqlite)?;
            *ready = true;
        }
        Ok(Some(conn))
    }

    fn err(&self, owner: &Owner) -> impl Fn(rusqlite::Error) -> LibraryError {
        let path = self.path_for(owner).unwrap_or_else(|_| self.root.clone());
        move |source| LibraryError::Sqlite {
            path: path.clone(),
            source,
        }
    }

    /// Stores a document's chunks and embeddings for `owner`, replacing whatever the same task
    /// stored before.
    pub fn add_document(
        &self,
        owner: &Owner,
        task_id: &str,
        title: &str,
        chunks: &[(String, Vec<f32>)],
    ) -> Result<Indexed, LibraryError> {
        let err = self.err(owner);
        let Some(mut conn) = self.connect(owner, true)? else {
            return Err(LibraryError::NoUser);
        };
        let tx = write_transaction(&mut conn).map_err(&err)?;
        let previous: Option<i64> = tx
            .query_row(
                "SELECT id FROM documents WHERE task_id = ?1",
                [task_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?;
        if let Some(id) = previous {
            tx.execute("DELETE FROM chunks WHERE document_id = ?1", [id])
                .map_err(&err)?;
            tx.execute("DELETE FROM chunks_fts WHERE document_id = ?1", [id])
                .map_err(&err)?;
            tx.execute("DELETE FROM documents WHERE id = ?1", [id])
                .map_err(&err)?;
        }
        tx.execute(
            "INSERT INTO documents (task_id, title, indexed_at) VALUES (?1, ?2, ?3)",
            params![task_id, title, now()],
        )
        .map_err(&err)?;
        let document_id = tx.last_insert_rowid();
        for (n, (text, vector)) in chunks.iter().enumerate() {
            tx.execute(
                "INSERT INTO chunks (document_id, chunk_no, embedding) VALUES (?1, ?2, ?3)",
                params![document_id, n as i64, embed::to_bytes(vector)],
            )
            .map_err(&err)?;
            tx.execute(
                "INSERT INTO chunks_fts (content, title, document_id, chunk_no) VALUES (?1, ?2, ?3, ?4)",
                params![text, title, document_id, n as i64],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        Ok(Indexed {
            document_id,
            chunks: chunks.len(),
        })
    }

    /// Makes the newest version of `title` the one search shows: newest by task id (UUIDv7,
    /// so by submission time), never by when an attempt happened to run, so a redelivered or
    /// retried older ingestion cannot hide a newer one. Returns how many older versions the
    /// task's document replaces (0 if a newer version exists; this one is then superseded).
    pub fn supersede_older(
        &self,
        owner: &Owner,
        task_id: &str,
        title: &str,
    ) -> Result<usize, LibraryError> {
        let err = self.err(owner);
        let Some(mut conn) = self.connect(owner, true)? else {
            return Err(LibraryError::NoUser);
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let (newest_id, newest_task): (i64, String) = tx
            .query_row(
                "SELECT id, task_id FROM documents WHERE title = ?1 ORDER BY task_id DESC LIMIT 1",
                [title],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(&err)?;
        tx.execute(
            "UPDATE documents SET superseded_by = CASE WHEN id = ?1 THEN NULL ELSE ?1 END WHERE title = ?2",
            params![newest_id, title],
        )
        .map_err(&err)?;
        let replaced: i64 = if newest_task == task_id {
            tx.query_row(
                "SELECT COUNT(*) FROM documents WHERE title = ?1 AND id <> ?2",
                params![title, newest_id],
                |r| r.get(0),
            )
            .map_err(&err)?
        } else {
            0
        };
        tx.commit().map_err(&err)?;
        Ok(replaced as usize)
    }

    /// `owner`'s current documents matching any term of `query`, best first, one hit per
    /// document: full-text candidates re-ranked by embedding similarity.
    pub fn search(
        &self,
        owner: &Owner,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Hit>, LibraryError> {
        let err = self.err(owner);
        let Some(conn) = self.connect(owner, false)? else {
            return Ok(Vec::new());
        };
        let terms: Vec<String> = embed::terms(query).map(|t| format!("\"{t}\"")).collect();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = embed::embed(query);
        let mut stmt = conn
            .prepare(
                "SELECT d.id, d.title, d.task_id,
                        snippet(chunks_fts, 0, '[', ']', '…', 16), -bm25(chunks_fts), c.embedding
                 FROM chunks_fts
                 JOIN documents d ON d.id = chunks_fts.document_id
                 JOIN chunks c ON c.document_id = chunks_fts.document_id
                              AND c.chunk_no = chunks_fts.chunk_no
                 WHERE chunks_fts MATCH ?1 AND d.superseded_by IS NULL
                 ORDER BY bm25(chunks_fts) LIMIT ?2",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map(params![terms.join(" OR "), (limit * 8) as i64], |r| {
                let keyword: f64 = r.get(4)?;
                let embedding: Vec<u8> = r.get(5)?;
                let similarity =
                    f64::from(embed::similarity(&wanted, &embed::from_bytes(&embedding)));
                Ok(Hit {
                    document_id: r.get(0)?,
                    title: r.get(1)?,
                    task_id: r.get(2)?,
                    snippet: r.get(3)?,
                    score: keyword + 2.0 * similarity,
                    similarity,
                })
            })
            .map_err(&err)?;
        // Keyword candidates, re-ranked with the embedding; the best chunk per document.
        let mut hits: Vec<Hit> = Vec::new();
        for hit in rows {
            let hit = hit.map_err(&err)?;
            match hits.iter_mut().find(|h| h.document_id == hit.document_id) {
                Some(h) if h.score < hit.score => *h = hit,
                Some(_) => {}
                None => hits.push(hit),
            }
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(limit);
        Ok(hits)
    }

    /// Appends `messages` to `owner`'s conversation `session_id` (idempotent per task);
    /// returns the conversation's length.
    pub fn append_messages(
        &self,
        owner: &Owner,
        task_id: &str,
        session_id: &str,
        messages: &[Message],
    ) -> Result<usize, LibraryError> {
        let err = self.err(owner);
        let Some(mut conn) = self.connect(owner, true)? else {
            return Err(LibraryError::NoUser);
        };
        let tx = write_transaction(&mut conn).map_err(&err)?;
        let done: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE session_id = ?1 AND task_id = ?2)",
                params![session_id, task_id],
                |r| r.get(0),
            )
            .map_err(&err)?;
        if !done {
            let at = now();
            for m in messages {
                tx.execute(
                    "INSERT INTO messages (session_id, seq, task_id, role, content, stored_at)
                     VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE session_id = ?1), ?2, ?3, ?4, ?5)",
                    params![session_id, task_id, m.role, m.content, at],
                )
                .map_err(&err)?;
            }
        }
        let total: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE session_id = ?1",
                [session_id],
                |r| r.get(0),
            )
            .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(total as usize)
    }

    /// `owner`'s conversation `session_id`, oldest first; `None` if it has no messages.
    pub fn conversation(
        &self,
        owner: &Owner,
        session_id: &str,
    ) -> Result<Option<Vec<StoredMessage>>, LibraryError> {
        let err = self.err(owner);
        let Some(conn) = self.connect(owner, false)? else {
            return Ok(None);
        };
        let mut stmt = conn
            .prepare(
                "SELECT seq, role, content, stored_at FROM messages WHERE session_id = ?1 ORDER BY seq",
            )
            .map_err(&err)?;
        let messages = stmt
            .query_map([session_id], |r| {
                Ok(StoredMessage {
                    seq: r.get(0)?,
                    role: r.get(1)?,
                    content: r.get(2)?,
                    stored_at: r.get(3)?,
                })
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok((!messages.is_empty()).then_some(messages))
    }
}

/// A transaction that takes the write lock at once. A deferred one reads first and upgrades
/// later, and SQLite fails such an upgrade with "database is locked" at once (without the busy
/// timeout) when another task of the same user wrote in between.
fn write_transaction(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A name safe for a file: lower-case ASCII letters, digits, `-` and `_` kept, every other
/// byte `%XX`. Upper-case letters are escaped too, so two names never share a file on a
/// case-insensitive file system (macOS, Windows): `Alice` is `%41lice`, `alice` is `alice`.
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(user: &str) -> Owner {
        Owner::new(user, Some("acme".into()))
    }

    fn chunks(text: &str) -> Vec<(String, Vec<f32>)> {
        embed::chunk(text)
            .into_iter()
            .map(|c| {
                let v = embed::embed(&c);
                (c, v)
            })
            .collect()
    }

    #[test]
    fn each_user_searches_only_their_own_documents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = Library::new(dir.path());
        lib.add_document(
            &owner("alice"),
            "t1",
            "Otters",
            &chunks("Otters hold hands while sleeping."),
        )
        .expect("index");
        lib.add_document(
            &owner("bob"),
            "t2",
            "Otters too",
            &chunks("Bob also writes about otters."),
        )
        .expect("index");
        let hits = lib
            .search(&owner("alice"), "otters sleeping", 10)
            .expect("search");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].title, "Otters");
        assert!(hits[0].snippet.contains("[Otters]"));
        assert!(
            lib.search(&owner("carol"), "otters", 10)
                .expect("search")
                .is_empty()
        );
        assert!(
            lib.search(&owner("alice"), "\"; DROP TABLE documents; --", 10)
                .expect("search")
                .is_empty()
        );
    }

    #[test]
    fn redelivered_tasks_do_not_duplicate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = Library::new(dir.path());
        let o = owner("alice");
        lib.add_document(&o, "t1", "Doc", &chunks("alpha beta"))
            .expect("index");
        lib.add_document(&o, "t1", "Doc", &chunks("alpha beta"))
            .expect("index again");
        assert_eq!(lib.search(&o, "alpha", 10).expect("search").len(), 1);
        let m = [Message {
            role: "user".into(),
            content: "hi".into(),
        }];
        assert_eq!(lib.append_messages(&o, "t9", "s1", &m).expect("append"), 1);
        assert_eq!(
            lib.append_messages(&o, "t9", "s1", &m)
                .expect("append again"),
            1
        );
        assert_eq!(lib.append_messages(&o, "t10", "s1", &m).expect("append"), 2);
        let conv = lib.conversation(&o, "s1").expect("read").expect("exists");
        assert_eq!(conv.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
        assert!(
            lib.conversation(&owner("bob"), "s1")
                .expect("read")
                .is_none()
        );
    }

    #[test]
    fn concurrent_writers_of_one_user_wait_for_each_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = Library::new(dir.path());
        let o = owner("alice");
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let (lib, o) = (lib.clone(), o.clone());
                std::thread::spawn(move || {
                    let doc = chunks(&format!("document number {i} about kestrels"));
                    lib.add_document(&o, &format!("d{i}"), &format!("Doc {i}"), &doc)?;
                    let m = [Message {
                        role: "user".into(),
                        content: format!("message {i}"),
                    }];
                    lib.append_messages(&o, &format!("m{i}"), "s1", &m)
                })
            })
            .collect();
        for w in writers {
            w.join()
                .expect("no panic")
                .expect("a writer waits for the lock instead of failing");
        }
        assert_eq!(lib.search(&o, "kestrels", 100).expect("search").len(), 8);
        let conv = lib.conversation(&o, "s1").expect("read").expect("exists");
        assert_eq!(
            conv.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (1..=8).collect::<Vec<_>>()
        );
    }

    #[test]
    fn fresh_version_supersedes_older_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = Library::new(dir.path());
        let o = owner("alice");
        lib.add_document(&o, "t1", "Plan", &chunks("version one of the plan"))
            .expect("index");
        assert_eq!(lib.supersede_older(&o, "t1", "Plan").expect("fresh"), 0);
        lib.add_document(&o, "t2", "Plan", &chunks("version two of the plan"))
            .expect("index");
        assert_eq!(lib.supersede_older(&o, "t2", "Plan").expect("fresh"), 1);
        let shown = |lib: &Library| {
            let hits = lib.search(&o, "plan", 10).expect("search");
            hits.iter().map(|h| h.task_id.clone()).collect::<Vec<_>>()
        };
        assert_eq!(shown(&lib), ["t2"]);
        // The older ingestion runs again (redelivered, or retried by hand): still hidden.
        lib.add_document(&o, "t1", "Plan", &chunks("version one of the plan"))
            .expect("index again");
        assert_eq!(lib.supersede_older(&o, "t1", "Plan").expect("fresh"), 0);
        assert_eq!(shown(&lib), ["t2"]);
    }

    #[test]
    fn names_are_safe_on_disk() {
        assert_eq!(encode("../etc/passwd"), "%2E%2E%2Fetc%2Fpasswd");
        assert_eq!(encode("a-b_c9"), "a-b_c9");
        assert_eq!(encode("Alice"), "%41lice");
        assert_ne!(
            encode("Alice").to_lowercase(),
            encode("alice").to_lowercase(),
            "distinct on a case-insensitive file system"
        );
        let lib = Library::new("/data");
        let p = lib.path_for(&Owner::new("../x", None)).expect("path");
        assert_eq!(p, Path::new("/data/@none/%2E%2E%2Fx.sqlite"));
        let dir = |tenant: Option<&str>| {
            lib.path_for(&Owner::new("alice", tenant.map(str::to_string)))
                .expect("path")
        };
        assert_ne!(dir(None), dir(Some("_")), "no tenant is not tenant `_`");
        assert_ne!(dir(None), dir(Some("@none")));
        assert!(matches!(
            lib.path_for(&Owner::default()),
            Err(LibraryError::NoUser)
        ));
    }
}
