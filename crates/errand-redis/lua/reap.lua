-- Hands back tasks of one queue whose lease lapsed: cancelled if cancellation was requested,
-- failed if no attempt is left, else pending again (at the front of the ready list).
-- Atomic, so any number of workers may run it at once: a lease is reaped exactly once.
-- ARGV: now, limit, error JSON (retryable), error JSON (final).
-- Returns {requeued, failed, cancelled, 1 if more leases may have lapsed else 0}.

local limit = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', leases_key, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
if #ids == 0 then
  return { 0, 0, 0, 0 }
end
redis.call('ZREM', leases_key, unpack(ids))
local keys = {}
for i, id in ipairs(ids) do
  keys[i] = task_key(id)
end
local records = redis.call('MGET', unpack(keys))

local requeued, failed, cancelled = 0, 0, 0
local expiring, writes = {}, {}
local fronts, backs, scheduled = {}, {}, {}
for i, id in ipairs(ids) do
  local r = records[i] and decode(records[i])
  if r and r.s == 'running' then
    local changed
    if r.cr == '1' then
      add_attempt(r, 'cancelled', '')
      changed = finish(id, r, 'cancelled', expiring)
      cancelled = cancelled + 1
    elseif r.a >= r.m then
      r.e = ARGV[4]
      add_attempt(r, 'lease_lapsed', ARGV[4])
      changed = finish(id, r, 'failed', expiring)
      failed = failed + 1
    else
      r.s = 'pending'
      r.e = ARGV[3]
      add_attempt(r, 'lease_lapsed', ARGV[3])
      r.u = now
      changed = encode(r)
      writes[#writes + 1] = keys[i]
      writes[#writes + 1] = changed
      moved(r.oh, 'running', 'pending')
      requeue(id, tonumber(r.c), true, fronts, backs, scheduled)
      requeued = requeued + 1
    end
    announce(id, changed)
  end
end
flush_expiring(expiring)
if #writes > 0 then
  redis.call('MSET', unpack(writes))
end
flush_requeued(fronts, backs, scheduled)
flush_indexes()
return { requeued, failed, cancelled, #ids == limit and 1 or 0 }
