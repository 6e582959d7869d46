-- Ends attempts of one queue.
-- ARGV: now, then per completion 7 values: id, fence, outcome, payload, delay (ms),
--   progress JSON ('' unchanged), steps JSON ('' unchanged).
-- Outcomes: S success (payload: result JSON), F failed (payload: error JSON), C cancelled,
--   R retry after `delay` (payload: error JSON), L released (back to pending, attempt given back).
-- A retry or release of a task whose cancellation was requested ends it cancelled.
-- Returns per completion: 1 applied, 0 stale (the lease was lost; nothing changed).

local out, done, expiring, requeued = {}, {}, {}, {}
for i = 2, #ARGV, 7 do
  local id, fence, outcome, payload, delay, progress, steps =
    ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local k = task_key(id)
  local v = redis.call('HMGET', k, 's', 'f', 'cr', 't', 'o', 'K', 'w', 'c', 'a', 'e')
  if v[1] == 'running' and tonumber(v[2]) == fence then
    done[#done + 1] = id
    local fields = {}
    if progress ~= '' then
      fields[#fields + 1] = 'p'
      fields[#fields + 1] = progress
    end
    if steps ~= '' then
      fields[#fields + 1] = 'sp'
      fields[#fields + 1] = steps
    end
    local cancel = v[3] and (outcome == 'R' or outcome == 'L')
    if outcome == 'S' then
      fields[#fields + 1] = 'r'
      fields[#fields + 1] = payload
      if v[10] then
        redis.call('HDEL', k, 'e')
      end
      finish(k, id, 'success', tonumber(v[4]), v[5], v[6], fields, expiring)
    elseif outcome == 'F' then
      fields[#fields + 1] = 'e'
      fields[#fields + 1] = payload
      finish(k, id, 'failed', tonumber(v[4]), v[5], v[6], fields, expiring)
    elseif outcome == 'C' or cancel then
      finish(k, id, 'cancelled', tonumber(v[4]), v[5], v[6], fields, expiring)
    elseif outcome == 'R' then
      local next_at = now + tonumber(delay)
      redis.call('HSET', k, 's', 'retrying', 'e', payload, 'n', next_at, 'u', now, unpack(fields))
      requeued[#requeued + 1] = next_at
      requeued[#requeued + 1] = id
    else
      local attempt = math.max(tonumber(v[9]) - 1, 0)
      redis.call('HSET', k, 's', 'pending', 'a', attempt, 'u', now, unpack(fields))
      redis.call('HDEL', k, 'st')
      requeued[#requeued + 1] = v[8]
      requeued[#requeued + 1] = id
    end
    announce(k, id, v[7])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #done > 0 then
  call_chunked('ZREM', leases_key, done, 1)
end
if #expiring > 0 then
  call_chunked('ZADD', expiry_key, expiring, 2)
end
if #requeued > 0 then
  call_chunked('ZADD', ready_key, requeued, 2)
  wake()
end
return out
