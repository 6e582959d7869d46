-- Reclaims the dead rows of the tables every task passes through (each claim and each finish
-- leaves one), unless a vacuum of them is running already; it does not truncate the file, which
-- would lock out claims while it does.
VACUUM (SKIP_LOCKED, TRUNCATE false) {schema}.tasks, {schema}.count_deltas
