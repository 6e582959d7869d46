//! How a task is laid out in its Redis hash, and how hashes, script answers and event messages
//! become [`TaskRecord`]s and [`Claimed`] tasks.
//!
//! A task's hash has one field holding everything that never changes (`d`, JSON written once
//! at enqueue and handed back verbatim on claim) and small fields for what changes:
//!
//! | field | holds |
//! |---|---|
//! | `s` | state (`pending`, `scheduled`, `running`, `retrying`, `success`, `failed`, `cancelled`) |
//! | `f` | fence: raised by every claim |
//! | `a`, `m` | attempt, max attempts |
//! | `c`, `u`, `st`, `co`, `n`, `x` | created, updated, started, completed, next attempt, expiry (ms) |
//! | `t` | time to keep the record once finished (ms) |
//! | `o` | owner hash (names the owner's listing index) |
//! | `cr` | cancellation requested |
//! | `p`, `sp`, `e`, `r` | progress, steps, error, result (JSON) |
//! | `K` | the idempotency key's Redis key, when the task has one |
//! | `w` | how many processes watch the task (events are published only when > 0) |
//! | `d` | name, owner, correlation and request ids, key, run_at, timeout, args, sealed context |

use crate::error::corrupt;
use chrono::{DateTime, Utc};
use errand_core::{
    Claimed, ErrorInfo, Lease, NewTask, Owner, Progress, SealedContext, Step, StoreError, TaskId,
    TaskRecord, TaskState,
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
    k: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ra: Option<i64>,
    to: u64,
    a: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<&'a RawValue>,
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
    k: Option<String>,
    #[serde(default)]
    ra: Option<i64>,
    to: u64,
    #[serde(borrow)]
    a: &'a RawValue,
    #[serde(borrow, default)]
    x: Option<&'a RawValue>,
}

impl PayloadIn<'_> {
    fn owner(&self) -> Owner {
        Owner {
            user_id: self.u.clone(),
            tenant: self.tn.clone(),
        }
    }
}

/// Milliseconds, clamped so that Lua's number formatting keeps every digit.
pub(crate) fn millis(d: Duration) -> i64 {
    const MAX: i64 = 10 * 365 * 24 * 3600 * 1000;
    i64::try_from(d.as_millis()).unwrap_or(MAX).min(MAX)
}

/// The JSON of the immutable part of `task`, run at `run_at` (ms) when delayed.
pub(crate) fn payload(task: &NewTask, run_at: Option<i64>) -> Result<String, StoreError> {
    let context: Option<&RawValue> = task
        .context
        .as_ref()
        .map(|c| serde_json::from_str(c.as_json()))
        .transpose()
        .map_err(|e| StoreError::Invalid(format!("the sealed context is not JSON: {e}")))?;
    serde_json::to_string(&PayloadOut {
        n: &task.name,
        u: task.owner.user_id.as_deref(),
        tn: task.owner.tenant.as_deref(),
        ci: task.correlation_id.as_deref(),
        ri: task.request_id.as_deref(),
        k: task.key.as_deref(),
        ra: run_at,
        to: u64::try_from(millis(task.timeout)).unwrap_or(0),
        a: &task.args,
        x: context,
    })
    .map_err(|e| StoreError::Invalid(format!("the task cannot be encoded: {e}")))
}

fn parse_payload(bytes: &[u8]) -> Result<PayloadIn<'_>, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(format!("unreadable task payload: {e}")))
}

/// A claim script's answer for one task (id, fence, attempt, max attempts, payload).
pub(crate) fn claimed(queue: &str, chunk: &[Value]) -> Result<Claimed, StoreError> {
    let [id, fence, attempt, max, payload] = chunk else {
        return Err(corrupt("a claim answer has the wrong shape"));
    };
    let id = task_id(id)?;
    let d = parse_payload(bytes(payload)?)?;
    Ok(Claimed {
        lease: Lease {
            id,
            fence: int(fence)?,
        },
        name: d.n.clone(),
        queue: queue.to_string(),
        args: d.a.to_owned(),
        context: d.x.map(|x| SealedContext::from_json(x.get())),
        owner: d.owner(),
        correlation_id: d.ci.clone(),
        attempt: u32::try_from(int(attempt)?).map_err(corrupt)?,
        max_attempts: u32::try_from(int(max)?).map_err(corrupt)?,
        timeout: Duration::from_millis(d.to),
    })
}

