-- Tasks per state of everyone (:owned 0) or of one owner (:owned 1, :tenant, :user_id).
SELECT status, n FROM task_counts
WHERE scope = CASE :owned WHEN 1 THEN 'o' || json_array(:tenant, :user_id) ELSE '' END
