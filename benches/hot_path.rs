//! Hot-path benchmarks: the zero-copy wire scanners against a full prost decode, and the
//! buffer + batcher path (ring budget, shard channel, `Batcher::add`, batch header) that every
//! accepted report takes in production, for Lightstep `ReportRequest`s and OTLP exports shaped
//! like Envoy's.
//!
//! A counting global allocator measures heap allocations per request and per span before the
//! criterion runs; one `alloc:` line per case is printed to stderr. Run with
//! `cargo bench --bench hot_path -- --warm-up-time 1 --measurement-time 3`; results are recorded
//! in BENCHMARKS.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BatchSize, Criterion, Throughput};
use nix::time::{ClockId, clock_gettime};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use prost::Message;
use tokio::sync::mpsc::UnboundedReceiver;

use cubesat::ingest::Intake;
use cubesat::ingest::auth::TokenPolicy;
use cubesat::pipeline::{
    Batch, BatchKey, BatchLimits, BatchSink, Batcher, Charge, Part, Protocol, REQUEST_OVERHEAD,
    Report, Ring, RingConfig,
};
use cubesat::proto::collector as pb;
use cubesat::translate;
use cubesat::wire::otlp::scan_export;
use cubesat::wire::report::{ReportScan, SpanRuns, scan_report};

// ---------------------------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------------------------

/// The system allocator, counting every allocation (reallocations included: each may move).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made while `f` runs (the bench is single-threaded while counting).
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

// ---------------------------------------------------------------------------------------------
// Thread CPU time
// ---------------------------------------------------------------------------------------------

/// A criterion clock that reads this thread's CPU time: on a few shared, busy cores, wall time
/// also counts the time other processes hold the CPU. Criterion runs the routines on the
/// calling thread, so this is the time the code under test ran.
struct ThreadCpuTime;

fn thread_cpu_time() -> Duration {
    let now =
        clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("Linux has a per-thread CPU clock");
    Duration::new(now.tv_sec() as u64, now.tv_nsec() as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }

    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuNanos
    }
}

/// Prints CPU nanoseconds as times and throughputs, in the units criterion uses for wall time.
struct CpuNanos;

