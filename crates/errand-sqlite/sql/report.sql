-- Merges a running task's progress and steps, if its lease is still held.
-- ?1 id, ?2 lease_token, ?3 progress (NULL: unchanged), ?4 steps (NULL: unchanged), ?5 now
UPDATE tasks SET
    progress = coalesce(?3, progress),
    steps = coalesce(?4, steps),
    updated_at = ?5
WHERE id = ?1 AND lease_token = ?2 AND status = 'running'
RETURNING cancel_requested
