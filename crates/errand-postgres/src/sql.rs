//! The store's statements: one file per operation under `sql/`, loaded at compile time, with
//! the configured schema (and the record's column list) written in once when the store opens.

/// The columns a record is read from, in every statement that returns records.
const COLUMNS: &str = "id, name, queue, status, user_id, tenant, correlation_id, request_id, \
    key, created_at, updated_at, run_at, started_at, completed_at, next_attempt_at, \
    expires_at, attempt, max_attempts, timeout_ms, cancel_requested, progress, steps, error, \
    result, history, trace_id, attempts";

macro_rules! statements {
    ($($name:ident),* $(,)?) => {
        /// Every statement, ready to run against one schema.
        #[derive(Debug)]
        pub(crate) struct Sql {
            $(pub(crate) $name: String,)*
        }

        impl Sql {
            /// The statements for `schema` (already quoted as an identifier).
            pub(crate) fn for_schema(schema: &str) -> Self {
                Self {
                    $($name: bind(include_str!(concat!("../sql/", stringify!($name), ".sql")), schema),)*
                }
            }
        }
    };
}

statements!(
    cancel_running,
    claim,
    claim_unflushed,
    counts,
    enqueue,
    enqueue_find_key,
    finish,
    finish_and_claim_call,
    get,
    fold_counts,
    fold_lock,
    heartbeat,
    list,
    live_rows,
    lock_finished,
    lock_leases,
    lock_live,
    meta_get,
    meta_insert,
    meta_swap,
    notify,
    notify_changed,
    ping,
    purge_expired,
    queues,
    reap_lapsed,
    records,
    report,
    requeue,
    retry,
    settings,
    vacuum,
    watch_expire,
    watch_start,
    watch_stop,
);

/// `sql` with `{finish_and_claim}` (the worker's steady-state statement, for its function),
/// `{claim}` (the claim statement, for statements that claim as one of their parts),
/// `{schema}` and `{columns}` written in.
pub(crate) fn bind(sql: &str, schema: &str) -> String {
    sql.replace(
        "{finish_and_claim}",
        include_str!("../sql/finish_and_claim.sql"),
    )
    .replace("{claim}", include_str!("../sql/claim.sql"))
    .replace("{schema}", schema)
    .replace("{columns}", COLUMNS)
}

/// `name` quoted as a Postgres identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_the_schema_and_leave_no_placeholder() {
        let sql = Sql::for_schema(&quote_ident("my\"app"));
        assert!(sql.claim.contains("\"my\"\"app\".tasks"));
        assert!(sql.records.contains("history"));
        assert!(!sql.list.contains('{'), "{}", sql.list);
        let function = bind(
            include_str!("../sql/finish_and_claim_function.sql"),
            &quote_ident("my\"app"),
        );
        assert!(
            function.contains("FOR UPDATE SKIP LOCKED")
                && function.contains("force_generic_plan")
                && !function.contains('{'),
            "{function}"
        );
    }
}
