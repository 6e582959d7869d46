-- Merges progress and steps of attempts whose lease is current (NULL keeps what is stored),
-- locking their rows in id order (see heartbeat.sql).
-- $1 ids, $2 tokens, $3 progress (JSON), $4 steps (JSON), $5 now
WITH held AS (
    SELECT t.id, u.progress, u.steps FROM {schema}.tasks t
    JOIN unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[]) AS u(id, token, progress, steps)
        ON t.id = u.id AND t.lease_token = u.token
    WHERE t.id = ANY($1)
    ORDER BY t.id
    FOR UPDATE OF t
)
UPDATE {schema}.tasks t
SET progress = coalesce(held.progress::jsonb, t.progress),
    steps = coalesce(held.steps::jsonb, t.steps),
    updated_at = $5
FROM held
WHERE t.id = held.id AND t.id = ANY($1)
RETURNING t.id, t.cancel_requested
