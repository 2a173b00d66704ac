//! Configuration: the command line (clap, every flag with an env twin), an optional TOML file
//! with the same keys, and the defaults of each mode, merged once into a plain [`Config`].
//!
//! Precedence: flag > env var > file > mode default. Validation names the key, the bad value
//! and what is accepted; `main` turns a [`ConfigError`] into exit code 2. Nothing else in the
//! program reads the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::ingest::auth::{AccessToken, TokenPolicy};
use crate::ingest::conn::ConnLimits;
use crate::ingest::http::CorsOrigins;
use crate::pipeline::{BatchLimits, Protocol};

mod ingress;
mod spool;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "cubesat",
    version,
    about = "A Lightstep Satellite-compatible trace ingest proxy",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to run; without one, developer mode.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Developer-mode flags, when no subcommand is given.
    #[command(flatten)]
    pub flags: Flags,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Developer-mode satellite for a laptop (the default): no token needed.
    Dev(Flags),
    /// Forwarding satellite: sidecar-local or pool member.
    Serve(Flags),
    /// Write a development CA and a server certificate signed by it (PEM).
    Certs(CertsArgs),
}

/// Arguments of `cubesat certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write cacert.pem, server.pem and server-key.pem into.
    #[arg(long, default_value = "certs")]
    pub dir: PathBuf,
    /// DNS names and IP addresses the server certificate is valid for.
    #[arg(long = "host", default_values = ["localhost", "127.0.0.1", "::1"])]
    pub hosts: Vec<String>,
    /// Keep the files when all three exist already (for init containers and compose jobs that
    /// run again on every start).
    #[arg(long)]
    pub keep_existing: bool,
}

/// The two satellite modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `cubesat` / `cubesat dev`.
    Dev,
    /// `cubesat serve`.
    Serve,
}

/// Protocol of upstream requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// Each report leaves in the protocol it arrived in.
    #[default]
    Auto,
    /// Lightstep collector `Report`.
    Lightstep,
    /// OTLP `TraceService/Export`.
    Otlp,
}

impl UpstreamProtocol {
    /// The one protocol every batch is sent in (others are translated), or `None` for `auto`.
    pub fn forced(self) -> Option<Protocol> {
        match self {
            UpstreamProtocol::Auto => None,
            UpstreamProtocol::Lightstep => Some(Protocol::Lightstep),
            UpstreamProtocol::Otlp => Some(Protocol::Otlp),
        }
    }
}