/// The fields of a task's hash.
#[derive(Default)]
pub(crate) struct Fields {
    s: Option<String>,
    a: Option<String>,
    m: Option<String>,
    d: Option<Vec<u8>>,
    c: Option<String>,
    u: Option<String>,
    st: Option<String>,
    co: Option<String>,
    n: Option<String>,
    x: Option<String>,
    cr: bool,
    p: Option<Vec<u8>>,
    sp: Option<Vec<u8>>,
    e: Option<Vec<u8>>,
    r: Option<Vec<u8>>,
}

impl Fields {
    fn set(&mut self, name: &[u8], value: Vec<u8>) {
        let text = || String::from_utf8_lossy(&value).into_owned();
        match name {
            b"s" => self.s = Some(text()),
            b"a" => self.a = Some(text()),
            b"m" => self.m = Some(text()),
            b"c" => self.c = Some(text()),
            b"u" => self.u = Some(text()),
            b"st" => self.st = Some(text()),
            b"co" => self.co = Some(text()),
            b"n" => self.n = Some(text()),
            b"x" => self.x = Some(text()),
            b"cr" => self.cr = true,
            b"d" => self.d = Some(value),
            b"p" => self.p = Some(value),
            b"sp" => self.sp = Some(value),
            b"e" => self.e = Some(value),
            b"r" => self.r = Some(value),
            _ => {}
        }
    }

    /// An HGETALL answer; `None` for a missing hash.
    pub(crate) fn from_hash(value: Value) -> Result<Option<Self>, StoreError> {
        let mut fields = Fields::default();
        match value {
            Value::Nil => return Ok(None),
            Value::Array(items) => {
                if items.is_empty() {
                    return Ok(None);
                }
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    fields.set(bytes(&k)?, into_bytes(v)?);
                }
            }
            Value::Map(pairs) => {
                if pairs.is_empty() {
                    return Ok(None);
                }
                for (k, v) in pairs {
                    fields.set(bytes(&k)?, into_bytes(v)?);
                }
            }
            _ => return Err(corrupt("a task record is not a hash")),
        }
        Ok(Some(fields))
    }

    /// An event message: the hash as a JSON list of fields and values.
    pub(crate) fn from_event(payload: &[u8]) -> Result<Self, StoreError> {
        let list: Vec<String> = serde_json::from_slice(payload)
            .map_err(|e| corrupt(format!("unreadable task event: {e}")))?;
        let mut fields = Fields::default();
        let mut it = list.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            fields.set(k.as_bytes(), v.into_bytes());
        }
        Ok(fields)
    }

    /// The expiry time (ms), when finished.
    pub(crate) fn expires_ms(&self) -> Option<i64> {
        self.x.as_deref().and_then(|x| x.parse().ok())
    }

    /// The record, given its id and queue.
    pub(crate) fn into_record(self, id: TaskId, queue: &str) -> Result<TaskRecord, StoreError> {
        let d_bytes = self
            .d
            .ok_or_else(|| corrupt(format!("task {id} has no payload")))?;
        let d = parse_payload(&d_bytes)?;
        let status: TaskState = self
            .s
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(corrupt)?;
        let created = time(self.c.as_deref())?.ok_or_else(|| corrupt("no creation time"))?;
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
            updated_at: time(self.u.as_deref())?.unwrap_or(created),
            run_at: d.ra.map(from_millis).transpose()?,
            started_at: time(self.st.as_deref())?,
            completed_at: time(self.co.as_deref())?,
            next_attempt_at: time(self.n.as_deref())?,
            expires_at: time(self.x.as_deref())?,
            attempt: number(self.a.as_deref())?,
            max_attempts: number(self.m.as_deref())?,
            timeout_ms: d.to,
            cancel_requested: self.cr,
            progress: json::<Progress>(self.p.as_deref())?,
            steps: json::<Vec<Step>>(self.sp.as_deref())?.unwrap_or_default(),
            error: json::<ErrorInfo>(self.e.as_deref())?,
            result: self
                .r
                .map(|r| {
                    String::from_utf8(r)
                        .map_err(corrupt)
                        .and_then(|s| RawValue::from_string(s).map_err(corrupt))
                })
                .transpose()?,
        })
    }
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(format!("time out of range: {ms}")))
}

