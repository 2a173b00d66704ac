//! The generator's connections: HTTP/2 (gRPC, h2c or TLS with ALPN `h2`) shared by several
//! workers, or one HTTP/1.1 keep-alive connection per worker, and one request sent on them.
//!
//! Written on hyper's connection API rather than a gRPC client: bodies arrive already framed
//! and compressed (see [`crate::body`]), so sending is handing bytes to the connection, and
//! the answer is read as a status without decoding the reply message.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::body::{Payload, Protocol};

/// Why a connection could not be opened or a request not sent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The target is not `host:port`, `http://host:port` or `https://host:port`.
    #[error(
        "target {target:?}: {reason} (expected host:port, http://host:port or https://host:port)"
    )]
    Target {
        /// What was given.
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// The CA file could not be read or holds no certificate.
    #[error("--cacert {path}: {reason}")]
    Ca {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// TCP connect or TLS handshake failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The HTTP handshake or the request failed.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
}

/// Where the generator sends: host, port, TLS or not.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` to connect to.
    pub authority: String,
    /// The host alone (TLS server name).
    pub host: String,
    /// TLS on.
    pub tls: bool,
}

impl Target {
    /// Parses `host:port`, `http://host:port` (plaintext) or `https://host:port` (TLS).
    pub fn parse(target: &str) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::Target {
            target: target.to_owned(),
            reason: reason.to_owned(),
        };
        let (tls, rest) = if let Some(rest) = target.strip_prefix("https://") {
            (true, rest)
        } else {
            (false, target.strip_prefix("http://").unwrap_or(target))
        };
        let authority = rest.trim_end_matches('/');
        let uri: Uri = format!("http://{authority}")
            .parse()
            .map_err(|_| bad("not a host:port"))?;
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        if uri.port_u16().is_none() {
            return Err(bad("no port"));
        }
        if uri.path() != "/" {
            return Err(bad("no path allowed"));
        }
        Ok(Target {
            authority: authority.to_owned(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            tls,
        })
    }
}

/// Opens connections to one target for one protocol.
#[derive(Clone)]
pub struct Dialer {
    target: Target,
    protocol: Protocol,
    tls: Option<TlsConnector>,
    headers: Arc<HeaderMap>,
    uri: Uri,
}

impl Dialer {
    /// A dialer for `target`; `ca` is the PEM bundle trusted for TLS targets; `token` goes in
    /// the `lightstep-access-token` header (OTLP clients and Lightstep HTTP clients send it there).
    pub fn new(
        target: Target,
        protocol: Protocol,
        ca: Option<&Path>,
        token: Option<&str>,
        gzip: bool,
    ) -> Result<Self, ClientError> {
        let tls = if target.tls {
            Some(tls_connector(ca, protocol)?)
        } else {
            None
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(protocol.content_type()),
        );
        if protocol.is_grpc() {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
            if gzip {
                headers.insert("grpc-encoding", HeaderValue::from_static("gzip"));
            }
        } else {
            headers.insert(
                header::HOST,
                HeaderValue::from_str(&target.authority).map_err(|_| ClientError::Target {
                    target: target.authority.clone(),
                    reason: "not a valid Host header".into(),
                })?,
            );
            headers.insert(
                header::ACCEPT,
                HeaderValue::from_static(protocol.content_type()),
            );
            if gzip {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
        }
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("cubesat-load/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(value) = token.and_then(|t| HeaderValue::from_str(t).ok()) {
            headers.insert("lightstep-access-token", value);
        }
        let uri = if protocol.is_grpc() {
            let scheme = if target.tls { "https" } else { "http" };
            format!("{scheme}://{}{}", target.authority, protocol.path())
        } else {
            protocol.path().to_owned()
        };
        let uri = uri.parse().map_err(|_| ClientError::Target {
            target: target.authority.clone(),
            reason: "not a valid URI authority".into(),
        })?;
        Ok(Dialer {
            target,
            protocol,
            tls,
            headers: Arc::new(headers),
            uri,
        })
    }

    /// Opens one connection: HTTP/2 for gRPC, HTTP/1.1 otherwise.
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let tcp = TcpStream::connect(&self.target.authority)
            .await
            .map_err(ClientError::Connect)?;
        tcp.set_nodelay(true).map_err(ClientError::Connect)?;
        match &self.tls {
            None => self.handshake(tcp).await,
            Some(tls) => {
                let name = ServerName::try_from(self.target.host.clone()).map_err(|_| {
                    ClientError::Target {
                        target: self.target.authority.clone(),
                        reason: "not a valid TLS server name".into(),
                    }
                })?;
                let stream = tls.connect(name, tcp).await.map_err(ClientError::Connect)?;
                self.handshake(stream).await
            }
        }
    }

