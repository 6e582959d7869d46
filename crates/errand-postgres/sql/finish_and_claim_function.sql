-- `finish_and_claim` as a function, recreated by every process when it opens the store (under
-- the migrations' lock), so that it always runs the statement of `finish_and_claim.sql`
-- this build has. Its point is `plan_cache_mode = force_generic_plan`: the statement is
-- planned once per session and not before every call, which cost a third as much as running
-- it (custom plans, which the listing's optional filters need, are kept for every other
-- statement). Arguments and result as in `finish_and_claim.sql`. Replaced in place, so that
-- the other processes' calls, running meanwhile, keep finding it; a build that changes its
-- arguments or result gives it a new name instead (`CREATE OR REPLACE` cannot change them).
CREATE OR REPLACE FUNCTION {schema}.finish_and_claim(text[], timestamptz, bigint, uuid[], timestamptz,
    text, uuid[], uuid[], text[], text[], text[])
RETURNS TABLE (rn bigint, id uuid, lease_token uuid, name text, queue text, args text,
    context text, user_id text, tenant text, correlation_id text, attempt integer,
    max_attempts integer, timeout_ms bigint, due_at timestamptz, finished uuid[],
    finished_tokens uuid[], watched boolean)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $function$
#variable_conflict use_column
BEGIN
RETURN QUERY
{finish_and_claim}
;
END
$function$;
