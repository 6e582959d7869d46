-- A worker's steady state: `finish_and_claim.sql` through its function (see
-- `finish_and_claim_function.sql`). $1–$11 as there.
SELECT * FROM {schema}.finish_and_claim($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
