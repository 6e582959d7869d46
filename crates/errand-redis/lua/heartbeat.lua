-- Renews leases of one queue until ARGV[2].
-- ARGV: now, until, then per lease: id, fence.
-- Returns per lease: 0 lost (reclaimed or finished), 1 held, 2 held with cancellation requested.

local lease_until = ARGV[2]
local out, renewed = {}, {}
for i = 3, #ARGV, 2 do
  local id, fence = ARGV[i], tonumber(ARGV[i + 1])
  local v = redis.call('HMGET', task_key(id), 's', 'f', 'cr')
  if v[1] == 'running' and tonumber(v[2]) == fence then
    renewed[#renewed + 1] = lease_until
    renewed[#renewed + 1] = id
    out[#out + 1] = v[3] and 2 or 1
  else
    out[#out + 1] = 0
  end
end
if #renewed > 0 then
  call_chunked('ZADD', leases_key, renewed, 2)
end
return out
