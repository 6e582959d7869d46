-- Claims the oldest due tasks of the queues and gives each a lease: the next token of $4 (in
-- claim order, by its rank), until $5. The claimed rows are updated by a join on the primary
-- key, one lookup per row (an `id = ANY(...)` condition beside it would be sorted again for
-- every row; inside the `finish_and_claim` function, planned once, `enable_seqscan = off`
-- keeps the join on the index). Each queue is walked on its own along `tasks_ready` (an ordered
-- index scan that stops after $3 rows, skipping rows other claims hold: `queue = ANY(...)`
-- would read every due task of the queues and sort them), then the oldest $3 of all are
-- taken; with several queues, the others' rows stay locked until the claim commits.
-- $1 queues, $2 now, $3 limit, $4 lease tokens, $5 lease deadline, $6 worker id
WITH picked AS (
    SELECT due.id, row_number() OVER (ORDER BY due.due_at, due.id) AS rn
    FROM (
        SELECT c.id, c.due_at
        FROM unnest($1::text[]) AS q(queue)
        CROSS JOIN LATERAL (
            SELECT id, due_at FROM {schema}.tasks t
            WHERE t.queue = q.queue AND t.status IN ('pending', 'scheduled', 'retrying')
              AND t.due_at <= $2
            ORDER BY t.due_at, t.id
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ) c
        ORDER BY c.due_at, c.id
        LIMIT $3
    ) due
)
UPDATE {schema}.tasks t
SET status = 'running', attempt = t.attempt + 1, lease_token = ($4::uuid[])[picked.rn::int],
    lease_until = $5, started_at = $2, updated_at = $2, next_attempt_at = NULL, worker_id = $6
FROM picked
WHERE t.id = picked.id
RETURNING picked.rn, t.id, t.lease_token, t.name, t.queue, t.args, t.context, t.user_id,
          t.tenant, t.correlation_id, t.attempt, t.max_attempts, t.timeout_ms, t.due_at
