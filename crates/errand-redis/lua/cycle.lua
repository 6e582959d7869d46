-- A worker's steady state in one call: ends attempts of one queue, then claims from it, so that
-- both happen atomically and in one round trip (see complete_attempts.lua and claim_tasks.lua).
-- ARGV: now, claim limit, lease (ms), tokens, then the completions.
-- Returns the completions' answers and the claimed tasks, as the two scripts do.

local ended = complete_attempts(5)
local claimed = claim_tasks(tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])
flush_indexes()
return { ended, claimed }
