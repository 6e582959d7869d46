-- Announces the changes of those tasks of $3 that somebody watches: payloads of $2 followed by
-- up to 200 comma-separated ids; nothing (and no NOTIFY) when nobody watches them.
-- $1 channel, $2 payload prefix, $3 task ids
SELECT pg_notify($1, $2 || string_agg(id::text, ','))
FROM (
    SELECT id, (row_number() OVER (ORDER BY id) - 1) / 200 AS chunk
    FROM (SELECT DISTINCT task_id AS id FROM {schema}.watching
          WHERE task_id = ANY($3) AND until > now()) watched
) numbered
GROUP BY chunk