/// Satellite flags (both modes). Every one also has an env var and a config-file key.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Flags {
    /// Plain ingest address (gRPC h2c and HTTP/1.1).
    #[arg(long, env = "CUBESAT_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// TLS ingest address.
    #[arg(long, env = "CUBESAT_TLS_LISTEN", value_name = "ADDR")]
    pub tls_listen: Option<SocketAddr>,
    /// PEM server certificate chain; TLS ingest is on only with --tls-key too.
    #[arg(long, env = "CUBESAT_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CUBESAT_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Admin address: /_ready, /_live, /metrics, /diagnostics.
    #[arg(long, env = "CUBESAT_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Where spans go: https://host:port (TLS) or http://host:port (h2c).
    #[arg(long, env = "CUBESAT_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,
    /// Extra PEM CA bundle to trust for the upstream, besides the system roots.
    #[arg(long, env = "CUBESAT_UPSTREAM_CA", value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Protocol of upstream requests: auto (each leaves as it arrived), or lightstep / otlp
    /// (reports in the other protocol are translated) [default: auto].
    #[arg(long, env = "CUBESAT_UPSTREAM_PROTOCOL", value_name = "P")]
    pub upstream_protocol: Option<UpstreamProtocol>,
    /// Project access token for reports that do not carry a real one.
    #[arg(
        long,
        env = "LIGHTSTEP_ACCESS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub access_token: Option<AccessToken>,
    /// File holding the project access token, re-read on SIGHUP (--access-token wins when
    /// both are given). Prefer it, or LIGHTSTEP_ACCESS_TOKEN, to --access-token: a flag's
    /// value is visible to every user in `ps`.
    #[arg(long, env = "LIGHTSTEP_ACCESS_TOKEN_FILE", value_name = "FILE")]
    pub access_token_file: Option<PathBuf>,
    /// Send every report with --access-token, even one that carries its own token.
    #[arg(long, env = "CUBESAT_FORCE_ACCESS_TOKEN", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub force_access_token: Option<bool>,
    /// TOML file with these same keys (kebab-case).
    #[arg(long, env = "CUBESAT_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Log filter (tracing env-filter syntax, e.g. `info,cubesat=debug`).
    #[arg(long, env = "RUST_LOG", value_name = "L")]
    pub log_level: Option<String>,
    /// Byte budget for everything between ingest and upstream [default: 256MiB].
    #[arg(long, env = "CUBESAT_BUFFER_BYTES", value_name = "SIZE")]
    pub buffer_bytes: Option<ByteSize>,
    /// Flush a batch at this many spans [default: 4096].
    #[arg(long, env = "CUBESAT_BATCH_SPANS", value_name = "N")]
    pub batch_spans: Option<u32>,
    /// Flush a batch before it passes this size [default: 2MiB].
    #[arg(long, env = "CUBESAT_BATCH_BYTES", value_name = "SIZE")]
    pub batch_bytes: Option<ByteSize>,
    /// Flush a batch this long after its first span [default: 500ms].
    #[arg(long, env = "CUBESAT_BATCH_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub batch_timeout: Option<Duration>,
    /// Batcher tasks (reports are spread by token and reporter) [default: 1].
    #[arg(long, env = "CUBESAT_BATCH_WORKERS", value_name = "N")]
    pub batch_workers: Option<usize>,
    /// Largest report accepted on any route [default: 16MiB].
    #[arg(long, env = "CUBESAT_MAX_MESSAGE_BYTES", value_name = "SIZE")]
    pub max_message_bytes: Option<ByteSize>,
    /// Open ingest connections allowed per listener [default: 10000].
    #[arg(long, env = "CUBESAT_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Upstream requests in flight at once [default: 64].
    #[arg(long, env = "CUBESAT_UPSTREAM_CONCURRENCY", value_name = "N")]
    pub upstream_concurrency: Option<usize>,
    /// Deadline of one upstream request [default: 10s].
    #[arg(long, env = "CUBESAT_UPSTREAM_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Option<Duration>,
    /// Stop retrying a batch after this long, then drop it (counted) [default: 5m].
    #[arg(long, env = "CUBESAT_RETRY_MAX_ELAPSED", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub retry_max_elapsed: Option<Duration>,
    /// Developer mode: memory for stored spans; the oldest whole traces are evicted beyond it
    /// [default: 256MiB].
    #[arg(long, env = "CUBESAT_STORE_BYTES", value_name = "SIZE")]
    pub store_bytes: Option<ByteSize>,
    /// On SIGTERM/SIGINT, how long to flush buffered spans before exiting; the exit status
    /// is 3 when spans were dropped because it ran out [default: 10s].
    #[arg(long, env = "CUBESAT_DRAIN_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Option<Duration>,
    /// On SIGTERM/SIGINT, how long requests in flight get before their connection is closed
    /// (at most --drain-timeout) [default: 5s].
    #[arg(long, env = "CUBESAT_SHUTDOWN_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    /// Close client connections older than this (GOAWAY / `Connection: close`, give or take
    /// 10%), so long-lived sidecar connections rebalance across a pool [default: never].
    #[arg(long, env = "CUBESAT_MAX_CONNECTION_AGE", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Option<Duration>,
    /// Time requests in flight get after --max-connection-age before the connection is
    /// dropped [default: 30s].
    #[arg(long, env = "CUBESAT_MAX_CONNECTION_AGE_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub max_connection_age_grace: Option<Duration>,
    /// Time a new connection (after the TLS handshake) gets to send its first bytes
    /// [default: 10s].
    #[arg(long, env = "CUBESAT_PROTOCOL_DETECT_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub protocol_detect_timeout: Option<Duration>,
    /// HTTP/1: time to receive a request's headers, from their first byte [default: 10s].
    #[arg(long, env = "CUBESAT_HEADER_READ_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Option<Duration>,
    /// HTTP/1: close a kept-alive connection with no request for this long [default: 60s].
    #[arg(long, env = "CUBESAT_HTTP1_IDLE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub http1_idle_timeout: Option<Duration>,
    /// HTTP/2: send GOAWAY on a connection with no stream for this long [default: 60s].
    #[arg(long, env = "CUBESAT_HTTP2_IDLE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub http2_idle_timeout: Option<Duration>,
    /// HTTP/2: PING interval, 0s for none [default: 30s].
    #[arg(long, env = "CUBESAT_HTTP2_KEEPALIVE_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_interval: Option<Duration>,
    /// HTTP/2: close the connection when a PING is not answered within this [default: 10s].
    #[arg(long, env = "CUBESAT_HTTP2_KEEPALIVE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_timeout: Option<Duration>,
    /// Request bodies slower than this many bytes per second on average (after
    /// --body-min-rate-grace) are cut off; 0 turns the check off [default: 256B].
    #[arg(long, env = "CUBESAT_BODY_MIN_RATE", value_name = "SIZE")]
    pub body_min_rate: Option<ByteSize>,
    /// Time a request body may take before --body-min-rate applies [default: 10s].
    #[arg(long, env = "CUBESAT_BODY_MIN_RATE_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub body_min_rate_grace: Option<Duration>,
    /// Open admin connections allowed; more are closed at once [default: 64].
    #[arg(long, env = "CUBESAT_ADMIN_MAX_CONNECTIONS", value_name = "N")]
    pub admin_max_connections: Option<usize>,
    /// Crash-safe spool: admitted reports are written here and survive kill -9 and restarts
    /// (replayed at least once); they also wait here while --buffer-bytes is full.
    #[arg(long, env = "CUBESAT_SPOOL_DIR", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Most bytes the spool may take on disk; full, clients are told to retry
    /// [default: 1GiB with --spool-dir].
    #[arg(long, env = "CUBESAT_SPOOL_BYTES", value_name = "SIZE")]
    pub spool_bytes: Option<ByteSize>,
    /// Origins (`https://app.example.com`, comma-separated, or `*`) allowed to send spans
    /// from a browser. Serve mode: none by default; developer mode: any origin when the
    /// ingest listener is loopback.
    #[arg(
        long,
        env = "CUBESAT_CORS_ALLOWED_ORIGINS",
        value_name = "LIST",
        value_delimiter = ','
    )]
    pub cors_allowed_origins: Option<Vec<String>>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 500ms, 10s, 5m)"))
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read or parsed.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong (the TOML error names the key and line).
        message: String,
    },
    /// One key has a value cubesat cannot use.
    #[error("invalid value {value:?} for `{key}`: {expected}")]
    Invalid {
        /// The key, as a flag name without dashes (also the config-file key).
        key: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: String,
    },
}

