-- The planner's estimate of the rows of `tasks`, which every vacuum brings up to date: cheap at
-- any size. Read through a row's `tableoid`, so no table name is written into a literal; an
-- empty table answers no row.
SELECT greatest(c.reltuples, 0)::float8 AS live
FROM pg_class c
WHERE c.oid = (SELECT t.tableoid FROM {schema}.tasks t LIMIT 1)
