-- The task to cancel.
-- ?1 id
SELECT seq, status, history FROM tasks WHERE id = ?1
