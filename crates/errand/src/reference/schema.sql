-- One user's documents and conversations (reference pipeline). Idempotent: run once per file
-- and process.
PRAGMA journal_mode = WAL;

CREATE TABLE IF NOT EXISTS documents (
    id            INTEGER PRIMARY KEY,
    task_id       TEXT NOT NULL UNIQUE,
    title         TEXT NOT NULL,
    indexed_at    TEXT NOT NULL,
    superseded_by INTEGER
);
CREATE INDEX IF NOT EXISTS documents_title ON documents (title);

CREATE TABLE IF NOT EXISTS chunks (
    document_id INTEGER NOT NULL,
    chunk_no    INTEGER NOT NULL,
    embedding   BLOB NOT NULL,
    PRIMARY KEY (document_id, chunk_no)
);

CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5 (
    content,
    title UNINDEXED,
    document_id UNINDEXED,
    chunk_no UNINDEXED
);

CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    task_id    TEXT NOT NULL,
    role       TEXT NOT NULL,
    content    TEXT NOT NULL,
    stored_at  TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX IF NOT EXISTS messages_task ON messages (session_id, task_id);
