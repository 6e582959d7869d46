-- Moves live tasks to `finished` in a final state. For each: NULL error keeps the stored one,
-- JSON null clears it; NULL progress, steps, history or attempt log keep the stored ones.
-- $1 ids, $2 states, $3 errors, $4 results, $5 progress, $6 steps, $7 histories, $8 now,
-- $9 attempt logs
WITH f AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $9::text[])
        AS f(id, status, error, result, progress, steps, history, attempts)
), moved AS (
    -- By the ids alone: one walk of the primary key for the batch (an id condition beside a
    -- join would sort the id array again for every row).
    DELETE FROM {schema}.tasks t WHERE t.id = ANY($1) RETURNING t.*
)
INSERT INTO {schema}.finished (id, name, queue, status, user_id, tenant, correlation_id,
    request_id, key, scoped_key, args, context, created_at, updated_at, run_at, due_at,
    started_at, completed_at, next_attempt_at, expires_at, attempt, max_attempts, timeout_ms,
    ttl_ms, lease_token, lease_until, worker_id, cancel_requested, progress, steps, error,
    result, history, trace_id, attempts)
SELECT m.id, m.name, m.queue, f.status, m.user_id, m.tenant, m.correlation_id, m.request_id,
       m.key, m.scoped_key, m.args, m.context, m.created_at, $8, m.run_at, NULL, m.started_at,
       $8, NULL, $8 + m.ttl_ms * interval '1 millisecond', m.attempt, m.max_attempts,
       m.timeout_ms, m.ttl_ms, NULL, NULL, NULL, m.cancel_requested,
       coalesce(f.progress::jsonb, m.progress), coalesce(f.steps::jsonb, m.steps),
       CASE WHEN f.error IS NULL THEN m.error ELSE nullif(f.error::jsonb, 'null'::jsonb) END,
       f.result, coalesce(f.history::jsonb, m.history), m.trace_id,
       coalesce(f.attempts::jsonb, m.attempts)
FROM moved m JOIN f ON f.id = m.id
