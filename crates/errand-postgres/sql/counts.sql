-- Tasks per state: folded counts plus the deltas not folded yet.
-- $1 everyone's, $2 user id, $3 tenant (when not everyone's)
SELECT state, sum(n)::bigint FROM (
    SELECT user_id, tenant, state, n FROM {schema}.counts
    UNION ALL
    SELECT user_id, tenant, state, n FROM {schema}.count_deltas
) c
WHERE $1 OR (user_id IS NOT DISTINCT FROM $2 AND tenant IS NOT DISTINCT FROM $3)
GROUP BY state
