-- Version 2: what a task's page shows beyond its state. `trace_id` is the trace id of the
-- submitter's traceparent, in the clear beside the sealed context (shown, never trusted);
-- `attempts` is the attempt log, how each attempt that did not succeed ended, oldest first,
-- bounded to the last 20 (errand_core::ATTEMPT_LOG_LIMIT). Rows written before have no trace
-- id and an empty log.
ALTER TABLE {schema}.tasks ADD COLUMN trace_id text,
    ADD COLUMN attempts jsonb NOT NULL DEFAULT '[]';
ALTER TABLE {schema}.finished ADD COLUMN trace_id text,
    ADD COLUMN attempts jsonb NOT NULL DEFAULT '[]';
-- A view keeps the columns it was created with: recreate it with the new ones.
CREATE OR REPLACE VIEW {schema}.records AS
    SELECT * FROM {schema}.tasks
    UNION ALL
    SELECT * FROM {schema}.finished;
