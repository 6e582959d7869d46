-- `finish_and_claim` as a function, recreated by every process when it opens the store (under
-- the migrations' lock), so that it always runs the statement of `finish_and_claim.sql` this
-- build has. Its point is `plan_cache_mode = force_generic_plan`: the statement is planned once
-- per session and not before every call, which cost a third as much as running it (custom
-- plans, which the listing's optional filters need, are kept for every other statement). That
-- one plan is made at the first call, often while the table is nearly empty, where a
-- sequential scan looks cheapest and would be kept as the table grows to a million rows:
-- `enable_seqscan = off` keeps every access of the batch on an index whatever the statistics
-- said then. The penalty it adds to the estimates would make PostgreSQL compile the statement
-- (JIT, 0.6 s a call), hence `jit = off`. Arguments and result as in `finish_and_claim.sql`.
-- Replaced in place, so that the other processes' calls, running meanwhile, keep finding it; a
-- build that changes its arguments or result gives it a new name instead (`CREATE OR REPLACE`
-- cannot change them).
CREATE OR REPLACE FUNCTION {schema}.finish_and_claim(text[], timestamptz, bigint, uuid[],
    timestamptz, text, uuid[], uuid[], text[], text[], text[])
RETURNS TABLE (rn bigint, id uuid, lease_token uuid, name text, queue text, args text,
    context text, user_id text, tenant text, correlation_id text, attempt integer,
    max_attempts integer, timeout_ms bigint, due_at timestamptz, finished uuid[],
    finished_tokens uuid[], watched boolean)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $function$
#variable_conflict use_column
BEGIN
RETURN QUERY
{finish_and_claim}
;
END
$function$;
