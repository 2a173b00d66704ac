//! Developer mode at real scale, in a real browser: a generated dataset of more than 100,000
//! spans from 15 services (64-bit and 128-bit trace ids, errors with exception events, resource
//! attributes) with one 20,000-span trace, a clock-skewed trace and a pair of linked traces,
//! posted as OTLP/HTTP protobuf straight to the ingest port (no SDK: the dataset is made in a
//! second). Headless Chromium (tests/browser/check_scale.py through Playwright) then checks:
//! the 20,000-span trace is interactive within 1 s of navigation and draws only the rows in
//! view; find matches an error message that is only in an exception event; the critical path of
//! the skewed trace never exceeds its root; links navigate both ways; the live tail shows a
//! 64-bit trace id as its 16 digits; a pinned trace survives eviction (a second cubesat with a
//! small `--store-bytes`).
//!
//! Screenshots of the big trace and of the 15-service diagram go to target/screenshots/, or to
//! docs/ when `CUBESAT_UPDATE_SCREENSHOTS=1` (how the README's pictures are refreshed).
//!
//! Tools: CUBESAT_PLAYWRIGHT_PYTHON, CUBESAT_CHROMIUM (scripts/test installs both).

mod common;

use std::time::{Duration, Instant};

use common::dataset::{Exports, Rng, hex, kv, s};
use common::{BrowserCheck, Cubesat, chromium, post, screenshots_dir, tool_python};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use serde_json::{Value as Json, json};

/// The 15 services, in call order: a service calls only services after it (plus the one cycle
/// of the deep trace).
const SERVICES: [&str; 15] = [
    "frontend",
    "gateway",
    "auth",
    "users",
    "catalog",
    "search",
    "recommendations",
    "ads",
    "inventory",
    "pricing",
    "cart",
    "checkout",
    "payments",
    "shipping",
    "email",
];
const BIG_TRACE_SPANS: usize = 20_000;
/// Only the big trace's two error spans carry this, and only in an exception event.
const BIG_ERROR_TEXT: &str = "insufficient funds";
const MS: u64 = 1_000_000;

/// The resource of service `service` (an index into `SERVICES`).
fn resource(&service: &usize) -> Resource {
    let name = SERVICES[service];
    Resource {
        attributes: vec![
            kv("service.name", s(name)),
            kv("service.version", s(format!("1.{service}.0"))),
            kv("host.name", s(format!("node-{}", service % 4))),
            kv("k8s.pod.name", s(format!("{name}-7d9f8c-{service:02}x"))),
        ],
        ..Default::default()
    }
}

/// One span; `error` adds an exception event with `message` and a multi-line stack trace.
#[allow(clippy::too_many_arguments)]
fn span(
    trace_id: &[u8],
    span_id: u64,
    parent: u64,
    name: &str,
    kind: i32,
    start_ns: u64,
    duration_ns: u64,
    error: Option<&str>,
) -> Span {
    let mut attributes = vec![
        kv("http.method", s("GET")),
        kv(
            "http.status_code",
            Value::IntValue(if error.is_some() { 500 } else { 200 }),
        ),
        kv("component", s("proxy")),
    ];
    let mut events = Vec::new();
    if let Some(message) = error {
        attributes.push(kv("error", Value::BoolValue(true)));
        events.push(Event {
            time_unix_nano: start_ns + duration_ns / 2,
            name: "exception".into(),
            attributes: vec![
                kv("exception.type", s("PaymentError")),
                kv("exception.message", s(message)),
                kv(
                    "exception.stacktrace",
                    s("PaymentError: declined\n  at charge (payments.js:42)\n  at handle (server.js:7)"),
                ),
            ],
            ..Default::default()
        });
    }
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_be_bytes().to_vec(),
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            parent.to_be_bytes().to_vec()
        },
        name: name.to_owned(),
        kind,
        start_time_unix_nano: start_ns,
        end_time_unix_nano: start_ns + duration_ns,
        attributes,
        events,
        status: error.map(|m| Status {
            code: 2,
            message: m.to_owned(),
        }),
        ..Default::default()
    }
}

