-- Locks the running tasks whose lease is current, in id order (in `tasks`, only a running
-- task has a lease token). Every statement that reads tasks by a batch of ids also says
-- `id = ANY(ids)`: a filter the planner prices per row and per id, so it walks the primary
-- key whatever its statistics say (they may have been taken when the table was empty).
-- $1 ids, $2 tokens
SELECT t.id, t.cancel_requested, t.attempt, t.started_at, t.attempts FROM {schema}.tasks t
JOIN unnest($1::uuid[], $2::uuid[]) AS l(id, token) ON t.id = l.id AND t.lease_token = l.token
WHERE t.id = ANY($1)
ORDER BY t.id
FOR UPDATE OF t
