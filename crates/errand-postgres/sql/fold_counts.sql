-- Folds the count deltas into the counts, in key order.
WITH folded AS (
    DELETE FROM {schema}.count_deltas RETURNING *
)
INSERT INTO {schema}.counts AS c (owner, user_id, tenant, queue, state, n)
SELECT owner, min(user_id), min(tenant), queue, state, sum(n)
FROM folded
GROUP BY owner, queue, state
ORDER BY owner, queue, state
ON CONFLICT (owner, queue, state) DO UPDATE SET n = c.n + EXCLUDED.n
