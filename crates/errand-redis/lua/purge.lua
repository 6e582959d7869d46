-- Deletes finished records of one queue whose expiry passed (by the store's clock; Redis's
-- own TTL usually deleted them already) and trims the listing indexes of their ids.
-- Reads the head of each per-TTL list of finished tasks (see `finished_key`), which is in
-- expiry order, so it only ever looks at entries that are due.
-- ARGV: now, limit (entries per list and call).
-- Returns {records purged, 1 if a list may hold more due entries else 0}.

local limit = tonumber(ARGV[2])
local ids, owners = {}, {}
local more = 0
for _, ttl in ipairs(redis.call('SMEMBERS', ttls_key)) do
  local key = finished_key(ttl)
  local head = redis.call('LRANGE', key, 0, limit - 1)
  local due = 0
  for _, entry in ipairs(head) do
    local expires, id, oh = string.match(entry, '^(%d+)|([^|]+)|(%x+)$')
    if expires and tonumber(expires) > now then
      break
    end
    due = due + 1
    if expires then -- (an unreadable entry is dropped)
      ids[#ids + 1] = id
      owners[#owners + 1] = oh
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
    local list = by_owner[owners[i]]
    if not list then
      list = {}
      by_owner[owners[i]] = list
      owner_list[#owner_list + 1] = owners[i]
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
return { #gone, more }
