//! Listings: each query walks one index chosen by its filters ([`Walk`]), and checks the
//! other filters on the rows the walk reads. Reads run on a read-only connection.

use crate::codec::{self, id_bytes};
use crate::error::OpError;
use crate::sql;
use crate::tally;
use errand_core::{ListQuery, OwnerFilter, Page, TaskState};
use rusqlite::{Connection, Statement, ToSql};

/// Below every stored id: the lower bound of a listing without `created_after`.
const BELOW_ALL_IDS: [u8; 0] = [];
/// Above every stored id (16 bytes): the upper bound of a first page without
/// `created_before`.
const ABOVE_ALL_IDS: [u8; 17] = [0xff; 17];

/// The index a listing walks, newest first. The first that applies, in this order:
///
/// 1. `search`: the id's unique index, `tasks_correlation` and `tasks_request`;
/// 2. a waiting state (pending, scheduled, retrying): `tasks_ready`, which holds only waiting
///    tasks, so the walk costs the backlog (all owners'), not anybody's history; when the
///    state's counter says there is none, nothing is read at all;
/// 3. running: `tasks_leased` (only running tasks; skipped likewise at 0);
/// 4. a final state (success, failed, cancelled): `tasks_owner_done` / `tasks_done`;
/// 5. a task name: `tasks_owner_name` / `tasks_name`;
/// 6. a queue: `tasks_owner_queue` / `tasks_queue`;
/// 7. no filter: `tasks_owner` / the ids.
///
/// Combinations walk the first index and check the rest on its rows: a final state with a
/// name (or queue) walks that state's tasks of the owner, however few of them have the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    Search,
    Waiting(TaskState),
    Running,
    Done,
    Name,
    Queue,
    Everything,
}

impl Walk {
    fn of(query: &ListQuery) -> Self {
        match query.status {
            _ if query.search.is_some() => Walk::Search,
            Some(TaskState::Running) => Walk::Running,
            Some(s) if s.is_waiting() => Walk::Waiting(s),
            Some(_) => Walk::Done,
            None if query.name.is_some() => Walk::Name,
            None if query.queue.is_some() => Walk::Queue,
            None => Walk::Everything,
        }
    }

    /// The statement of this walk for one owner's (`owned`) or everyone's tasks.
    fn sql(self, owned: bool) -> &'static str {
        match (self, owned) {
            (Walk::Search, _) => sql::LIST_SEARCH,
            (Walk::Waiting(_), _) => sql::LIST_WAITING,
            (Walk::Running, _) => sql::LIST_RUNNING,
            (Walk::Done, true) => sql::LIST_OWNER_DONE,
            (Walk::Done, false) => sql::LIST_ANY_DONE,
            (Walk::Name, true) => sql::LIST_OWNER_NAME,
            (Walk::Name, false) => sql::LIST_ANY_NAME,
            (Walk::Queue, true) => sql::LIST_OWNER_QUEUE,
            (Walk::Queue, false) => sql::LIST_ANY_QUEUE,
            (Walk::Everything, true) => sql::LIST_OWNER,
            (Walk::Everything, false) => sql::LIST_ANY,
        }
    }

    /// The live state whose counter tells first whether the walk can find anything.
    fn counted(self) -> Option<TaskState> {
        match self {
            Walk::Waiting(s) => Some(s),
            Walk::Running => Some(TaskState::Running),
            _ => None,
        }
    }
}

/// Binds `value` to the parameter `name` if `stmt` has it (each listing statement uses the
/// parameters its walk needs).
fn bind(stmt: &mut Statement<'_>, name: &str, value: impl ToSql) -> Result<(), OpError> {
    if let Some(i) = stmt.parameter_index(name)? {
        stmt.raw_bind_parameter(i, value)?;
    }
    Ok(())
}

