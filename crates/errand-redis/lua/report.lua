-- Merges progress and steps reported by running tasks of one queue.
-- ARGV: now, then per report: id, fence, progress JSON ('' unchanged), steps JSON ('' unchanged).
-- Returns per report: 0 lost (dropped), 1 held, 2 held with cancellation requested.

local out = {}
for i = 2, #ARGV, 4 do
  local id, fence, progress, steps = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  local k = task_key(id)
  local v = redis.call('HMGET', k, 's', 'f', 'cr', 'w')
  if v[1] == 'running' and tonumber(v[2]) == fence then
    local fields = { 'u', now }
    if progress ~= '' then
      fields[#fields + 1] = 'p'
      fields[#fields + 1] = progress
    end
    if steps ~= '' then
      fields[#fields + 1] = 'sp'
      fields[#fields + 1] = steps
    end
    redis.call('HSET', k, unpack(fields))
    announce(k, id, v[4])
    out[#out + 1] = v[3] and 2 or 1
  else
    out[#out + 1] = 0
  end
end
return out
