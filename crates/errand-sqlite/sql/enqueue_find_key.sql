-- The live task holding an owner-scoped idempotency key, if any.
SELECT id, status FROM tasks WHERE live_key = ?1