    async fn handshake<S>(&self, stream: S) -> Result<Connection, ClientError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let io = TokioIo::new(stream);
        if self.protocol.is_grpc() {
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(16 << 20)
                .max_frame_size(1 << 20)
                .handshake(io)
                .await?;
            tokio::spawn(conn);
            Ok(Connection::H2(send))
        } else {
            let (send, conn) = http1::handshake(io).await?;
            tokio::spawn(conn);
            Ok(Connection::H1(send))
        }
    }

    /// Sends `payload` on `conn` and waits for the whole answer, or `timeout`.
    pub async fn send(
        &self,
        conn: &mut Connection,
        payload: &Payload,
        timeout: Duration,
    ) -> Outcome {
        match tokio::time::timeout(timeout, self.exchange(conn, payload)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) => Outcome::Failed(error.to_string()),
            Err(_) => Outcome::Failed("timeout".into()),
        }
    }

    async fn exchange(
        &self,
        conn: &mut Connection,
        payload: &Payload,
    ) -> Result<Outcome, ClientError> {
        let mut request = Request::new(Full::new(payload.wire.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = HeaderMap::clone(&self.headers);
        let response = match conn {
            Connection::H2(send) => {
                send.ready().await?;
                send.send_request(request).await?
            }
            Connection::H1(send) => {
                send.ready().await?;
                send.send_request(request).await?
            }
        };
        let (parts, body) = response.into_parts();
        let collected = body.collect().await?;
        if !self.protocol.is_grpc() {
            return Ok(Outcome::Http(parts.status.as_u16()));
        }
        if parts.status != http::StatusCode::OK {
            return Ok(Outcome::Http(parts.status.as_u16()));
        }
        let code = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok());
        Ok(match code {
            Some(code) => Outcome::Grpc(code),
            None => Outcome::Failed("gRPC answer without grpc-status".into()),
        })
    }
}

/// An open connection.
pub enum Connection {
    /// HTTP/2, shareable: clones multiplex on one connection.
    H2(http2::SendRequest<Full<Bytes>>),
    /// HTTP/1.1, one request at a time.
    H1(http1::SendRequest<Full<Bytes>>),
}

impl Connection {
    /// Another handle on the same HTTP/2 connection (`None` for HTTP/1.1).
    pub fn share(&self) -> Option<Connection> {
        match self {
            Connection::H2(send) => Some(Connection::H2(send.clone())),
            Connection::H1(_) => None,
        }
    }

    /// Whether the connection is gone and must be dialled again.
    pub fn is_closed(&self) -> bool {
        match self {
            Connection::H2(send) => send.is_closed(),
            Connection::H1(send) => send.is_closed(),
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A gRPC status code.
    Grpc(i32),
    /// An HTTP status (HTTP protocols, or a gRPC call answered with a non-200 status).
    Http(u16),
    /// No answer: connection error or timeout.
    Failed(String),
}

impl Outcome {
    /// Whether the request was accepted.
    pub fn ok(&self) -> bool {
        match self {
            Outcome::Grpc(code) => *code == 0,
            Outcome::Http(status) => (200..300).contains(status),
            Outcome::Failed(_) => false,
        }
    }

    /// Whether the server refused for overload (gRPC `UNAVAILABLE` / `RESOURCE_EXHAUSTED`,
    /// HTTP 429 / 503): the client would retry later.
    pub fn refused(&self) -> bool {
        matches!(self, Outcome::Grpc(8 | 14) | Outcome::Http(429 | 503))
    }

    /// The label in the status distribution: gRPC code names as ghz prints them.
    pub fn label(&self) -> String {
        match self {
            Outcome::Grpc(code) => format!("{:?}", tonic::Code::from_i32(*code)),
            Outcome::Http(status) => format!("HTTP {status}"),
            Outcome::Failed(reason) => {
                let mut reason = reason.clone();
                reason.truncate(120);
                format!("error: {reason}")
            }
        }
    }
}

/// A TLS connector trusting only the PEM bundle `ca` (webpki roots are not bundled: a load
/// test targets a known server), with the ALPN the protocol needs.
fn tls_connector(ca: Option<&Path>, protocol: Protocol) -> Result<TlsConnector, ClientError> {
    let Some(ca) = ca else {
        return Err(ClientError::Ca {
            path: "(none)".into(),
            reason: "an https:// target needs --cacert FILE".into(),
        });
    };
    let ca_error = |reason: String| ClientError::Ca {
        path: ca.display().to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| ca_error(e.to_string()))? {
        let cert = cert.map_err(|e| ca_error(e.to_string()))?;
        roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_error("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ca_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![if protocol.is_grpc() {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_and_without_scheme() {
        let t = Target::parse("127.0.0.1:8383").unwrap();
        assert_eq!((t.authority.as_str(), t.tls), ("127.0.0.1:8383", false));
        let t = Target::parse("https://cubesat.local:9393/").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.host.as_str(), t.tls),
            ("cubesat.local:9393", "cubesat.local", true)
        );
        let t = Target::parse("http://[::1]:8383").unwrap();
        assert_eq!(t.host, "::1");
        assert!(Target::parse("localhost").is_err());
        assert!(Target::parse("http://a:1/v1/traces").is_err());
    }

    #[test]
    fn outcomes_label_and_classify() {
        assert!(Outcome::Grpc(0).ok());
        assert_eq!(Outcome::Grpc(14).label(), "Unavailable");
        assert!(Outcome::Grpc(14).refused());
        assert!(Outcome::Http(503).refused());
        assert!(!Outcome::Http(400).refused());
        assert!(Outcome::Http(202).ok());
        assert!(!Outcome::Failed("x".into()).ok());
    }
}
