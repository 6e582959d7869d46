-- Whether this transaction may fold the count deltas (one folder at a time). $1 lock name
SELECT pg_try_advisory_xact_lock(hashtext($1))
