-- One deployment fact.
-- ?1 name
SELECT value FROM meta WHERE name = ?1
