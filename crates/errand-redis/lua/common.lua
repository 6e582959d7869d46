-- Shared by every errand script (prepended to each one when the crate is built).
--
-- KEYS[1] is the queue's key base, `{prefix:queue}`, and the only key a script declares:
-- every key it touches is that base followed by a suffix, so all of them carry KEYS[1]'s
-- hash tag and live in its cluster slot.
-- ARGV[1] is "now" in milliseconds from the store's injected clock (tests drive leases,
-- delays, backoff and expiry with a manual clock), or '' to read Redis's own clock (`TIME`;
-- Redis 7 replicates a script's effects, so it may write after reading the time). Every time
-- a script writes, lease ends and record times alike, comes from this one "now".
--
-- A task is one string, `{p:q}:t:<id>`, so that a batch of tasks is read with one MGET and
-- written with one MSET (a few Redis calls per batch instead of several per task):
--
--   state|cancel|token|attempt|started|updated|next|completed|expires|max|created|ttl|owner\n
--   <len>:<error><len>:<result><len>:<idempotency key name><len>:<progress><len>:<steps><len>:<payload>
--
-- Numbers are decimal (times in ms; empty when unset), `cancel` is 0 or 1, `token` is the
-- lease token of the last claim (32 hex digits, issued by the claiming process at random; `0`
-- before the first claim) that heartbeats, reports and completions must match, `next` is when a
-- scheduled or retrying task is due, `owner` is the owner's hash (it names the owner's
-- listing index). The six length-prefixed blobs may hold any bytes; empty means unset. The
-- payload (name, owner, ids, args, sealed context) never changes after enqueue. Error and
-- result come first so that ending an attempt rewrites the header and those two and copies
-- the rest as it is: Lua string work, not Redis commands, is what a task costs most here.

local base = KEYS[1]
local now
if ARGV[1] == '' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
else
  now = tonumber(ARGV[1])
end

local ready_key = base .. ':ready'
local schedule_key = base .. ':schedule'
-- Ids whose entry in the ready list is dead: their task was cancelled while waiting there.
-- Cancelling adds the id instead of scanning the list; a claim that pops the entry drops it
-- and removes the id; a manual retry before that removes the id, which revives the entry in
-- place. So a task has at most one entry in `ready` and `schedule` together, and
-- LLEN(ready) + ZCARD(schedule) - SCARD(skip) is exactly the number of waiting tasks.
local skip_key = base .. ':skip'
local leases_key = base .. ':leases'
local ttls_key = base .. ':ttls'
local ids_key = base .. ':ids'
local watched_key = base .. ':watched'

local function task_key(id)
  return base .. ':t:' .. id
end

local function owner_key(oh)
  return base .. ':o:' .. oh
end

local HEADER = '^(%a+)|(%d)|(%x+)|(%d+)|(%d*)|(%d+)|(%d*)|(%d*)|(%d*)|(%d+)|(%d+)|(%d+)|(%x+)\n()'

-- The blob starting at `pos`: its content and the position after it.
local function blob_at(s, pos)
  local len, start = string.match(s, '^(%d+):()', pos)
  local stop = start + tonumber(len)
  return string.sub(s, start, stop - 1), stop
end

-- The position after the blob starting at `pos` (without copying it).
local function skip_blob(s, pos)
  local len, start = string.match(s, '^(%d+):()', pos)
  return start + tonumber(len)
end

-- The whole record as a table (for the less frequent changes; the hot paths below pick out
-- only what they need).
local function decode(s)
  local st, cr, f, a, started, u, n, co, x, m, c, t, oh, pos = string.match(s, HEADER)
  if not st then
    return nil
  end
  local e, r, kn, p, sp
  e, pos = blob_at(s, pos)
  r, pos = blob_at(s, pos)
  kn, pos = blob_at(s, pos)
  p, pos = blob_at(s, pos)
  sp, pos = blob_at(s, pos)
  return {
    s = st, cr = cr, f = f, a = tonumber(a), st = started, u = u, n = n, co = co,
    x = x, m = tonumber(m), c = c, t = tonumber(t), oh = oh,
    -- `d` is the payload blob as stored, length prefix included: it is only ever copied.
    e = e, r = r, kn = kn, p = p, sp = sp, d = string.sub(s, pos),
  }
end

local function encode(r)
  return r.s .. '|' .. r.cr .. '|' .. r.f .. '|' .. r.a .. '|' .. r.st .. '|' .. r.u .. '|'
    .. r.n .. '|' .. r.co .. '|' .. r.x .. '|' .. r.m .. '|' .. r.c .. '|' .. r.t .. '|' .. r.oh
    .. '\n' .. #r.e .. ':' .. r.e .. #r.r .. ':' .. r.r .. #r.kn .. ':' .. r.kn
    .. #r.p .. ':' .. r.p .. #r.sp .. ':' .. r.sp .. r.d
