//! Developer-mode store benchmarks.
//!
//! 1. Load: Bookinfo-like traces (7 spans, 4 services, Envoy-style attributes with a unique
//!    request id and URL per trace, 2% errors) are decoded from OTLP and inserted, as the
//!    store thread does, into stores of 16 MiB and 64 MiB until each has taken ten times what
//!    it can hold. A counting global allocator measures the heap the store really holds at
//!    every step, to show it stays within `--store-bytes` (the store only knows its own
//!    estimate); the rate of decode + insert with eviction is reported too.
//! 2. Queries: criterion timings of every API query against a store holding 100k spans.
//!
//! Run: `cargo bench --bench devmode` (figures in BENCHMARKS.md, developer-mode section).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use cubesat::devmode::store::{Scale, SpanQuery, Store, parse_trace_id};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use prost::Message;

/// The generator's building blocks, shared with tests/devmode_scale.rs.
#[path = "../tests/common/dataset.rs"]
mod dataset;

use dataset::{Exports, Rng, hex, kv, s};

/// Counts live heap bytes and allocations.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_ALLOCS: AtomicIsize = AtomicIsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size() as isize, 1);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        grow(-(layout.size() as isize), -1);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            grow(new_size as isize - layout.size() as isize, 0);
        }
        p
    }
}

