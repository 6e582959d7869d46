-- Claims the oldest due tasks of the queues, skipping rows other claims hold, and gives each
-- a lease: the next token of $4 (in claim order), until $5.
-- $1 queues, $2 now, $3 limit, $4 lease tokens, $5 lease deadline, $6 worker id
WITH picked AS (
    SELECT id, row_number() OVER (ORDER BY due_at, id) AS rn
    FROM (
        SELECT id, due_at FROM {schema}.tasks
        WHERE queue = ANY($1) AND status IN ('pending', 'scheduled', 'retrying') AND due_at <= $2
        ORDER BY due_at, id
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    ) due
), tokens AS (
    SELECT token, ord FROM unnest($4::uuid[]) WITH ORDINALITY AS u(token, ord)
)
UPDATE {schema}.tasks t
SET status = 'running', attempt = t.attempt + 1, lease_token = tokens.token, lease_until = $5,
    started_at = $2, updated_at = $2, next_attempt_at = NULL, worker_id = $6
FROM picked JOIN tokens ON tokens.ord = picked.rn
WHERE t.id = picked.id
RETURNING picked.rn, t.id, t.lease_token, t.name, t.queue, t.args, t.context, t.user_id,
          t.tenant, t.correlation_id, t.attempt, t.max_attempts, t.timeout_ms, t.due_at
