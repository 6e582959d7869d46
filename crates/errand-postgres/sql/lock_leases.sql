-- Locks the running tasks whose lease is current, in id order. $1 ids, $2 tokens
SELECT t.id, t.cancel_requested FROM {schema}.tasks t
JOIN unnest($1::uuid[], $2::uuid[]) AS l(id, token) ON t.id = l.id AND t.lease_token = l.token
WHERE t.status = 'running'
ORDER BY t.id
FOR UPDATE OF t
