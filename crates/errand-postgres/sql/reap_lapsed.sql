-- Locks running tasks whose lease lapsed, skipping those another reaper holds. $1 now
SELECT id, attempt, max_attempts, cancel_requested, started_at, attempts FROM {schema}.tasks
WHERE status = 'running' AND lease_until < $1
ORDER BY id
LIMIT 1000
FOR UPDATE SKIP LOCKED