/// Unexpired records matching `query`, newest first.
pub(crate) fn list(conn: &Connection, query: &ListQuery, now: i64) -> Result<Page, OpError> {
    let limit = query.capped_limit();
    let empty = Page::of_fetched(Vec::new(), limit);
    if query.empty_range() {
        return Ok(empty);
    }
    let walk = Walk::of(query);
    if let Some(state) = walk.counted()
        && tally::counts(conn, &query.owner)?.get(state) == 0
    {
        return Ok(empty);
    }
    let (lower, upper) = query.id_range();
    let lower = lower.map(id_bytes);
    let upper = upper.map(id_bytes);
    let (owned, tenant, user_id) = match &query.owner {
        OwnerFilter::Owner(o) => (true, o.tenant.as_deref(), o.user_id.as_deref()),
        OwnerFilter::Any => (false, None, None),
    };
    let search_id = query.search_id().map(id_bytes);
    let mut stmt = conn.prepare_cached(walk.sql(owned))?;
    bind(&mut stmt, ":owned", i64::from(owned))?;
    bind(&mut stmt, ":tenant", tenant)?;
    bind(&mut stmt, ":user_id", user_id)?;
    bind(
        &mut stmt,
        ":lower",
        lower.as_ref().map_or(&BELOW_ALL_IDS[..], |l| &l[..]),
    )?;
    bind(
        &mut stmt,
        ":upper",
        upper.as_ref().map_or(&ABOVE_ALL_IDS[..], |u| &u[..]),
    )?;
    bind(&mut stmt, ":status", query.status.map(TaskState::as_str))?;
    bind(&mut stmt, ":name", query.name.as_deref())?;
    bind(&mut stmt, ":queue", query.queue.as_deref())?;
    bind(&mut stmt, ":search", query.search.as_deref())?;
    bind(&mut stmt, ":search_id", search_id.as_ref().map(|b| &b[..]))?;
    bind(&mut stmt, ":now", now)?;
    bind(&mut stmt, ":limit", (limit + 1) as i64)?;
    let mut rows = stmt.raw_query();
    let mut items = Vec::with_capacity(limit + 1);
    while let Some(r) = rows.next()? {
        items.push(codec::record(r)?);
    }
    Ok(Page::of_fetched(items, limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tests::{plan, schema};

    /// Every walk searches its index (a range of it, never the whole table) and, except the
    /// walks over live tasks and the search's few hits, reads it in id order without sorting.
    #[test]
    fn each_walk_uses_its_index() {
        let conn = schema();
        let cases = [
            (
                sql::LIST_OWNER,
                "SEARCH tasks USING INDEX tasks_owner (tenant=? AND user_id=?",
            ),
            (
                sql::LIST_ANY,
                "SEARCH tasks USING INDEX sqlite_autoindex_tasks_1 (id>? AND id<?)",
            ),
            (
                sql::LIST_OWNER_DONE,
                "SEARCH tasks USING INDEX tasks_owner_done (tenant=? AND user_id=? AND status=?",
            ),
            (
                sql::LIST_ANY_DONE,
                "SEARCH tasks USING INDEX tasks_done (status=?",
            ),
            (
                sql::LIST_OWNER_NAME,
                "SEARCH tasks USING INDEX tasks_owner_name (tenant=? AND user_id=? AND name=?",
            ),
            (
                sql::LIST_ANY_NAME,
                "SEARCH tasks USING INDEX tasks_name (name=?",
            ),
            (
                sql::LIST_OWNER_QUEUE,
                "SEARCH tasks USING INDEX tasks_owner_queue (tenant=? AND user_id=? AND queue=?",
            ),
            (
                sql::LIST_ANY_QUEUE,
                "SEARCH tasks USING INDEX tasks_queue (queue=?",
            ),
        ];
        for (sql, expected) in cases {
            let plan = plan(&conn, sql);
            assert!(plan.contains(expected), "{sql}\nplan: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql}\nsorts: {plan}");
        }
        let search = plan(&conn, sql::LIST_SEARCH);
        for index in [
            "sqlite_autoindex_tasks_1",
            "tasks_correlation",
            "tasks_request",
        ] {
            assert!(search.contains(index), "the search uses {index}: {search}");
        }
        assert!(!search.contains("SCAN tasks"), "{search}");
        let waiting = plan(&conn, sql::LIST_WAITING);
        assert!(waiting.contains("USING INDEX tasks_ready"), "{waiting}");
        let running = plan(&conn, sql::LIST_RUNNING);
        assert!(running.contains("USING INDEX tasks_leased"), "{running}");
    }

    #[test]
    fn walks_follow_the_filters() {
        let mut q = ListQuery::owner(OwnerFilter::Any);
        assert_eq!(Walk::of(&q), Walk::Everything);
        q.queue = Some("q".into());
        assert_eq!(Walk::of(&q), Walk::Queue);
        q.name = Some("n".into());
        assert_eq!(Walk::of(&q), Walk::Name);
        q.status = Some(TaskState::Failed);
        assert_eq!(Walk::of(&q), Walk::Done);
        q.status = Some(TaskState::Retrying);
        assert_eq!(Walk::of(&q), Walk::Waiting(TaskState::Retrying));
        q.status = Some(TaskState::Running);
        assert_eq!(Walk::of(&q), Walk::Running);
        q.search = Some("x".into());
        assert_eq!(Walk::of(&q), Walk::Search);
    }
}
