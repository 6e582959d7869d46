//! How a task is laid out in Redis, and how stored records, script answers and event
//! messages become [`TaskRecord`]s and [`Claimed`] tasks.
//!
//! A task is one string, so scripts read and write a batch of tasks with MGET and MSET rather
//! than commands per task. It is a header line of `|`-separated fields, then six
//! length-prefixed blobs, a seventh once the task was cancelled or retried by request, and an
//! eighth once an attempt ended other than in success:
//!
//! ```text
//! state|cancel|token|attempt|started|updated|next|completed|expires|max|created|ttl|owner
//! <len>:<error><len>:<result><len>:<key name><len>:<progress><len>:<steps><len>:<payload>[<len>:<history>[<len>:<attempts>]]
//! ```
//!
//! | part | holds |
//! |---|---|
//! | `state` | `pending`, `scheduled`, `running`, `retrying`, `success`, `failed` or `cancelled` |
//! | `cancel` | `1` once cancellation of the running task was requested |
//! | `token` | the lease token of the last claim (32 hex digits, random; `0` before the first); leases carry it |
//! | `attempt`, `max` | attempts started, attempts allowed |
//! | `started` … `created` | times in ms (empty when unset); `next` is when a scheduled or retrying task is due |
//! | `ttl` | how long the finished record is kept (ms) |
//! | `owner` | the owner's hash, which names its listing index |
//! | error, result, progress, steps | JSON, empty when unset |
//! | key name | the Redis key of the task's idempotency key, if any |
//! | payload | JSON written once: name, owner, correlation, request and trace ids, key, delay, timeout, args, sealed context |
//! | history | who cancelled or retried the task and when (see the `history` module); absent: none |
//! | attempts | how each attempt that did not succeed ended (see the `attempt_log` module); absent: none |
//!
//! The enqueue script writes the header up to `max` itself, so that every time in a record
//! comes from the script's "now" (Redis's clock by default); a record's `run_at` is its
//! creation time plus its delay.

use crate::attempt_log;
use crate::error::corrupt;
use crate::history;
use chrono::{DateTime, Utc};
use errand_core::{
    Claimed, ErrorInfo, Lease, LeaseToken, MAX_DURATION, NewTask, Owner, Progress, SealedContext,
    Step, StoreError, TaskId, TaskRecord, TaskState,
};
use redis::Value;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::Duration;

/// The immutable part of a task, as written.
#[derive(Serialize)]
struct PayloadOut<'a> {
    n: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ci: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ri: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    k: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dl: Option<i64>,
    to: u64,
    a: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<&'a str>,
}

/// The immutable part of a task, as read back.
#[derive(Deserialize)]
struct PayloadIn<'a> {
    n: String,
    #[serde(default)]
    u: Option<String>,
    #[serde(default)]
    tn: Option<String>,
    #[serde(default)]
    ci: Option<String>,
    #[serde(default)]
    ri: Option<String>,
    #[serde(default)]
    tr: Option<String>,
    #[serde(default)]
    k: Option<String>,
    #[serde(default)]
    dl: Option<i64>,
    to: u64,
    #[serde(borrow)]
    a: &'a RawValue,
    #[serde(default)]
    x: Option<String>,
}

impl PayloadIn<'_> {
    fn owner(&self) -> Owner {
        Owner {
            user_id: self.u.clone(),
            tenant: self.tn.clone(),
        }
    }
}

/// Milliseconds, clamped to [`MAX_DURATION`] (100 years, about 3.2e12 ms): a time that far
/// ahead still has 13 digits, which Lua's number formatting (14 significant digits) keeps.
pub(crate) fn millis(d: Duration) -> i64 {
    let ms = d.min(MAX_DURATION).as_millis();
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The JSON of the immutable part of `task`, delayed by `delay` ms when scheduled.
pub(crate) fn payload(task: &NewTask, delay: Option<i64>) -> Result<String, StoreError> {
    serde_json::to_string(&PayloadOut {
        n: &task.name,
        u: task.owner.user_id.as_deref(),
        tn: task.owner.tenant.as_deref(),
        ci: task.correlation_id.as_deref(),
        ri: task.request_id.as_deref(),
        tr: task.trace_id.as_deref(),
        k: task.key.as_deref(),
        dl: delay,
        to: u64::try_from(millis(task.timeout)).unwrap_or(0),
        a: &task.args,
        x: task.context.as_ref().map(SealedContext::as_str),
    })
    .map_err(|e| StoreError::Invalid(format!("the task cannot be encoded: {e}")))
}

fn parse_payload(bytes: &[u8]) -> Result<PayloadIn<'_>, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(format!("unreadable task payload: {e}")))
}

