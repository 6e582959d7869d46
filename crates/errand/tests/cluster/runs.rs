//! The results log the proof workers append to ([`RunLog`], [`RunLine`]), what it says about
//! the submitted tasks ([`tally`], [`Runs`]), and the store's records of them.

use errand_core::{Store, TaskId, TaskRecord, TaskState};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::wait_until;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEnd {
    /// It slept its full time.
    Done,
    /// Its cancellation token fired first (shutdown past the drain, lost lease, cancel).
    Interrupted,
}

/// One run of a [`Record`] task, as it appended it to the results log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunLine {
    /// The task.
    pub task: TaskId,
    /// The user the test submitted it for.
    pub submitted_for: String,
    /// The user of `Context::current()` inside the run.
    pub context_user: Option<String>,
    /// The user of `cx.user_id()`.
    pub cx_user: Option<String>,
    /// Whether the credential the run could unseal is the submitter's.
    pub credential_ok: bool,
    /// The attempt number.
    pub attempt: u32,
    /// The process that ran it.
    pub pid: u32,
    /// How it ended.
    pub end: RunEnd,
    /// When it ended (Unix ms).
    pub at_ms: i64,
}

impl RunLine {
    /// Whether the run saw anyone but its submitter.
    pub fn saw_another_user(&self) -> bool {
        self.context_user.as_deref() != Some(&self.submitted_for)
            || self.cx_user.as_deref() != Some(&self.submitted_for)
            || !self.credential_ok
    }
}

/// The results log: opened with `O_APPEND`, one `write` per line, so lines of concurrent
/// processes never interleave.
pub struct RunLog(File);

impl RunLog {
    /// Opens (creates) the log at `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(Self)
    }

    /// Appends `line` in one `write`.
    pub fn append(&self, line: &RunLine) -> std::io::Result<()> {
        let mut buf = serde_json::to_vec(line)?;
        buf.push(b'\n');
        let written = (&self.0).write(&buf)?;
        if written != buf.len() {
            return Err(std::io::Error::other(format!(
                "short write to the results log: {written} of {} bytes",
                buf.len()
            )));
        }
        Ok(())
    }
}

/// Every line of the results log at `path`; panics on a line that does not parse (a torn or
/// interleaved write).
pub fn read_runs(path: &Path) -> Vec<RunLine> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read the results log {}: {e}", path.display()),
    };
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("torn line in the results log ({e}): {line:?}"))
        })
        .collect()
}

/// Task `id`'s record, if the store knows it. A read that finds the store unreachable (just
/// restarted, or slow under the test's load) is tried again for 30 s.
pub async fn record(store: &Arc<dyn Store>, id: TaskId) -> Option<TaskRecord> {
    let mut tries = 0;
    loop {
        match store.get(id).await {
            Err(e) if e.is_unavailable() && tries < 300 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other.expect("read a record"),
        }
    }
}

/// Every task's record, fetched 32 at a time (as [`record`]); panics on an unknown id.
pub async fn records(store: &Arc<dyn Store>, ids: &[TaskId]) -> Vec<TaskRecord> {
    futures::stream::iter(ids.iter().copied())
        .map(|id| async move {
            record(store, id)
                .await
                .unwrap_or_else(|| panic!("task {id} is unknown to the store"))
        })
        .buffered(32)
        .collect()
        .await
}

/// Tasks whose record is not `success`, as `(id, status)`.
async fn not_successful(store: &Arc<dyn Store>, ids: &[TaskId]) -> Vec<(TaskId, TaskState)> {
    records(store, ids)
        .await
        .into_iter()
        .filter(|r| r.status != TaskState::Success)
        .map(|r| (r.id, r.status))
        .collect()
}

/// Waits until every task in `ids` is `success`; panics if one ends otherwise.
pub async fn wait_all_successful(store: &Arc<dyn Store>, ids: &[TaskId], within: Duration) {
    wait_until("every task to succeed", within, || async {
        let pending = not_successful(store, ids).await;
        let ended_badly: Vec<_> = pending.iter().filter(|(_, s)| s.is_terminal()).collect();
        assert!(
            ended_badly.is_empty(),
            "tasks ended other than success: {ended_badly:?}"
        );
        pending.is_empty().then_some(())
    })
    .await;
}

/// What the results log says about a set of submitted tasks.
#[derive(Debug)]
pub struct Runs {
    /// Runs that slept their full time.
    pub done: usize,
    /// Runs whose token fired first.
    pub interrupted: usize,
    /// Submitted tasks with no finished run.
    pub never_ran: Vec<TaskId>,
    /// Runs that saw a user (or credential) other than their submitter's.
    pub mismatches: usize,
    /// Finished runs beyond the first of each task.
    pub duplicates: usize,
    /// The processes whose finished runs were repeated by another run, with how many.
    pub repeated_by_pid: HashMap<u32, usize>,
    /// Lines of tasks the test never got an acknowledgement for.
    pub unacknowledged: usize,
}

impl Runs {
    /// Asserts that every submitted task finished a run and that no run saw another user.
    pub fn assert_all_ran_as_their_users(&self) {
        assert!(
            self.never_ran.is_empty(),
            "submitted tasks never ran: {:?}",
            self.never_ran
        );
        assert_eq!(self.mismatches, 0, "runs saw another user");
    }
}

/// Reads the results log against `submitted` (task → the user it was submitted for).
pub fn tally(log: &Path, submitted: &HashMap<TaskId, String>) -> (Runs, Vec<RunLine>) {
    let lines = read_runs(log);
    let mut done: HashMap<TaskId, Vec<&RunLine>> = HashMap::new();
    let mut runs = Runs {
        done: 0,
        interrupted: 0,
        never_ran: Vec::new(),
        mismatches: 0,
        duplicates: 0,
        repeated_by_pid: HashMap::new(),
        unacknowledged: 0,
    };
    for line in &lines {
        match submitted.get(&line.task) {
            Some(user) if *user != line.submitted_for => runs.mismatches += 1,
            Some(_) if line.saw_another_user() => runs.mismatches += 1,
            Some(_) => {}
            None => {
                runs.unacknowledged += 1;
                if line.saw_another_user() {
                    runs.mismatches += 1;
                }
            }
        }
        match line.end {
            RunEnd::Done => {
                runs.done += 1;
                done.entry(line.task).or_default().push(line);
            }
            RunEnd::Interrupted => runs.interrupted += 1,
        }
    }
    for id in submitted.keys() {
        match done.get(id) {
            None => runs.never_ran.push(*id),
            Some(finished) if finished.len() > 1 => {
                runs.duplicates += finished.len() - 1;
                // The log is in write order: every finished run but the last was repeated.
                for line in &finished[..finished.len() - 1] {
                    *runs.repeated_by_pid.entry(line.pid).or_default() += 1;
                }
            }
            Some(_) => {}
        }
    }
    (runs, lines)
}
