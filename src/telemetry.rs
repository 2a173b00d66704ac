//! Every metric cubesat exports, declared once, plus log set-up.
//!
//! Names follow `cubesat_<noun>_<unit>_total`; labels come from closed sets (protocol, reason,
//! code), never a token, trace id or address. Notable events both log and count.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Reports accepted on ingest, by `protocol`.
pub const REPORTS_RECEIVED: &str = "cubesat_reports_received_total";
/// Reports refused on ingest, by `protocol` and `reason`.
pub const REPORTS_REJECTED: &str = "cubesat_reports_rejected_total";
/// Spans accepted on ingest, by `protocol`.
pub const SPANS_RECEIVED: &str = "cubesat_spans_received_total";
/// Spans translated between protocols because `--upstream-protocol` forces one, by `from`
/// and `to` protocol.
pub const SPANS_TRANSLATED: &str = "cubesat_spans_translated_total";
/// Spans the upstream accepted.
pub const SPANS_FORWARDED: &str = "cubesat_spans_forwarded_total";
/// Spans cubesat did not deliver, by `reason` (see [`DropReason`]).
pub const SPANS_DROPPED: &str = "cubesat_spans_dropped_total";
/// Spans the clients say they dropped themselves (`spans.dropped`), by `protocol`.
pub const CLIENT_DROPPED_SPANS: &str = "cubesat_client_dropped_spans_total";
/// Bytes of reports held in the buffer, from ingest until the upstream answers.
pub const BUFFER_BYTES: &str = "cubesat_buffer_bytes";
/// Bytes of the buffer budget held by each `part` of the path (in_flight, ring, batches,
/// upstream).
pub const BUFFER_PART_BYTES: &str = "cubesat_buffer_part_bytes";
/// Reservations the buffer budget refused, by the `part` that asked (in_flight, ring, batches,
/// upstream).
pub const BUFFER_REFUSALS: &str = "cubesat_buffer_refusals_total";
/// Open batches sent before their `--batch-timeout` because the buffer passed its flush mark.
pub const BATCHES_PRESSURE_FLUSHED: &str = "cubesat_batches_pressure_flushed_total";
/// Reports kept as slices of their request buffer because the ring had no contiguous room.
pub const RING_FALLBACKS: &str = "cubesat_ring_fallbacks_total";
/// The buffer's configured byte budget.
pub const BUFFER_CAPACITY_BYTES: &str = "cubesat_buffer_capacity_bytes";
/// Upstream batches sent, by `outcome` (ok / retry / rejected).
pub const UPSTREAM_REQUESTS: &str = "cubesat_upstream_requests_total";
/// Upstream request latency, by `outcome`.
pub const UPSTREAM_REQUEST_SECONDS: &str = "cubesat_upstream_request_duration_seconds";
/// Upstream errors, by gRPC `code`.
pub const UPSTREAM_ERRORS: &str = "cubesat_upstream_errors_total";
/// 1 while the upstream is reachable, else 0.
pub const UPSTREAM_UP: &str = "cubesat_upstream_up";
/// Connections open now, by `listener` (ingest, tls, admin).
pub const CONNECTIONS_OPEN: &str = "cubesat_ingest_connections";
/// Connections refused because the listener's connection limit was reached, by `listener`.
pub const CONNECTIONS_REFUSED: &str = "cubesat_ingest_connections_refused_total";
/// Connections cubesat closed, by `listener` and `reason` (see `ingest::conn::CloseReason`).
pub const CONNECTIONS_CLOSED: &str = "cubesat_connections_closed_total";
/// `accept` failures (EMFILE, ENFILE, ...), by `listener`.
pub const ACCEPT_ERRORS: &str = "cubesat_accept_errors_total";
/// Spool (`--spool-dir`): bytes of records in its segment files (a file goes once all its
/// records are delivered).
pub const SPOOL_BYTES: &str = "cubesat_spool_bytes";
/// Spool: its byte limit (`--spool-bytes`).
pub const SPOOL_CAPACITY_BYTES: &str = "cubesat_spool_capacity_bytes";
/// Spool: records (admitted reports) on disk not yet delivered.
pub const SPOOL_RECORDS: &str = "cubesat_spool_records";
/// Spool: reports written to disk only because the memory budget was past its spill mark.
pub const SPOOL_SPILLED_RECORDS: &str = "cubesat_spool_spilled_records_total";
/// Spool: records read back from disk (spilled, returned after a long retry, or left by the
/// last run).
pub const SPOOL_REPLAYED_RECORDS: &str = "cubesat_spool_replayed_records_total";
/// Spool: damaged records (bad checksum, torn tail, unreadable) skipped.
pub const SPOOL_CORRUPT_RECORDS: &str = "cubesat_spool_corrupt_records_total";

