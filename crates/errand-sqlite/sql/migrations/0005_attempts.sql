-- errand's task table, version 5.
--
-- What a task's page shows beyond its state: the trace id of the submitter's traceparent, in
-- the clear beside the sealed context (shown, never trusted), and the attempt log, a JSON
-- array of how each attempt that did not succeed ended, oldest first, bounded to the last 20
-- (errand_core::ATTEMPT_LOG_LIMIT; see src/attempt_log.rs). NULL (as in every row written
-- before) is no trace id and an empty log.
ALTER TABLE tasks ADD COLUMN trace_id TEXT;
ALTER TABLE tasks ADD COLUMN attempts TEXT;