fn invalid(
    key: &'static str,
    value: impl std::fmt::Display,
    expected: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        expected: expected.into(),
    }
}

/// The TLS ingest listener.
#[derive(Clone)]
pub struct TlsListen {
    /// Address.
    pub addr: SocketAddr,
    /// The loaded certificate and key.
    pub server: Arc<rustls::ServerConfig>,
    /// Re-reads the certificate and key (SIGHUP).
    pub certs: Arc<crate::tls::CertReloader>,
}

impl std::fmt::Debug for TlsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListen")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Where and how to forward.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The endpoint.
    pub url: http::Uri,
    /// Extra CA bundle (PEM bytes).
    pub ca_pem: Option<Vec<u8>>,
    /// Upstream protocol.
    pub protocol: UpstreamProtocol,
    /// Deadline of one request.
    pub request_timeout: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Retry budget per batch.
    pub retry_max_elapsed: Duration,
}

/// The whole resolved configuration: plain data, built once, handed down.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which mode runs.
    pub mode: Mode,
    /// Plain ingest address.
    pub listen: SocketAddr,
    /// TLS ingest, when a certificate and key were given.
    pub tls: Option<TlsListen>,
    /// Admin (and, in dev mode, web UI) address.
    pub admin_listen: SocketAddr,
    /// Forwarding; `None` in dev mode without `--upstream`.
    pub upstream: Option<UpstreamConfig>,
    /// Token resolution.
    pub tokens: TokenPolicy,
    /// Buffer byte budget.
    pub buffer_bytes: usize,
    /// Batch limits.
    pub batch: BatchLimits,
    /// Batcher tasks.
    pub batch_workers: usize,
    /// Largest accepted report.
    pub max_message_bytes: usize,
    /// Ingest connection limits and timeouts (both ingest listeners).
    pub conn: ConnLimits,
    /// Admin connection limits and timeouts.
    pub admin_conn: ConnLimits,
    /// Browser origins allowed to send spans.
    pub cors: CorsOrigins,
    /// Shutdown flush window.
    pub drain_timeout: Duration,
    /// Log filter.
    pub log_level: String,
    /// Developer mode: the trace store's byte budget.
    pub store_bytes: usize,
    /// The crash-safe spool, when `--spool-dir` is set.
    pub spool: Option<crate::pipeline::SpoolConfig>,
}

