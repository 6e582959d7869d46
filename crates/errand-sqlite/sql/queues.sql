-- Tasks per state of every queue, by queue name.
SELECT substr(scope, 2), status, n FROM task_counts
WHERE scope >= 'q' AND scope < 'r'
ORDER BY scope
