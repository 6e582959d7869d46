-- The task to cancel.
-- ?1 id
SELECT seq, status FROM tasks WHERE id = ?1
