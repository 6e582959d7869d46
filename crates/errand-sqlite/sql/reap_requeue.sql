-- A lapsed lease with attempts left: pending again, in its original place in the queue.
-- ?1 seq, ?2 now, ?3 error
UPDATE tasks SET
    status = 'pending',
    error = ?3,
    due_at = created_at,
    lease_until = NULL,
    updated_at = ?2
WHERE seq = ?1
