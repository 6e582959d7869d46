-- The records of tasks, live or finished and not expired, without their arguments (as
-- listings and events show them). $1 ids, $2 now
SELECT {columns} FROM {schema}.records
WHERE id = ANY($1) AND (expires_at IS NULL OR expires_at > $2)
