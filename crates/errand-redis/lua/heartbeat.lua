-- Renews leases of one queue for ARGV[2] ms from now.
-- ARGV: now, extension (ms), then per lease: id, lease token.
-- Returns per lease: 0 lost (reclaimed or finished), 1 held, 2 held with cancellation requested.

local lease_until = decimal(now + tonumber(ARGV[2]))
local ids, tokens, keys = {}, {}, {}
for i = 3, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  tokens[#tokens + 1] = ARGV[i + 1]
  keys[#keys + 1] = task_key(ARGV[i])
end
local records = call_keys('MGET', keys, 1)
local out, renewed = {}, {}
for i, id in ipairs(ids) do
  local s = records[i]
  local state, cr, f
  if s then
    state, cr, f = lease_of(s)
  end
  if state == 'running' and f == tokens[i] then
    renewed[#renewed + 1] = lease_until
    renewed[#renewed + 1] = id
    out[i] = cr == '1' and 2 or 1
  else
    out[i] = 0
  end
end
if #renewed > 0 then
  call_chunked('ZADD', leases_key, renewed, 2)
end
return out
