-- How many tasks wait and run (counts the partial indexes, not the table).
SELECT
    (SELECT count(*) FROM tasks WHERE due_at IS NOT NULL),
    (SELECT count(*) FROM tasks WHERE lease_until IS NOT NULL)