fn grow(bytes: isize, allocs: isize) {
    let live = LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
    LIVE_ALLOCS.fetch_add(allocs, Ordering::Relaxed);
    PEAK_BYTES.fetch_max(live.max(0) as usize, Ordering::Relaxed);
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> (isize, isize) {
    (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_ALLOCS.load(Ordering::Relaxed),
    )
}

/// Bookinfo's services, in the order a page load first reaches them (the order of the
/// resources in its export).
const BOOKINFO: [&str; 4] = ["productpage", "details", "reviews", "ratings"];

/// One span of the Bookinfo shape: (label, parent label, service, name, kind, offset µs,
/// typical duration µs).
type Hop = (
    usize,
    Option<usize>,
    &'static str,
    &'static str,
    i32,
    u64,
    u64,
);

/// One Bookinfo page load: its trace id, and its encoded OTLP export with one resource per
/// service, the way Envoy's OpenTelemetry tracer sends it (client and server proxy spans for
/// every call).
fn bookinfo(n: u64, rng: &mut Rng, base_ns: u64) -> (Vec<u8>, Vec<u8>) {
    let trace_id: Vec<u8> = [rng.next().to_be_bytes(), rng.next().to_be_bytes()].concat();
    let request_id = format!("{:016x}-{:04x}", rng.next(), n & 0xffff);
    let start = base_ns + n * 1_000_000;
    let failing = rng.below(50) == 0;
    let shape: [Hop; 7] = [
        (
            0,
            None,
            "productpage",
            "productpage.default.svc.cluster.local:9080/productpage",
            2,
            0,
            20_000,
        ),
        (
            1,
            Some(0),
            "productpage",
            "details.default.svc.cluster.local:9080/*",
            3,
            500,
            4_000,
        ),
        (
            2,
            Some(1),
            "details",
            "details.default.svc.cluster.local:9080/*",
            2,
            700,
            3_000,
        ),
        (
            3,
            Some(0),
            "productpage",
            "reviews.default.svc.cluster.local:9080/*",
            3,
            5_000,
            12_000,
        ),
        (
            4,
            Some(3),
            "reviews",
            "reviews.default.svc.cluster.local:9080/*",
            2,
            5_200,
            11_000,
        ),
        (
            5,
            Some(4),
            "reviews",
            "ratings.default.svc.cluster.local:9080/*",
            3,
            6_000,
            6_000,
        ),
        (
            6,
            Some(5),
            "ratings",
            "ratings.default.svc.cluster.local:9080/*",
            2,
            6_200,
            5_000,
        ),
    ];
    let ids: Vec<Vec<u8>> = (0..7).map(|_| rng.next().to_be_bytes().to_vec()).collect();
    let mut out = Exports::new(usize::MAX, |&service: &usize| Resource {
        attributes: vec![kv("service.name", s(BOOKINFO[service]))],
        ..Default::default()
    });
    for (label, parent, service, name, kind, offset, duration) in shape {
        let duration = duration / 2 + rng.below(duration);
        let begin = start + offset * 1000;
        let error = failing && service == "ratings";
        let path = format!("/{}/{}", service, n % 1000);
        let mut attributes = vec![
            kv(
                "node_id",
                s(format!(
                    "sidecar~10.0.{}.{}~{service}-v1-{}~default.svc.cluster.local",
                    n % 7,
                    n % 250,
                    n % 3
                )),
            ),
            kv("guid:x-request-id", s(request_id.clone())),
            kv("http.url", s(format!("http://{service}:9080{path}"))),
            kv("http.method", s("GET")),
            kv("downstream_cluster", s("-")),
            kv("user_agent", s("python-requests/2.31.0")),
            kv("http.protocol", s("HTTP/1.1")),
            kv("peer.address", s(format!("10.0.{}.{}", n % 7, n % 250))),
            kv("request_size", Value::IntValue(0)),
            kv("response_size", Value::IntValue(rng.below(5000) as i64)),
            kv("response_flags", s("-")),
            kv("component", s("proxy")),
            kv(
                "upstream_cluster",
                s(format!(
                    "outbound|9080||{service}.default.svc.cluster.local"
                )),
            ),
            kv(
                "http.status_code",
                Value::IntValue(if error { 503 } else { 200 }),
            ),
        ];
        if kind == 3 {
            attributes.push(kv(
                "upstream_cluster.name",
                s(format!("outbound|9080||{service}")),
            ));
        }
        let events = if error {
            vec![Event {
                time_unix_nano: begin + 100_000,
                name: "upstream reset".into(),
                attributes: vec![kv("reason", s("connection refused"))],
                ..Default::default()
            }]
        } else {
            Vec::new()
        };
        let span = Span {
            trace_id: trace_id.clone(),
            span_id: ids[label].clone(),
            parent_span_id: parent.map(|p| ids[p].clone()).unwrap_or_default(),
            name: name.to_owned(),
            kind,
            start_time_unix_nano: begin,
            end_time_unix_nano: begin + duration * 1000,
            attributes,
            events,
            status: error.then(|| Status {
                code: 2,
                message: "upstream connect error".into(),
            }),
            ..Default::default()
        };
        let key = BOOKINFO.iter().position(|b| *b == service);
        out.add(key.expect("a Bookinfo service"), span);
    }
    out.flush();
    (trace_id, out.requests.pop().expect("one request"))
}

/// What the store thread does with one request: decode, then insert span by span with the
/// interned resource of each `ResourceSpans`.
fn decode_and_insert(store: &mut Store, body: &[u8]) -> u64 {
    let export = ExportTraceServiceRequest::decode(body).expect("valid export");
    let mut stored = 0;
    for rs in export.resource_spans {
        let process = store.process(rs.resource.map(|r| r.attributes).unwrap_or_default());
        for span in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
            if store.insert_in(&process, span).is_ok() {
                stored += 1;
            }
        }
    }
    stored
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / (1024.0 * 1024.0))
}