impl ValueFormatter for CpuNanos {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical {
            t if t < 1e3 => (1.0, "ns cpu"),
            t if t < 1e6 => (1e-3, "µs cpu"),
            t if t < 1e9 => (1e-6, "ms cpu"),
            _ => (1e-9, "s cpu"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (per_iteration, units) = match *throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                (n, ["B/s", "KB/s", "MB/s", "GB/s"])
            }
            Throughput::Bits(n) => (n, ["b/s", "Kb/s", "Mb/s", "Gb/s"]),
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => {
                (n, ["elem/s", "Kelem/s", "Melem/s", "Gelem/s"])
            }
        };
        let per_second = per_iteration as f64 * 1e9 / typical;
        let scale = match per_second {
            r if r < 1e3 => 0,
            r if r < 1e6 => 1,
            r if r < 1e9 => 2,
            _ => 3,
        };
        let denominator = 1e3f64.powi(scale);
        values
            .iter_mut()
            .for_each(|v| *v = per_iteration as f64 * 1e9 / *v / denominator);
        units[scale as usize]
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy-shaped requests
// ---------------------------------------------------------------------------------------------

/// Spans per request in every throughput case.
const SPANS: usize = 100;

const NODE_ID: &str =
    "sidecar~10.44.3.17~productpage-v1-6b746f74dc-9stvs.bookinfo~bookinfo.svc.cluster.local";
const TOKEN: &str = "6b1f1a4e2c3d4e5f60718293a4b5c6d7";

fn request_id(i: u64) -> String {
    format!(
        "{:08x}-4f3c-9a5e-b1d2-{:012x}",
        i as u32,
        i.wrapping_mul(0x9e37_79b9)
    )
}

/// The string tags Envoy's Lightstep / OpenTelemetry tracers put on an ingress span.
fn envoy_tags(i: u64) -> [(&'static str, String); 8] {
    [
        ("node_id", NODE_ID.to_owned()),
        ("zone", "us-east1-b".to_owned()),
        ("guid:x-request-id", request_id(i)),
        (
            "http.url",
            format!("http://productpage.bookinfo.svc.cluster.local:9080/productpage?u={i}"),
        ),
        ("http.method", "GET".to_owned()),
        ("http.status_code", "200".to_owned()),
        (
            "upstream_cluster",
            "inbound|9080||productpage.bookinfo.svc.cluster.local".to_owned(),
        ),
        ("component", "proxy".to_owned()),
    ]
}

fn ls_tag(key: &str, value: String) -> pb::KeyValue {
    pb::KeyValue {
        key: key.to_owned(),
        value: Some(pb::key_value::Value::StringValue(value)),
    }
}

/// A Lightstep `ReportRequest` as Envoy's Lightstep tracer sends it, with `spans` spans.
fn lightstep_request(spans: usize) -> Bytes {
    let trace_id = 0x5f3c_9a5e_b1d2_0001u64;
    let request = pb::ReportRequest {
        reporter: Some(pb::Reporter {
            reporter_id: 0x1d2c_3b4a_5968_7766,
            tags: vec![
                ls_tag("lightstep.component_name", "istio-ingressgateway".into()),
                ls_tag(
                    "lightstep.hostname",
                    "istio-ingressgateway-5d8f9c7b6-x2x7k".into(),
                ),
                ls_tag("lightstep.tracer_platform", "c++".into()),
                ls_tag("lightstep.tracer_platform_version", "11".into()),
                ls_tag("lightstep.tracer_version", "0.8.1".into()),
            ],
        }),
        auth: Some(pb::Auth {
            access_token: TOKEN.into(),
        }),
        spans: (0..spans as u64)
            .map(|i| {
                let mut tags: Vec<pb::KeyValue> = envoy_tags(i)
                    .into_iter()
                    .map(|(k, v)| ls_tag(k, v))
                    .collect();
                tags.push(ls_tag("span.kind", "server".into()));
                pb::Span {
                    span_context: Some(pb::SpanContext {
                        trace_id: trace_id + i,
                        span_id: 0x7000_0000_0000_0000 + i,
                        baggage: Default::default(),
                    }),
                    operation_name: "ingress".into(),
                    references: vec![pb::Reference {
                        relationship: pb::reference::Relationship::ChildOf as i32,
                        span_context: Some(pb::SpanContext {
                            trace_id: trace_id + i,
                            span_id: 0x6000_0000_0000_0000 + i,
                            baggage: Default::default(),
                        }),
                    }],
                    start_timestamp: Some(prost_types::Timestamp {
                        seconds: 1_764_000_000 + i as i64,
                        nanos: 123_456_000,
                    }),
                    duration_micros: 1_500 + i,
                    tags,
                    logs: vec![],
                }
            })
            .collect(),
        timestamp_offset_micros: 0,
        internal_metrics: None,
    };
    request.encode_to_vec().into()
}

fn otel_attr(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// An OTLP export as Envoy's OpenTelemetry tracer sends it: one resource, one scope, `spans`
/// spans with Envoy's attributes.
fn otlp_request(spans: usize) -> Bytes {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![otel_attr("service.name", "istio-ingressgateway".into())],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "envoy".into(),
                    version: "1.36.2".into(),
                    ..Default::default()
                }),
                spans: (0..spans as u64)
                    .map(|i| Span {
                        trace_id: [
                            &0x5f3c_9a5e_b1d2_0001u64.to_be_bytes()[..],
                            &i.to_be_bytes(),
                        ]
                        .concat(),
                        span_id: (0x7000_0000_0000_0000 + i).to_be_bytes().to_vec(),
                        parent_span_id: (0x6000_0000_0000_0000 + i).to_be_bytes().to_vec(),
                        name: "ingress".into(),
                        kind: SpanKind::Server as i32,
                        start_time_unix_nano: 1_764_000_000_123_456_000 + i * 1_000_000,
                        end_time_unix_nano: 1_764_000_000_125_000_000 + i * 1_000_000,
                        attributes: envoy_tags(i)
                            .into_iter()
                            .map(|(k, v)| otel_attr(k, v))
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    request.encode_to_vec().into()
}

// ---------------------------------------------------------------------------------------------
// The pipeline, driven synchronously
// ---------------------------------------------------------------------------------------------

/// cubesat's default batch limits (`--batch-spans 4096 --batch-bytes 2MiB --batch-timeout 500ms`).
const LIMITS: BatchLimits = BatchLimits {
    max_spans: 4096,
    max_bytes: 2 << 20,
    max_age: Duration::from_millis(500),
};

/// Where batches end: counted, then dropped, which returns their budget to the ring as an
/// upstream delivery does.
#[derive(Clone, Default)]
struct CountingSink {
    spans: Arc<AtomicU64>,
}

/// Batches flushed by every [`CountingSink`].
static BATCHES_FLUSHED: AtomicU64 = AtomicU64::new(0);

impl BatchSink for CountingSink {
    async fn submit(&self, batch: Batch) {
        self.spans
            .fetch_add(u64::from(batch.spans), Ordering::Relaxed);
        BATCHES_FLUSHED.fetch_add(1, Ordering::Relaxed);
        black_box(batch.encoded_len());
    }
}

/// Polls a future that must not wait (the counting sink never does) to completion.
fn complete<F: Future<Output = ()>>(future: F) {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(()) => {}
        Poll::Pending => panic!("the batcher waited although its sink never does"),
    }
}

/// One ring shard and its batcher, as `cubesat::run` wires them, minus the task around them:
/// the bench moves each report from the shard channel to `Batcher::add` itself.
struct Pipeline {
    ring: Ring,
    shard: UnboundedReceiver<Report>,
    batcher: Batcher<CountingSink>,
    sink: CountingSink,
    /// Spans handed to the batcher so far.
    batched: u64,
}

impl Pipeline {
    /// The production pipeline: span runs are copied once into the ring's region.
    fn new() -> Self {
        Self::with_ring(|config| Ring::new(config).expect("the bench's region"))
    }

    /// Today's design before the region: span runs stay slices of the request buffer.
    fn without_arena() -> Self {
        Self::with_ring(Ring::without_arena)
    }

    /// Today's design with the crash-safe spool (`--spool-dir`): each report's record is
    /// also appended to a segment file in `dir`, and acknowledged when delivered.
    fn with_spool(dir: &std::path::Path) -> Self {
        let mut pipeline = Self::without_arena();
        let config = cubesat::pipeline::SpoolConfig {
            dir: dir.to_owned(),
            limit_bytes: 1 << 30,
        };
        let (spool, _) = cubesat::pipeline::Spool::open(&config).expect("spool in target/");
        pipeline.ring = pipeline.ring.clone().with_spool(spool);
        pipeline
    }

    fn with_ring(make: fn(RingConfig) -> (Ring, Vec<UnboundedReceiver<Report>>)) -> Self {
        let (ring, mut shards) = make(RingConfig {
            capacity_bytes: 256 << 20,
            high_water: 0.8,
            low_water: 0.6,
            shards: 1,
        });
        let sink = CountingSink::default();
        Pipeline {
            ring,
            shard: shards.remove(0),
            batcher: Batcher::new(LIMITS, sink.clone()),
            sink,
            batched: 0,
        }
    }

    /// Ring reserve + push of a scanned report, as the intake does after its scan.
    fn push(&self, key: BatchKey, spans: SpanRuns, charge_bytes: usize) {
        let charge = self
            .ring
            .reserve(charge_bytes, u64::from(spans.count))
            .expect("the bench ring has room: batches release their charge");
        self.ring
            .push(key, spans, charge)
            .expect("the shard receiver is open");
    }

    /// Hands everything queued in the shard to the batcher, as `Batcher::run` does.
    fn batch_queued(&mut self) {
        while let Ok(report) = self.shard.try_recv() {
            self.batched += u64::from(report.spans.count);
            complete(self.batcher.add(report));
        }
    }

    /// Flushes the open batches and checks that every span pushed reached the sink.
    fn finish(&mut self) {
        self.batch_queued();
        complete(self.batcher.flush_older_than(Duration::ZERO));
        let delivered = self.sink.spans.load(Ordering::Relaxed);
        assert_eq!(delivered, self.batched, "spans lost in the pipeline");
        assert_eq!(self.ring.held_spans(), 0, "budget not returned");
    }
}

fn lightstep_key(scan: &ReportScan) -> BatchKey {
    BatchKey {
        protocol: Protocol::Lightstep,
        token: scan.access_token.clone().unwrap_or_default(),
        reporter: scan.reporter.clone(),
        timestamp_offset_micros: scan.timestamp_offset_micros,
    }
}

fn otlp_key() -> BatchKey {
    BatchKey {
        protocol: Protocol::Otlp,
        token: Bytes::from_static(TOKEN.as_bytes()),
        reporter: Bytes::new(),
        timestamp_offset_micros: 0,
    }
}

fn intake(ring: &Ring) -> Intake {
    Intake::new(ring.clone(), TokenPolicy::default(), LIMITS.max_bytes)
}

/// The in-flight charge a transport takes while reading `buf` (the intake moves it on).
fn read_charge(intake: &Intake, buf: &Bytes) -> Charge {
    intake
        .ring()
        .budget()
        .reserve(Part::InFlight, buf.len() + REQUEST_OVERHEAD, 0)
        .expect("room")
}

// ---------------------------------------------------------------------------------------------
// Allocation counts
// ---------------------------------------------------------------------------------------------

/// Requests per allocation measurement.
const ROUNDS: u64 = 2_000;
/// Requests run before counting: first-use growth of maps and channels is not per request.
const WARM_UP: u64 = 200;

/// Scanned span runs for every round of a ring+batcher case, cloned before counting starts so
/// that only the pipeline's own allocations are counted.
fn prepared_runs(spans: &SpanRuns) -> Vec<SpanRuns> {
    (0..WARM_UP + ROUNDS).map(|_| spans.clone()).collect()
}

/// What one allocation measurement found.
struct Count {
    /// Allocations per request.
    per_request: f64,
    /// Allocations per span.
    per_span: f64,
    /// Allocations per batch flushed, when the case flushes batches.
    per_batch: Option<f64>,
}

/// Counts the allocations of [`ROUNDS`] requests of `size` spans through `case`.
fn count(case: &dyn Fn(usize) -> Box<dyn FnMut()>, size: usize) -> Count {
    let mut run = case(size);
    for _ in 0..WARM_UP {
        run();
    }
    let batches_before = BATCHES_FLUSHED.load(Ordering::SeqCst);
    let allocations = allocations_in(|| {
        for _ in 0..ROUNDS {
            run();
        }
    }) as f64;
    let batches = BATCHES_FLUSHED.load(Ordering::SeqCst) - batches_before;
    Count {
        per_request: allocations / ROUNDS as f64,
        per_span: allocations / (ROUNDS * size as u64) as f64,
        per_batch: (batches > 0).then(|| allocations / batches as f64),
    }
}

/// Prints one line per case: allocations per request, per span and per batch for requests of
/// 100 spans, per request for requests of 10 spans, and the slope between the two (the part
/// that grows with the spans of a request).
fn report_allocations() {
    type Case = (&'static str, Box<dyn Fn(usize) -> Box<dyn FnMut()>>);
    let cases: Vec<Case> = vec![
        (
            "lightstep scan_report",
            Box::new(|size| {
                let buf = lightstep_request(size);
                Box::new(move || {
                    black_box(scan_report(&buf, LIMITS.max_bytes).expect("valid report"));
                })
            }),
        ),
        (
            "lightstep prost decode",
            Box::new(|size| {
                let buf = lightstep_request(size);
                Box::new(move || {
                    black_box(pb::ReportRequest::decode(buf.clone()).expect("valid report"));
                })
            }),
        ),
        (
            "lightstep ring+batcher",
            Box::new(|size| {
                let buf = lightstep_request(size);
                let scan = scan_report(&buf, LIMITS.max_bytes).expect("valid report");
                let key = lightstep_key(&scan);
                let mut inputs = prepared_runs(&scan.spans);
                let mut pipeline = Pipeline::new();
                Box::new(move || {
                    let spans = inputs.pop().expect("one input per round");
                    pipeline.push(key.clone(), spans, buf.len());
                    pipeline.batch_queued();
                })
            }),
        ),
        (
            "lightstep intake (scan+ring+batcher)",
            Box::new(|size| {
                let buf = lightstep_request(size);
                let mut pipeline = Pipeline::new();
                let intake = intake(&pipeline.ring);
                Box::new(move || {
                    intake
                        .lightstep_report(buf.clone(), None, read_charge(&intake, &buf))
                        .expect("accepted");
                    pipeline.batch_queued();
                })
            }),
        ),
        (
            "otlp scan_export",
            Box::new(|size| {
                let buf = otlp_request(size);
                Box::new(move || {
                    black_box(scan_export(&buf, LIMITS.max_bytes).expect("valid export"));
                })
            }),
        ),
        (
            "otlp prost decode",
            Box::new(|size| {
                let buf = otlp_request(size);
                Box::new(move || {
                    black_box(
                        ExportTraceServiceRequest::decode(buf.clone()).expect("valid export"),
                    );
                })
            }),
        ),
        (
            "otlp ring+batcher",
            Box::new(|size| {
                let buf = otlp_request(size);
                let spans = scan_export(&buf, LIMITS.max_bytes).expect("valid export");
                let mut inputs = prepared_runs(&spans);
                let mut pipeline = Pipeline::new();
                Box::new(move || {
                    let spans = inputs.pop().expect("one input per round");
                    pipeline.push(otlp_key(), spans, buf.len());
                    pipeline.batch_queued();
                })
            }),
        ),
        (
            "otlp intake (scan+ring+batcher)",
            Box::new(|size| {
                let buf = otlp_request(size);
                let mut pipeline = Pipeline::new();
                let intake = intake(&pipeline.ring);
                Box::new(move || {
                    intake
                        .otlp_export(
                            buf.clone(),
                            Some(TOKEN.as_bytes()),
                            read_charge(&intake, &buf),
                        )
                        .expect("accepted");
                    pipeline.batch_queued();
                })
            }),
        ),
    ];
    for (name, case) in &cases {
        let small = count(case.as_ref(), 10);
        let large = count(case.as_ref(), SPANS);
        // What grows with the spans of one request, as opposed to per request or per batch.
        let slope = (large.per_request - small.per_request) / (SPANS - 10) as f64;
        // Intake cases also allocate per request: their per-batch figure would mix the two.
        let per_batch = large
            .per_batch
            .filter(|_| name.ends_with("ring+batcher"))
            .map_or_else(String::new, |b| format!("  {b:.2}/batch"));
        eprintln!(
            "alloc: {name:<36} @{SPANS} spans: {:.3}/request  {:.4}/span{per_batch}  \
             | @10 spans: {:.3}/request | per-span slope {slope:.4}",
            large.per_request, large.per_span, small.per_request,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput
// ---------------------------------------------------------------------------------------------

fn lightstep_scan<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let buf = lightstep_request(SPANS);
    let scan = scan_report(&buf, LIMITS.max_bytes).expect("valid report");
    assert_eq!(scan.spans.count as usize, SPANS);
    let decoded = pb::ReportRequest::decode(buf.clone()).expect("valid report");
    assert_eq!(decoded.spans.len(), SPANS);

    let mut group = c.benchmark_group(format!("lightstep_scan{clock}"));
    group.throughput(Throughput::Elements(SPANS as u64));
    group.bench_function("cubesat_scan_report", |b| {
        b.iter(|| scan_report(black_box(&buf), LIMITS.max_bytes))
    });
    group.bench_function("prost_decode", |b| {
        b.iter(|| pb::ReportRequest::decode(black_box(buf.clone())))
    });
    group.finish();
}

fn lightstep_pipeline<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let buf = lightstep_request(SPANS);
    let scan = scan_report(&buf, LIMITS.max_bytes).expect("valid report");
    let key = lightstep_key(&scan);

    let mut group = c.benchmark_group(format!("lightstep_pipeline{clock}"));
    group.throughput(Throughput::Elements(SPANS as u64));
    let spool = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("spool directory");
    for (name, mut pipeline) in [
        ("ring_batcher", Pipeline::new()),
        ("ring_batcher_no_arena", Pipeline::without_arena()),
        (
            "ring_batcher_no_arena_spool",
            Pipeline::with_spool(spool.path()),
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || (key.clone(), scan.spans.clone()),
                |(key, spans)| {
                    pipeline.push(key, spans, buf.len());
                    pipeline.batch_queued();
                },
                BatchSize::SmallInput,
            );
        });
        pipeline.finish();
    }

    let mut pipeline = Pipeline::new();
    let intake = intake(&pipeline.ring);
    group.bench_function("intake_scan_ring_batcher", |b| {
        b.iter(|| {
            intake
                .lightstep_report(black_box(buf.clone()), None, read_charge(&intake, &buf))
                .expect("accepted");
            pipeline.batch_queued();
        })
    });
    pipeline.finish();
    group.finish();
}

fn otlp_scan<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let buf = otlp_request(SPANS);
    let scan = scan_export(&buf, LIMITS.max_bytes).expect("valid export");
    assert_eq!(scan.count as usize, SPANS);
    let decoded = ExportTraceServiceRequest::decode(buf.clone()).expect("valid export");
    assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), SPANS);

    let mut group = c.benchmark_group(format!("otlp_scan{clock}"));
    group.throughput(Throughput::Elements(SPANS as u64));
    group.bench_function("cubesat_scan_export", |b| {
        b.iter(|| scan_export(black_box(&buf), LIMITS.max_bytes))
    });
    group.bench_function("prost_decode", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(black_box(buf.clone())))
    });
    group.finish();
}

