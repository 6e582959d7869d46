-- Deletes up to ?2 finished records whose expiry passed (walks tasks_expiry); returns the
-- owner, queue and state of each (for the counters).
-- ?1 now, ?2 limit
DELETE FROM tasks WHERE seq IN (
    SELECT seq FROM tasks WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2
)
RETURNING tenant, user_id, queue, status
