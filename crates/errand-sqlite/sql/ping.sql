-- Reads one page of the task table: proves the file is there and readable.
SELECT count(*) FROM (SELECT 1 FROM tasks LIMIT 1)