/// Fills a store of `limit` bytes with ten times what it holds; prints the figures.
fn load(limit: usize) {
    let base_ns = 1_700_000_000_000_000_000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ limit as u64);
    // Encode ahead (a ring of distinct requests) so the timed loop is decode + insert only.
    let requests: Vec<Vec<u8>> = (0..2048)
        .map(|n| bookinfo(n, &mut rng, base_ns).1)
        .collect();
    let request_bytes: usize = requests.iter().map(Vec::len).sum::<usize>() / requests.len();

    let (base_bytes, base_allocs) = live();
    let mut store = Store::new(limit);
    let mut worst_heap: isize = 0;
    let mut worst_allocs: isize = 0;
    let mut spans = 0u64;
    let mut inserted_traces = 0u64;
    let started = Instant::now();
    let mut busy = Duration::ZERO;
    // Keep inserting until ten times the store's worth of spans went through it.
    while store.stats().evicted_traces == 0 || spans < 10 * (store.stats().spans + 1) {
        let body = &requests[(inserted_traces % requests.len() as u64) as usize];
        // Each pass over the ring gets fresh trace ids, as new traffic would.
        let mut body = body.clone();
        let salt = inserted_traces / requests.len() as u64;
        if salt > 0 {
            let mut export = ExportTraceServiceRequest::decode(&body[..]).unwrap();
            for rs in &mut export.resource_spans {
                for span in rs.scope_spans.iter_mut().flat_map(|ss| ss.spans.iter_mut()) {
                    span.trace_id[0..8].copy_from_slice(&salt.to_be_bytes());
                }
            }
            body = export.encode_to_vec();
        }
        let t = Instant::now();
        spans += decode_and_insert(&mut store, &body);
        busy += t.elapsed();
        drop(body);
        inserted_traces += 1;
        let (bytes, allocs) = live();
        let held = bytes - base_bytes;
        if held > worst_heap {
            worst_heap = held;
            worst_allocs = allocs - base_allocs;
        }
    }
    let stats = store.stats();
    let (bytes, allocs) = live();
    let final_heap = bytes - base_bytes;
    let final_allocs = allocs - base_allocs;
    println!("store-bytes {} ({} bytes):", mib(limit as f64), limit);
    println!(
        "  inserted {spans} spans in {inserted_traces} traces ({request_bytes} B per encoded request), \
         evicted {} traces / {} spans, holding {} spans in {} traces",
        stats.evicted_traces, stats.evicted_spans, stats.spans, stats.traces
    );
    println!(
        "  decode + insert + evict: {:.0} spans/s ({:.2} µs per span; wall {:.1} s incl. re-salting ids)",
        spans as f64 / busy.as_secs_f64(),
        busy.as_secs_f64() * 1e6 / spans as f64,
        started.elapsed().as_secs_f64()
    );
    println!(
        "  density: {:.0} spans held per MiB of store-bytes",
        stats.spans as f64 / (limit as f64 / (1024.0 * 1024.0))
    );
    println!(
        "  charged (store estimate) at end: {} = {:.1}% of the limit, {:.0} B per stored span",
        mib(stats.used_bytes as f64),
        100.0 * stats.used_bytes as f64 / limit as f64,
        stats.used_bytes as f64 / stats.spans as f64
    );
    println!(
        "  heap really held (counting allocator), worst at any step: {} = {:.1}% of the limit \
         ({} live allocations; with 16 B malloc overhead each: {} = {:.1}%)",
        mib(worst_heap as f64),
        100.0 * worst_heap as f64 / limit as f64,
        worst_allocs,
        mib((worst_heap + 16 * worst_allocs) as f64),
        100.0 * (worst_heap + 16 * worst_allocs) as f64 / limit as f64,
    );
    println!(
        "  heap really held at end: {} ({:.0} B per stored span, {} allocations)",
        mib(final_heap as f64),
        final_heap as f64 / stats.spans as f64,
        final_allocs
    );
    assert!(
        stats.used_bytes <= limit,
        "store estimate {} above limit {limit}",
        stats.used_bytes
    );
    assert!(
        (worst_heap + 16 * worst_allocs) as usize <= limit,
        "real heap {} (+malloc overhead) above limit {limit}",
        worst_heap
    );
    drop(store);
}

