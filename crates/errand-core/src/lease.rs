//! Leases: what a claim hands a worker, and how a store tells a current attempt from a stale
//! one.
//!
//! Every claim of a task issues a fresh random 128-bit [`LeaseToken`]. Heartbeats, reports and
//! completions carry the [`Lease`] (task id and token), and a store accepts them only while the
//! token is the one it issued last. A counter would not do: a store that loses writes (a
//! restore from an older snapshot, a failover to a lagging replica) would issue the same
//! number again, and two attempts would both be accepted. A random token is never issued
//! twice.

use crate::id::TaskId;
use crate::status::ErrorInfo;
use std::fmt;
use std::str::FromStr;

/// A random 128-bit token naming one claim of a task. Shown as 32 lowercase hex digits.
///
/// ```
/// use errand_core::LeaseToken;
/// let a = LeaseToken::random();
/// assert_ne!(a, LeaseToken::random());
/// assert_eq!(a.to_string().len(), 32);
/// assert_eq!(a.to_string().parse::<LeaseToken>().unwrap(), a);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(u128);

impl LeaseToken {
    /// A fresh token from the operating system's random generator (via `rand`'s thread RNG).
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The token with this value (as read back from a store).
    pub fn from_u128(value: u128) -> Self {
        Self(value)
    }

    /// The token's value.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// The token as 16 big-endian bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The token from 16 big-endian bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(u128::from_be_bytes(bytes))
    }
}

impl LeaseToken {
    /// The token as 32 lowercase hex digits, without going through a formatter (it is sent
    /// with every claim, heartbeat and completion).
    pub fn to_hex(self) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, byte) in self.0.to_be_bytes().iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(byte >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(byte & 0x0f)];
        }
        out
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseToken({:032x})", self.0)
    }
}

/// The text is not 32 hex digits.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("not a lease token (expected 32 hex digits)")]
pub struct ParseLeaseTokenError;

impl FromStr for LeaseToken {
    type Err = ParseLeaseTokenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 {
            return Err(ParseLeaseTokenError);
        }
        let mut value = 0u128;
        for b in s.bytes() {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return Err(ParseLeaseTokenError),
            };
            value = (value << 4) | u128::from(digit);
        }
        Ok(Self(value))
    }
}

/// A claimed task's lease: renew, report and complete with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The task.
    pub id: TaskId,
    /// The claim's token; a store rejects operations carrying any token but the last issued.
    pub token: LeaseToken,
}

/// Whether a worker still holds a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Held; renewed if this was a heartbeat.
    Held,
    /// Held, and cancellation was requested: fire the task's token.
    CancelRequested,
    /// Lost: the task was reclaimed or finished elsewhere; stop and do not complete it.
    Lost,
}

/// The kind of the error recorded when a lease lapses.
pub const LEASE_EXPIRED: &str = "lease_expired";

/// The error a store records on a task whose lease lapsed; `retryable` when attempts remain.
pub fn lease_expired_error(retryable: bool) -> ErrorInfo {
    ErrorInfo {
        message: "the worker running this task stopped renewing its lease (it crashed, hung or lost the store)".into(),
        kind: LEASE_EXPIRED.into(),
        details: None,
        retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_as_text_and_bytes() {
        let t = LeaseToken::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(t.to_string(), "0123456789abcdef0011223344556677");
        assert_eq!(LeaseToken::from_bytes(t.to_bytes()), t);
        assert_eq!(LeaseToken::from_u128(1).to_string(), format!("{:032x}", 1));
        let random = LeaseToken::random();
        assert_eq!(random.to_string(), format!("{:032x}", random.as_u128()));
        assert_eq!(
            random.to_string().to_uppercase().parse::<LeaseToken>(),
            Ok(random)
        );
        for bad in [
            "",
            "xyz",
            "0123456789abcdef001122334455667",
            "+123456789abcdef0011223344556677",
        ] {
            assert_eq!(
                bad.parse::<LeaseToken>(),
                Err(ParseLeaseTokenError),
                "{bad}"
            );
        }
    }
}
