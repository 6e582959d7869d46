-- One live task's record, locked. $1 id
SELECT {columns} FROM {schema}.tasks WHERE id = $1 FOR UPDATE
