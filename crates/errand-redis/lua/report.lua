-- Merges progress and steps reported by running tasks of one queue.
-- ARGV: now, then per report: id, fence, progress JSON ('' unchanged), steps JSON ('' unchanged).
-- Returns per report: 0 lost (dropped), 1 held, 2 held with cancellation requested.

local out, writes = {}, {}
for i = 2, #ARGV, 4 do
  local id, fence, progress, steps = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  local k = task_key(id)
  local s = redis.call('GET', k)
  local r = s and decode(s)
  if r and r.s == 'running' and r.f == fence then
    if progress ~= '' then
      r.p = progress
    end
    if steps ~= '' then
      r.sp = steps
    end
    r.u = now
    local changed = encode(r)
    writes[#writes + 1] = k
    writes[#writes + 1] = changed
    announce(id, changed)
    out[#out + 1] = r.cr == '1' and 2 or 1
  else
    out[#out + 1] = 0
  end
end
if #writes > 0 then
  call_keys('MSET', writes, 2)
end
return out
