-- Serializes the processes migrating one schema (held until the transaction ends). $1 lock name
SELECT pg_advisory_xact_lock(hashtext($1))
