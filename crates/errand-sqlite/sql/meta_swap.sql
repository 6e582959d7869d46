-- Replaces a deployment fact if it still holds the expected value.
-- ?1 name, ?2 expected, ?3 value
UPDATE meta SET value = ?3 WHERE name = ?1 AND value = ?2
