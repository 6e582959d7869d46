//! Shutdown signals: SIGTERM and Ctrl-C (SIGINT) both start a graceful shutdown.

use tokio_util::sync::CancellationToken;

/// A token cancelled at the first SIGTERM or Ctrl-C. A second one exits at once.
///
/// On Unix the handlers are installed before this returns, so a command that says it is ready
/// after calling it is never killed by a signal's default action, however soon the signal
/// comes.
pub fn signal() -> CancellationToken {
    let token = CancellationToken::new();
    let fire = token.clone();
    let mut signals = Signals::listen();
    tokio::spawn(async move {
        signals.next().await;
        tracing::info!("shutdown signal received");
        fire.cancel();
        signals.next().await;
        tracing::warn!("second signal: exiting without waiting");
        std::process::exit(130);
    });
    token
}

/// The shutdown signals this process listens to.
#[cfg(unix)]
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    /// Installs the handlers of SIGTERM and SIGINT now.
    fn listen() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for {name}");
                None
            }
        };
        Self {
            term: listen(SignalKind::terminate(), "SIGTERM"),
            interrupt: listen(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// Waits for the next signal.
    async fn next(&mut self) {
        async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
            let received = match signal {
                Some(s) => s.recv().await.is_some(),
                None => false,
            };
            if !received {
                // Not listening (or no more signals will come): wait for the other one.
                std::future::pending::<()>().await;
            }
        }
        tokio::select! {
            () = recv(&mut self.term) => {}
            () = recv(&mut self.interrupt) => {}
        }
    }
}

/// The shutdown signals this process listens to: Ctrl-C.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn listen() -> Self {
        Self
    }

    async fn next(&mut self) {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}
