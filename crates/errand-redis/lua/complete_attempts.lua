-- `complete_attempts(first)` ends attempts of one queue, as given by ARGV from `first` on: per
--   completion, an outcome, the task id, the lease token, and what the outcome carries:
--   s  a success that reports nothing: the result JSON (4 values in all, the usual case: every
--      value passed costs the script a string);
--   S, F, C, R, L  (7 values in all): payload, delay (ms), progress JSON ('' unchanged), steps
--      JSON ('' unchanged), where S is a success (payload: result JSON), F failed (payload:
--      error JSON), C cancelled, R retry after `delay` (payload: error JSON), L released (back
--      to pending, attempt given back).
-- A retry or release of a task whose cancellation was requested ends it cancelled.
-- Returns per completion: 1 applied, 0 stale (the lease was lost; nothing changed). Its counter
-- and index changes wait for the caller's `flush_indexes`.

local function complete_attempts(first)
  -- Per completion, the position of its outcome in ARGV.
  local at, keys = {}, {}
  local i = first
  while i <= #ARGV do
    at[#at + 1] = i
    keys[#keys + 1] = task_key(ARGV[i + 1])
    if ARGV[i] == 's' then
      i = i + 4
    else
      i = i + 7
    end
  end
  local records = call_keys('MGET', keys, 1)

  -- A running task's header, for a success: cancel flag, token, `attempt|started` (kept),
  -- `max|created|ttl|owner` (kept), ttl, owner tags, and where the blobs start.
  local SUCCEEDING = '^running|(%d)|(%x+)|(%d+|%d*)|%d+|%d*|%d*|%d*|(%d+|%d+|(%d+)|([%x%.]+))\n()'

  local out, done, expiring, writes = {}, {}, {}, {}
  -- Ids ended by this call: the records were read once, above, so a lease given twice in one
  -- batch would otherwise end twice.
  local ended = {}
  local fronts, backs, scheduled = {}, {}, {}
  for n = 1, #keys do
    local i = at[n]
    local outcome, id, token, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local progress, steps = '', ''
    if outcome == 's' then
      outcome = 'S'
    else
      progress, steps = ARGV[i + 5], ARGV[i + 6]
    end
    local s = records[n]
    local cr, f, kept, tail, t, oh, pos
    if s and outcome == 'S' and progress == '' and steps == '' then
      -- The usual end, a success: only the fields it changes are taken apart (see `SUCCEEDING`).
      cr, f, kept, tail, t, oh, pos = string.match(s, SUCCEEDING)
    end
    if pos and f == token and not ended[id] then
      -- Rewrite the header, error and result; copy the rest as it is (a success adds nothing
      -- to the attempt log).
      ended[id] = true
      done[#done + 1] = id
      out[n] = 1
      local rest
      if string.byte(s, pos) == 48 and string.byte(s, pos + 2) == 48 then
        rest = pos + 4 -- no error and no result yet, as a running task has: `0:0:`
      else
        rest = skip_blob(s, skip_blob(s, pos))
      end
      local ttl = tonumber(t)
      local expires = now + ttl
      local changed = 'success|' .. cr .. '|' .. f .. '|' .. kept .. '|' .. now_s .. '||' .. now_s
        .. '|' .. decimal(expires) .. '|' .. tail .. '\n0:' .. #payload .. ':' .. payload
        .. string.sub(s, rest)
      local keyname = ''
      if string.byte(s, rest) ~= 48 then -- a key name is stored (its length is not '0')
        keyname = blob_at(s, rest)
      end
      store_final(id, changed, expires, ttl, oh, keyname, expiring, 'running', 'success')
      announce(id, changed)
    else
      local state
      if s then
        state, cr, f = lease_of(s)
      end
      if state == 'running' and f == token and not ended[id] then
        ended[id] = true
        done[#done + 1] = id
        out[n] = 1
        local cancel = cr == '1' and (outcome == 'R' or outcome == 'L')
        local changed
        local r = decode(s)
        if progress ~= '' then
          r.p = progress
        end
        if steps ~= '' then
          r.sp = steps
        end
        if outcome == 'S' then
          r.r = payload
          r.e = ''
          changed = finish(id, r, 'success', expiring)
        elseif outcome == 'F' then
          r.e = payload
          add_attempt(r, 'failed', payload)
          changed = finish(id, r, 'failed', expiring)
        elseif outcome == 'C' or cancel then
          add_attempt(r, 'cancelled', '')
          changed = finish(id, r, 'cancelled', expiring)
        elseif outcome == 'R' then
          add_attempt(r, 'retrying', payload)
          local next_at = now + tonumber(ARGV[i + 4])
          r.s = 'retrying'
          r.e = payload
          r.n = next_at
          r.u = now
          changed = encode(r)
          writes[#writes + 1] = keys[n]
          writes[#writes + 1] = changed
          moved(r.oh, 'running', 'retrying')
          requeue(id, next_at, false, fronts, backs, scheduled)
        else
          r.s = 'pending'
          r.a = math.max(r.a - 1, 0)
          r.st = ''
          r.u = now
          changed = encode(r)
          writes[#writes + 1] = keys[n]
          writes[#writes + 1] = changed
          moved(r.oh, 'running', 'pending')
          requeue(id, tonumber(r.c), true, fronts, backs, scheduled)
        end
        announce(id, changed)
      else
        out[n] = 0
      end
    end
  end
  if #done > 0 then
    call_chunked('ZREM', leases_key, done, 1)
  end
  flush_expiring(expiring)
  if #writes > 0 then
    call_keys('MSET', writes, 2)
  end
  flush_requeued(fronts, backs, scheduled)
  return out
end
