-- Asks the worker running a task to stop it.
-- ?1 seq, ?2 now
UPDATE tasks SET cancel_requested = 1, updated_at = ?2 WHERE seq = ?1
