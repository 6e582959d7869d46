-- Hands back tasks of one queue whose lease lapsed: cancelled if cancellation was requested,
-- failed if no attempt is left, else pending again (due at its creation, so it goes first).
-- Atomic, so any number of workers may run it at once: a lease is reaped exactly once.
-- ARGV: now, limit, error JSON (retryable), error JSON (final).
-- Returns {requeued, failed, cancelled, leases examined}.

local limit = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', leases_key, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
if #ids == 0 then
  return { 0, 0, 0, 0 }
end
redis.call('ZREM', leases_key, unpack(ids))

local requeued, failed, cancelled = 0, 0, 0
local expiring, readies = {}, {}
for _, id in ipairs(ids) do
  local k = task_key(id)
  local v = redis.call('HMGET', k, 's', 'cr', 'a', 'm', 't', 'o', 'K', 'w', 'c')
  if v[1] == 'running' then
    if v[2] then
      finish(k, id, 'cancelled', tonumber(v[5]), v[6], v[7], {}, expiring)
      cancelled = cancelled + 1
    elseif tonumber(v[3]) >= tonumber(v[4]) then
      finish(k, id, 'failed', tonumber(v[5]), v[6], v[7], { 'e', ARGV[4] }, expiring)
      failed = failed + 1
    else
      redis.call('HSET', k, 's', 'pending', 'e', ARGV[3], 'u', now)
      readies[#readies + 1] = v[9]
      readies[#readies + 1] = id
      requeued = requeued + 1
    end
    announce(k, id, v[8])
  end
end
if #expiring > 0 then
  redis.call('ZADD', expiry_key, unpack(expiring))
end
if #readies > 0 then
  redis.call('ZADD', ready_key, unpack(readies))
  wake()
end
return { requeued, failed, cancelled, #ids }
