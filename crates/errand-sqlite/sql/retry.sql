-- Requeues a failed or cancelled task with a fresh set of attempts (same args and context).
-- ?1 seq, ?2 now, ?3 live_key (NULL when another live task holds the key)
UPDATE tasks SET
    status = 'pending',
    attempt = 0,
    cancel_requested = 0,
    started_at = NULL,
    completed_at = NULL,
    expires_at = NULL,
    next_attempt_at = NULL,
    error = NULL,
    result = NULL,
    progress = NULL,
    steps = NULL,
    updated_at = ?2,
    due_at = ?2,
    live_key = ?3
WHERE seq = ?1
