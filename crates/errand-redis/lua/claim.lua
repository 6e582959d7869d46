-- A claim (see claim_tasks.lua).
-- ARGV: now, limit, lease (ms), tokens.

local out = claim_tasks(tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])
flush_indexes()
return out
