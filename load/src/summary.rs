//! The end-of-run summary, laid out like ghz's: totals and rates, a latency histogram and
//! percentiles, and the status code distribution; as text or as JSON (`--format json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::body::Protocol;
use crate::run::LoadConfig;

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Fastest request.
    pub min_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest request.
    pub max_ms: f64,
}

/// One histogram bucket: requests at most `le_ms` and above the previous bucket's bound.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// Upper bound in milliseconds.
    pub le_ms: f64,
    /// Requests in the bucket.
    pub count: u64,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The protocol sent.
    pub protocol: Protocol,
    /// Spans per request.
    pub spans_per_request: usize,
    /// Distinct sidecars.
    pub reporters: usize,
    /// Workers.
    pub concurrency: usize,
    /// Requests per second asked for (open loop), if any.
    pub rate: Option<f64>,
    /// Requests sent (answered or failed).
    pub count: u64,
    /// Requests accepted (gRPC OK, HTTP 2xx).
    pub ok: u64,
    /// Requests refused for overload (`UNAVAILABLE`, `RESOURCE_EXHAUSTED`, HTTP 429/503).
    pub refused: u64,
    /// Spans in accepted requests.
    pub spans_ok: u64,
    /// Wall time of the run in seconds.
    pub total_s: f64,
    /// Requests per second (all answers).
    pub requests_per_s: f64,
    /// Accepted spans per second.
    pub spans_per_s: f64,
    /// Accepted request bytes per second, in MB (10^6) per second.
    pub mb_per_s: f64,
    /// Latency (open loop: from each request's due time).
    pub latency: Latency,
    /// Latency histogram.
    pub histogram: Vec<Bucket>,
    /// How many requests ended with each status.
    pub statuses: BTreeMap<String, u64>,
}

impl Summary {
    /// Builds the summary of a run from what its workers counted.
    pub fn new(
        config: &LoadConfig,
        elapsed: Duration,
        latency_us: Histogram<u64>,
        statuses: BTreeMap<String, u64>,
        spans_ok: u64,
        bytes_ok: u64,
        refused: u64,
    ) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let count: u64 = statuses.values().sum();
        let ok = statuses
            .iter()
            .filter(|(label, _)| label.as_str() == "Ok" || label.starts_with("HTTP 2"))
            .map(|(_, n)| n)
            .sum();
        let ms = |us: u64| us as f64 / 1000.0;
        let latency = Latency {
            min_ms: ms(latency_us.min()),
            mean_ms: latency_us.mean() / 1000.0,
            p50_ms: ms(latency_us.value_at_quantile(0.5)),
            p90_ms: ms(latency_us.value_at_quantile(0.9)),
            p99_ms: ms(latency_us.value_at_quantile(0.99)),
            p999_ms: ms(latency_us.value_at_quantile(0.999)),
            max_ms: ms(latency_us.max()),
        };
        Summary {
            protocol: config.body.protocol,
            spans_per_request: config.body.spans,
            reporters: config.body.reporters,
            concurrency: config.concurrency,
            rate: config.rate,
            count,
            ok,
            refused,
            spans_ok,
            total_s: secs,
            requests_per_s: count as f64 / secs,
            spans_per_s: spans_ok as f64 / secs,
            mb_per_s: bytes_ok as f64 / secs / 1e6,
            latency,
            histogram: buckets(&latency_us),
            statuses,
        }
    }

    /// The summary as ghz prints it.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let l = &self.latency;
        let _ = writeln!(out, "\nSummary:");
        let _ = writeln!(out, "  Protocol:\t{:?}", self.protocol);
        let _ = writeln!(
            out,
            "  Spans:\t{} per request, {} reporters, concurrency {}{}",
            self.spans_per_request,
            self.reporters,
            self.concurrency,
            self.rate
                .map(|r| format!(", open loop at {r} requests/s"))
                .unwrap_or_default()
        );
        let _ = writeln!(out, "  Count:\t{}", self.count);
        let _ = writeln!(out, "  Total:\t{:.2} s", self.total_s);
        let _ = writeln!(out, "  Slowest:\t{:.2} ms", l.max_ms);
        let _ = writeln!(out, "  Fastest:\t{:.2} ms", l.min_ms);
        let _ = writeln!(out, "  Average:\t{:.2} ms", l.mean_ms);
        let _ = writeln!(out, "  Requests/sec:\t{:.2}", self.requests_per_s);
        let _ = writeln!(out, "  Spans/sec:\t{:.0}", self.spans_per_s);
        let _ = writeln!(out, "  MB/sec:\t{:.2}", self.mb_per_s);
        let _ = writeln!(out, "\nResponse time histogram:");
        let peak = self.histogram.iter().map(|b| b.count).max().unwrap_or(0);
        for b in &self.histogram {
            let bar = if peak == 0 {
                0
            } else {
                (b.count * 40).div_ceil(peak)
            };
            let _ = writeln!(
                out,
                "  {:>10.3} [{}]\t|{}",
                b.le_ms,
                b.count,
                "∎".repeat(bar as usize)
            );
        }
        let _ = writeln!(out, "\nLatency distribution:");
        for (p, v) in [
            ("50", l.p50_ms),
            ("90", l.p90_ms),
            ("99", l.p99_ms),
            ("99.9", l.p999_ms),
        ] {
            let _ = writeln!(out, "  {p} % in {v:.3} ms");
        }
        let _ = writeln!(out, "\nStatus code distribution:");
        for (label, n) in &self.statuses {
            let _ = writeln!(out, "  [{label}]\t{n} responses");
        }
        out
    }
}

/// Ten equal-width buckets from the fastest to the slowest request, as ghz draws them.
fn buckets(h: &Histogram<u64>) -> Vec<Bucket> {
    if h.is_empty() {
        return Vec::new();
    }
    let (lo, hi) = (h.min(), h.max());
    let step = (hi - lo).div_ceil(10).max(1);
    let mut counts = [0u64; 10];
    for v in h.iter_recorded() {
        let at = v.value_iterated_to().clamp(lo, hi);
        counts[(((at - lo) / step) as usize).min(9)] += v.count_at_value();
    }
    counts
        .iter()
        .enumerate()
        .map(|(i, &count)| Bucket {
            le_ms: (lo + step * (i as u64 + 1)).min(hi) as f64 / 1000.0,
            count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_every_request() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap();
        for v in [100, 150, 900, 2_000, 2_100, 50_000] {
            h.record(v).unwrap();
        }
        let b = buckets(&h);
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), 6);
        assert!(b.len() <= 12);
        assert!(b.last().unwrap().le_ms >= 50.0);
    }
}