/// What the browser test needs to know about the dataset.
struct Dataset {
    requests: Vec<Vec<u8>>,
    spans: usize,
    big: String,
    big_errors: Vec<String>,
    skewed: String,
    skewed_root_us: u64,
    producer: (String, String),
    consumer: (String, String),
}

fn trace_id(rng: &mut Rng, n: u64) -> Vec<u8> {
    // Every other trace has a 64-bit id: in OTLP, 16 bytes with zeros on the left.
    if n.is_multiple_of(2) {
        [[0; 8], rng.next().to_be_bytes()].concat()
    } else {
        [rng.next().to_be_bytes(), rng.next().to_be_bytes()].concat()
    }
}

/// Generates the dataset: `regular` ordinary traces (ids drawn from `seed`), the big trace if
/// `with_big`, and the skewed and linked traces.
fn dataset(regular: u64, seed: u64, with_big: bool, now_ns: u64) -> Dataset {
    let mut rng = Rng(0x5eed_cafe_f00d_0001 ^ seed);
    // One OTLP request per ~800 spans.
    let mut out = Exports::new(800, resource);
    let mut next_id = seed << 40;
    let mut id = || {
        next_id += 1;
        next_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
    };
    let base = now_ns - 120_000 * MS;
    // Ordinary traces: a path down the service order, with fan-out, about 10 spans each.
    for n in 0..regular {
        let tid = trace_id(&mut rng, n);
        let start = base + n * 10 * MS;
        let failing = rng.below(50) == 0;
        let root = id();
        let total = 20 * MS + rng.below(400) * MS / 10;
        out.add(0, span(&tid, root, 0, "GET /", 2, start, total, None));
        let mut frontier = vec![(0usize, root, start, total)];
        let mut made = 1;
        while let Some((svc, parent, pstart, pdur)) = frontier.pop() {
            if made >= 10 {
                break;
            }
            let calls = 1 + rng.below(3);
            for c in 0..calls {
                let next = (svc + 1 + rng.below(4) as usize).min(SERVICES.len() - 1);
                if next == svc || made >= 10 {
                    continue;
                }
                let sid = id();
                let offset = pdur / 10 + c * pdur / 10;
                let dur = (pdur / 2).max(MS / 10) + rng.below(MS);
                let dur = dur.min(pdur - offset);
                let error = (failing && next == SERVICES.len() - 3)
                    .then_some("upstream timeout while charging the card");
                out.add(
                    next,
                    span(
                        &tid,
                        sid,
                        parent,
                        &format!(
                            "{} /{}",
                            if c % 2 == 0 { "GET" } else { "POST" },
                            SERVICES[next]
                        ),
                        2,
                        pstart + offset,
                        dur,
                        error,
                    ),
                );
                made += 1;
                frontier.push((next, sid, pstart + offset, dur));
            }
        }
    }

    // The big trace: 20,000 spans, a wide fan-out with one 20-level chain, two errors whose
    // message is only in their exception event.
    let big = [0xb1u8; 16].to_vec();
    let big_start = now_ns - 60_000 * MS;
    let big_total = 30_000 * MS;
    let root = id();
    let mut big_errors = Vec::new();
    if with_big {
        out.add(
            0,
            span(&big, root, 0, "POST /batch", 2, big_start, big_total, None),
        );
        let mut chain_parent = root;
        for level in 1..20u64 {
            let sid = id();
            let svc = if level % 2 == 0 { 4 } else { 8 };
            out.add(
                svc,
                span(
                    &big,
                    sid,
                    chain_parent,
                    &format!("level {level}"),
                    2,
                    big_start + level * 10 * MS,
                    big_total - level * 20 * MS,
                    None,
                ),
            );
            chain_parent = sid;
        }
        let workers: Vec<u64> = (0..40).map(|_| id()).collect();
        for (w, &wid) in workers.iter().enumerate() {
            out.add(
                1 + w % 6,
                span(
                    &big,
                    wid,
                    root,
                    &format!("worker {w}"),
                    3,
                    big_start + w as u64 * 700 * MS,
                    700 * MS,
                    None,
                ),
            );
        }
        let leaves = BIG_TRACE_SPANS - 1 - 19 - workers.len();
        for i in 0..leaves {
            let w = i % workers.len();
            let sid = id();
            let error = (i == 777 || i == 15_555)
                .then(|| format!("card declined: {BIG_ERROR_TEXT} (ref {i})"));
            if error.is_some() {
                big_errors.push(format!("{sid:016x}"));
            }
            let svc = 7 + (i % 8);
            out.add(
                svc,
                span(
                    &big,
                    sid,
                    workers[w],
                    &format!("item {}", i % 97),
                    3,
                    big_start + w as u64 * 700 * MS + (i / workers.len()) as u64 * MS,
                    MS / 2,
                    error.as_deref(),
                ),
            );
        }
    }

    // The skewed trace: the gateway's clock is 30 ms behind, so its span starts before its
    // parent; its child (same clock) moves with it.
    let skewed = [0x5au8; 16].to_vec();
    let sk_start = now_ns - 30_000 * MS;
    let (r, g, a) = (id(), id(), id());
    out.add(
        0,
        span(&skewed, r, 0, "GET /skewed", 2, sk_start, 200 * MS, None),
    );
    out.add(
        1,
        span(
            &skewed,
            g,
            r,
            "GET /api",
            2,
            sk_start - 30 * MS,
            150 * MS,
            None,
        ),
    );
    out.add(
        2,
        span(
            &skewed,
            a,
            g,
            "check token",
            2,
            sk_start - 25 * MS,
            100 * MS,
            None,
        ),
    );

    // Linked traces: a consumer span links to the producer span of another trace.
    let producer = [[0u8; 8], [0x11u8; 8]].concat();
    let consumer = [0x22u8; 16].to_vec();
    let (p, c) = (id(), id());
    out.add(
        10,
        span(&producer, p, 0, "publish order", 4, sk_start, 5 * MS, None),
    );
    let mut consume = span(
        &consumer,
        c,
        0,
        "process order",
        5,
        sk_start + 50 * MS,
        8 * MS,
        None,
    );
    consume.links.push(Link {
        trace_id: producer.clone(),
        span_id: p.to_be_bytes().to_vec(),
        attributes: vec![kv("messaging.operation", s("process"))],
        ..Default::default()
    });
    out.add(11, consume);
    out.flush();
    Dataset {
        spans: out.spans,
        requests: out.requests,
        big: hex(&big),
        big_errors,
        skewed: hex(&skewed),
        skewed_root_us: 200_000,
        producer: (hex(&producer), format!("{p:016x}")),
        consumer: (hex(&consumer), format!("{c:016x}")),
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn status(cubesat: &Cubesat) -> Json {
    let (code, body) = cubesat.admin_get("/api/status").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until the store has taken (stored, evicted or dropped) every span offered.
async fn wait_settled(cubesat: &Cubesat) -> Json {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = status(cubesat).await;
        let spans = &st["spans"];
        let taken = spans["stored"].as_u64().unwrap()
            + spans["evicted"].as_u64().unwrap()
            + spans["dropped"].as_u64().unwrap();
        if taken >= spans["received"].as_u64().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "store never caught up: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts OTLP requests, pacing them so the store queue never fills.
async fn send(cubesat: &Cubesat, requests: &[Vec<u8>]) {
    for (i, body) in requests.iter().enumerate() {
        let (code, text) = post(
            cubesat.ingest,
            "/v1/traces",
            "application/x-protobuf",
            body.clone(),
            None,
        )
        .await;
        assert_eq!(code, 200, "{text}");
        if i % 16 == 15 {
            wait_settled(cubesat).await;
        }
    }
    wait_settled(cubesat).await;
}

fn dev(store: &str) -> Cubesat {
    Cubesat::run("dev", &["--store-bytes", store])
}

#[tokio::test(flavor = "multi_thread")]
async fn developer_mode_at_scale_in_a_real_browser() {
    let playwright = tool_python("CUBESAT_PLAYWRIGHT_PYTHON", "playwright", "playwright");
    let chromium = chromium();

    let made = Instant::now();
    let data = dataset(8_500, 1, true, now_ns());
    eprintln!(
        "dataset: {} spans in {} requests, made in {:?}",
        data.spans,
        data.requests.len(),
        made.elapsed()
    );
    assert!(data.spans >= 100_000, "{} spans", data.spans);

    let big = dev("512MiB");
    let small = dev("4MiB");
    big.wait_ready(200, Duration::from_secs(10)).await;
    small.wait_ready(200, Duration::from_secs(10)).await;
    let sent = Instant::now();
    send(&big, &data.requests).await;
    let st = status(&big).await;
    eprintln!("ingested in {:?}: {st}", sent.elapsed());
    assert_eq!(st["spans"]["stored"], data.spans as u64, "{st}");
    assert_eq!(st["spans"]["dropped"], 0, "{st}");

    // The small instance: a handful of traces; the browser pins the producer trace.
    let few = dataset(30, 2, false, now_ns());
    let pinned = few.producer.0.clone();
    send(&small, &few.requests).await;

    let shots = screenshots_dir();
    let config = json!({
        "base": format!("http://{}", big.admin),
        "small": format!("http://{}", small.admin),
        "chromium": chromium,
        "screenshots": shots,
        "big": data.big,
        "big_spans": BIG_TRACE_SPANS,
        "find": BIG_ERROR_TEXT,
        "skewed": data.skewed,
        "producer": [data.producer.0, data.producer.1],
        "consumer": [data.consumer.0, data.consumer.1],
        "pinned": pinned,
    });
    let mut browser = BrowserCheck::start(&playwright, "check_scale.py", &config);
    let mut result = None;
    while result.is_none() {
        let Some(line) = browser.next_line(Duration::from_secs(240)) else {
            browser.failed("no answer from the browser script")
        };
        match line.as_str() {
            "PINNED" => {
                // Fill the small store several times over: the pinned trace must stay.
                let more = dataset(3_000, 3, false, now_ns());
                send(&small, &more.requests).await;
                let st = status(&small).await;
                assert!(st["traces"]["evicted"].as_u64() > Some(1_000), "{st}");
                browser.answer("go");
            }
            "LIVE_READY" => {
                // A trace with a 64-bit id while the live tail is open.
                let live_id = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x64, 0xb1, 0x7e, 0x57];
                let mut live = Exports::new(usize::MAX, resource);
                for i in 1..=3u64 {
                    let parent = if i == 1 { 0 } else { 0xfeed_0001 };
                    let op = span(
                        &live_id,
                        0xfeed_0000 + i,
                        parent,
                        "live op",
                        2,
                        now_ns(),
                        MS,
                        None,
                    );
                    live.add(3, op);
                }
                live.flush();
                send(&big, &live.requests).await;
                browser.answer("3");
            }
            other => match other.strip_prefix("RESULT ") {
                Some(json) => result = Some(json.to_owned()),
                None => eprintln!("browser: {other}"),
            },
        }
    }
    browser.finish();
    let seen: Json = serde_json::from_str(&result.unwrap()).unwrap();
    eprintln!("browser saw: {seen:#}");

    assert_eq!(seen["console_errors"], json!([]), "browser console errors");
    // The Explorer histogram of all 100k spans: its p50/p95/p99 labels lie inside the chart
    // and cover no other label.
    let boxes = &seen["histogram_labels"];
    assert_eq!(boxes["labels"].as_array().map(Vec::len), Some(3), "{boxes}");
    for label in boxes["labels"].as_array().unwrap() {
        assert_eq!(label["inside"], true, "label outside the chart: {boxes}");
        assert_eq!(label["covers"], json!([]), "labels overlap: {boxes}");
    }
    // The 20,000-span trace: interactive within 1 s, drawing only the rows in view.
    let bigv = &seen["big"];
    assert_eq!(bigv["span_count"], "20,000");
    // Best of three in-app navigations; the full page load is reported, not bounded.
    let ms = bigv["interactive_ms"].as_f64().unwrap();
    assert!(
        ms < 1000.0,
        "20,000-span trace interactive after {ms} ms: {bigv}"
    );
    let rows = bigv["dom_rows"].as_u64().unwrap();
    assert!((10..200).contains(&rows), "{rows} rows in the DOM");
    assert_eq!(bigv["collapsed_rows"], 1, "collapse all");
    assert_eq!(
        bigv["expanded_one_level"],
        1 + 1 + 40,
        "the root and its children"
    );
    // Find: the error message lives only in an exception event.
    let mut found: Vec<String> = bigv["find_matches"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    found.sort();
    let mut want = data.big_errors.clone();
    want.sort();
    assert_eq!(found, want, "find {BIG_ERROR_TEXT:?}");
    assert_eq!(bigv["find_count"], "2 of 20,000 spans match");
    assert!(
        data.big_errors
            .contains(&bigv["next_error"].as_str().unwrap().to_owned())
    );
    // Clock skew: the critical path never exceeds the root, the shifted spans are flagged.
    let skew = &seen["skewed"];
    let crit = skew["critical_path_us"].as_f64().unwrap();
    assert!(
        crit <= data.skewed_root_us as f64,
        "critical path {crit} µs > root"
    );
    assert!(crit > 0.0);
    assert_eq!(skew["adjusted_rows"], 2, "{skew}");
    assert!(skew["notice"].as_str().unwrap().contains("adjusted"));
    // Links, both ways.
    let links = &seen["links"];
    assert_eq!(
        links["to_hash"],
        format!("#/trace/{}?span={}", data.producer.0, data.producer.1)
    );
    assert_eq!(links["to_selected"], data.producer.1.as_str());
    assert_eq!(
        links["back_hash"],
        format!("#/trace/{}?span={}", data.consumer.0, data.consumer.1)
    );
    assert_eq!(links["back_selected"], data.consumer.1.as_str());
    assert!(links["process"].as_str().unwrap().contains("k8s.pod.name"));
    // Live tail: the 64-bit id shown as its 16 digits.
    let live = seen["live"].as_array().unwrap();
    assert_eq!(live.len(), 3, "{live:?}");
    for row in live {
        assert_eq!(row["shown"], "0000000064b17e57", "{row}");
        assert_eq!(row["trace_id"], "00000000000000000000000064b17e57", "{row}");
    }
    // The pinned trace, after the small store was filled several times over.
    let pin = &seen["pinned"];
    assert_eq!(pin["pressed"], "true");
    assert_eq!(pin["after_eviction"], pinned.as_str());
    assert!(pin["reach"].as_str().unwrap().contains("evicted"), "{pin}");
    // The 15-service diagram.
    assert_eq!(seen["diagram"]["nodes"], 15);
    let shown = seen["diagram"]["edges_shown"].as_u64().unwrap();
    assert!(
        (1..72).contains(&shown),
        "minimum-calls filter: {shown} edges"
    );
    for shot in ["trace-big", "diagram-15"] {
        let path = shots.join(format!("devmode-{shot}.png"));
        assert!(
            std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > 10_000,
            "screenshot {} missing",
            path.display()
        );
    }
}
