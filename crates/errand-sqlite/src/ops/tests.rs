//! The statements checked against the schema: the columns their readers expect, the one
//! statement that ends tasks, the indexes of the hot paths; with the in-memory schema and the
//! query plans other modules' tests use.

use crate::sql;
use rusqlite::Connection;

/// A database in memory with the whole schema.
pub(crate) fn schema() -> Connection {
    let conn = Connection::open_in_memory().expect("in-memory database");
    for m in crate::migrations::all() {
        conn.execute_batch(m).expect("schema applies");
    }
    conn
}

/// The details of `sql`'s query plan, joined.
pub(crate) fn plan(conn: &Connection, sql: &str) -> String {
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("query plans");
    // Unbound parameters are NULL, which does not change the plan.
    let mut rows = stmt.raw_query();
    let mut details = Vec::new();
    while let Some(row) = rows.next().expect("plan row") {
        details.push(row.get::<_, String>(3).expect("plan detail"));
    }
    details.join("; ")
}

#[test]
fn both_claim_reads_return_the_columns_candidate_reads() {
    let conn = schema();
    let columns = |sql| {
        let stmt = conn.prepare(sql).expect("statement prepares");
        stmt.column_names().join(", ")
    };
    assert_eq!(columns(sql::CLAIM_CANDIDATES), columns(sql::CLAIM_ROW));
}

#[test]
fn record_queries_return_the_columns_codec_reads() {
    const RECORD_COLUMNS: [&str; 27] = [
        "id",
        "name",
        "queue",
        "status",
        "user_id",
        "tenant",
        "correlation_id",
        "request_id",
        "key",
        "created_at",
        "updated_at",
        "run_at",
        "started_at",
        "completed_at",
        "next_attempt_at",
        "expires_at",
        "attempt",
        "max_attempts",
        "timeout_ms",
        "cancel_requested",
        "progress",
        "steps",
        "error",
        "result",
        "history",
        "trace_id",
        "attempts",
    ];
    let conn = schema();
    let listings = [
        sql::LIST_OWNER,
        sql::LIST_ANY,
        sql::LIST_OWNER_DONE,
        sql::LIST_ANY_DONE,
        sql::LIST_OWNER_NAME,
        sql::LIST_ANY_NAME,
        sql::LIST_OWNER_QUEUE,
        sql::LIST_ANY_QUEUE,
        sql::LIST_WAITING,
        sql::LIST_RUNNING,
        sql::LIST_SEARCH,
    ];
    for sql in [sql::RECORD].into_iter().chain(listings) {
        let stmt = conn.prepare(sql).expect("statement prepares");
        assert_eq!(stmt.column_names(), RECORD_COLUMNS, "{sql}");
    }
    // `get` reads the arguments too, after the record's columns.
    let get = conn.prepare(sql::GET).expect("statement prepares");
    let mut with_args = RECORD_COLUMNS.to_vec();
    with_args.push("args");
    assert_eq!(get.column_names(), with_args);
}

/// Every way a task ends (completions, cancels of waiting tasks, the reaper) goes through
/// `finish.sql`: no other statement schedules a record's expiry.
#[test]
fn only_finish_sql_ends_tasks() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
    let mut ending = Vec::new();
    for entry in std::fs::read_dir(dir).expect("sql directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "sql") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("sql file");
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect();
        if code.contains("ttl_us") && code.contains("UPDATE") {
            ending.push(
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    assert_eq!(ending, ["finish.sql"]);
}

/// The hot paths walk their partial index and never sort or scan the table, so they cost
/// O(log n) however many tasks wait or finished.
#[test]
fn hot_queries_use_their_indexes() {
    let conn = schema();
    let uses = |sql: &str, index: &str| {
        let plan = plan(&conn, sql);
        assert!(plan.contains(index), "{sql}\nplan: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{sql}\nsorts: {plan}");
        assert!(
            !plan.contains("SCAN tasks") || plan.contains("USING"),
            "{sql}\nscans the table: {plan}"
        );
    };
    uses(sql::CLAIM_CANDIDATES, "tasks_ready");
    // Claims from several queues pick their winners from the index alone, reading no row.
    uses(sql::CLAIM_ORDER, "COVERING INDEX tasks_ready");
    uses(sql::CLAIM_ROW, "INTEGER PRIMARY KEY");
    uses(sql::NEXT_DUE, "tasks_ready");
    uses(sql::REAP_LAPSED, "tasks_leased");
    uses(sql::PURGE_EXPIRED, "tasks_expiry");
    uses(sql::ENQUEUE_FIND_KEY, "tasks_live_key");
    uses(sql::LIST_OWNER, "tasks_owner");
    uses(sql::GET, "sqlite_autoindex_tasks_1");
    uses(sql::HEARTBEAT, "sqlite_autoindex_tasks_1");
    uses(sql::FINISH, "sqlite_autoindex_tasks_1");
    uses(sql::COMPLETE_RETRY, "sqlite_autoindex_tasks_1");
    uses(sql::COMPLETE_RELEASE, "sqlite_autoindex_tasks_1");
    let depth = plan(&conn, sql::DEPTH);
    assert!(
        depth.contains("tasks_ready") && depth.contains("tasks_leased"),
        "depth counts the partial indexes: {depth}"
    );
}
