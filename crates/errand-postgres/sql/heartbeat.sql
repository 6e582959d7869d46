-- Renews the leases that are still current. $1 ids, $2 tokens, $3 new deadline
UPDATE {schema}.tasks t SET lease_until = $3
FROM unnest($1::uuid[], $2::uuid[]) AS l(id, token)
WHERE t.id = l.id AND t.lease_token = l.token AND t.status = 'running'
RETURNING t.id, t.cancel_requested
