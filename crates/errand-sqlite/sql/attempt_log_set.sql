-- Replaces a task's attempt log, with the entry of the attempt that just ended, in the
-- transaction of the write that ended it.
-- ?1 seq, ?2 attempts
UPDATE tasks SET attempts = ?2 WHERE seq = ?1
