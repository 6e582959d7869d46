-- errand's task table, version 1.
--
-- Times are integer microseconds since the Unix epoch (UTC); durations are microseconds.
-- A task is in exactly one of three places, and the partial indexes below hold only the rows
-- of their place, so each hot query is a short walk down a small B-tree whatever the number
-- of finished records:
--   waiting  (pending, scheduled, retrying): due_at is set      -> tasks_ready
--   running  (leased):                       lease_until is set -> tasks_leased
--   finished (success, failed, cancelled):   expires_at is set  -> tasks_expiry
CREATE TABLE tasks (
    seq              INTEGER PRIMARY KEY,   -- storage order; never shown
    id               BLOB    NOT NULL UNIQUE, -- the UUIDv7 task id, 16 bytes (sorts by time)
    name             TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    user_id          TEXT,
    tenant           TEXT,
    correlation_id   TEXT,
    request_id       TEXT,
    key              TEXT,                  -- the idempotency key as submitted
    live_key         TEXT,                  -- the owner-scoped key, while the task is live
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    run_at           INTEGER,
    started_at       INTEGER,
    completed_at     INTEGER,
    next_attempt_at  INTEGER,
    expires_at       INTEGER,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    timeout_ms       INTEGER NOT NULL,
    ttl_us           INTEGER NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    fence            INTEGER NOT NULL DEFAULT 0, -- grows with every claim
    due_at           INTEGER,               -- claimable from then on, while waiting
    lease_until      INTEGER,               -- lease expiry, while running
    worker_id        TEXT,                  -- the last claimant, for diagnostics
    progress         TEXT,                  -- JSON
    steps            TEXT,                  -- JSON array
    error            TEXT,                  -- JSON
    result           TEXT,                  -- JSON
    args             TEXT    NOT NULL,      -- JSON
    context          TEXT                   -- the sealed context document (JSON)
);

-- The claim path: the oldest due task of a queue, O(log n).
CREATE INDEX tasks_ready ON tasks (queue, due_at, id) WHERE due_at IS NOT NULL;
-- The reaper: leases that lapsed.
CREATE INDEX tasks_leased ON tasks (lease_until) WHERE lease_until IS NOT NULL;
-- The purge: finished records past their expiry.
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE expires_at IS NOT NULL;
-- Idempotency: one live task per owner-scoped key.
CREATE UNIQUE INDEX tasks_live_key ON tasks (live_key) WHERE live_key IS NOT NULL;
-- Listings: an owner's tasks, newest first.
CREATE INDEX tasks_owner ON tasks (tenant, user_id, id);
