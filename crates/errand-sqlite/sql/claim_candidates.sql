-- The oldest due tasks of one queue (walks tasks_ready from its left edge).
-- ?1 queue, ?2 now, ?3 limit
SELECT due_at, id, seq FROM tasks
WHERE queue = ?1 AND due_at <= ?2
ORDER BY due_at, id
LIMIT ?3
