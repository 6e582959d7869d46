-- Adds :delta to the tasks in state :status of a scope: everyone's (:kind ''), an owner's
-- (:kind 'o', :a tenant, :b user_id) or a queue's (:kind 'q', :a the queue).
INSERT INTO task_counts (scope, status, n)
VALUES (
    CASE :kind WHEN 'o' THEN 'o' || json_array(:a, :b) WHEN 'q' THEN 'q' || :a ELSE '' END,
    :status,
    :delta
)
ON CONFLICT (scope, status) DO UPDATE SET n = n + excluded.n
