-- Deletes finished records of one queue whose expiry passed (by the store's clock; Redis's
-- own TTL usually deleted them already), trims the listing indexes of their ids and takes
-- them off the counters. An entry carries the task's tags and final state, so a record Redis
-- already deleted still leaves every index; a task is taken off the counters only by the
-- entry that removes it from its final state's index (ZREM answers 1), so an older entry of a
-- task retried and finished again never counts it twice.
-- Reads the head of each per-TTL list of finished tasks (see `finished_key`), which is in
-- expiry order, so it only ever looks at entries that are due.
-- ARGV: now, limit (entries per list and call).
-- Returns {records purged, 1 if a list may hold more due entries else 0}.

local limit = tonumber(ARGV[2])
local ids, owners, states = {}, {}, {}
local more = 0
for _, ttl in ipairs(redis.call('SMEMBERS', ttls_key)) do
  local key = finished_key(ttl)
  local head = redis.call('LRANGE', key, 0, limit - 1)
  local due = 0
  for _, entry in ipairs(head) do
    local expires, id, oh, final = string.match(entry, '^(%d+)|([^|]+)|([%x%.]+)|?(%a*)$')
    if expires and tonumber(expires) > now then
      break
    end
    due = due + 1
    if expires then -- (an unreadable entry is dropped)
      ids[#ids + 1] = id
      owners[#owners + 1] = oh
      states[#states + 1] = final
    end
  end
  if due > 0 then
    redis.call('LTRIM', key, due, -1)
  end
  if due == #head and due < limit then
    -- Drained: forget the list until a task with this TTL finishes again.
    redis.call('SREM', ttls_key, ttl)
  end
  if due == limit then
    more = 1
  end
end
if #ids == 0 then
  return { 0, more }
end

local keys = {}
for i, id in ipairs(ids) do
  keys[i] = task_key(id)
end
local records = call_keys('MGET', keys, 1)
local gone, doomed, by_owner, owner_list = {}, {}, {}, {}
-- Takes a gone task (tags `t`, in final `state` by its record, or by its entry when Redis
-- deleted the record) out of the indexes of its tags and, once, out of the counters.
local function unindex(id, t, state)
  local oh = tags_of(t)
  if state ~= '' and redis.call('ZREM', owner_done_key(oh, state), id) == 1 then
    count_state(t, state, -1)
  end
  if state ~= '' then
    index_rem(done_key(state), id)
  end
  for _, key in ipairs(tag_keys(t)) do
    index_rem(key, id)
  end
end
for i, id in ipairs(ids) do
  local s = records[i]
  local state, expires
  if s then
    state, expires = string.match(s, '^(%a+)|%d|%x+|%d+|%d*|%d*|%d*|%d*|(%d*)|')
  end
  -- A record retried since is live again, or expires later with a newer entry: it stays.
  if not s or (not is_waiting(state) and state ~= 'running'
      and expires ~= '' and tonumber(expires) <= now) then
    gone[#gone + 1] = id
    doomed[#doomed + 1] = keys[i]
    unindex(id, owners[i], s and state or states[i])
    local oh = tags_of(owners[i])
    local list = by_owner[oh]
    if not list then
      list = {}
      by_owner[oh] = list
      owner_list[#owner_list + 1] = oh
    end
    list[#list + 1] = id
  end
end
if #gone > 0 then
  call_keys('DEL', doomed, 1)
  call_chunked('ZREM', ids_key, gone, 1)
  call_chunked('HDEL', watched_key, gone, 1)
  for _, oh in ipairs(owner_list) do
    call_chunked('ZREM', owner_key(oh), by_owner[oh], 1)
  end
end
flush_indexes()
return { #gone, more }