/// A store holding `spans` spans (no eviction).
fn store_with(spans: u64) -> (Store, String) {
    let base_ns = 1_700_000_000_000_000_000;
    let mut rng = Rng(42);
    let mut store = Store::new(usize::MAX);
    let mut stored = 0;
    let mut n = 0;
    let mut last_trace = String::new();
    while stored < spans {
        let (trace_id, body) = bookinfo(n, &mut rng, base_ns);
        last_trace = hex(&trace_id);
        stored += decode_and_insert(&mut store, &body);
        n += 1;
    }
    (store, last_trace)
}

fn queries(c: &mut Criterion) {
    let before = live().0;
    let (store, trace_id) = store_with(100_000);
    let stats = store.stats();
    println!(
        "query store: {} spans, {} traces, charged {}, heap really held {}",
        stats.spans,
        stats.traces,
        mib(stats.used_bytes as f64),
        mib((live().0 - before) as f64)
    );
    let q = |f: fn(&mut SpanQuery)| {
        let mut q = SpanQuery::default();
        f(&mut q);
        q
    };
    let mut group = c.benchmark_group("devmode_query_100k_spans");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("services", |b| b.iter(|| black_box(store.services())));
    group.bench_function("operations(reviews)", |b| {
        b.iter(|| black_box(store.operations("reviews")))
    });
    group.bench_function("dependencies", |b| {
        b.iter(|| black_box(store.dependencies()))
    });
    let id = parse_trace_id(&trace_id).unwrap();
    group.bench_function("trace(id)", |b| b.iter(|| black_box(store.trace(&id))));
    group.bench_function("trace view JSON (7 spans)", |b| {
        b.iter(|| {
            black_box(cubesat::devmode::view::trace_json(
                &store,
                store.trace(&id).expect("stored"),
            ))
        })
    });
    let cases: [(&str, SpanQuery); 6] = [
        ("traces(no filter)", SpanQuery::default()),
        (
            "traces(service=reviews)",
            q(|q| q.service = Some("reviews".into())),
        ),
        (
            "traces(service+operation)",
            q(|q| {
                q.service = Some("reviews".into());
                q.operation = Some("ratings.default.svc.cluster.local:9080/*".into());
            }),
        ),
        (
            "traces(tag=http.status_code=503)",
            q(|q| q.tags = vec![("http.status_code".into(), "503".into())]),
        ),
        ("traces(errors=true)", q(|q| q.errors_only = true)),
        (
            "traces(service=ratings,min_duration_us=7000)",
            q(|q| {
                q.service = Some("ratings".into());
                q.min_duration_us = Some(7_000);
            }),
        ),
    ];
    for (name, query) in &cases {
        group.bench_function(*name, |b| b.iter(|| black_box(store.traces(query, 50))));
    }
    group.bench_function("latency(no filter, 20 buckets)", |b| {
        b.iter(|| black_box(store.latency(&SpanQuery::default(), 20, Scale::Log)))
    });
    let reviews = q(|q| q.service = Some("reviews".into()));
    group.bench_function("latency(service=reviews)", |b| {
        b.iter(|| black_box(store.latency(&reviews, 20, Scale::Log)))
    });
    group.finish();
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // A criterion filter naming one query (`devmode_query_100k_spans/services`) runs the
    // query part only.
    let wants = |name: &str| {
        filter.is_empty()
            || (filter.iter()).any(|f| name.contains(f.as_str()) || f.starts_with(name))
    };
    if wants("load") {
        println!("== devmode store under load (decode + insert, evicting whole oldest traces)");
        for limit in [16 << 20, 64 << 20] {
            load(limit);
        }
        if let Some(rss) = rss_bytes() {
            println!("process RSS after the load runs: {}", mib(rss as f64));
        }
        println!(
            "peak heap of the whole bench process so far: {}",
            mib(PEAK_BYTES.load(Ordering::Relaxed) as f64)
        );
    }
    if wants("devmode_query") {
        let mut c = Criterion::default().configure_from_args();
        queries(&mut c);
        c.final_summary();
    }
}
