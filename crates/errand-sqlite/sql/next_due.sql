-- When the earliest waiting task of a queue falls due (after a claim left it waiting).
-- ?1 queue
SELECT due_at FROM tasks WHERE queue = ?1 AND due_at IS NOT NULL ORDER BY due_at LIMIT 1
