//! SIGHUP: re-read the access token file and the TLS certificate and key, without dropping a
//! connection. A reload that fails (unreadable file, bad token, key not matching the
//! certificate) is logged and the old token or certificate stays in use.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ingest::auth::TokenPolicy;
use crate::tls::CertReloader;

/// What a SIGHUP re-reads.
#[derive(Debug, Clone)]
pub struct Reloadable {
    /// The token policy (its file, when the token came from `--access-token-file`).
    pub tokens: TokenPolicy,
    /// The TLS ingest certificate, when TLS ingest is on.
    pub certs: Option<Arc<CertReloader>>,
}

impl Reloadable {
    /// Re-reads everything; each part keeps its old value when its reload fails.
    pub fn reload(&self) {
        match self.tokens.reload() {
            Ok(true) => info!("SIGHUP: access token re-read from its file"),
            Ok(false) => {}
            Err(error) => {
                warn!(%error, "SIGHUP: access token file not usable; keeping the current token")
            }
        }
        if let Some(certs) = &self.certs {
            match certs.reload() {
                Ok(()) => {
                    info!("SIGHUP: TLS certificate and key re-read (new handshakes use them)")
                }
                Err(error) => {
                    warn!(%error, "SIGHUP: TLS certificate or key not usable; keeping the current ones")
                }
            }
        }
    }

    /// Reloads on every SIGHUP until `stop`.
    pub async fn on_hangup(self, stop: CancellationToken) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                warn!("cannot install the SIGHUP handler: reloads are off");
                return;
            };
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    received = hangups.recv() => match received {
                        Some(()) => self.reload(),
                        None => return,
                    },
                }
            }
        }
        #[cfg(not(unix))]
        stop.cancelled().await;
    }
}
