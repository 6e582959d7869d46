-- Records a fact unless one is recorded. $1 name, $2 value
INSERT INTO {schema}.meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING
