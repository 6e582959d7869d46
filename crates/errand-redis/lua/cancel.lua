-- Cancels one task: a waiting one at once; a running one by flagging it and telling every
-- process on the cancel channel ARGV[3] (the worker holding it fires the task's token; its
-- heartbeats also answer "cancel requested").
-- ARGV: now, task id, cancel channel.
-- Returns {'cancelled', record} | {'requested', record} | {'conflict', state} | {'missing'},
-- where record is the task's hash as a flat field/value list.

local id = ARGV[2]
local k = task_key(id)
local v = redis.call('HMGET', k, 's', 't', 'o', 'K', 'w', 'n')
local state = v[1]
if not state then
  return { 'missing' }
end
if state == 'pending' or state == 'scheduled' or state == 'retrying' then
  redis.call('ZREM', ready_key, id)
  if v[6] then
    redis.call('HDEL', k, 'n')
  end
  local expiring = {}
  finish(k, id, 'cancelled', tonumber(v[2]), v[3], v[4], {}, expiring)
  redis.call('ZADD', expiry_key, unpack(expiring))
  announce(k, id, v[5])
  return { 'cancelled', redis.call('HGETALL', k) }
end
if state == 'running' then
  redis.call('HSET', k, 'cr', 1, 'u', now)
  redis.call('PUBLISH', ARGV[3], id)
  announce(k, id, v[5])
  return { 'requested', redis.call('HGETALL', k) }
end
return { 'conflict', state }
