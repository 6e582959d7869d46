-- Stores one new task, waiting from its run_at (delayed) or its creation.
-- ?1 id, ?2 name, ?3 queue, ?4 status, ?5 user_id, ?6 tenant, ?7 correlation_id,
-- ?8 request_id, ?9 key, ?10 live_key, ?11 now, ?12 run_at, ?13 max_attempts,
-- ?14 timeout_ms, ?15 ttl_us, ?16 args, ?17 context, ?18 trace_id
INSERT INTO tasks (
    id, name, queue, status, user_id, tenant, correlation_id, request_id, key, live_key,
    created_at, updated_at, run_at, max_attempts, timeout_ms, ttl_us, due_at, args, context,
    trace_id
) VALUES (
    ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,
    ?11, ?11, ?12, ?13, ?14, ?15, coalesce(?12, ?11), ?16, ?17,
    ?18
)