/// Developer mode: spans inserted into the trace store.
pub const STORE_SPANS_STORED: &str = "cubesat_store_spans_stored_total";
/// Developer mode: spans the store lost before storing them, by `reason`.
pub const STORE_SPANS_DROPPED: &str = "cubesat_store_spans_dropped_total";
/// Developer mode: spans evicted from the store with their (oldest) traces.
pub const STORE_EVICTED_SPANS: &str = "cubesat_store_evicted_spans_total";
/// Developer mode: whole traces evicted from the store to stay within `store-bytes`.
pub const STORE_EVICTED_TRACES: &str = "cubesat_store_evicted_traces_total";
/// Developer mode: bytes charged for what the store holds.
pub const STORE_BYTES: &str = "cubesat_store_bytes";
/// Developer mode: the store's byte budget (`store-bytes`).
pub const STORE_CAPACITY_BYTES: &str = "cubesat_store_capacity_bytes";
/// Developer mode: live-tail subscribers refused because the most allowed were connected.
pub const LIVE_SUBSCRIBERS_REFUSED: &str = "cubesat_live_subscribers_refused_total";
/// Developer mode: live-tail subscribers dropped because they stopped reading.
pub const LIVE_SUBSCRIBERS_DROPPED: &str = "cubesat_live_subscribers_dropped_total";

/// Why a span was not delivered upstream: the closed label set of [`SPANS_DROPPED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The buffer's byte budget was used up; the client was told `UNAVAILABLE`/503.
    BufferFull,
    /// The spool (`--spool-dir`) was full; the client was told `UNAVAILABLE`/503.
    SpoolFull,
    /// The upstream refused the batch with a status that forbids a retry.
    UpstreamRejected,
    /// Retries went on for longer than `retry-max-elapsed`.
    RetryExhausted,
    /// Still buffered when the drain timeout ended at shutdown.
    Shutdown,
    /// A streamed upload was cut off inside a span.
    Truncated,
}

impl DropReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BufferFull => "buffer_full",
            DropReason::SpoolFull => "spool_full",
            DropReason::UpstreamRejected => "upstream_rejected",
            DropReason::RetryExhausted => "retry_exhausted",
            DropReason::Shutdown => "shutdown",
            DropReason::Truncated => "truncated",
        }
    }
}

/// Counts `spans` dropped for `reason`.
pub fn count_dropped(reason: DropReason, spans: u64) {
    if spans > 0 {
        metrics::counter!(SPANS_DROPPED, "reason" => reason.as_str()).increment(spans);
    }
}

