//! Shutdown: the signal that starts it, the phases a drain goes through, and what it achieved.
//!
//! SIGTERM or SIGINT → stop accepting (health NOT_SERVING, listeners closed, idle connections
//! closed at once, requests in flight get `--shutdown-grace`) and, at the same moment, every
//! open batch is flushed (whatever `--batch-timeout` says) → when the connections are gone the
//! batchers hand over the rest → deliver until `--drain-timeout` → abort what is left,
//! counting it as dropped (with `--spool-dir`: kept on disk for the next start instead,
//! not dropped) → log the spans delivered and dropped while draining → exit with
//! [`DrainReport::exit_code`]: 0 when nothing was lost, [`SPANS_DROPPED_EXIT`] when spans were.

use tokio_util::sync::CancellationToken;

/// The exit status when spans were dropped at shutdown (1 is a failure to start, 2 a
/// configuration error).
pub const SPANS_DROPPED_EXIT: u8 = 3;

/// What a drain did with the spans cubesat held or took in after the signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Spans held when the drain began.
    pub buffered: u64,
    /// Spans the upstream accepted during the drain.
    pub delivered: u64,
    /// Spans dropped because the drain timeout ended before they were delivered.
    pub dropped: u64,
    /// Spans not delivered but kept in the spool (`--spool-dir`) for the next start: not
    /// dropped.
    pub spooled: u64,
}

impl DrainReport {
    /// The process exit status: 0, or [`SPANS_DROPPED_EXIT`] when spans were dropped.
    pub fn exit_code(&self) -> u8 {
        if self.dropped > 0 {
            SPANS_DROPPED_EXIT
        } else {
            0
        }
    }
}

/// The phases of a drain, each a token the parts of the program watch.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    /// Listeners stop accepting; connections are closed gracefully; batchers flush every
    /// open batch at once and send each report as soon as it arrives.
    pub stop_accepting: CancellationToken,
    /// The connections are gone: batchers close their shard and flush what is left.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_says_whether_spans_were_lost() {
        let clean = DrainReport {
            buffered: 10,
            delivered: 10,
            dropped: 0,
            spooled: 0,
        };
        assert_eq!(clean.exit_code(), 0);
        let lossy = DrainReport {
            dropped: 1,
            ..clean
        };
        assert_eq!(lossy.exit_code(), SPANS_DROPPED_EXIT);
        let kept = DrainReport {
            spooled: 7,
            ..clean
        };
        assert_eq!(kept.exit_code(), 0, "spooled spans are not lost");
    }
}
