-- Stores a batch of new tasks of one queue.
-- ARGV: now, count, then per task 8 values:
--   id, status (pending|scheduled), due (ms), max_attempts, ttl (ms), owner hash,
--   idempotency key name ('' without a key), payload (the immutable part, JSON).
-- Returns per task: id, status, deduplicated (0|1). A live task with the same key is
-- returned instead of a new one; an id that already exists (a resubmitted batch) is
-- returned as it is, so a client may safely resend an enqueue whose answer it lost.

local count = tonumber(ARGV[2])
local out = {}
local readies, all, by_owner, owners = {}, {}, {}, {}
local due_now = false

for i = 0, count - 1 do
  local j = 3 + i * 8
  local id, status, due, max, ttl, oh, keyname, payload =
    ARGV[j], ARGV[j + 1], ARGV[j + 2], ARGV[j + 3], ARGV[j + 4], ARGV[j + 5], ARGV[j + 6], ARGV[j + 7]
  local k = task_key(id)
  local existing = nil
  if keyname ~= '' then
    local live = redis.call('GET', keyname)
    if live then
      local state = redis.call('HGET', task_key(live), 's')
      if state then
        existing = { live, state, 1 }
      end
    end
  end
  if not existing and redis.call('EXISTS', k) == 1 then
    existing = { id, redis.call('HGET', k, 's'), 0 }
  end
  if existing then
    out[#out + 1] = existing[1]
    out[#out + 1] = existing[2]
    out[#out + 1] = existing[3]
  else
    if keyname ~= '' then
      redis.call('SET', keyname, id)
      redis.call('HSET', k, 's', status, 'f', 0, 'a', 0, 'm', max, 't', ttl, 'o', oh,
        'c', now, 'u', now, 'd', payload, 'K', keyname)
    else
      redis.call('HSET', k, 's', status, 'f', 0, 'a', 0, 'm', max, 't', ttl, 'o', oh,
        'c', now, 'u', now, 'd', payload)
    end
    readies[#readies + 1] = due
    readies[#readies + 1] = id
    all[#all + 1] = 0
    all[#all + 1] = id
    local list = by_owner[oh]
    if not list then
      list = {}
      by_owner[oh] = list
      owners[#owners + 1] = oh
    end
    list[#list + 1] = 0
    list[#list + 1] = id
    if tonumber(due) <= now then
      due_now = true
    end
    out[#out + 1] = id
    out[#out + 1] = status
    out[#out + 1] = 0
  end
end

if #readies > 0 then
  call_chunked('ZADD', ready_key, readies, 2)
  call_chunked('ZADD', ids_key, all, 2)
  for _, oh in ipairs(owners) do
    call_chunked('ZADD', owner_key(oh), by_owner[oh], 2)
  end
end
if due_now then
  wake()
end
return out
