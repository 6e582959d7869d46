-- Registers (or renews) a watcher of a task for a minute. $1 task id, $2 watcher
INSERT INTO {schema}.watching (task_id, watcher, until)
VALUES ($1, $2, now() + interval '1 minute')
ON CONFLICT (task_id, watcher) DO UPDATE SET until = EXCLUDED.until
