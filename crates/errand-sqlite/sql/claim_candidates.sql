-- The oldest due tasks of one queue, as (due_at, id, seq): read from tasks_ready alone (it
-- covers them), walking from its left edge. Only the rows of the tasks claimed are read.
-- ?1 queue, ?2 now, ?3 limit
SELECT due_at, id, seq FROM tasks
WHERE queue = ?1 AND due_at <= ?2
ORDER BY due_at, id
LIMIT ?3
