//! The load run: workers that send pre-built bodies closed-loop (each worker back to back) or
//! open-loop (`--rate`: request k is due at start + k / rate, whatever happened before), and
//! the latency histogram, status counts and summary they produce.
//!
//! Open-loop latency is measured from each request's due time, not from when a worker got to
//! send it, so a stalled server shows up as latency instead of as fewer requests (no
//! coordinated omission).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::body::{self, BodySpec, Payload};
use crate::client::{ClientError, Connection, Dialer, Outcome, Target};
use crate::summary::Summary;

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many requests.
    Requests(u64),
    /// No new request after this long.
    Duration(Duration),
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Where to send.
    pub target: String,
    /// The bodies.
    pub body: BodySpec,
    /// Requests in flight at most (workers).
    pub concurrency: usize,
    /// HTTP/2 connections the workers share (HTTP/1.1: one per worker).
    pub connections: usize,
    /// When to stop.
    pub stop: Stop,
    /// Open loop: requests per second across all workers.
    pub rate: Option<f64>,
    /// PEM CA bundle for `https://` targets.
    pub ca: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Print progress to stderr every this often (`None`: quiet).
    pub progress: Option<Duration>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Bad target, CA or first connection.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Bodies could not be built.
    #[error(transparent)]
    Body(#[from] body::BodyError),
    /// A setting is out of range.
    #[error("{0}")]
    Setting(String),
}

/// What one worker saw.
struct Tally {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<String, u64>,
    ok_spans: u64,
    ok_bytes: u64,
    refused: u64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            // 1 µs to 10 minutes at 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).expect("3 significant digits are valid")),
            statuses: BTreeMap::new(),
            ok_spans: 0,
            ok_bytes: 0,
            refused: 0,
        }
    }

    fn merge(&mut self, other: Tally) {
        let _ = self.latency_us.add(&other.latency_us);
        for (label, n) in other.statuses {
            *self.statuses.entry(label).or_default() += n;
        }
        self.ok_spans += other.ok_spans;
        self.ok_bytes += other.ok_bytes;
        self.refused += other.refused;
    }
}

/// Counters the progress printer reads while the run goes.
#[derive(Default)]
struct Live {
    done: AtomicU64,
    ok_spans: AtomicU64,
    failed: AtomicU64,
}

/// Runs the load described by `config` and returns its summary.
pub async fn run(config: LoadConfig) -> Result<Summary, LoadError> {
    if config.concurrency == 0 || config.connections == 0 {
        return Err(LoadError::Setting(
            "--concurrency and --connections must be at least 1".into(),
        ));
    }
    if let Some(rate) = config.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(LoadError::Setting(format!(
            "--rate {rate}: expected requests per second above 0"
        )));
    }
    let payloads = Arc::new(body::payloads(&config.body)?);
    let target = Target::parse(&config.target)?;
    let dialer = Dialer::new(
        target,
        config.body.protocol,
        config.ca.as_deref(),
        config.body.token.as_deref(),
        config.body.gzip,
    )?;
    // Dial before the clock starts; a target that is not there fails the run at once.
    let shared: Vec<Connection> = if config.body.protocol.is_grpc() {
        let mut conns = Vec::with_capacity(config.connections);
        for _ in 0..config.connections {
            conns.push(dialer.connect().await?);
        }
        conns
    } else {
        Vec::new()
    };
    let mut first = Vec::with_capacity(config.concurrency);
    for worker in 0..config.concurrency {
        first.push(match shared.get(worker % config.connections.max(1)) {
            Some(conn) => conn.share(),
            None => Some(dialer.connect().await?),
        });
    }

    let next = Arc::new(AtomicU64::new(0));
    let live = Arc::new(Live::default());
    let stopping = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = match config.stop {
        Stop::Duration(d) => Some(start + d),
        Stop::Requests(_) => None,
    };
    let limit = match config.stop {
        Stop::Requests(n) => n,
        Stop::Duration(_) => u64::MAX,
    };
    let interval = config.rate.map(|r| Duration::from_secs_f64(1.0 / r));

    let progress = config.progress.map(|every| {
        let live = live.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let mut last = (0u64, start);
            loop {
                tokio::time::sleep(every).await;
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let now = Instant::now();
                let spans = live.ok_spans.load(Ordering::Relaxed);
                let rate = (spans - last.0) as f64 / (now - last.1).as_secs_f64().max(1e-9);
                eprintln!(
                    "[{:>5.1}s] {} requests, {:.0} spans/s, {} failed",
                    (now - start).as_secs_f64(),
                    live.done.load(Ordering::Relaxed),
                    rate,
                    live.failed.load(Ordering::Relaxed),
                );
                last = (spans, now);
            }
        })
    });

    let mut workers = tokio::task::JoinSet::new();
    for conn in first {
        let dialer = dialer.clone();
        let payloads = payloads.clone();
        let next = next.clone();
        let live = live.clone();
        let timeout = config.timeout;
        workers.spawn(async move {
            let mut tally = Tally::new();
            let mut conn = conn;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= limit {
                    break;
                }
                let due = match interval {
                    Some(every) => start + every.mul_f64(k as f64),
                    None => Instant::now(),
                };
                if deadline.is_some_and(|d| due >= d) {
                    break;
                }
                if interval.is_some() {
                    tokio::time::sleep_until(due).await;
                }
                let payload: &Payload = &payloads[(k % payloads.len() as u64) as usize];
                let outcome = match conn.take().filter(|c| !c.is_closed()) {
                    Some(mut c) => {
                        let outcome = dialer.send(&mut c, payload, timeout).await;
                        conn = Some(c);
                        outcome
                    }
                    None => match dialer.connect().await {
                        Ok(mut c) => {
                            let outcome = dialer.send(&mut c, payload, timeout).await;
                            conn = Some(c);
                            outcome
                        }
                        Err(error) => Outcome::Failed(error.to_string()),
                    },
                };
                let micros = due.elapsed().as_micros().max(1) as u64;
                let _ = tally.latency_us.record(micros.min(600_000_000));
                if outcome.ok() {
                    tally.ok_spans += u64::from(payload.spans);
                    tally.ok_bytes += payload.wire.len() as u64;
                    live.ok_spans
                        .fetch_add(u64::from(payload.spans), Ordering::Relaxed);
                } else {
                    live.failed.fetch_add(1, Ordering::Relaxed);
                    if matches!(outcome, Outcome::Failed(_)) {
                        // A failed exchange may leave the connection unusable: dial again.
                        conn = None;
                    }
                }
                if outcome.refused() {
                    tally.refused += 1;
                }
                live.done.fetch_add(1, Ordering::Relaxed);
                *tally.statuses.entry(outcome.label()).or_default() += 1;
            }
            tally
        });
    }
    let mut total = Tally::new();
    while let Some(tally) = workers.join_next().await {
        if let Ok(tally) = tally {
            total.merge(tally);
        }
    }
    let elapsed = start.elapsed();
    stopping.store(true, Ordering::Relaxed);
    if let Some(progress) = progress {
        progress.abort();
    }
    Ok(Summary::new(
        &config,
        elapsed,
        total.latency_us,
        total.statuses,
        total.ok_spans,
        total.ok_bytes,
        total.refused,
    ))
}
