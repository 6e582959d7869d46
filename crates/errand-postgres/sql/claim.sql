-- Claims the oldest due tasks of the queues and gives each a lease: the next token of $4 (in
-- claim order, found by the id's place in the array of claimed ids), until $5. The rows are
-- updated through that array alone, a value computed once (not a join, which the planner
-- may turn into a scan of a whole index when it plans on an empty table, and which beside
-- an id condition would sort the array again for every row): one walk of the primary key. Each queue is walked on its own along `tasks_ready` (an ordered
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
), in_order AS (
    SELECT ARRAY(SELECT id FROM picked ORDER BY rn) AS ids
)
UPDATE {schema}.tasks t
SET status = 'running', attempt = t.attempt + 1,
    lease_token = ($4::uuid[])[array_position((SELECT ids FROM in_order), t.id)],
    lease_until = $5, started_at = $2, updated_at = $2, next_attempt_at = NULL, worker_id = $6
WHERE t.id = ANY((SELECT ids FROM in_order)::uuid[])
RETURNING array_position((SELECT ids FROM in_order), t.id)::bigint AS rn, t.id, t.lease_token,
          t.name, t.queue, t.args, t.context, t.user_id, t.tenant, t.correlation_id, t.attempt,
          t.max_attempts, t.timeout_ms, t.due_at
