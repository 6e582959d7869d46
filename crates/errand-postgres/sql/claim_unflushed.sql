-- Lets this transaction (a claim) commit without waiting for its WAL flush. A claim lost in a
-- crash of the server is a lease that lapsed at once: the task is waiting again after
-- recovery and is claimed anew, and the fencing rejects whatever its first worker reports
-- (the token it holds was never stored). At-least-once delivery holds, and a drain does not
-- wait for a disk flush per claim. Enqueues and completions still wait for theirs.
SELECT set_config('synchronous_commit', 'off', true)
