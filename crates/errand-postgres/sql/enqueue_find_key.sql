-- The live tasks holding these scoped keys. $1 scoped keys
SELECT scoped_key, id, status FROM {schema}.tasks WHERE scoped_key = ANY($1)
