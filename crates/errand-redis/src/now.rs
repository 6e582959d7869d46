//! [`Now`]: where the store reads the time.
//!
//! By default every process reads Redis's own clock: scripts call `TIME` themselves (Redis 7
//! replicates a script's effects, so `TIME` is allowed before writes), and a read that needs
//! "now" (expiry of a fetched record, the next due task) asks for `TIME` in the same round
//! trip. A lease written by one host and reaped by another is then compared on one clock,
//! however far the hosts' own clocks drift. Tests inject a [`Clock`] (a
//! [`ManualClock`](errand_core::ManualClock)) instead, which scripts receive as an argument.

use crate::error::corrupt;
use crate::record::text;
use errand_core::{Clock, StoreError};
use redis::{Pipeline, Value};
use std::sync::Arc;

/// The store's source of "now", in milliseconds since the epoch.
#[derive(Debug, Clone)]
pub(crate) enum Now {
    /// Redis's clock.
    Redis,
    /// An injected clock.
    Clock(Arc<dyn Clock>),
}

impl Now {
    /// From the configuration: `None` means Redis's clock.
    pub(crate) fn new(clock: Option<Arc<dyn Clock>>) -> Self {
        clock.map_or(Self::Redis, Self::Clock)
    }

    /// "Now" as a script receives it (`ARGV[1]`): the clock's time, or `None` for the script
    /// to read Redis's.
    pub(crate) fn script_arg(&self) -> Option<i64> {
        match self {
            Self::Redis => None,
            Self::Clock(clock) => Some(clock.now().timestamp_millis()),
        }
    }

    /// Adds what reading "now" takes to `pipe` (`TIME`, with Redis's clock). Call it before
    /// adding the pipeline's other commands, and [`Now::read`] the answers in the same order.
    pub(crate) fn ask(&self, pipe: &mut Pipeline) {
        if let Self::Redis = self {
            pipe.cmd("TIME");
        }
    }

    /// "Now", taking the answer to what [`Now::ask`] added from the front of `answers`.
    pub(crate) fn read(
        &self,
        answers: &mut impl Iterator<Item = Value>,
    ) -> Result<i64, StoreError> {
        match self {
            Self::Clock(clock) => Ok(clock.now().timestamp_millis()),
            Self::Redis => match answers.next() {
                Some(Value::Array(parts)) => match parts.as_slice() {
                    [secs, micros] => {
                        let number = |v: &Value| -> Result<i64, StoreError> {
                            text(v)?.parse().map_err(corrupt)
                        };
                        Ok(number(secs)? * 1000 + number(micros)? / 1000)
                    }
                    _ => Err(corrupt("TIME answered with the wrong shape")),
                },
                other => Err(corrupt(format!("unexpected answer to TIME: {other:?}"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use errand_core::ManualClock;

    #[test]
    fn redis_time_is_read_in_milliseconds() {
        let answer = Value::Array(vec![
            Value::BulkString(b"1700000000".to_vec()),
            Value::BulkString(b"123456".to_vec()),
        ]);
        let mut answers = vec![answer, Value::Okay].into_iter();
        assert_eq!(
            Now::Redis.read(&mut answers).expect("reads"),
            1_700_000_000_123
        );
        assert_eq!(
            answers.next(),
            Some(Value::Okay),
            "only TIME's answer is taken"
        );
        assert_eq!(Now::Redis.script_arg(), None);
    }

    #[test]
    fn an_injected_clock_takes_no_answer() {
        let clock = Arc::new(ManualClock::new());
        let now = Now::new(Some(clock.clone()));
        let mut answers = vec![Value::Okay].into_iter();
        let expected = clock.now().timestamp_millis();
        assert_eq!(now.read(&mut answers).expect("reads"), expected);
        assert_eq!(now.script_arg(), Some(expected));
        assert_eq!(answers.next(), Some(Value::Okay));
    }
}
