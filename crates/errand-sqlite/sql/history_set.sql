-- Replaces a task's action history (the JSON array of who cancelled or retried it): cancel and
-- retry write the history with its new entry in the transaction of the change it records.
-- ?1 seq, ?2 history
UPDATE tasks SET history = ?2 WHERE seq = ?1
