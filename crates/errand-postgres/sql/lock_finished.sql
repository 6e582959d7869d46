-- One finished, unexpired task's record, locked. $1 id, $2 now
SELECT {columns} FROM {schema}.finished WHERE id = $1 AND expires_at > $2 FOR UPDATE
