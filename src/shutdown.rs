//! Shutdown: the signal that starts it, and the phases a drain goes through.
//!
//! SIGTERM or SIGINT → stop accepting (health NOT_SERVING, listeners closed, connections
//! finish) → batchers flush everything they hold → wait for the upstream to take it, up to
//! the drain timeout → abort what is left, counting it as dropped → exit 0.

use tokio_util::sync::CancellationToken;

/// The phases of a drain, each a token the parts of the program watch.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    /// Listeners stop accepting; connections are closed gracefully.
    pub stop_accepting: CancellationToken,
    /// Batchers close their shard and flush every open batch.
    pub flush: CancellationToken,
    /// The drain timeout passed: in-flight upstream work is abandoned (and counted).
    pub abort: CancellationToken,
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            // Without signal handlers we can still stop on Ctrl-C.
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
