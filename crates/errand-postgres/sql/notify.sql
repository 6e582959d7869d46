-- Sends notifications on the store's channel; delivered when the transaction commits.
-- $1 channel, $2 payloads
SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS p(payload)
