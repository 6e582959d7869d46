-- Claims up to ARGV[2] due tasks of one queue, oldest first, each with a lease until ARGV[3]
-- and its attempt and fence raised by one.
-- Delayed and retrying tasks that fell due are first moved from the schedule to the back of
-- the ready list, so they need no poller. Entries of tasks cancelled while waiting are
-- dropped here (cancel leaves them in the list, counted in `stale`, rather than scanning it).
-- Returns per task: id, record (as now stored).

local limit = tonumber(ARGV[2])
local lease_until = ARGV[3]

local due = redis.call('ZRANGE', schedule_key, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
if #due > 0 then
  redis.call('ZREM', schedule_key, unpack(due))
  redis.call('RPUSH', ready_key, unpack(due))
end

local ids = redis.call('LPOP', ready_key, limit)
if not ids then
  return {}
end
local keys = {}
for i, id in ipairs(ids) do
  keys[i] = task_key(id)
end
local records = redis.call('MGET', unpack(keys))

local out, writes, leased = {}, {}, {}
local stale = 0
for i, id in ipairs(ids) do
  local s = records[i]
  local state, cr, f, a, pos
  if s then
    state, cr, f, a, pos = string.match(s, '^(%a+)|(%d)|(%d+)|(%d+)|%d*|%d*|%d*|()')
  end
  if state and is_waiting(state) then
    local claimed = 'running|' .. cr .. '|' .. (tonumber(f) + 1) .. '|' .. (tonumber(a) + 1)
      .. '|' .. now .. '|' .. now .. '||' .. string.sub(s, pos)
    writes[#writes + 1] = keys[i]
    writes[#writes + 1] = claimed
    leased[#leased + 1] = lease_until
    leased[#leased + 1] = id
    out[#out + 1] = id
    out[#out + 1] = claimed
    announce(id, claimed)
  else
    stale = stale + 1
  end
end
if stale > 0 then
  -- Never below zero, whatever happened to the counter (a flushed key, a manual edit).
  if redis.call('DECRBY', stale_key, stale) < 0 then
    redis.call('SET', stale_key, 0)
  end
end
if #writes > 0 then
  redis.call('MSET', unpack(writes))
  redis.call('ZADD', leases_key, unpack(leased))
end
return out
