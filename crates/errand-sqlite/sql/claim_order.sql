-- The oldest due tasks of one queue as (due_at, id, seq), for a claim from several queues:
-- read from tasks_ready alone (it covers them), so the tasks another queue outranks cost no
-- row read.
-- ?1 queue, ?2 now, ?3 limit
SELECT due_at, id, seq FROM tasks
WHERE queue = ?1 AND due_at <= ?2
ORDER BY due_at, id
LIMIT ?3
