//! Binding: every socket is bound before anything runs, and each bound address is announced
//! with the `cubesat listening: <role> <proto> <addr>` line (the real port when 0 was asked).

use std::io::Write;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::config::{Config, Mode};

/// Why a listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({role}): {source}")]
pub struct ListenError {
    /// The listener's role.
    pub role: &'static str,
    /// The address asked for.
    pub addr: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

/// The bound sockets.
#[derive(Debug)]
pub struct Listeners {
    /// Plain ingest (gRPC h2c and HTTP/1.1).
    pub ingest: TcpListener,
    /// TLS ingest.
    pub tls: Option<TcpListener>,
    /// Admin (and dev-mode UI).
    pub admin: TcpListener,
}

/// The addresses actually bound.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct BoundAddrs {
    /// Plain ingest.
    pub ingest: SocketAddr,
    /// TLS ingest.
    pub tls: Option<SocketAddr>,
    /// Admin.
    pub admin: SocketAddr,
}

impl Listeners {
    /// Binds every listener `config` asks for, printing one start line per socket.
    pub async fn bind(config: &Config) -> Result<Listeners, ListenError> {
        let ingest = bind("ingest", "grpc+http", config.listen).await?;
        let tls = match &config.tls {
            Some(tls) => Some(bind("tls", "grpc+https", tls.addr).await?),
            None => None,
        };
        let admin = bind("admin", "http", config.admin_listen).await?;
        if config.mode == Mode::Dev {
            announce("ui", "http", local(&admin, config.admin_listen));
        }
        Ok(Listeners { ingest, tls, admin })
    }

    /// The bound addresses.
    pub fn addrs(&self) -> BoundAddrs {
        let addr = |l: &TcpListener| l.local_addr().expect("bound sockets have an address");
        BoundAddrs {
            ingest: addr(&self.ingest),
            tls: self.tls.as_ref().map(addr),
            admin: addr(&self.admin),
        }
    }
}

async fn bind(
    role: &'static str,
    proto: &str,
    addr: SocketAddr,
) -> Result<TcpListener, ListenError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { role, addr, source })?;
    announce(role, proto, local(&listener, addr));
    Ok(listener)
}

fn local(listener: &TcpListener, asked: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(asked)
}

fn announce(role: &str, proto: &str, addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "cubesat listening: {role} {proto} {addr}");
    let _ = out.flush();
}