/// The smallest `store-bytes` accepted: room for a few hundred spans.
pub const MIN_STORE_BYTES: usize = 64 << 10;

/// The default upstream of `cubesat serve`.
pub const DEFAULT_UPSTREAM: &str = "https://ingest.lightstep.com:443";

impl Config {
    /// Merges `flags` (already holding env values) over the config file over `mode`'s defaults,
    /// and validates the result.
    pub fn load(mode: Mode, flags: Flags) -> Result<Config, ConfigError> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => Flags::default(),
        };
        Self::merge(mode, flags, file)
    }

    fn merge(mode: Mode, flags: Flags, file: Flags) -> Result<Config, ConfigError> {
        macro_rules! pick {
            ($field:ident) => {
                flags.$field.clone().or(file.$field.clone())
            };
        }
        let (listen, admin_listen, tls_listen) = match mode {
            Mode::Dev => ("127.0.0.1:8360", "127.0.0.1:8361", "127.0.0.1:9393"),
            Mode::Serve => ("0.0.0.0:8383", "0.0.0.0:8180", "0.0.0.0:9393"),
        };
        let addr = |s: &str| {
            s.parse::<SocketAddr>()
                .expect("default addresses are valid")
        };

        let tls = match (pick!(tls_cert), pick!(tls_key)) {
            (Some(cert), Some(key)) => {
                let (server, certs) = crate::tls::server_config(&cert, &key)
                    .map_err(|e| invalid("tls-cert", cert.display(), e.to_string()))?;
                Some(TlsListen {
                    addr: pick!(tls_listen).unwrap_or_else(|| addr(tls_listen)),
                    server,
                    certs,
                })
            }
            (Some(cert), None) => {
                return Err(invalid(
                    "tls-key",
                    "",
                    format!(
                        "--tls-cert {} needs --tls-key (the PEM private key)",
                        cert.display()
                    ),
                ));
            }
            (None, Some(key)) => {
                return Err(invalid(
                    "tls-cert",
                    "",
                    format!(
                        "--tls-key {} needs --tls-cert (the PEM certificate chain)",
                        key.display()
                    ),
                ));
            }
            (None, None) => {
                if let Some(tls_listen) = pick!(tls_listen) {
                    return Err(invalid(
                        "tls-listen",
                        tls_listen,
                        "TLS ingest needs --tls-cert and --tls-key",
                    ));
                }
                None
            }
        };

        let upstream_url = match (mode, pick!(upstream)) {
            (_, Some(url)) => Some(url),
            (Mode::Serve, None) => Some(DEFAULT_UPSTREAM.to_owned()),
            (Mode::Dev, None) => None,
        };
        let upstream = match upstream_url {
            None => None,
            Some(url) => Some(UpstreamConfig {
                url: parse_upstream(&url)?,
                ca_pem: match pick!(upstream_ca) {
                    Some(path) => Some(read_ca(&path)?),
                    None => None,
                },
                protocol: pick!(upstream_protocol).unwrap_or_default(),
                request_timeout: positive(
                    "upstream-timeout",
                    pick!(upstream_timeout),
                    Duration::from_secs(10),
                )?,
                // 64 concurrent streams: a Lightstep batch carries one reporter, so 1,000 sidecars
                // mean many small requests; at 8 they queued for a slot and filled the buffer
                // while the upstream had headroom (BENCHMARKS.md, "End to end").
                concurrency: at_least_one("upstream-concurrency", pick!(upstream_concurrency), 64)?,
                retry_max_elapsed: pick!(retry_max_elapsed).unwrap_or(Duration::from_secs(300)),
            }),
        };

        let buffer_bytes = pick!(buffer_bytes).map_or(256 << 20, |b| b.as_u64() as usize);
        let batch_bytes = pick!(batch_bytes).map_or(2 << 20, |b| b.as_u64() as usize);
        let max_message_bytes = pick!(max_message_bytes).map_or(16 << 20, |b| b.as_u64() as usize);
        if batch_bytes < 1024 {
            return Err(invalid(
                "batch-bytes",
                ByteSize(batch_bytes as u64),
                "at least 1KiB",
            ));
        }
        if buffer_bytes < max_message_bytes.max(batch_bytes) {
            return Err(invalid(
                "buffer-bytes",
                ByteSize(buffer_bytes as u64),
                format!(
                    "at least max-message-bytes and batch-bytes ({})",
                    ByteSize(max_message_bytes.max(batch_bytes) as u64)
                ),
            ));
        }
        let store_bytes = match (mode, pick!(store_bytes)) {
            (Mode::Serve, Some(size)) => {
                return Err(invalid(
                    "store-bytes",
                    size,
                    "nothing in `cubesat serve`: the trace store exists in developer mode only",
                ));
            }
            (_, Some(size)) if size.as_u64() < MIN_STORE_BYTES as u64 => {
                return Err(invalid(
                    "store-bytes",
                    size,
                    format!("at least {}", ByteSize(MIN_STORE_BYTES as u64)),
                ));
            }
            (_, size) => size.map_or(256 << 20, |b| b.as_u64() as usize),
        };
        let batch = BatchLimits {
            max_spans: at_least_one("batch-spans", pick!(batch_spans).map(|n| n as usize), 4096)?
                as u32,
            max_bytes: batch_bytes,
            max_age: positive(
                "batch-timeout",
                pick!(batch_timeout),
                Duration::from_millis(500),
            )?,
        };

        let drain_timeout = pick!(drain_timeout).unwrap_or(Duration::from_secs(10));
        let (conn, admin_conn) = ingress::connection_limits(&flags, &file, drain_timeout)?;
        let listen = pick!(listen).unwrap_or_else(|| addr(listen));
        Ok(Config {
            mode,
            listen,
            cors: ingress::cors_origins(mode, listen, pick!(cors_allowed_origins))?,
            tls,
            admin_listen: pick!(admin_listen).unwrap_or_else(|| addr(admin_listen)),
            upstream,
            tokens: ingress::token_policy(
                pick!(access_token),
                pick!(access_token_file),
                pick!(force_access_token).unwrap_or(false),
            )?,
            buffer_bytes,
            batch,
            batch_workers: at_least_one("batch-workers", pick!(batch_workers), 1)?,
            max_message_bytes,
            conn,
            admin_conn,
            drain_timeout,
            log_level: pick!(log_level).unwrap_or_else(|| "info".to_owned()),
            store_bytes,
            spool: spool::spool(pick!(spool_dir), pick!(spool_bytes), max_message_bytes)?,
        })
    }
}