fn time(field: Option<&str>) -> Result<Option<DateTime<Utc>>, StoreError> {
    field
        .map(|s| {
            s.parse::<i64>()
                .map_err(|e| corrupt(format!("bad time {s:?}: {e}")))
                .and_then(from_millis)
        })
        .transpose()
}

fn number(field: Option<&str>) -> Result<u32, StoreError> {
    field
        .unwrap_or("0")
        .parse()
        .map_err(|e| corrupt(format!("bad counter {field:?}: {e}")))
}

fn json<T: serde::de::DeserializeOwned>(field: Option<&[u8]>) -> Result<Option<T>, StoreError> {
    field
        .map(|b| serde_json::from_slice(b).map_err(|e| corrupt(format!("bad JSON field: {e}"))))
        .transpose()
}

/// The bytes of a string answer.
pub(crate) fn bytes(value: &Value) -> Result<&[u8], StoreError> {
    match value {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        _ => Err(corrupt(format!("expected a string, got {value:?}"))),
    }
}

fn into_bytes(value: Value) -> Result<Vec<u8>, StoreError> {
    match value {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        other => Err(corrupt(format!("expected a string, got {other:?}"))),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).expect("valid JSON")
    }

    #[test]
    fn payload_round_trips_through_a_claim_answer() {
        let mut task = NewTask::new("resize", raw(r#"{"w": 10}"#));
        task.owner = Owner::new("alice", Some("acme".into()));
        task.correlation_id = Some("corr".into());
        task.context = Some(SealedContext::from_json(r#"{"user_id":"alice"}"#));
        task.timeout = Duration::from_secs(7);
        let d = payload(&task, None).expect("encodes");
        let answer = [
            Value::BulkString(task.id.to_string().into_bytes()),
            Value::Int(3),
            Value::Int(2),
            Value::BulkString(b"5".to_vec()),
            Value::BulkString(d.into_bytes()),
        ];
        let c = claimed("default", &answer).expect("decodes");
        assert_eq!(
            c.lease,
            Lease {
                id: task.id,
                fence: 3
            }
        );
        assert_eq!((c.attempt, c.max_attempts), (2, 5));
        assert_eq!(c.args.get(), r#"{"w": 10}"#, "args are kept byte for byte");
        assert_eq!(
            c.context.expect("context").as_json(),
            r#"{"user_id":"alice"}"#
        );
        assert_eq!(c.owner, task.owner);
        assert_eq!(c.timeout, Duration::from_secs(7));
    }

    #[test]
    fn an_event_becomes_a_record() {
        let task = NewTask::new("ping", raw("null"));
        let d = payload(&task, Some(1_700_000_000_500)).expect("encodes");
        let event = serde_json::to_vec(&[
            "s",
            "running",
            "a",
            "1",
            "m",
            "3",
            "c",
            "1700000000000",
            "u",
            "1700000000100",
            "st",
            "1700000000100",
            "cr",
            "1",
            "p",
            r#"{"current":1,"total":2}"#,
            "d",
            &d,
        ])
        .expect("json");
        let r = Fields::from_event(&event)
            .expect("parses")
            .into_record(task.id, "default")
            .expect("record");
        assert_eq!(r.status, TaskState::Running);
        assert_eq!((r.attempt, r.max_attempts), (1, 3));
        assert!(r.cancel_requested);
        assert_eq!(r.progress.map(|p| p.total), Some(2));
        assert_eq!(
            r.run_at.map(|t| t.timestamp_millis()),
            Some(1_700_000_000_500)
        );
        assert!(r.steps.is_empty() && r.result.is_none());
    }
}
