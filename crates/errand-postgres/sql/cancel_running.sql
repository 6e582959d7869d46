-- Requests cancellation of a running task. $1 id, $2 history, $3 now
UPDATE {schema}.tasks SET cancel_requested = true, history = $2::jsonb, updated_at = $3
WHERE id = $1
RETURNING {columns}
