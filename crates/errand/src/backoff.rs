//! [`Backoff`]: growing pauses between tries of a store that cannot be reached yet, cut short
//! when the process is told to stop.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Pauses that start at a first one and double after each wait, up to 5 s.
#[derive(Debug)]
pub struct Backoff {
    pause: Duration,
}

impl Backoff {
    /// Pauses starting at `first`.
    pub fn new(first: Duration) -> Self {
        Self {
            pause: first.min(MAX_PAUSE),
        }
    }

    /// How long the next [`Backoff::wait`] sleeps.
    pub fn pause(&self) -> Duration {
        self.pause
    }

    /// Sleeps the current pause, then doubles it (up to 5 s). `false` when `stop` fired
    /// first: the caller should give up.
    pub async fn wait(&mut self, stop: &CancellationToken) -> bool {
        tokio::select! {
            () = tokio::time::sleep(self.pause) => {}
            () = stop.cancelled() => return false,
        }
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pauses_double_up_to_five_seconds_and_a_stop_ends_the_wait() {
        let stop = CancellationToken::new();
        let mut backoff = Backoff::new(Duration::from_millis(1500));
        assert!(backoff.wait(&stop).await);
        assert_eq!(backoff.pause(), Duration::from_secs(3));
        assert!(backoff.wait(&stop).await);
        assert_eq!(backoff.pause(), MAX_PAUSE);
        stop.cancel();
        assert!(!backoff.wait(&stop).await);
    }
}
