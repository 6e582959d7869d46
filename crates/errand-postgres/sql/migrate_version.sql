-- The schema's version (NULL: none applied yet).
SELECT max(version) FROM {schema}.schema_version
