-- Renews a lease that is still held.
-- ?1 id, ?2 lease_token, ?3 lease_until
UPDATE tasks SET lease_until = ?3
WHERE id = ?1 AND lease_token = ?2 AND status = 'running'
RETURNING cancel_requested
