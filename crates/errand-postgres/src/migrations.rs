//! The schema's versions: `sql/migrations/NNNN_*.sql`, applied in order, each once, in one
//! transaction per version under an advisory lock, so processes starting at once do not race.

use crate::error::Result;
use crate::sql::bind;
use sqlx_core::executor::Executor;
use sqlx_core::query::query;
use sqlx_core::query_scalar::query_scalar;
use sqlx_core::raw_sql::raw_sql;
use sqlx_postgres::PgPool;

/// Every version of the schema, oldest first.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../sql/migrations/0001_init.sql"))];

/// Brings `schema` (quoted; `name` unquoted) to the newest version; returns the version it was
/// at (0: it did not exist).
pub(crate) async fn migrate(pool: &PgPool, schema: &str, name: &str) -> Result<i32> {
    let mut tx = pool.begin().await?;
    query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("errand migrations {name}"))
        .execute(&mut *tx)
        .await?;
    tx.execute(raw_sql(&bind(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_version (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
        schema,
    )))
    .await?;
    let found: Option<i32> = query_scalar(&bind(
        "SELECT max(version) FROM {schema}.schema_version",
        schema,
    ))
    .fetch_one(&mut *tx)
    .await?;
    let found = found.unwrap_or(0);
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.execute(raw_sql(&bind(sql, schema))).await?;
        query(&bind(
            "INSERT INTO {schema}.schema_version (version) VALUES ($1)",
            schema,
        ))
        .bind(version)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(found)
}
