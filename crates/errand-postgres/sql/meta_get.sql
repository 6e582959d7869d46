-- A deployment fact. $1 name
SELECT value FROM {schema}.meta WHERE name = $1
