-- Deletes finished records of one queue whose expiry passed (by the store's clock; Redis's
-- own TTL usually deleted them already) and trims the listing indexes of their ids.
-- ARGV: now, limit.
-- Returns {records purged, expiry entries examined}.

local limit = tonumber(ARGV[2])
local entries = redis.call('ZRANGE', expiry_key, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
if #entries == 0 then
  return { 0, 0 }
end
local purged, keep = 0, {}
for _, entry in ipairs(entries) do
  local sep = string.find(entry, '|', 1, true)
  local id, oh = string.sub(entry, 1, sep - 1), string.sub(entry, sep + 1)
  local k = task_key(id)
  local v = redis.call('HMGET', k, 's', 'x')
  -- A record that was retried since stays; one that expires later keeps its entry.
  if not v[1] or (v[2] and tonumber(v[2]) <= now) then
    redis.call('DEL', k)
    redis.call('ZREM', ids_key, id)
    redis.call('ZREM', owner_key(oh), id)
    purged = purged + 1
  elseif v[2] then
    keep[#keep + 1] = v[2]
    keep[#keep + 1] = entry
  end
end
redis.call('ZREM', expiry_key, unpack(entries))
if #keep > 0 then
  redis.call('ZADD', expiry_key, unpack(keep))
end
return { purged, #entries }
