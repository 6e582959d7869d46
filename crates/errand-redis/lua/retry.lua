-- Requeues a failed or cancelled task with a fresh set of attempts; its payload (and so its
-- sealed context) is untouched. Its idempotency key is live again unless another live task
-- took it meanwhile.
-- ARGV: now, task id.
-- Returns {'requeued', record} | {'conflict', state} | {'missing'}.

local id = ARGV[2]
local k = task_key(id)
local v = redis.call('HMGET', k, 's', 'x', 'o', 'K', 'w')
local state = v[1]
if not state or (v[2] and tonumber(v[2]) <= now) then
  return { 'missing' }
end
if state ~= 'failed' and state ~= 'cancelled' then
  return { 'conflict', state }
end
redis.call('PERSIST', k)
redis.call('ZREM', expiry_key, id .. '|' .. v[3])
redis.call('HDEL', k, 'cr', 'st', 'co', 'x', 'n', 'e', 'r', 'p', 'sp')
redis.call('HSET', k, 's', 'pending', 'a', 0, 'u', now)
if v[4] then
  redis.call('SET', v[4], id, 'NX')
end
redis.call('ZADD', ready_key, now, id)
wake()
announce(k, id, v[5])
return { 'requeued', redis.call('HGETALL', k) }
