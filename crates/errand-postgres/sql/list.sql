-- A page of records, newest first, live and finished alike.
-- $1 everyone's, $2 user id, $3 tenant, $4 state, $5 name, $6 queue, $7 lowest id,
-- $8 id upper bound (excluded), $9 search text, $10 search id, $11 limit, $12 now
SELECT {columns} FROM {schema}.records
WHERE ($1 OR (user_id IS NOT DISTINCT FROM $2 AND tenant IS NOT DISTINCT FROM $3))
  AND ($4::text IS NULL OR status = $4) AND ($5::text IS NULL OR name = $5)
  AND ($6::text IS NULL OR queue = $6) AND ($7::uuid IS NULL OR id >= $7)
  AND ($8::uuid IS NULL OR id < $8)
  AND ($9::text IS NULL OR correlation_id = $9 OR request_id = $9 OR id = $10)
  AND (expires_at IS NULL OR expires_at > $12)
ORDER BY id DESC
LIMIT $11