/// Gives every metric its help text and unit (call once, after installing a recorder).
pub fn describe() {
    describe_counter!(REPORTS_RECEIVED, "Reports accepted on ingest, by protocol.");
    describe_counter!(
        REPORTS_REJECTED,
        "Reports refused on ingest, by protocol and reason."
    );
    describe_counter!(SPANS_RECEIVED, "Spans accepted on ingest, by protocol.");
    describe_counter!(SPANS_FORWARDED, "Spans accepted by the upstream.");
    describe_counter!(
        SPANS_TRANSLATED,
        "Spans translated into the forced upstream protocol, by from and to protocol."
    );
    describe_counter!(SPANS_DROPPED, "Spans not delivered upstream, by reason.");
    describe_counter!(
        CLIENT_DROPPED_SPANS,
        "Spans the tracers report they dropped themselves (internal_metrics spans.dropped)."
    );
    describe_gauge!(
        BUFFER_BYTES,
        Unit::Bytes,
        "Bytes of reports held between ingest and upstream."
    );
    describe_gauge!(
        BUFFER_PART_BYTES,
        Unit::Bytes,
        "Bytes of the buffer budget held by each part of the path (in_flight, ring, batches, upstream)."
    );
    describe_counter!(
        BUFFER_REFUSALS,
        "Reservations the buffer budget refused, by the part of the path that asked."
    );
    describe_counter!(
        BATCHES_PRESSURE_FLUSHED,
        "Open batches sent before their timeout because the buffer passed its flush mark."
    );
    describe_counter!(
        RING_FALLBACKS,
        "Reports kept as slices of their request because the ring had no contiguous room."
    );
    describe_gauge!(
        BUFFER_CAPACITY_BYTES,
        Unit::Bytes,
        "The buffer's byte budget."
    );
    describe_counter!(UPSTREAM_REQUESTS, "Upstream batch requests, by outcome.");
    describe_histogram!(
        UPSTREAM_REQUEST_SECONDS,
        Unit::Seconds,
        "Upstream request latency, by outcome."
    );
    describe_counter!(UPSTREAM_ERRORS, "Upstream errors, by gRPC code.");
    describe_gauge!(UPSTREAM_UP, "1 while the upstream is reachable.");
    describe_gauge!(CONNECTIONS_OPEN, "Connections open now, by listener.");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections refused at the listener's connection limit, by listener."
    );
    describe_counter!(
        CONNECTIONS_CLOSED,
        "Connections closed by cubesat, by listener and reason (detect_timeout, header_timeout, idle, max_age, shutdown, grace_expired, tls_handshake)."
    );
    describe_counter!(ACCEPT_ERRORS, "accept() failures, by listener.");
    describe_gauge!(
        SPOOL_BYTES,
        Unit::Bytes,
        "Bytes of records in the spool's segment files (deleted once all their records are delivered)."
    );
    describe_gauge!(
        SPOOL_CAPACITY_BYTES,
        Unit::Bytes,
        "The spool's byte limit (spool-bytes)."
    );
    describe_gauge!(SPOOL_RECORDS, "Spooled reports not yet delivered.");
    describe_counter!(
        SPOOL_SPILLED_RECORDS,
        "Reports written to the spool only because the memory budget was past its spill mark."
    );
    describe_counter!(
        SPOOL_REPLAYED_RECORDS,
        "Spooled records read back from disk (spilled, returned after a long retry, or left by the last run)."
    );
    describe_counter!(
        SPOOL_CORRUPT_RECORDS,
        "Damaged spool records (bad checksum, torn tail, unreadable) skipped."
    );
    describe_counter!(STORE_SPANS_STORED, "Spans stored by developer mode.");
    describe_counter!(
        STORE_SPANS_DROPPED,
        "Spans developer mode's store lost before storing them, by reason."
    );
    describe_counter!(
        STORE_EVICTED_SPANS,
        "Spans evicted from the developer-mode store with their traces."
    );
    describe_counter!(
        STORE_EVICTED_TRACES,
        "Whole traces evicted from the developer-mode store to stay within store-bytes."
    );
    describe_gauge!(
        STORE_BYTES,
        Unit::Bytes,
        "Bytes charged for what the developer-mode store holds."
    );
    describe_gauge!(
        STORE_CAPACITY_BYTES,
        Unit::Bytes,
        "The developer-mode store's byte budget."
    );
    describe_counter!(
        LIVE_SUBSCRIBERS_REFUSED,
        "Live-tail subscribers refused at the most served at once."
    );
    describe_counter!(
        LIVE_SUBSCRIBERS_DROPPED,
        "Live-tail subscribers dropped for falling behind (not reading)."
    );
}

/// Installs the log subscriber with `filter` (a `tracing` env-filter directive).
pub fn init_logs(filter: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .map_err(|e| e.to_string())
}
