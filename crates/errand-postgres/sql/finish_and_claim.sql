-- A worker's steady state as one statement (so one round trip, and one commit when it runs
-- alone): attempts that succeeded move to `finished`, then a claim as in claim.sql. Only leases
-- still current end, their rows locked in id order as every statement locking several tasks
-- does; the others are stale and change nothing. One row per claimed task in claim order (a
-- single row of NULL task columns when nothing was claimed), each with whether somebody
-- watches a task this changed; the first row also carries the leases that ended (on every
-- row, they made the answer grow with the square of the batch).
-- $1–$6 as in claim.sql; $7 ids, $8 lease tokens, $9 results, $10 progress (NULL keeps the
-- stored one), $11 steps (NULL keeps them)
WITH claimed AS (
{claim}
), f AS (
    -- A lease given twice ends with its first completion.
    SELECT DISTINCT ON (id, token) id, token, result, progress, steps
    FROM unnest($7::uuid[], $8::uuid[], $9::text[], $10::text[], $11::text[]) WITH ORDINALITY
        AS f(id, token, result, progress, steps, ord)
    ORDER BY id, token, ord
), held AS (
    SELECT t.id FROM {schema}.tasks t
    JOIN f ON t.id = f.id AND t.lease_token = f.token
    WHERE t.id = ANY($7)
    ORDER BY t.id
    FOR UPDATE OF t
), moved AS (
    -- By the locked ids alone: one walk of the primary key for the whole batch (an id
    -- condition beside a join would sort the id array again for every row).
    DELETE FROM {schema}.tasks t
    WHERE t.id = ANY(ARRAY(SELECT id FROM held))
    RETURNING t.*
), done AS (
    INSERT INTO {schema}.finished (id, name, queue, status, user_id, tenant, correlation_id,
        request_id, key, scoped_key, args, context, created_at, updated_at, run_at, due_at,
        started_at, completed_at, next_attempt_at, expires_at, attempt, max_attempts,
        timeout_ms, ttl_ms, lease_token, lease_until, worker_id, cancel_requested, progress,
        steps, error, result, history, trace_id, attempts)
    SELECT m.id, m.name, m.queue, 'success', m.user_id, m.tenant, m.correlation_id,
           m.request_id, m.key, m.scoped_key, m.args, m.context, m.created_at, $2, m.run_at,
           NULL, m.started_at, $2, NULL, $2 + m.ttl_ms * interval '1 millisecond', m.attempt,
           m.max_attempts, m.timeout_ms, m.ttl_ms, NULL, NULL, NULL, m.cancel_requested,
           coalesce(f.progress::jsonb, m.progress), coalesce(f.steps::jsonb, m.steps),
           NULL, f.result, m.history, m.trace_id, m.attempts
    FROM moved m JOIN f ON f.id = m.id AND f.token = m.lease_token
    RETURNING id
)
SELECT c.*,
       CASE WHEN c.rn IS NULL OR c.rn = 1
           THEN ARRAY(SELECT id FROM moved ORDER BY id) END AS finished,
       CASE WHEN c.rn IS NULL OR c.rn = 1
           THEN ARRAY(SELECT lease_token FROM moved ORDER BY id) END AS finished_tokens,
       EXISTS (SELECT 1 FROM {schema}.watching w
               WHERE w.task_id = ANY(ARRAY(SELECT id FROM moved) || ARRAY(SELECT id FROM claimed))
                 AND w.until > now())
           AS watched
FROM (SELECT) AS one LEFT JOIN claimed c ON true
ORDER BY c.rn