/// The part of a task's first record that does not depend on the time, as enqueue sends it:
/// the script writes the header before it (state, times, max attempts).
pub(crate) struct NewRecord<'a> {
    pub(crate) ttl: i64,
    pub(crate) owner_hash: &'a str,
    pub(crate) key_name: &'a str,
    pub(crate) payload: &'a str,
}

impl NewRecord<'_> {
    /// The record from its `ttl` field on: `ttl|owner\n<blobs>`.
    pub(crate) fn tail(&self) -> String {
        let Self {
            ttl,
            owner_hash,
            key_name,
            payload,
        } = self;
        format!(
            "{ttl}|{owner_hash}\n0:0:{}:{key_name}0:0:{}:{payload}",
            key_name.len(),
            payload.len()
        )
    }
}

/// A stored record, split into its parts (borrowing the bytes).
pub(crate) struct Stored<'a> {
    header: [&'a str; 13],
    blobs: [&'a [u8]; 6],
    /// The history blob after the payload; empty when there is none.
    history: &'a [u8],
    /// The attempt log blob after the history; empty when there is none.
    attempts: &'a [u8],
}

const STATE: usize = 0;
const CANCEL: usize = 1;
const TOKEN: usize = 2;
const ATTEMPT: usize = 3;
const STARTED: usize = 4;
const UPDATED: usize = 5;
const NEXT: usize = 6;
const COMPLETED: usize = 7;
const EXPIRES: usize = 8;
const MAX: usize = 9;
const CREATED: usize = 10;

const ERROR: usize = 0;
const RESULT: usize = 1;
const PROGRESS: usize = 3;
const STEPS: usize = 4;
const PAYLOAD: usize = 5;

impl<'a> Stored<'a> {
    /// Splits a stored record.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, StoreError> {
        let bad = || corrupt("a task record does not have errand's layout");
        let newline = bytes.iter().position(|b| *b == b'\n').ok_or_else(bad)?;
        let head = std::str::from_utf8(&bytes[..newline]).map_err(|_| bad())?;
        let mut header = [""; 13];
        let mut fields = head.split('|');
        for slot in &mut header {
            *slot = fields.next().ok_or_else(bad)?;
        }
        let mut rest = &bytes[newline + 1..];
        let mut blobs: [&[u8]; 6] = [&[]; 6];
        for slot in &mut blobs {
            *slot = next_blob(&mut rest).ok_or_else(bad)?;
        }
        let mut optional = || match rest.is_empty() {
            true => Ok(&[][..]),
            false => next_blob(&mut rest).ok_or_else(bad),
        };
        let history = optional()?;
        let attempts = optional()?;
        Ok(Self {
            header,
            blobs,
            history,
            attempts,
        })
    }

    /// The expiry time (ms), once finished.
    pub(crate) fn expires_ms(&self) -> Option<i64> {
        self.header[EXPIRES].parse().ok()
    }

    fn payload(&self) -> Result<PayloadIn<'a>, StoreError> {
        parse_payload(self.blobs[PAYLOAD])
    }

    /// The task's arguments.
    pub(crate) fn args(&self) -> Result<Box<RawValue>, StoreError> {
        Ok(self.payload()?.a.to_owned())
    }

    /// The task as a worker gets it after a claim; `due` is when it was due, as the claim
    /// script answered it (empty: since its creation).
    pub(crate) fn claimed(
        &self,
        id: TaskId,
        queue: &str,
        due: &str,
    ) -> Result<Claimed, StoreError> {
        let mut d = self.payload()?;
        let context = d.x.take().map(SealedContext::from_stored);
        let token = self.header[TOKEN]
            .parse::<LeaseToken>()
            .map_err(|_| corrupt("a claimed task's lease token is not 32 hex digits"))?;
        let due_at = match time(due)? {
            Some(at) => at,
            None => from_millis(number(self.header[CREATED])?)?,
        };
        Ok(Claimed {
            lease: Lease { id, token },
            name: d.n.clone(),
            queue: queue.to_string(),
            args: d.a.to_owned(),
            context,
            owner: d.owner(),
            correlation_id: d.ci.clone(),
            attempt: number(self.header[ATTEMPT])?,
            max_attempts: number(self.header[MAX])?,
            timeout: Duration::from_millis(d.to),
            due_at: Some(due_at),
        })
    }

    /// The record, given its id and queue.
    pub(crate) fn record(&self, id: TaskId, queue: &str) -> Result<TaskRecord, StoreError> {
        let d = self.payload()?;
        let status: TaskState = self.header[STATE].parse().map_err(corrupt)?;
        let created_ms: i64 = number(self.header[CREATED])?;
        let created = from_millis(created_ms)?;
        let result = self.blobs[RESULT];
        Ok(TaskRecord {
            id,
            name: d.n.clone(),
            queue: queue.to_string(),
            status,
            owner: d.owner(),
            correlation_id: d.ci.clone(),
            request_id: d.ri.clone(),
            key: d.k.clone(),
            created_at: created,
            updated_at: time(self.header[UPDATED])?.unwrap_or(created),
            run_at: d
                .dl
                .map(|delay| from_millis(created_ms.saturating_add(delay)))
                .transpose()?,
            started_at: time(self.header[STARTED])?,
            completed_at: time(self.header[COMPLETED])?,
            // (`next` is also a scheduled task's due time, shown as its `run_at`.)
            next_attempt_at: match status {
                TaskState::Retrying => time(self.header[NEXT])?,
                _ => None,
            },
            expires_at: time(self.header[EXPIRES])?,
            attempt: number(self.header[ATTEMPT])?,
            max_attempts: number(self.header[MAX])?,
            timeout_ms: d.to,
            cancel_requested: self.header[CANCEL] == "1",
            progress: json::<Progress>(self.blobs[PROGRESS])?,
            steps: json::<Vec<Step>>(self.blobs[STEPS])?.unwrap_or_default(),
            error: json::<ErrorInfo>(self.blobs[ERROR])?,
            result: if result.is_empty() {
                None
            } else {
                let text = std::str::from_utf8(result).map_err(corrupt)?;
                Some(RawValue::from_string(text.to_string()).map_err(corrupt)?)
            },
            history: history::actions(self.history)?,
            attempts: attempt_log::ends(self.attempts)?,
            trace_id: d.tr.clone(),
            args: None,
        })
    }
}