fn read_file(path: &Path) -> Result<Flags, ConfigError> {
    let file_error = |message: String| ConfigError::File {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    toml::from_str(&text).map_err(|e| file_error(describe_toml_error(&text, &e)))
}

/// A TOML error as a flag error reads: the line, the key, the value and what is accepted.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    let Some(span) = error.span().filter(|s| s.start <= text.len()) else {
        return message.to_owned();
    };
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..span.start].matches('\n').count() + 1;
    let line_end = text[span.start..]
        .find('\n')
        .map_or(text.len(), |i| span.start + i);
    let line = &text[line_start..line_end];
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
        .filter(|k| !k.is_empty() && span.start > line_start + k.len());
    match key {
        Some(key) if !message.starts_with("unknown field") => {
            let value = text.get(span.clone()).unwrap_or_default().trim();
            let expected = accepted(key).unwrap_or(message);
            format!("line {line_no}: invalid value {value} for `{key}`: {expected} ({message})")
        }
        _ => format!("line {line_no}: {message}"),
    }
}

/// What a config-file key accepts, in the words the flag errors use.
fn accepted(key: &str) -> Option<&'static str> {
    Some(match key {
        k if k.ends_with("listen") => "an address such as 0.0.0.0:8383 or [::]:8383",
        k if k.ends_with("bytes") => "a size such as 256MiB, 64KiB or 1048576",
        k if k.ends_with("timeout") || k.ends_with("elapsed") || k.ends_with("-age") => {
            "a duration such as 500ms, 10s or 5m, in quotes"
        }
        "batch-spans" | "batch-workers" | "max-connections" | "upstream-concurrency" => {
            "a whole number (no quotes)"
        }
        "upstream-protocol" => "one of \"auto\", \"lightstep\", \"otlp\"",
        "force-access-token" => "true or false",
        "upstream" => "a URL string: https://host:port (TLS) or http://host:port (plaintext h2c)",
        _ => return None,
    })
}

fn read_ca(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let pem = std::fs::read(path).map_err(|e| {
        invalid(
            "upstream-ca",
            path.display(),
            format!("a readable PEM file ({e})"),
        )
    })?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(invalid(
            "upstream-ca",
            path.display(),
            "a PEM file with at least one CERTIFICATE block",
        ));
    }
    Ok(pem)
}

fn parse_upstream(url: &str) -> Result<http::Uri, ConfigError> {
    const EXPECTED: &str = "https://host:port (TLS) or http://host:port (plaintext h2c)";
    let uri: http::Uri = url
        .parse()
        .map_err(|_| invalid("upstream", url, EXPECTED))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(uri),
        _ => Err(invalid("upstream", url, EXPECTED)),
    }
}

fn positive(
    key: &'static str,
    value: Option<Duration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        Some(d) if d.is_zero() => Err(invalid(
            key,
            "0s",
            "a duration above zero, e.g. 500ms or 10s",
        )),
        Some(d) => Ok(d),
        None => Ok(default),
    }
}

fn at_least_one(
    key: &'static str,
    value: Option<usize>,
    default: usize,
) -> Result<usize, ConfigError> {
    match value {
        Some(0) => Err(invalid(key, 0, "a whole number of at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests;
