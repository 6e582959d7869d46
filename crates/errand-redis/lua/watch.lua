-- Counts one more (ARGV[3] = 1) or one fewer (ARGV[3] = -1) process watching a task, so the
-- other scripts publish its changes only while somebody listens. Never creates a record.
-- ARGV: now (unused), task id, delta.
-- Returns the new count, or -1 when the task does not exist.

local k = task_key(ARGV[2])
if redis.call('EXISTS', k) == 0 then
  return -1
end
local watching = redis.call('HINCRBY', k, 'w', tonumber(ARGV[3]))
if watching <= 0 then
  redis.call('HDEL', k, 'w')
end
return watching