end

-- Only the state, cancel flag and lease token (enough to check a lease).
local function lease_of(s)
  return string.match(s, '^(%a+)|(%d)|(%x+)|')
end

local function is_waiting(state)
  return state == 'pending' or state == 'scheduled' or state == 'retrying'
end

-- Whether any task of this queue is watched (asked once per call: nobody watching costs one
-- EXISTS per script call, nothing per task; while some task of the queue is watched, each
-- changed task costs an HEXISTS).
local watching = nil

-- Publishes a changed record on its event channel while some process watches it.
local function announce(id, s)
  if watching == nil then
    watching = redis.call('EXISTS', watched_key) == 1
  end
  if watching and redis.call('HEXISTS', watched_key, id) == 1 then
    redis.call('PUBLISH', base .. ':ev:' .. id, s)
  end
end

-- Wakes idle workers of this queue, in every process.
local function wake()
  redis.call('PUBLISH', base .. ':work', '')
end

-- Calls `cmd key <list...>` in chunks small enough for unpack.
local function call_chunked(cmd, key, list, width)
  local step = 4000 - (4000 % width)
  for i = 1, #list, step do
    redis.call(cmd, key, unpack(list, i, math.min(i + step - 1, #list)))
  end
end

-- Calls `cmd <list...>` (MSET, MGET, DEL) in chunks; returns the concatenated replies.
local function call_keys(cmd, list, width)
  local out = {}
  local step = 4000 - (4000 % width)
  for i = 1, #list, step do
    local reply = redis.call(cmd, unpack(list, i, math.min(i + step - 1, #list)))
    if type(reply) == 'table' then
      for _, v in ipairs(reply) do
        out[#out + 1] = v
      end
    end
  end
  return out
end

-- Finished tasks wait for `purge` in one list per TTL, `{p:q}:finished:<ttl>`: tasks with
-- the same TTL expire in the order they finished, so each list is in expiry order and purge
-- only ever looks at its head (no sorted set, nothing per task but a list element). The set
-- `{p:q}:ttls` names the lists.
local function finished_key(ttl)
  return base .. ':finished:' .. ttl
end

-- Stores a task's final record `s` (expiring at `expires`, `ttl` from now) with a Redis TTL
-- of at least a second (so a watcher can still read the end; readers compare `expires` with
-- their clock), queues it for `purge` (collected in `expiring`, written by `flush_expiring`),
-- and frees its idempotency key `keyname`.
local function store_final(id, s, expires, ttl, oh, keyname, expiring)
  redis.call('SET', task_key(id), s, 'PX', math.max(ttl, 1000))
  local list = expiring[ttl]
  if not list then
    list = {}
    expiring[ttl] = list
  end
  list[#list + 1] = expires .. '|' .. id .. '|' .. oh
  if keyname ~= '' and redis.call('GET', keyname) == id then
    redis.call('DEL', keyname)
  end
end

-- Writes what `store_final` queued for purge.
local function flush_expiring(expiring)
  for ttl, list in pairs(expiring) do
    call_chunked('RPUSH', finished_key(ttl), list, 1)
    redis.call('SADD', ttls_key, ttl)
  end
end

-- Ends a decoded task (see `store_final`); returns the new record string.
local function finish(id, r, state, expiring)
  r.s = state
  r.co = now
  r.u = now
  r.n = ''
  r.x = now + r.t
  local s = encode(r)
  store_final(id, s, r.x, r.t, r.oh, r.kn, expiring)
  return s
end

-- Puts a waiting task back where claims find it: due now at the front (`front`) or the back
-- of the ready list, or later in the schedule.
local function requeue(id, due, front, fronts, backs, scheduled)
  if due > now then
    scheduled[#scheduled + 1] = due
    scheduled[#scheduled + 1] = id
  elseif front then
    fronts[#fronts + 1] = id
  else
    backs[#backs + 1] = id
  end
end

-- Writes what `requeue` collected and wakes workers when something is due now.
local function flush_requeued(fronts, backs, scheduled)
  if #fronts > 0 then
    -- LPUSH reverses: push the oldest last so it ends up first.
    local reversed = {}
    for i = #fronts, 1, -1 do
      reversed[#reversed + 1] = fronts[i]
    end
    call_chunked('LPUSH', ready_key, reversed, 1)
  end
  if #backs > 0 then
    call_chunked('RPUSH', ready_key, backs, 1)
  end
  if #scheduled > 0 then
    call_chunked('ZADD', schedule_key, scheduled, 2)
  end
  if #fronts > 0 or #backs > 0 or #scheduled > 0 then
    wake()
  end
end
