-- Deletes finished records past their expiry, at most 10,000 per call. $1 now
DELETE FROM {schema}.finished
WHERE id IN (SELECT id FROM {schema}.finished WHERE expires_at <= $1 LIMIT 10000)
