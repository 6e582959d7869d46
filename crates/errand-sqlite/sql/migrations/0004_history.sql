-- errand's task table, version 4.
--
-- Who cancelled or retried each task, and when: a JSON array of actions, oldest first, bounded
-- to the last 50 (errand_core::HISTORY_LIMIT). NULL (as in every row written before) is an
-- empty history.
ALTER TABLE tasks ADD COLUMN history TEXT;
