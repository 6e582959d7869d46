-- Replaces one deployment fact (the ids of the keys the deployment's processes use) in the
-- hash KEYS[1], `{prefix}:meta`, if it holds the expected value.
-- ARGV: now (unused), name, 'none' (expect nothing recorded) or 'value' (expect ARGV[4]),
--   expected value, new value.
-- Returns 1 when it recorded the new value, 0 when something else is recorded.

local name, expect, expected, value = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local current = redis.call('HGET', base, name)
if (expect == 'none' and not current) or (expect == 'value' and current == expected) then
  redis.call('HSET', base, name, value)
  return 1
end
return 0
