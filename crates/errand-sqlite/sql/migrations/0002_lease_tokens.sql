-- errand's task table, version 2.
--
-- Every claim issues a random 128-bit lease token (16 bytes) instead of raising a counter: a
-- database restored from an older copy would issue the same counter again, while a token is
-- never issued twice. Tasks running during the upgrade have no token, so no worker's lease
-- matches them: their leases lapse and the reaper hands them out again.
ALTER TABLE tasks ADD COLUMN lease_token BLOB;
ALTER TABLE tasks DROP COLUMN fence;

-- Facts every process sharing this database must agree on (the ids of the keys in use).
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
