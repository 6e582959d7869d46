-- Cancels one task: a waiting one at once; a running one by flagging it and telling every
-- process on the cancel channel ARGV[3] (the worker holding it fires the task's token; its
-- heartbeats also answer "cancel requested").
-- A task waiting in the schedule leaves it; one waiting in the ready list leaves a dead entry
-- there, its id added to `skip` (see common.lua), which the claim that reaches it drops, so
-- cancelling never scans the list.
-- Either change appends the action to the task's history (see `add_action`); a refusal
-- records nothing.
-- ARGV: now, task id, cancel channel, actor (JSON), history limit.
-- Returns {'cancelled', record} | {'requested', record} | {'conflict', state} | {'missing'}.

local id = ARGV[2]
local k = task_key(id)
local s = redis.call('GET', k)
local r = s and decode(s)
if not r then
  return { 'missing' }
end
if is_waiting(r.s) then
  if redis.call('ZREM', schedule_key, id) == 0 then
    redis.call('SADD', skip_key, id)
  end
  local expiring = {}
  add_action(r, 'cancelled', ARGV[4], tonumber(ARGV[5]))
  local changed = finish(id, r, 'cancelled', expiring)
  flush_expiring(expiring)
  flush_indexes()
  announce(id, changed)
  return { 'cancelled', changed }
end
if r.s == 'running' then
  r.cr = '1'
  r.u = now
  add_action(r, 'cancel_requested', ARGV[4], tonumber(ARGV[5]))
  local changed = encode(r)
  redis.call('SET', k, changed)
  redis.call(PUBLISH, ARGV[3], id)
  announce(id, changed)
  return { 'requested', changed }
end
return { 'conflict', r.s }
