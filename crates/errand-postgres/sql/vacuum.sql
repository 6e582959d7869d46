-- Reclaims the dead rows of the tables every task passes through (each claim and each finish
-- leaves one), unless a vacuum of them is running already; it does not truncate the file, which
-- would lock out claims while it does. `PARALLEL 0`: the indexes are vacuumed by this backend
-- alone, as parallel workers (a process started per index for every vacuum) cost the drain more
-- than they save on tables the size of a backlog.
VACUUM (SKIP_LOCKED, TRUNCATE false, PARALLEL 0) {schema}.tasks, {schema}.count_deltas
