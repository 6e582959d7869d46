-- Claims up to ARGV[2] due tasks of one queue, oldest first (by due time, then id), each
-- with a lease until ARGV[3] and its attempt and fence raised by one.
-- Due delayed and retrying tasks are claimed straight from the same schedule: the ready
-- set is ordered by due time, so nothing has to be promoted and nobody polls.
-- Returns per task: id, fence, attempt, max_attempts, payload.

local limit = tonumber(ARGV[2])
local lease_until = ARGV[3]

local ids = redis.call('ZRANGE', ready_key, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
if #ids == 0 then
  return {}
end
redis.call('ZREM', ready_key, unpack(ids))

local out, leased = {}, {}
for _, id in ipairs(ids) do
  local k = task_key(id)
  local v = redis.call('HMGET', k, 'f', 'a', 'm', 'd', 'n', 'w')
  if v[4] then
    local fence = tonumber(v[1]) + 1
    local attempt = tonumber(v[2]) + 1
    redis.call('HSET', k, 's', 'running', 'f', fence, 'a', attempt, 'st', now, 'u', now)
    if v[5] then
      redis.call('HDEL', k, 'n')
    end
    leased[#leased + 1] = lease_until
    leased[#leased + 1] = id
    out[#out + 1] = id
    out[#out + 1] = fence
    out[#out + 1] = attempt
    out[#out + 1] = v[3]
    out[#out + 1] = v[4]
    announce(k, id, v[6])
  end
end
if #leased > 0 then
  redis.call('ZADD', leases_key, unpack(leased))
end
return out
