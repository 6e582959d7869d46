-- Up to ?2 running tasks whose lease lapsed, longest lapsed first (walks tasks_leased from its
-- left edge).
-- ?1 now, ?2 limit
SELECT seq, id, cancel_requested, attempt, max_attempts, tenant, user_id, queue FROM tasks
WHERE lease_until <= ?1
ORDER BY lease_until
LIMIT ?2
