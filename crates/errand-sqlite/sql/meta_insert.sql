-- Records a deployment fact where none is recorded yet (changes nothing otherwise).
-- ?1 name, ?2 value
INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING
