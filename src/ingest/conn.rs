//! Accepting ingest connections: the connection limit, the TLS handshake, and serving HTTP/1.1
//! and HTTP/2 on one socket.
//!
//! The protocol is chosen per connection: hyper-util's auto builder reads the first bytes and
//! compares them with the HTTP/2 preface (h2c with prior knowledge), else serves HTTP/1.1;
//! under TLS, ALPN offers `h2` and `http/1.1`. On shutdown the listener stops accepting and
//! open connections get a graceful GOAWAY / `Connection: close`.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::telemetry;

/// Limits on connections, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Open connections allowed per listener; more are closed at once and counted.
    pub max_connections: usize,
    /// Time a client gets to finish the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// How long open connections get to finish after shutdown begins.
    pub drain_timeout: Duration,
    /// The memory budget (`--buffer-bytes`): HTTP/2 flow-control windows are sized from it.
    pub budget_bytes: usize,
}

/// Concurrent HTTP/2 streams per connection (what Envoy and gRPC servers allow by default).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;

/// HTTP/2 flow-control windows (connection, stream) for a `budget_bytes` budget: the
/// connection window 1/64 of the budget (64 KiB to 4 MiB), a stream a quarter of it, so
/// what a client may send unasked stays a small share of the budget.
pub fn h2_windows(budget_bytes: usize) -> (u32, u32) {
    let connection = (budget_bytes / 64).clamp(64 << 10, 4 << 20);
    let stream = (connection / 4).max(64 << 10);
    (connection as u32, stream as u32)
}

/// Serves `app` on `listener` (through `tls` when given) until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let (connection_window, stream_window) = h2_windows(limits.budget_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .initial_connection_window_size(connection_window)
        .initial_stream_window_size(stream_window)
        .keep_alive_interval(Some(Duration::from_secs(60)));
    let open = metrics::gauge!(telemetry::CONNECTIONS_OPEN);
    let refused = metrics::counter!(telemetry::CONNECTIONS_REFUSED);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.increment(1);
            debug!(%peer, "connection refused: max-connections reached");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (builder, app, watcher, tls, open) = (
            builder.clone(),
            app.clone(),
            graceful.watcher(),
            tls.clone(),
            open.clone(),
        );
        tokio::spawn(async move {
            open.increment(1.0);
            match tls {
                None => serve_io(TokioIo::new(stream), &builder, app, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(
                        limits.tls_handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => {
                            serve_io(TokioIo::new(stream), &builder, app, watcher).await
                        }
                        Ok(Err(error)) => debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            open.decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        debug!("ingest connections still open after the drain timeout");
    }
}

async fn serve_io<I>(
    io: TokioIo<I>,
    builder: &auto::Builder<TokioExecutor>,
    app: axum::Router,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder.serve_connection(io, TowerToHyperService::new(app));
    if let Err(error) = watcher.watch(conn).await {
        debug!(%error, "connection ended with an error");
    }
}
