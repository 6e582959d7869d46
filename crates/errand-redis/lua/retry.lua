-- Requeues a failed or cancelled task with a fresh set of attempts; its payload (and so its
-- sealed context) is untouched. Its idempotency key is live again unless another live task
-- took it meanwhile.
-- ARGV: now, task id.
-- Returns {'requeued', record} | {'conflict', state} | {'missing'}.

local id = ARGV[2]
local k = task_key(id)
local s = redis.call('GET', k)
local r = s and decode(s)
if not r or (r.x ~= '' and tonumber(r.x) <= now) then
  return { 'missing' }
end
if r.s ~= 'failed' and r.s ~= 'cancelled' then
  return { 'conflict', r.s }
end
r.s = 'pending'
r.cr = '0'
r.a = 0
r.st = ''
r.co = ''
r.x = ''
r.n = ''
r.e = ''
r.r = ''
r.p = ''
r.sp = ''
r.u = now
local changed = encode(r)
-- A plain SET drops the TTL the record got when it finished.
redis.call('SET', k, changed)
if r.kn ~= '' then
  redis.call('SET', r.kn, id, 'NX')
end
redis.call('RPUSH', ready_key, id)
wake()
announce(id, changed)
return { 'requeued', changed }
