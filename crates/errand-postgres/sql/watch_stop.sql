-- Removes a watcher's registration. $1 task id, $2 watcher
DELETE FROM {schema}.watching WHERE task_id = $1 AND watcher = $2