/// The length-prefixed blob at the start of `rest` (`<len>:<bytes>`), moving `rest` past it;
/// `None` when `rest` does not start with one.
fn next_blob<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let colon = rest.iter().position(|b| *b == b':')?;
    let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    let end = (colon + 1).checked_add(len)?;
    let blob = rest.get(colon + 1..end)?;
    *rest = &rest[end..];
    Some(blob)
}

/// The record a stored string holds.
pub(crate) fn record_of(bytes: &[u8], id: TaskId, queue: &str) -> Result<TaskRecord, StoreError> {
    Stored::parse(bytes)?.record(id, queue)
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(format!("time out of range: {ms}")))
}

fn time(field: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    if field.is_empty() {
        return Ok(None);
    }
    field
        .parse::<i64>()
        .map_err(|e| corrupt(format!("bad time {field:?}: {e}")))
        .and_then(from_millis)
        .map(Some)
}

fn number<T: std::str::FromStr>(field: &str) -> Result<T, StoreError> {
    field
        .parse()
        .map_err(|_| corrupt(format!("bad number {field:?}")))
}

fn json<T: serde::de::DeserializeOwned>(blob: &[u8]) -> Result<Option<T>, StoreError> {
    if blob.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(blob)
        .map(Some)
        .map_err(|e| corrupt(format!("bad JSON field: {e}")))
}

