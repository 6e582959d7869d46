-- Requeues a failed or cancelled task with a fresh set of attempts; its payload (and so its
-- sealed context) is untouched. Its idempotency key is live again unless another live task
-- took it meanwhile. A task cancelled while waiting whose dead entry is still in the ready
-- list gets that entry back (its place in the list is kept); any other gets a new entry at
-- the back. Either way the task has exactly one entry, so no leftover can claim it later.
-- The action is appended to the task's history (see `add_action`); a refusal records nothing.
-- ARGV: now, task id, actor (JSON), history limit.
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
unindex_done(r.oh, r.s, id)
moved(r.oh, r.s, 'pending')
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
add_action(r, 'requeued', ARGV[3], tonumber(ARGV[4]))
local changed = encode(r)
-- A plain SET drops the TTL the record got when it finished.
redis.call('SET', k, changed)
if r.kn ~= '' then
  redis.call('SET', r.kn, id, 'NX')
end
if redis.call('SREM', skip_key, id) == 0 then
  redis.call('RPUSH', ready_key, id)
end
wake()
announce(id, changed)
flush_indexes()
return { 'requeued', changed }
