-- Merges progress and steps reported by running tasks of one queue: one MGET and one MSET for
-- the batch.
-- ARGV: now, then per report: id, lease token, progress JSON ('' unchanged), steps JSON ('' unchanged).
-- Returns per report: 0 lost (dropped), 1 held, 2 held with cancellation requested.

local keys = {}
for i = 2, #ARGV, 4 do
  keys[#keys + 1] = task_key(ARGV[i])
end
local records = call_keys('MGET', keys, 1)

local out, writes = {}, {}
for n = 1, #keys do
  local i = 2 + (n - 1) * 4
  local id, token, progress, steps = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local s = records[n]
  local r = s and decode(s)
  if r and r.s == 'running' and r.f == token then
    if progress ~= '' then
      r.p = progress
    end
    if steps ~= '' then
      r.sp = steps
    end
    r.u = now
    local changed = encode(r)
    writes[#writes + 1] = keys[n]
    writes[#writes + 1] = changed
    announce(id, changed)
    out[n] = r.cr == '1' and 2 or 1
  else
    out[n] = 0
  end
end
if #writes > 0 then
  call_keys('MSET', writes, 2)
end
return out