fn otlp_pipeline<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let buf = otlp_request(SPANS);
    let spans = scan_export(&buf, LIMITS.max_bytes).expect("valid export");

    let mut group = c.benchmark_group(format!("otlp_pipeline{clock}"));
    group.throughput(Throughput::Elements(SPANS as u64));
    let mut pipeline = Pipeline::new();
    group.bench_function("ring_batcher", |b| {
        b.iter_batched(
            || spans.clone(),
            |spans| {
                pipeline.push(otlp_key(), spans, buf.len());
                pipeline.batch_queued();
            },
            BatchSize::SmallInput,
        );
    });
    pipeline.finish();

    let mut pipeline = Pipeline::new();
    let intake = intake(&pipeline.ring);
    group.bench_function("intake_scan_ring_batcher", |b| {
        b.iter(|| {
            intake
                .otlp_export(
                    black_box(buf.clone()),
                    Some(TOKEN.as_bytes()),
                    read_charge(&intake, &buf),
                )
                .expect("accepted");
            pipeline.batch_queued();
        })
    });
    pipeline.finish();
    group.finish();
}

/// What `--upstream-protocol` costs when it forces the other protocol: a full lenient decode,
/// the translation and a re-encode, beside the zero-copy scan of the same request.
fn translation<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let lightstep = lightstep_request(SPANS);
    let otlp = otlp_request(SPANS);
    let exported = translate::report_bytes_to_export(&lightstep, LIMITS.max_bytes)
        .expect("translatable report");
    assert_eq!(exported.spans as usize, SPANS);
    let reported = translate::export_bytes_to_reports(&otlp).expect("translatable export");
    assert_eq!(
        reported.iter().map(|r| r.spans as usize).sum::<usize>(),
        SPANS
    );

    let mut group = c.benchmark_group(format!("translate{clock}"));
    group.throughput(Throughput::Elements(SPANS as u64));
    group.bench_function("cubesat_scan_report", |b| {
        b.iter(|| scan_report(black_box(&lightstep), LIMITS.max_bytes))
    });
    group.bench_function("lightstep_to_otlp", |b| {
        b.iter(|| translate::report_bytes_to_export(black_box(&lightstep), LIMITS.max_bytes))
    });
    group.bench_function("otlp_to_lightstep", |b| {
        b.iter(|| translate::export_bytes_to_reports(black_box(&otlp)))
    });
    group.finish();
}

/// Every throughput case, timed by `c`'s clock; `clock` suffixes the group names.
fn all_cases<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    lightstep_scan(c, clock);
    lightstep_pipeline(c, clock);
    otlp_scan(c, clock);
    otlp_pipeline(c, clock);
    translation(c, clock);
}

fn main() {
    eprintln!(
        "input: Lightstep ReportRequest of {SPANS} spans: {} bytes; OTLP export of {SPANS} spans: {} bytes",
        lightstep_request(SPANS).len(),
        otlp_request(SPANS).len()
    );
    report_allocations();
    let mut wall = Criterion::default().configure_from_args();
    all_cases(&mut wall, "");
    let mut cpu = Criterion::default()
        .with_measurement(ThreadCpuTime)
        .configure_from_args();
    all_cases(&mut cpu, "_cpu");
    wall.final_summary();
}
