-- Renews a lease that is still held.
-- ?1 id, ?2 fence, ?3 lease_until
UPDATE tasks SET lease_until = ?3
WHERE id = ?1 AND fence = ?2 AND status = 'running'
RETURNING cancel_requested
