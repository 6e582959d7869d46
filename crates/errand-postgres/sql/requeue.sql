-- Puts running tasks back to wait: retrying after a backoff, or pending again. A NULL due time
-- is the task's original place in the queue (its creation); errors, progress and steps merge
-- as in finish.sql.
-- $1 ids, $2 states, $3 due times, $4 next attempt times, $5 attempt changes, $6 errors,
-- $7 progress, $8 steps, $9 now, $10 attempt logs (NULL keeps the stored one)
UPDATE {schema}.tasks t
SET status = r.status,
    due_at = coalesce(r.due_at, t.created_at),
    next_attempt_at = r.next_attempt_at,
    attempt = greatest(t.attempt + r.attempt_delta, 0),
    error = CASE WHEN r.error IS NULL THEN t.error ELSE nullif(r.error::jsonb, 'null'::jsonb) END,
    progress = coalesce(r.progress::jsonb, t.progress),
    steps = coalesce(r.steps::jsonb, t.steps),
    attempts = coalesce(r.attempts::jsonb, t.attempts),
    lease_token = NULL, lease_until = NULL, worker_id = NULL, updated_at = $9
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int[],
            $6::text[], $7::text[], $8::text[], $10::text[])
    AS r(id, status, due_at, next_attempt_at, attempt_delta, error, progress, steps, attempts)
WHERE t.id = r.id AND t.id = ANY($1)
