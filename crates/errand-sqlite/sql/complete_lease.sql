-- The running task a completion's lease still holds, if any.
-- ?1 id, ?2 fence
SELECT seq, cancel_requested, queue FROM tasks
WHERE id = ?1 AND fence = ?2 AND status = 'running'
