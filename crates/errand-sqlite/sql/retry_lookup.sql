-- The task to retry by hand.
-- ?1 id
SELECT seq, status, expires_at, key, user_id, tenant, history FROM tasks WHERE id = ?1
