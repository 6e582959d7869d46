-- Shared by every errand script (prepended to each one when the crate is built).
--
-- KEYS[1] is the queue's key base, `{prefix:queue}`: every key a script touches is that base
-- followed by a suffix, so all of them carry the same hash tag and live in one cluster slot.
-- ARGV[1] is "now" in milliseconds, read from the store's clock (never Redis's own time), so
-- tests drive leases, delays, backoff and expiry with a manual clock.

local base = KEYS[1]
local now = tonumber(ARGV[1])

local ready_key = base .. ':ready'
local leases_key = base .. ':leases'
local expiry_key = base .. ':expiry'
local ids_key = base .. ':ids'

-- A task's record (a hash).
local function task_key(id)
  return base .. ':t:' .. id
end

-- The listing index of one owner (by owner hash) in this queue.
local function owner_key(oh)
  return base .. ':o:' .. oh
end

-- Publishes the whole record on the task's event channel, but only while some process
-- watches it (field `w` counts watching processes): unwatched tasks pay nothing.
local function announce(k, id, watched)
  if watched and tonumber(watched) > 0 then
    redis.call('PUBLISH', base .. ':ev:' .. id, cjson.encode(redis.call('HGETALL', k)))
  end
end

-- Wakes idle workers of this queue, in every process.
local function wake()
  redis.call('PUBLISH', base .. ':work', '')
end

-- Calls `cmd key ...` with the flat argument list `list`, in chunks small enough for unpack.
local function call_chunked(cmd, key, list, width)
  local step = 4000 - (4000 % width)
  for i = 1, #list, step do
    local last = math.min(i + step - 1, #list)
    redis.call(cmd, key, unpack(list, i, last))
  end
end

-- Ends a task: final state and times, its expiry (a Redis TTL on the record, plus an entry
-- in the expiry index so `purge` can trim the listing indexes), and frees its idempotency
-- key. `fields` holds extra field/value pairs to write; `expiring` collects the expiry
-- index entries, written by the caller in one command.
local function finish(k, id, state, ttl, oh, keyname, fields, expiring)
  local expires = now + ttl
  redis.call('HSET', k, 's', state, 'co', now, 'u', now, 'x', expires, unpack(fields))
  -- Redis keeps the record at least a second, so a watcher can still read its end;
  -- readers compare `x` with their clock, so the record is gone for them at `expires`.
  redis.call('PEXPIRE', k, math.max(ttl, 1000))
  expiring[#expiring + 1] = expires
  expiring[#expiring + 1] = id .. '|' .. oh
  if keyname and redis.call('GET', keyname) == id then
    redis.call('DEL', keyname)
  end
end