/// The bytes of a string answer.
pub(crate) fn bytes(value: &Value) -> Result<&[u8], StoreError> {
    match value {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        _ => Err(corrupt(format!("expected a string, got {value:?}"))),
    }
}

/// A string answer as text.
pub(crate) fn text(value: &Value) -> Result<&str, StoreError> {
    std::str::from_utf8(bytes(value)?).map_err(corrupt)
}

/// An integer answer (Lua numbers arrive as integers, hash fields as strings).
pub(crate) fn int(value: &Value) -> Result<u64, StoreError> {
    match value {
        Value::Int(i) => u64::try_from(*i).map_err(corrupt),
        other => text(other)?
            .parse()
            .map_err(|e| corrupt(format!("expected a number: {e}"))),
    }
}

/// A task id answer.
pub(crate) fn task_id(value: &Value) -> Result<TaskId, StoreError> {
    text(value)?.parse().map_err(corrupt)
}

/// An array answer.
pub(crate) fn array(value: Value) -> Result<Vec<Value>, StoreError> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(corrupt(format!("expected an array, got {other:?}"))),
    }
}

/// A `ZRANGE … WITHSCORES` answer as (member, score) pairs, in order; scores (times in ms)
/// are cut to whole numbers. Reads both RESP2's flat array and RESP3's pairs.
pub(crate) fn scored(value: Value) -> Result<Vec<(Vec<u8>, i64)>, StoreError> {
    let shape = || corrupt("a scored answer has the wrong shape");
    let mut items = array(value)?.into_iter();
    let mut out = Vec::with_capacity(items.len() / 2);
    while let Some(item) = items.next() {
        let (member, score) = match item {
            Value::Array(pair) => {
                let mut pair = pair.into_iter();
                (
                    pair.next().ok_or_else(shape)?,
                    pair.next().ok_or_else(shape)?,
                )
            }
            member => (member, items.next().ok_or_else(shape)?),
        };
        let score = match score {
            Value::Double(d) => d as i64,
            Value::Int(i) => i,
            other => text(&other)?
                .parse::<f64>()
                .map_err(|e| corrupt(format!("bad score: {e}")))? as i64,
        };
        out.push((bytes(&member)?.to_vec(), score));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).expect("valid JSON")
    }

    /// A new record as the enqueue script writes it: a scheduled task created at
    /// 1_700_000_000_000, due 500 ms later, 5 attempts allowed.
    fn stored(task: &NewTask, key_name: &str) -> String {
        let tail = NewRecord {
            ttl: 60_000,
            owner_hash: "0123456789abcdef",
            key_name,
            payload: &payload(task, Some(500)).expect("encodes"),
        }
        .tail();
        format!("scheduled|0|0|0||1700000000000|1700000000500|||5|1700000000000|{tail}")
    }

    #[test]
    fn a_new_record_reads_back() {
        let mut task = NewTask::new("resize", raw(r#"{"w": "a|b\nc:d"}"#));
        task.owner = Owner::new("alice", Some("acme".into()));
        task.correlation_id = Some("corr".into());
        task.key = Some("k".into());
        task.context = Some(SealedContext::from_stored("ctx2.00112233aabbccdd.c2VhbGVk"));
        task.timeout = Duration::from_secs(7);
        let s = stored(&task, "{errand:default}:k:x");
        let r = record_of(s.as_bytes(), task.id, "default").expect("reads");
        assert_eq!(r.status, TaskState::Scheduled);
        assert_eq!((r.attempt, r.max_attempts, r.timeout_ms), (0, 5, 7000));
        assert_eq!(r.owner, task.owner);
        assert_eq!(r.key.as_deref(), Some("k"));
        assert_eq!(r.created_at.timestamp_millis(), 1_700_000_000_000);
        assert_eq!(
            r.run_at.map(|t| t.timestamp_millis()),
            Some(1_700_000_000_500)
        );
        assert!(r.started_at.is_none() && r.expires_at.is_none() && r.progress.is_none());
        assert!(
            r.next_attempt_at.is_none(),
            "a scheduled task's due time is its run_at"
        );

        // As the claim script leaves it: running, with the claim's token.
        let token = "0123456789abcdef0123456789abcdef";
        let running = s.replacen("scheduled|0|0|", &format!("running|0|{token}|"), 1);
        let c = Stored::parse(running.as_bytes())
            .expect("parses")
            .claimed(task.id, "default", "")
            .expect("claimed");
        assert_eq!(c.lease.token.to_string(), token);
        assert_eq!(
            c.args.get(),
            r#"{"w": "a|b\nc:d"}"#,
            "args are kept byte for byte"
        );
        assert_eq!(
            c.context.expect("context").as_str(),
            "ctx2.00112233aabbccdd.c2VhbGVk"
        );
        assert_eq!(
            c.due_at.map(|t| t.timestamp_millis()),
            Some(1_700_000_000_000),
            "due since its creation"
        );
        assert_eq!(c.timeout, Duration::from_secs(7));
    }

    #[test]
    fn a_finished_record_reads_back() {
        let task = NewTask::new("ping", raw("null"));
        let d = payload(&task, None).expect("encodes");
        let progress = r#"{"current":1,"total":2}"#;
        let s = format!(
            "success|1|3|2|1700000000100|1700000000200||1700000000200|1700000060200|3|1700000000000|60000|00ff\n0:2:{{}}0:{}:{progress}0:{}:{d}",
            progress.len(),
            d.len()
        );
        let r = record_of(s.as_bytes(), task.id, "default").expect("reads");
        assert_eq!(r.status, TaskState::Success);
        assert!(r.cancel_requested);
        assert_eq!((r.attempt, r.max_attempts), (2, 3));
        assert_eq!(r.progress.map(|p| p.total), Some(2));
        assert_eq!(r.result.map(|v| v.get().to_string()).as_deref(), Some("{}"));
        assert_eq!(
            r.expires_at.map(|t| t.timestamp_millis()),
            Some(1_700_000_060_200)
        );
        assert!(r.steps.is_empty() && r.error.is_none());
    }

    #[test]
    fn a_history_after_the_payload_reads_back() {
        let task = NewTask::new("ping", raw("null"));
        let plain = stored(&task, "");
        assert!(
            record_of(plain.as_bytes(), task.id, "q")
                .expect("reads")
                .history
                .is_empty()
        );
        let history = r#"[{"k":"cancelled","t":1700000000900,"u":"root"}]"#;
        let s = format!("{plain}{}:{history}", history.len());
        let r = record_of(s.as_bytes(), task.id, "q").expect("reads");
        assert_eq!(r.history.len(), 1);
        assert_eq!(r.history[0].by.user_id.as_deref(), Some("root"));
        assert_eq!(r.history[0].at.timestamp_millis(), 1_700_000_000_900);
        assert!(record_of(format!("{plain}9:[]").as_bytes(), task.id, "q").is_err());
    }

    #[test]
    fn durations_are_clamped_to_a_century() {
        assert_eq!(
            millis(Duration::MAX),
            i64::try_from(MAX_DURATION.as_millis()).expect("fits")
        );
        assert_eq!(millis(Duration::from_secs(2)), 2000);
    }

    #[test]
    fn scored_answers_read_in_both_protocols() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let resp2 = Value::Array(vec![bulk("a"), bulk("1700000000123"), bulk("b"), bulk("5")]);
        let resp3 = Value::Array(vec![
            Value::Array(vec![bulk("a"), Value::Double(1_700_000_000_123.0)]),
            Value::Array(vec![bulk("b"), Value::Double(5.0)]),
        ]);
        for answer in [resp2, resp3] {
            assert_eq!(
                scored(answer).expect("reads"),
                [(b"a".to_vec(), 1_700_000_000_123), (b"b".to_vec(), 5)]
            );
        }
        assert!(scored(Value::Array(vec![bulk("a")])).is_err());
    }

    #[test]
    fn a_truncated_record_is_corrupt_not_a_panic() {
        let task = NewTask::new("ping", raw("null"));
        let s = stored(&task, "");
        for cut in [0, 10, s.len() / 2, s.len() - 1] {
            assert!(record_of(&s.as_bytes()[..cut], task.id, "q").is_err());
        }
    }
}
