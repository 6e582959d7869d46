-- Renews the leases that are still current. Locks their rows in id order, as every statement
-- that locks several tasks does, so two never wait on each other in a cycle (in `tasks`, only a
-- running task has a lease token; on `id = ANY`, see lock_leases.sql). The update walks the
-- primary key once through the array of held ids (beside a join, the array would be sorted
-- again for every row).
-- $1 ids, $2 tokens, $3 new deadline
WITH held AS (
    SELECT t.id FROM {schema}.tasks t
    JOIN unnest($1::uuid[], $2::uuid[]) AS l(id, token) ON t.id = l.id AND t.lease_token = l.token
    WHERE t.id = ANY($1)
    ORDER BY t.id
    FOR UPDATE OF t
)
UPDATE {schema}.tasks t SET lease_until = $3
WHERE t.id = ANY(ARRAY(SELECT id FROM held))
RETURNING t.id, t.cancel_requested
