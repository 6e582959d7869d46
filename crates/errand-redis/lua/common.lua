-- Shared by every errand script (prepended to each one when the crate is built).
--
-- `PUBLISH` names the command that announces on a channel, set before this file: 'PUBLISH'
-- on one Redis, 'SPUBLISH' (sharded pub/sub: the channel lives in the slot of its queue's
-- hash tag, like the queue's keys) on a cluster.
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
--   <len>:<error><len>:<result><len>:<idempotency key name><len>:<progress><len>:<steps><len>:<payload>[<len>:<history>[<len>:<attempts>]]
--
-- Numbers are decimal (times in ms; empty when unset), `cancel` is 0 or 1, `token` is the
-- lease token of the last claim (32 hex digits, issued by the claiming process at random; `0`
-- before the first claim) that heartbeats, reports and completions must match, `next` is when a
-- scheduled or retrying task is due, `owner` is the task's index tags
-- `<owner hash>.<name hash>.<correlation id hash>.<request id hash>` (16 hex digits each, the
-- last two empty without such an id; a record written before the tags holds the owner hash
-- alone), which name the listing indexes it belongs to (see `tags_of`). The six
-- length-prefixed blobs may hold any bytes; empty means unset. The
-- payload (name, owner, ids, args, sealed context) never changes after enqueue. The history
-- (a JSON array of who cancelled or retried the task: `[{"k": outcome, "t": ms, "u": user,
-- "tn": tenant}]`) follows it once a cancel or retry wrote one (see `add_action`), and the
-- attempt log (how each attempt that did not succeed ended, see `add_attempt`) follows the
-- history, written empty when only the log exists. Error and
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

-- Strings made once per call. Concatenating a Lua number, or passing one to `redis.call`,
-- formats it anew each time (a `sprintf`), and every string a script builds is hashed and
-- interned: per task, such conversions and concatenations cost more than the Redis commands.
-- So "now", and the keys and counter fields a batch repeats, are made once per call.
local now_s = tostring(now)
local decimals = {}

-- The decimal form of the integer `n` (as concatenation would format it), made once per call.
local function decimal(n)
  local s = decimals[n]
  if not s then
    s = tostring(n)
    decimals[n] = s
  end
  return s
end

-- `make(a, b)`, made once per call for each `a` and `b` (`cache` is the caller's table).
local function memo2(cache, a, b, make)
  local inner = cache[a]
  if not inner then
    inner = {}
    cache[a] = inner
  end
  local s = inner[b]
  if not s then
    s = make(a, b)
    inner[b] = s
  end
  return s
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

-- The listing indexes and counters (see keys.rs, which names the same keys):
--   `{p:q}:o:<oh>:s:<state>`, `{p:q}:s:<state>`  finished tasks per final state (sorted sets,
--                                               score 0, read by id), one owner's and everyone's
--   `{p:q}:o:<oh>:n:<nh>`, `{p:q}:n:<nh>`        tasks per task name
--   `{p:q}:c:<ch>`, `{p:q}:r:<rh>`               tasks per correlation id, per request id
--   `{p:q}:counts`                              a hash: `<state>` and `<oh>:<state>` → tasks
-- Waiting and running tasks are listed from `ready`, `schedule` and `leases`.
local counts_key = base .. ':counts'

-- Tags already split in this call (the tasks of a batch mostly share them).
local tags_seen = {}

-- The owner hash and the name, correlation and request hashes of a record's tags ('' when
-- absent).
local function tags_of(t)
  local c = tags_seen[t]
  if not c then
    local oh, nh, ch, rh = string.match(t, '^(%x+)%.(%x*)%.(%x*)%.(%x*)$')
    if oh then
      c = { oh, nh, ch, rh }
    else
      c = { t, '', '', '' }
    end
    tags_seen[t] = c
  end
  return c[1], c[2], c[3], c[4]
end

local tag_keys_seen = {}

-- The indexes a task of tags `t` is in whatever its state: its name's (the owner's and
-- everyone's) and its correlation and request ids'. The list is shared: do not change it.
local function tag_keys(t)
  local keys = tag_keys_seen[t]
  if keys then
    return keys
  end
  local oh, nh, ch, rh = tags_of(t)
  keys = {}
  if nh ~= '' then
    keys[#keys + 1] = owner_key(oh) .. ':n:' .. nh
    keys[#keys + 1] = base .. ':n:' .. nh
  end
  if ch ~= '' then
    keys[#keys + 1] = base .. ':c:' .. ch
  end
  if rh ~= '' then
    keys[#keys + 1] = base .. ':r:' .. rh
  end
  tag_keys_seen[t] = keys
  return keys
end

local done_keys = {}

local function done_key(state)
  local key = done_keys[state]
  if not key then
    key = base .. ':s:' .. state
    done_keys[state] = key
  end
  return key
end

local owner_done_keys = {}

local function make_owner_done_key(oh, state)
  return owner_key(oh) .. ':s:' .. state
end

local function owner_done_key(oh, state)
  return memo2(owner_done_keys, oh, state, make_owner_done_key)
end

-- Counter changes of this call, summed per field, and sorted-set changes, listed per key:
-- written once per call (`flush_indexes`), so a batch costs a command per key, not per task.
local tally, tally_fields = {}, {}
local index_adds, index_add_keys = {}, {}
local index_rems, index_rem_keys = {}, {}

local function count_field(field, delta)
  local n = tally[field]
  if not n then
    tally_fields[#tally_fields + 1] = field
    n = 0
  end
  tally[field] = n + delta
end

local owner_fields = {}

local function make_owner_field(oh, state)
  return oh .. ':' .. state
end

-- Counts `delta` tasks of the owner of tags `t` in `state`.
local function count_state(t, state, delta)
  local oh = tags_of(t)
  count_field(state, delta)
  count_field(memo2(owner_fields, oh, state, make_owner_field), delta)
end

-- Counts a task of tags `t` that went from state `from` to `to`.
local function moved(t, from, to)
  if from ~= to then
    count_state(t, from, -1)
    count_state(t, to, 1)
  end
end

local function index_later(lists, order, key, id)
  local list = lists[key]
  if not list then
    list = {}
    lists[key] = list
    order[#order + 1] = key
  end
  list[#list + 1] = id
end

-- Adds `id` to the sorted set `key` (score 0) when the call ends.
local function index_add(key, id)
  index_later(index_adds, index_add_keys, key, id)
end

-- Removes `id` from the sorted set `key` when the call ends.
local function index_rem(key, id)
  index_later(index_rems, index_rem_keys, key, id)
end

-- Indexes a finished task of tags `t` in its final `state`.
local function index_done(t, state, id)
  local oh = tags_of(t)
  index_add(owner_done_key(oh, state), id)
  index_add(done_key(state), id)
end

-- Takes a task of tags `t` out of the indexes of final `state` (a manual retry).
local function unindex_done(t, state, id)
  local oh = tags_of(t)
  index_rem(owner_done_key(oh, state), id)
  index_rem(done_key(state), id)
end

local HEADER = '^(%a+)|(%d)|(%x+)|(%d+)|(%d*)|(%d+)|(%d*)|(%d*)|(%d*)|(%d+)|(%d+)|(%d+)|([%x%.]+)\n()'

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

-- Appends an action (`outcome`: cancelled, cancel_requested or requeued; `by`: the actor as
-- JSON, `{"u": user, "tn": tenant}` with absent parts left out) done now to the history blob
-- of a decoded task, keeping the last `limit` entries. The history is the optional blob after
-- the payload (none: empty); `r.d` holds both, and every other script copies them as they are.
local function add_action(r, outcome, by, limit)
  local payload_end = skip_blob(r.d, 1)
  local history = {}
  if payload_end <= #r.d then
    local text = blob_at(r.d, payload_end)
    if text ~= '' then
      history = cjson.decode(text)
    end
  end
  local entry = cjson.decode(by)
  entry.k = outcome
  entry.t = now
  history[#history + 1] = entry
  while #history > limit do
    table.remove(history, 1)
  end
  local text = cjson.encode(history)
  local log = ''
  if payload_end <= #r.d then
    log = string.sub(r.d, skip_blob(r.d, payload_end))
  end
  r.d = string.sub(r.d, 1, payload_end - 1) .. #text .. ':' .. text .. log
end

-- The most entries a task's attempt log keeps (errand_core::ATTEMPT_LOG_LIMIT; a test of the
-- crate checks they agree).
local ATTEMPT_LOG_LIMIT = 20

-- Appends the end of a decoded running task's attempt, now, to its attempt log, keeping the
-- last ATTEMPT_LOG_LIMIT entries: `outcome` is retrying, failed, cancelled or lease_lapsed,
-- `error` the attempt's error JSON ('' for none). The log is the optional blob after the
-- history, one line per entry, oldest first: `attempt|started|ended|outcome|error JSON`
-- (compact JSON holds no newline).
local function add_attempt(r, outcome, error)
  local payload_end = skip_blob(r.d, 1)
  local history, log = '', ''
  if payload_end <= #r.d then
    local after_history
    history, after_history = blob_at(r.d, payload_end)
    if after_history <= #r.d then
      log = blob_at(r.d, after_history)
    end
  end
  local entry = r.a .. '|' .. r.st .. '|' .. now .. '|' .. outcome .. '|' .. error
  local lines = 1
  if log == '' then
    log = entry
  else
    log = log .. '\n' .. entry
    lines = select(2, string.gsub(log, '\n', '')) + 1
  end
  while lines > ATTEMPT_LOG_LIMIT do
    log = string.sub(log, string.find(log, '\n', 1, true) + 1)
    lines = lines - 1
  end
  r.d = string.sub(r.d, 1, payload_end - 1) .. #history .. ':' .. history .. #log .. ':' .. log
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
    redis.call(PUBLISH, base .. ':ev:' .. id, s)
  end
end

-- Wakes idle workers of this queue, in every process.
local function wake()
  redis.call(PUBLISH, base .. ':work', '')
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
-- frees its idempotency key `keyname`, and moves it (tags `t`) from state `from` to its final
-- `state` in the indexes and counters.
local function store_final(id, s, expires, ttl, t, keyname, expiring, from, state)
  redis.call('SET', task_key(id), s, 'PX', decimal(math.max(ttl, 1000)))
  local list = expiring[ttl]
  if not list then
    list = {}
    expiring[ttl] = list
  end
  list[#list + 1] = decimal(expires) .. '|' .. id .. '|' .. t .. '|' .. state
  index_done(t, state, id)
  moved(t, from, state)
  if keyname ~= '' and redis.call('GET', keyname) == id then
    redis.call('DEL', keyname)
  end
end

-- Writes the counter and index changes of this call (see `count_state` and `index_add`).
local function flush_indexes()
  for _, key in ipairs(index_add_keys) do
    local list = index_adds[key]
    local scored = {}
    for i, id in ipairs(list) do
      scored[2 * i - 1] = '0'
      scored[2 * i] = id
    end
    call_chunked('ZADD', key, scored, 2)
  end
  for _, key in ipairs(index_rem_keys) do
    call_chunked('ZREM', key, index_rems[key], 1)
  end
  for _, field in ipairs(tally_fields) do
    local n = tally[field]
    if n ~= 0 then
      redis.call('HINCRBY', counts_key, field, n)
    end
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
  local from = r.s
  r.s = state
  r.co = now
  r.u = now
  r.n = ''
  r.x = now + r.t
  local s = encode(r)
  store_final(id, s, r.x, r.t, r.oh, r.kn, expiring, from, state)
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
