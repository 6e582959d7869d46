-- One task's record with its arguments, live or finished and not expired. $1 id, $2 now
SELECT {columns}, args FROM {schema}.records
WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2)
