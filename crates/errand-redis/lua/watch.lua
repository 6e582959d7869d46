-- Counts one more (ARGV[3] = 1) or one fewer (ARGV[3] = -1) process watching a task, so the
-- other scripts publish its changes only while somebody listens. Never counts a task that
-- does not exist.
-- ARGV: now (unused), task id, delta.
-- Returns the new count, or -1 when the task does not exist.

local id, delta = ARGV[2], tonumber(ARGV[3])
if delta > 0 and redis.call('EXISTS', task_key(id)) == 0 then
  return -1
end
local watching = redis.call('HINCRBY', watched_key, id, delta)
if watching <= 0 then
  redis.call('HDEL', watched_key, id)
end
return watching
