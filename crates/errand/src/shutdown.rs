//! Shutdown signals: SIGTERM and Ctrl-C (SIGINT) both start a graceful shutdown.

use tokio_util::sync::CancellationToken;

/// A token cancelled at the first SIGTERM or Ctrl-C. A second Ctrl-C exits at once.
pub fn signal() -> CancellationToken {
    let token = CancellationToken::new();
    let fire = token.clone();
    tokio::spawn(async move {
        wait().await;
        tracing::info!("shutdown signal received");
        fire.cancel();
        wait().await;
        tracing::warn!("second signal: exiting without waiting");
        std::process::exit(130);
    });
    token
}

async fn wait() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
