-- Merges progress and steps of attempts whose lease is current (NULL keeps what is stored).
-- $1 ids, $2 tokens, $3 progress (JSON), $4 steps (JSON), $5 now
UPDATE {schema}.tasks t
SET progress = coalesce(u.progress::jsonb, t.progress),
    steps = coalesce(u.steps::jsonb, t.steps),
    updated_at = $5
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[]) AS u(id, token, progress, steps)
WHERE t.id = u.id AND t.lease_token = u.token AND t.status = 'running'
RETURNING t.id, t.cancel_requested
