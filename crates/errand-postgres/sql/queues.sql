-- Tasks per queue and state, as counts.sql.
SELECT queue, state, sum(n)::bigint FROM (
    SELECT queue, state, n FROM {schema}.counts
    UNION ALL
    SELECT queue, state, n FROM {schema}.count_deltas
) c
GROUP BY queue, state
ORDER BY queue
