//! A task's attempt log as Redis keeps it: the optional blob after a record's history (see the
//! `record` module), one line per attempt that did not succeed, oldest first,
//! `attempt|started ms|ended ms|outcome|error JSON`, that `lua/complete_attempts.lua` and
//! `lua/reap.lua` append to (`add_attempt` in `lua/common.lua`) in the script that ends the
//! attempt, bounded to [`ATTEMPT_LOG_LIMIT`] entries.

use crate::error::corrupt;
use chrono::{DateTime, Utc};
#[cfg(doc)]
use errand_core::ATTEMPT_LOG_LIMIT;
use errand_core::{AttemptEnd, AttemptEnding, ErrorInfo, StoreError};

/// The entries a stored attempt log blob holds (empty: none).
pub(crate) fn ends(blob: &[u8]) -> Result<Vec<AttemptEnd>, StoreError> {
    if blob.is_empty() {
        return Ok(Vec::new());
    }
    let text =
        std::str::from_utf8(blob).map_err(|_| corrupt("a task's attempt log is not UTF-8"))?;
    text.split('\n').map(entry).collect()
}

/// One line of the log.
fn entry(line: &str) -> Result<AttemptEnd, StoreError> {
    let bad = || {
        corrupt(format!(
            "a task's attempt log has an unreadable entry: {line:?}"
        ))
    };
    let mut fields = line.splitn(5, '|');
    let mut next = || fields.next().ok_or_else(bad);
    let (attempt, started, ended, outcome, error) = (next()?, next()?, next()?, next()?, next()?);
    let time = |ms: &str| -> Result<DateTime<Utc>, StoreError> {
        let ms: i64 = ms.parse().map_err(|_| bad())?;
        DateTime::from_timestamp_millis(ms).ok_or_else(bad)
    };
    let outcome = match outcome {
        "retrying" => AttemptEnding::Retrying,
        "failed" => AttemptEnding::Failed,
        "cancelled" => AttemptEnding::Cancelled,
        "lease_lapsed" => AttemptEnding::LeaseLapsed,
        _ => return Err(bad()),
    };
    let error = match error {
        "" => None,
        json => Some(serde_json::from_str::<ErrorInfo>(json).map_err(|_| bad())?),
    };
    Ok(AttemptEnd {
        attempt: attempt.parse().map_err(|_| bad())?,
        started_at: match started {
            "" => None,
            ms => Some(time(ms)?),
        },
        ended_at: time(ended)?,
        outcome,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use errand_core::ATTEMPT_LOG_LIMIT;

    #[test]
    fn stored_lines_read_back_as_attempt_ends() {
        let blob = br#"1|1700000000000|1700000000500|retrying|{"message":"m","kind":"flaky","retryable":true}
2||1700000001000|cancelled|"#;
        let got = ends(blob).expect("reads");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].attempt, 1);
        assert_eq!(got[0].outcome, AttemptEnding::Retrying);
        assert_eq!(
            got[0].error.as_ref().map(|e| e.kind.as_str()),
            Some("flaky")
        );
        assert_eq!(
            got[0].started_at.map(|t| t.timestamp_millis()),
            Some(1_700_000_000_000)
        );
        assert_eq!(got[1].started_at, None);
        assert_eq!(got[1].error, None);
        assert!(ends(b"").expect("empty").is_empty());
        for bad in [
            &b"1|x|2|failed|"[..],
            b"1|1|2|exploded|",
            b"1|1|2",
            b"1|1|2|failed|{",
        ] {
            assert!(ends(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_scripts_keep_as_many_entries_as_core() {
        let line = format!("local ATTEMPT_LOG_LIMIT = {ATTEMPT_LOG_LIMIT}\n");
        assert!(include_str!("../lua/common.lua").contains(&line));
    }
}
