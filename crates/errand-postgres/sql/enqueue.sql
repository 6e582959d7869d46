-- Stores new tasks in order; a task whose scoped key a live task holds (or an earlier task of
-- the same batch) is skipped, and its id is not returned.
-- $1 ids, $2 names, $3 queues, $4 user ids, $5 tenants, $6 correlation ids, $7 request ids,
-- $8 keys, $9 scoped keys, $10 args, $11 contexts, $12 run_at (NULL: no delay),
-- $13 max attempts, $14 timeouts (ms), $15 TTLs (ms), $16 now, $17 trace ids
INSERT INTO {schema}.tasks (id, name, queue, status, user_id, tenant, correlation_id,
    request_id, key, scoped_key, args, context, created_at, updated_at, run_at, due_at,
    max_attempts, timeout_ms, ttl_ms, trace_id)
SELECT id, name, queue, CASE WHEN run_at IS NULL THEN 'pending' ELSE 'scheduled' END,
       user_id, tenant, correlation_id, request_id, key, scoped_key, args, context, $16, $16,
       run_at, coalesce(run_at, $16), max_attempts, timeout_ms, ttl_ms, trace_id
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[],
            $13::int[], $14::bigint[], $15::bigint[], $17::text[]) WITH ORDINALITY
    AS t(id, name, queue, user_id, tenant, correlation_id, request_id, key, scoped_key, args,
         context, run_at, max_attempts, timeout_ms, ttl_ms, trace_id, ord)
ORDER BY ord
ON CONFLICT (scoped_key) WHERE scoped_key IS NOT NULL DO NOTHING
RETURNING id
