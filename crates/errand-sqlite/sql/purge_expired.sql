-- Deletes up to ?2 finished records whose expiry passed (walks tasks_expiry).
-- ?1 now, ?2 limit
DELETE FROM tasks WHERE seq IN (
    SELECT seq FROM tasks WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2
)
