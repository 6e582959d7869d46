-- Replaces a fact if it is the expected one. $1 name, $2 expected, $3 value
UPDATE {schema}.meta SET value = $3 WHERE name = $1 AND value = $2
