-- Records that a version was applied. $1 version
INSERT INTO {schema}.schema_version (version) VALUES ($1)
