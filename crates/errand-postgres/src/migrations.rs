//! The schema's versions: `sql/migrations/NNNN_*.sql`, applied in order, each once, in one
//! transaction under an advisory lock, so processes starting at once do not race; in the same
//! transaction, the functions that follow this build's statements are recreated.

use crate::error::Result;
use crate::sql::bind;
use sqlx_core::executor::Executor;
use sqlx_core::query::query;
use sqlx_core::query_scalar::query_scalar;
use sqlx_core::raw_sql::raw_sql;
use sqlx_postgres::PgPool;

/// Every version of the schema, oldest first.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../sql/migrations/0001_init.sql")),
    (2, include_str!("../sql/migrations/0002_attempts.sql")),
];

/// Brings `schema` (quoted; `name` unquoted) to the newest version.
pub(crate) async fn migrate(pool: &PgPool, schema: &str, name: &str) -> Result<()> {
    let mut tx = pool.begin().await?;
    query(include_str!("../sql/migrate_lock.sql"))
        .bind(format!("errand migrations {name}"))
        .execute(&mut *tx)
        .await?;
    tx.execute(raw_sql(&bind(
        include_str!("../sql/migrate_prepare.sql"),
        schema,
    )))
    .await?;
    let found: Option<i32> =
        query_scalar(&bind(include_str!("../sql/migrate_version.sql"), schema))
            .fetch_one(&mut *tx)
            .await?;
    let found = found.unwrap_or(0);
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.execute(raw_sql(&bind(sql, schema))).await?;
        query(&bind(include_str!("../sql/migrate_applied.sql"), schema))
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    // Not a migration: it follows the statement of this build (see the file).
    tx.execute(raw_sql(&bind(
        include_str!("../sql/finish_and_claim_function.sql"),
        schema,
    )))
    .await?;
    tx.commit().await?;
    if let Some((latest, _)) = MIGRATIONS.last().filter(|(v, _)| *v > found) {
        tracing::info!(
            schema = name,
            from = found,
            to = latest,
            "errand's Postgres schema migrated"
        );
    }
    Ok(())
}
