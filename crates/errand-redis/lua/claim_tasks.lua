-- `claim_tasks(limit, lease_ms, tokens)` claims up to `limit` due tasks of one queue, oldest
-- first, each with a lease of `lease_ms`, its attempt raised by one, and a new lease token: the
-- k-th claimed task takes the k-th 32 characters of `tokens` (random tokens from the claiming
-- process, one per task it may claim).
-- Delayed and retrying tasks that fell due are first moved from the schedule to the back of
-- the ready list, so they need no poller. Entries are then popped from the head until
-- `limit` tasks are claimed or the list is empty, looking at no more than `limit + SKIP_MAX`
-- entries per call (so a long run of dead entries cannot hold Redis; the next claim goes
-- on from there):
-- - an entry whose id is in `skip` is dead (its task was cancelled while waiting): dropped;
-- - an entry of a scheduled or retrying task whose due time is still ahead (the clock that
--   moved it was ahead of this one) goes back to the schedule, never runs early;
-- - an entry of a waiting task is claimed; any other is dropped.
-- Returns per task: id, record (as now stored), when it was due ('' if it was pending since
-- its creation: its `created` time).

local SKIP_MAX = 1000

-- Its counter and index changes wait for the caller's `flush_indexes`.
local function claim_tasks(limit, lease_ms, tokens)
  local lease_until = decimal(now + lease_ms)

  local due = redis.call('ZRANGE', schedule_key, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  if #due > 0 then
    redis.call('ZREM', schedule_key, unpack(due))
    redis.call('RPUSH', ready_key, unpack(due))
  end

  -- Asked once per call: with no dead entry in the list, an entry costs no set lookup.
  local skipping = redis.call('EXISTS', skip_key) == 1
  local out, writes, leased, dropped, later = {}, {}, {}, {}, {}
  local claimed, budget = 0, limit + SKIP_MAX
  while claimed < limit and budget > 0 do
    local want = math.min(limit - claimed, budget)
    local ids = redis.call('LPOP', ready_key, want)
    if not ids then
      break
    end
    budget = budget - #ids
    local dead = skipping and redis.call('SMISMEMBER', skip_key, unpack(ids))
    local live, keys = {}, {}
    for i, id in ipairs(ids) do
      if dead and dead[i] == 1 then
        dropped[#dropped + 1] = id
      else
        live[#live + 1] = id
        keys[#keys + 1] = task_key(id)
      end
    end
    local records = #keys > 0 and redis.call('MGET', unpack(keys)) or {}
    for i, id in ipairs(live) do
      local s = records[i]
      local state, cr, a, n, pos
      if s then
        -- A pending task, the usual case, needs two captures; the others all five.
        cr, a, pos = string.match(s, '^pending|(%d)|%x+|(%d+)|%d*|%d*||()')
        if pos then
          state, n = 'pending', ''
        else
          state, cr, a, n, pos = string.match(s, '^(%a+)|(%d)|%x+|(%d+)|%d*|%d*|(%d*)|()')
        end
      end
      if state and state ~= 'pending' and is_waiting(state) and n ~= '' and tonumber(n) > now then
        later[#later + 1] = n
        later[#later + 1] = id
      elseif state and is_waiting(state) then
        moved(string.match(s, '^%d*|%d*|%d+|%d+|%d+|([%x%.]+)\n', pos), state, 'running')
        local token = string.sub(tokens, claimed * 32 + 1, claimed * 32 + 32)
        local claimed_record = 'running|' .. cr .. '|' .. token .. '|'
          .. decimal(tonumber(a) + 1) .. '|' .. now_s .. '|' .. now_s .. '||' .. string.sub(s, pos)
        writes[#writes + 1] = keys[i]
        writes[#writes + 1] = claimed_record
        leased[#leased + 1] = lease_until
        leased[#leased + 1] = id
        out[#out + 1] = id
        out[#out + 1] = claimed_record
        out[#out + 1] = n
        claimed = claimed + 1
        announce(id, claimed_record)
      end
    end
    if #ids < want then
      break
    end
  end
  if #dropped > 0 then
    redis.call('SREM', skip_key, unpack(dropped))
  end
  if #later > 0 then
    redis.call('ZADD', schedule_key, unpack(later))
  end
  if #writes > 0 then
    redis.call('MSET', unpack(writes))
    redis.call('ZADD', leases_key, unpack(leased))
  end
  return out
end
