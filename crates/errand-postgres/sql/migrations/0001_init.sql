-- Version 1 of errand's schema. `{schema}` is the configured schema (quoted).
--
-- `tasks` holds live tasks only (pending, scheduled, running, retrying), so claims and reaps
-- walk a table the size of the backlog; a task that finishes moves to `finished` in the
-- transaction that finishes it. Both tables have the same columns.
CREATE TABLE {schema}.tasks (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    queue text NOT NULL,
    status text NOT NULL,
    user_id text,
    tenant text,
    correlation_id text,
    request_id text,
    key text,
    -- The idempotency key scoped to the owner (`errand_core::scoped_key`): unique among live
    -- tasks. A task requeued by hand while another live task holds its key stores NULL.
    scoped_key text,
    -- Arguments and sealed context as submitted, byte for byte (the seal is bound to them).
    args text NOT NULL,
    context text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    run_at timestamptz,
    -- When a waiting task may be claimed.
    due_at timestamptz,
    started_at timestamptz,
    completed_at timestamptz,
    next_attempt_at timestamptz,
    expires_at timestamptz,
    attempt integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    timeout_ms bigint NOT NULL,
    ttl_ms bigint NOT NULL,
    lease_token uuid,
    lease_until timestamptz,
    worker_id text,
    cancel_requested boolean NOT NULL DEFAULT false,
    progress jsonb,
    steps jsonb NOT NULL DEFAULT '[]',
    error jsonb,
    result text,
    history jsonb NOT NULL DEFAULT '[]'
);
-- Every task is inserted, updated and deleted here within minutes: vacuum the table after every
-- 1,000 dead rows, whatever its size, so claims do not wade through dead index entries.
ALTER TABLE {schema}.tasks SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 1000);
CREATE UNIQUE INDEX tasks_key ON {schema}.tasks (scoped_key) WHERE scoped_key IS NOT NULL;
CREATE INDEX tasks_ready ON {schema}.tasks (queue, due_at, id)
    WHERE status IN ('pending', 'scheduled', 'retrying');
CREATE INDEX tasks_lapsed ON {schema}.tasks (lease_until) WHERE status = 'running';
CREATE INDEX tasks_owner ON {schema}.tasks (user_id, tenant, id);
CREATE INDEX tasks_correlation ON {schema}.tasks (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX tasks_request ON {schema}.tasks (request_id) WHERE request_id IS NOT NULL;

CREATE TABLE {schema}.finished (LIKE {schema}.tasks INCLUDING DEFAULTS, PRIMARY KEY (id));
CREATE INDEX finished_expiry ON {schema}.finished (expires_at);
CREATE INDEX finished_owner ON {schema}.finished (user_id, tenant, id);
CREATE INDEX finished_correlation ON {schema}.finished (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX finished_request ON {schema}.finished (request_id) WHERE request_id IS NOT NULL;

-- Every record, live or finished (finished ones past `expires_at` are expired: readers skip
-- them). A filter with `ORDER BY id` reads both tables' indexes in one merged walk.
CREATE VIEW {schema}.records AS
    SELECT * FROM {schema}.tasks
    UNION ALL
    SELECT * FROM {schema}.finished;

-- Tasks per owner, queue and state: `counts` plus the deltas not yet folded into it. Every
-- statement that changes `tasks` or `finished` appends its deltas (one row per owner, queue
-- and state it changed) by trigger, in its own transaction; appending takes no lock another
-- writer waits for, and `fold_counts.sql` folds the deltas into `counts` now and then.
CREATE TABLE {schema}.counts (
    owner text NOT NULL,
    user_id text,
    tenant text,
    queue text NOT NULL,
    state text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (owner, queue, state)
);
CREATE TABLE {schema}.count_deltas (
    owner text NOT NULL,
    user_id text,
    tenant text,
    queue text NOT NULL,
    state text NOT NULL,
    n bigint NOT NULL
);
ALTER TABLE {schema}.count_deltas SET (autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0);

CREATE FUNCTION {schema}.count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.count_deltas (owner, user_id, tenant, queue, state, n)
    SELECT json_build_array(tenant, user_id)::text, min(user_id), min(tenant), queue, status, count(*)
    FROM new_rows GROUP BY 1, queue, status;
    RETURN NULL;
END $$;

CREATE FUNCTION {schema}.count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.count_deltas (owner, user_id, tenant, queue, state, n)
    SELECT json_build_array(tenant, user_id)::text, min(user_id), min(tenant), queue, status, -count(*)
    FROM old_rows GROUP BY 1, queue, status;
    RETURN NULL;
END $$;

CREATE FUNCTION {schema}.count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.count_deltas (owner, user_id, tenant, queue, state, n)
    SELECT owner, min(user_id), min(tenant), queue, state, sum(d)
    FROM (
        SELECT json_build_array(tenant, user_id)::text AS owner, user_id, tenant, queue,
               status AS state, -1 AS d FROM old_rows
        UNION ALL
        SELECT json_build_array(tenant, user_id)::text, user_id, tenant, queue, status, 1
        FROM new_rows
    ) changes
    GROUP BY owner, queue, state HAVING sum(d) <> 0;
    RETURN NULL;
END $$;

CREATE TRIGGER tasks_count_insert AFTER INSERT ON {schema}.tasks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_inserted();
CREATE TRIGGER tasks_count_delete AFTER DELETE ON {schema}.tasks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_deleted();
CREATE TRIGGER tasks_count_update AFTER UPDATE ON {schema}.tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_updated();
CREATE TRIGGER finished_count_insert AFTER INSERT ON {schema}.finished
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_inserted();
CREATE TRIGGER finished_count_delete AFTER DELETE ON {schema}.finished
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_deleted();
CREATE TRIGGER finished_count_update AFTER UPDATE ON {schema}.finished
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_updated();

-- Who watches which task's changes (`Store::watch`), so that writers notify only the changes
-- somebody watches: a NOTIFY serializes commits (it takes a lock held until the commit's WAL
-- flush). A registration lapses at `until` unless its watcher renews it.
CREATE TABLE {schema}.watching (
    task_id uuid NOT NULL,
    watcher text NOT NULL,
    until timestamptz NOT NULL,
    PRIMARY KEY (task_id, watcher)
);

-- Facts every process of the deployment agrees on (`Store::get_meta`, `Store::swap_meta`).
CREATE TABLE {schema}.meta (
    name text PRIMARY KEY,
    value text NOT NULL
);
