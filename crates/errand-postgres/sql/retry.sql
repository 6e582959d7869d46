-- Moves a finished task back to wait with a fresh set of attempts, its arguments and context
-- unchanged; it takes its key back unless another live task holds it.
-- $1 id, $2 now, $3 history
WITH moved AS (
    DELETE FROM {schema}.finished WHERE id = $1 RETURNING *
)
INSERT INTO {schema}.tasks (id, name, queue, status, user_id, tenant, correlation_id,
    request_id, key, scoped_key, args, context, created_at, updated_at, run_at, due_at,
    max_attempts, timeout_ms, ttl_ms, history, trace_id, attempts)
SELECT m.id, m.name, m.queue, 'pending', m.user_id, m.tenant, m.correlation_id, m.request_id,
       m.key,
       CASE WHEN EXISTS (SELECT 1 FROM {schema}.tasks l WHERE l.scoped_key = m.scoped_key)
            THEN NULL ELSE m.scoped_key END,
       m.args, m.context, m.created_at, $2, m.run_at, $2, m.max_attempts, m.timeout_ms,
       m.ttl_ms, $3::jsonb, m.trace_id, m.attempts
FROM moved m
RETURNING {columns}
