-- Stores a batch of new tasks of one queue. Each record's header is written here, so its
-- times (created, updated, due) come from the script's "now" (see common.lua).
-- ARGV: now, count, whether any task has an idempotency key (0|1), then per task 6 values:
--   id, delay (ms; 0 = due now), index tags (see common.lua), idempotency key name ('' without
--   a key),
--   max attempts, and the record from its `ttl` field on (`ttl|owner\n<blobs>`).
-- Returns {} when every task was stored (the usual case: one MSETNX for the batch), else per
-- task: id, state, deduplicated (0|1). A live task with the same key is returned instead of a
-- new one; an id that already exists (a resent batch) is returned as it is, so a client may
-- safely resend an enqueue whose answer it lost.

local count = tonumber(ARGV[2])
local keyed = ARGV[3] == '1'

local function arg(i, k)
  return ARGV[4 + i * 6 + k]
end

-- The records and due times; the header up to `max` is the same for every task due now.
local records, dues = {}, {}
local pending_head = 'pending|0|0|0||' .. now_s .. '||||'
local created = '|' .. now_s .. '|'
for i = 0, count - 1 do
  local delay = tonumber(arg(i, 1))
  local head = pending_head
  local due = now
  if delay > 0 then
    due = now + delay
    head = 'scheduled|0|0|0||' .. now_s .. '|' .. decimal(due) .. '|||'
  end
  records[i] = head .. arg(i, 4) .. created .. arg(i, 5)
  dues[i] = due
end

local ready, scheduled, all, by_owner, owners = {}, {}, {}, {}, {}

local function index(i)
  local id, due, t = arg(i, 0), dues[i], arg(i, 2)
  local oh = tags_of(t)
  if due > now then
    scheduled[#scheduled + 1] = decimal(due)
    scheduled[#scheduled + 1] = id
    count_state(t, 'scheduled', 1)
  else
    ready[#ready + 1] = id
    count_state(t, 'pending', 1)
  end
  for _, key in ipairs(tag_keys(t)) do
    index_add(key, id)
  end
  all[#all + 1] = '0'
  all[#all + 1] = id
  local list = by_owner[oh]
  if not list then
    list = {}
    by_owner[oh] = list
    owners[#owners + 1] = oh
  end
  list[#list + 1] = '0'
  list[#list + 1] = id
end

local out = {}
local stored = false
if not keyed then
  local kv = {}
  for i = 0, count - 1 do
    kv[#kv + 1] = task_key(arg(i, 0))
    kv[#kv + 1] = records[i]
  end
  if redis.call('MSETNX', unpack(kv)) == 1 then
    stored = true
    for i = 0, count - 1 do
      index(i)
    end
  end
end

if not stored then
  for i = 0, count - 1 do
    local id, keyname, record = arg(i, 0), arg(i, 3), records[i]
    local existing = nil
    if keyname ~= '' then
      local live = redis.call('GET', keyname)
      local live_record = live and redis.call('GET', task_key(live))
      local state = live_record and lease_of(live_record)
      if state and (is_waiting(state) or state == 'running') then
        existing = { live, state, 1 }
      end
    end
    if not existing then
      if redis.call('SET', task_key(id), record, 'NX') then
        if keyname ~= '' then
          redis.call('SET', keyname, id)
        end
        index(i)
        existing = { id, string.match(record, '^(%a+)'), 0 }
      else
        existing = { id, lease_of(redis.call('GET', task_key(id))), 0 }
      end
    end
    out[#out + 1] = existing[1]
    out[#out + 1] = existing[2]
    out[#out + 1] = existing[3]
  end
end

if #ready > 0 then
  call_chunked('RPUSH', ready_key, ready, 1)
end
if #scheduled > 0 then
  call_chunked('ZADD', schedule_key, scheduled, 2)
end
if #all > 0 then
  call_chunked('ZADD', ids_key, all, 2)
  for _, oh in ipairs(owners) do
    call_chunked('ZADD', owner_key(oh), by_owner[oh], 2)
  end
end
if #ready > 0 or #scheduled > 0 then
  wake()
end
flush_indexes()
return out
