-- errand's task table, version 3: listings answered from indexes, and counters per state.
--
-- Each filter of a listing has an index ordered by id, so a page is a short walk from the
-- cursor whatever the owner's history holds: per owner and for everyone, by task name, by
-- queue, and by final state. Final states are indexed only once reached (partial indexes on
-- expires_at, which is set exactly while a task is finished), so claims, which change the
-- state of a live task, touch no new index, and a completion adds one entry to each. Waiting
-- and running tasks of a state are found through tasks_ready and tasks_leased, which hold only
-- live tasks. Correlation and request ids (the search) have partial indexes of their own.
CREATE INDEX tasks_owner_name ON tasks (tenant, user_id, name, id);
CREATE INDEX tasks_owner_queue ON tasks (tenant, user_id, queue, id);
CREATE INDEX tasks_owner_done ON tasks (tenant, user_id, status, id) WHERE expires_at IS NOT NULL;
CREATE INDEX tasks_name ON tasks (name, id);
CREATE INDEX tasks_queue ON tasks (queue, id);
CREATE INDEX tasks_done ON tasks (status, id) WHERE expires_at IS NOT NULL;
CREATE INDEX tasks_correlation ON tasks (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX tasks_request ON tasks (request_id) WHERE request_id IS NOT NULL;

-- Tasks per state, kept by the statements that change states, in their transaction (see
-- src/tally.rs). A scope is '' (everyone), 'o' followed by the owner as the JSON array
-- [tenant, user_id], or 'q' followed by a queue name.
CREATE TABLE task_counts (
    scope  TEXT    NOT NULL,
    status TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (scope, status)
) WITHOUT ROWID;

INSERT INTO task_counts (scope, status, n)
SELECT '', status, count(*) FROM tasks GROUP BY status;
INSERT INTO task_counts (scope, status, n)
SELECT 'o' || json_array(tenant, user_id), status, count(*) FROM tasks
GROUP BY tenant, user_id, status;
INSERT INTO task_counts (scope, status, n)
SELECT 'q' || queue, status, count(*) FROM tasks GROUP BY queue, status;
