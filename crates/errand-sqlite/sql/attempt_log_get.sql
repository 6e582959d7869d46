-- A task's current attempt, its start and its attempt log (the JSON array of how attempts
-- that did not succeed ended; NULL: none yet), read by the write that ends the attempt.
-- ?1 id
SELECT seq, attempt, started_at, attempts FROM tasks WHERE id = ?1
