//! Developer mode's JSON API end to end: the real `cubesat` binary in dev mode, spans sent by
//! real clients (the OpenTelemetry Python SDK over OTLP/gRPC and OTLP/HTTP with exact times
//! from tests/clients/otel_spans.py; the PyPI `lightstep` tracer), then every endpoint and
//! every query parameter checked against what was sent, bad parameters answered 400 naming
//! them, the live tail, forwarding and storing at once with `--upstream`, and the store
//! staying within `--store-bytes` by evicting whole oldest traces.
//!
//! Tools: CUBESAT_OTEL_PYTHON (a Python with the OTel SDK and OTLP exporters) and
//! CUBESAT_LIGHTSTEP_PYTHON (a Python with `lightstep==4.4.8`); scripts/test installs both.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// Starts `cubesat dev` on port 0 with `args` added.
fn dev(args: &[&str]) -> Cubesat {
    Cubesat::run("dev", args)
}

/// What the SDK reports for one sent span.
#[derive(Debug, Clone)]
struct Sent {
    trace_id: String,
    span_id: String,
    start_us: u64,
}

/// Sends `spec` (see otel_spans.py) with the SDK over `protocol`; returns the sent spans by label.
async fn send_spans(protocol: &str, cubesat: &Cubesat, spec: &Value) -> HashMap<String, Sent> {
    let python = otel_python();
    let endpoint = match protocol {
        "grpc" => format!("http://{}", cubesat.ingest),
        _ => format!("http://{}/v1/traces", cubesat.ingest),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/otel_spans.py");
    let input = spec.to_string();
    let protocol = protocol.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(python)
            .args([script, &protocol, &endpoint])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run otel_spans.py");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "otel_spans.py failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let sent: HashMap<String, Value> = serde_json::from_slice(&out.stdout).expect("sender JSON");
    sent.into_iter()
        .map(|(label, v)| {
            let sent = Sent {
                trace_id: v["trace_id"].as_str().unwrap().to_owned(),
                span_id: v["span_id"].as_str().unwrap().to_owned(),
                start_us: v["start_us"].as_u64().unwrap(),
            };
            (label, sent)
        })
        .collect()
}

/// One Bookinfo page load as trace `i`, starting `i * 10ms` after the base time: a server span
/// per service and a client span for each call (proxy-style pairs). Trace 2 fails in ratings.
fn bookinfo_trace(i: u64) -> Vec<Value> {
    let t0 = i * 10_000;
    let code = if i == 2 { 503 } else { 200 };
    let version = if i % 2 == 1 { "v2" } else { "v1" };
    vec![
        json!({"label": format!("p{i}"), "service": "productpage", "name": "GET /productpage",
               "kind": "server", "start_us": t0, "duration_us": 5000 + i * 100,
               "attributes": {"http.status_code": 200, "user": format!("u{i}")}}),
        json!({"label": format!("pd{i}"), "parent": format!("p{i}"), "service": "productpage",
               "name": "GET details", "kind": "client", "start_us": t0 + 100, "duration_us": 900}),
        json!({"label": format!("d{i}"), "parent": format!("pd{i}"), "service": "details",
               "name": "GET /details", "kind": "server", "start_us": t0 + 150, "duration_us": 800}),
        json!({"label": format!("pr{i}"), "parent": format!("p{i}"), "service": "productpage",
               "name": "GET reviews", "kind": "client", "start_us": t0 + 1100, "duration_us": 3000}),
        json!({"label": format!("r{i}"), "parent": format!("pr{i}"), "service": "reviews",
               "name": "GET /reviews", "kind": "server", "start_us": t0 + 1150,
               "duration_us": 2500 + i * 10,
               "attributes": {"reviews.version": version, "http.status_code": 200}}),
        json!({"label": format!("rc{i}"), "parent": format!("r{i}"), "service": "reviews",
               "name": "GET ratings", "kind": "client", "start_us": t0 + 1200, "duration_us": 1500}),
        json!({"label": format!("t{i}"), "parent": format!("rc{i}"), "service": "ratings",
               "name": "GET /ratings", "kind": "server", "start_us": t0 + 1250,
               "duration_us": 1000 + i * 100, "error": i == 2, "status_message": "ratings down",
               "attributes": {"http.status_code": code},
               "events": if i == 2 {
                   json!([{"name": "upstream reset", "offset_us": 50,
                           "attributes": {"reason": "connection refused", "attempt": 1}}])
               } else { json!([]) }}),
    ]
}

async fn get(cubesat: &Cubesat, path: &str) -> (u16, Value) {
    let (status, body) = cubesat.admin_get(path).await;
    let value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET {path}: {status} body is not JSON ({e}): {body}"));
    (status, value)
}

async fn ok(cubesat: &Cubesat, path: &str) -> Value {
    let (status, value) = get(cubesat, path).await;
    assert_eq!(status, 200, "GET {path}: {value}");
    value
}

/// Waits until the store holds (or evicted) `want` spans: it is fed asynchronously.
async fn wait_stored(cubesat: &Cubesat, want: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = ok(cubesat, "/api/status").await;
        let spans = &status["spans"];
        let seen = spans["stored"].as_u64().unwrap() + spans["evicted"].as_u64().unwrap();
        if seen >= want {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "store saw {seen} spans, wanted {want}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The trace ids of a /api/traces answer, in order, mapped back to trace numbers.
fn trace_numbers(answer: &Value, sent: &HashMap<String, Sent>) -> Vec<u64> {
    answer["traces"]
        .as_array()
        .unwrap_or_else(|| panic!("no traces: {answer}"))
        .iter()
        .map(|t| {
            let id = t["trace_id"].as_str().unwrap();
            (0..)
                .take(100)
                .find(|i| sent[&format!("p{i}")].trace_id == id)
                .unwrap_or_else(|| panic!("unknown trace {id}"))
        })
        .collect()
}

/// Four Bookinfo traces: two over OTLP/gRPC, two over OTLP/HTTP.
async fn four_bookinfo_traces(cubesat: &Cubesat) -> HashMap<String, Sent> {
    let first: Vec<Value> = (0..2).flat_map(bookinfo_trace).collect();
    let second: Vec<Value> = (2..4).flat_map(bookinfo_trace).collect();
    let mut sent = send_spans("grpc", cubesat, &Value::Array(first)).await;
    sent.extend(send_spans("http", cubesat, &Value::Array(second)).await);
    wait_stored(cubesat, 28).await;
    sent
}

#[tokio::test]
async fn services_operations_and_dependencies() {
    let cubesat = dev(&[]);
    four_bookinfo_traces(&cubesat).await;

    let services = ok(&cubesat, "/api/services").await;
    let rows = services["services"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["details", "productpage", "ratings", "reviews"]);
    let by_name = |name: &str| rows.iter().find(|s| s["name"] == name).unwrap().clone();
    let productpage = by_name("productpage");
    assert_eq!(productpage["spans"], 12);
    assert_eq!(productpage["errors"], 0);
    assert_eq!(productpage["operations"], 3);
    let ratings = by_name("ratings");
    assert_eq!(ratings["spans"], 4);
    assert_eq!(ratings["errors"], 1);
    assert_eq!(ratings["error_rate"], 0.25);
    // Ratings took 1000, 1100, 1200, 1300 µs: nearest-rank percentiles.
    assert_eq!(ratings["p50_us"], 1100);
    assert_eq!(ratings["p95_us"], 1300);
    assert_eq!(ratings["p99_us"], 1300);
    assert_eq!(by_name("details")["p50_us"], 800);

    let ops = ok(&cubesat, "/api/services/productpage/operations").await;
    let ops = ops["operations"].as_array().unwrap();
    let names: Vec<&str> = ops.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["GET /productpage", "GET details", "GET reviews"]);
    assert!(ops.iter().all(|o| o["spans"] == 4 && o["errors"] == 0));
    assert_eq!(ops[0]["p50_us"], 5100);
    assert_eq!(ops[1]["p99_us"], 900);
    let ops = ok(&cubesat, "/api/services/ratings/operations").await;
    assert_eq!(ops["operations"][0]["errors"], 1);

    let deps = ok(&cubesat, "/api/dependencies").await;
    let edges: BTreeSet<(String, String, u64)> = deps["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["parent"].as_str().unwrap().to_owned(),
                e["child"].as_str().unwrap().to_owned(),
                e["calls"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, u64)> = [
        ("productpage", "details"),
        ("productpage", "reviews"),
        ("reviews", "ratings"),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_owned(), c.to_owned(), 4))
    .collect();
    assert_eq!(edges, want);
}

#[tokio::test]
async fn trace_search_honours_every_parameter() {
    let cubesat = dev(&[]);
    let sent = four_bookinfo_traces(&cubesat).await;
    let search = |query: String| {
        let cubesat = &cubesat;
        let sent = &sent;
        async move {
            let answer = ok(cubesat, &format!("/api/traces{query}")).await;
            trace_numbers(&answer, sent)
        }
    };

    // Newest first, every trace whole.
    let all = ok(&cubesat, "/api/traces").await;
    assert_eq!(trace_numbers(&all, &sent), [3, 2, 1, 0]);
    for t in all["traces"].as_array().unwrap() {
        assert_eq!(t["spans"], 7, "{t}");
        assert_eq!(t["root_service"], "productpage");
        assert_eq!(t["root_operation"], "GET /productpage");
        assert_eq!(
            t["services"],
            json!(["details", "productpage", "ratings", "reviews"])
        );
    }
    let t2 = &all["traces"][1];
    assert_eq!(t2["errors"], 1);
    assert_eq!(t2["duration_us"], 5200);
    assert_eq!(t2["start_us"], sent["p2"].start_us);
    assert_eq!(all["traces"][0]["errors"], 0);

    assert_eq!(search("?service=reviews".into()).await, [3, 2, 1, 0]);
    assert_eq!(
        search("?service=reviews&operation=GET%20ratings".into()).await,
        [3, 2, 1, 0]
    );
    assert_eq!(
        search("?service=details&operation=GET%20ratings".into()).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        search("?operation=GET+%2Fdetails".into()).await,
        [3, 2, 1, 0]
    );
    assert_eq!(search("?service=nobody".into()).await, Vec::<u64>::new());
    assert_eq!(search("?tag=reviews.version=v2".into()).await, [3, 1]);
    assert_eq!(search("?tag=http.status_code=503".into()).await, [2]);
    assert_eq!(search("?tag=user=u0".into()).await, [0]);
    // Repeated tags must hold for the same span.
    assert_eq!(
        search("?tag=reviews.version=v1&tag=http.status_code=200".into()).await,
        [2, 0]
    );
    assert_eq!(
        search("?tag=reviews.version=v1&tag=http.status_code=503".into()).await,
        Vec::<u64>::new()
    );
    // Durations are per span, inclusive: roots take 5000 + 100 i µs.
    assert_eq!(search("?min_duration_us=5200".into()).await, [3, 2]);
    assert_eq!(
        search("?service=productpage&max_duration_us=5100&min_duration_us=3001".into()).await,
        [1, 0]
    );
    // Ratings take 1000 + 100 i µs; nothing else lies in 1001..=1299.
    assert_eq!(
        search("?min_duration_us=1100&max_duration_us=1200".into()).await,
        [2, 1]
    );
    assert_eq!(search("?errors=true".into()).await, [2]);
    assert_eq!(search("?errors=false".into()).await, [3, 2, 1, 0]);
    assert_eq!(
        search("?service=ratings&errors=true&tag=http.status_code=503".into()).await,
        [2]
    );
    // The time window applies to span starts.
    let (p1, p2) = (sent["p1"].start_us, sent["p2"].start_us);
    assert_eq!(search(format!("?start_us={p1}&end_us={p2}")).await, [2, 1]);
    assert_eq!(search(format!("?start_us={}", p2 + 1)).await, [3, 2]);
    assert_eq!(search(format!("?end_us={}", p1 - 1)).await, [0]);
    assert_eq!(search("?limit=2".into()).await, [3, 2]);
    assert_eq!(search("?limit=1&service=ratings".into()).await, [3]);

    let matched = ok(&cubesat, "/api/traces?service=productpage&limit=1").await;
    assert_eq!(matched["traces"][0]["matched"], 3);
}

#[tokio::test]
async fn one_trace_with_all_its_spans() {
    let cubesat = dev(&[]);
    let sent = four_bookinfo_traces(&cubesat).await;
    let id = &sent["p2"].trace_id;
    let trace = ok(&cubesat, &format!("/api/traces/{id}")).await;
    assert_eq!(trace["trace_id"], json!(id));
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 7);
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["span_id"].as_str().unwrap(), s))
        .collect();
    let parents = [
        ("p2", None),
        ("pd2", Some("p2")),
        ("d2", Some("pd2")),
        ("pr2", Some("p2")),
        ("r2", Some("pr2")),
        ("rc2", Some("r2")),
        ("t2", Some("rc2")),
    ];
    for (label, parent) in parents {
        let span = by_id[sent[label].span_id.as_str()];
        assert_eq!(span["span_id"].as_str().unwrap().len(), 16);
        assert_eq!(
            span["parent_span_id"],
            parent.map_or(Value::Null, |p| json!(sent[p].span_id)),
            "{label}"
        );
        assert_eq!(span["start_us"], sent[label].start_us, "{label}");
    }
    // Ordered by start.
    let starts: Vec<u64> = spans
        .iter()
        .map(|s| s["start_us"].as_u64().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{starts:?}");

    let root = by_id[sent["p2"].span_id.as_str()];
    assert_eq!(root["service"], "productpage");
    assert_eq!(root["operation"], "GET /productpage");
    assert_eq!(root["kind"], "server");
    assert_eq!(root["duration_us"], 5200);
    assert_eq!(root["error"], false);
    assert_eq!(root["tags"], json!({"http.status_code": 200, "user": "u2"}));
    assert_eq!(by_id[sent["pd2"].span_id.as_str()]["kind"], "client");

    let ratings = by_id[sent["t2"].span_id.as_str()];
    assert_eq!(ratings["service"], "ratings");
    assert_eq!(ratings["error"], true);
    assert_eq!(ratings["status_message"], "ratings down");
    assert_eq!(ratings["tags"]["http.status_code"], 503);
    assert_eq!(
        ratings["logs"],
        json!([{
            "time_us": sent["t2"].start_us + 50,
            "fields": {"event": "upstream reset", "reason": "connection refused", "attempt": 1}
        }])
    );

    // Hex in either case.
    let upper = ok(&cubesat, &format!("/api/traces/{}", id.to_uppercase())).await;
    assert_eq!(upper["spans"].as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn latency_distribution_of_matching_spans() {
    let cubesat = dev(&[]);
    let sent = four_bookinfo_traces(&cubesat).await;

    let all = ok(&cubesat, "/api/latency").await;
    assert_eq!(all["spans"], 28);
    let buckets = all["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 20);
    assert_eq!(
        buckets
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum::<u64>(),
        28
    );
    assert_eq!(buckets[0]["lo_us"], 800);
    assert_eq!(buckets[19]["hi_us"], 5300);

    assert_eq!(all["scale"], "log");
    // Log scale: each bucket wider than the one before.
    let width = |b: &Value| b["hi_us"].as_u64().unwrap() - b["lo_us"].as_u64().unwrap();
    assert!(width(&buckets[19]) > 3 * width(&buckets[0]), "{all}");

    let ratings = ok(
        &cubesat,
        "/api/latency?service=ratings&buckets=4&scale=linear",
    )
    .await;
    assert_eq!(ratings["scale"], "linear");
    assert_eq!(ratings["spans"], 4);
    assert_eq!(ratings["p50_us"], 1100);
    let buckets = ratings["buckets"].as_array().unwrap();
    let shape: Vec<(u64, u64, u64)> = buckets
        .iter()
        .map(|b| {
            (
                b["lo_us"].as_u64().unwrap(),
                b["hi_us"].as_u64().unwrap(),
                b["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (1000, 1075, 1),
            (1076, 1151, 1),
            (1152, 1227, 1),
            (1228, 1300, 1)
        ]
    );
    // Clicking a bucket: the same filters plus its bounds find exactly its spans' traces.
    for (i, (lo, hi, _)) in shape.iter().enumerate() {
        let answer = ok(
            &cubesat,
            &format!("/api/traces?service=ratings&min_duration_us={lo}&max_duration_us={hi}"),
        )
        .await;
        assert_eq!(trace_numbers(&answer, &sent), [i as u64]);
    }
    // Every filter of /api/traces applies.
    let errors = ok(&cubesat, "/api/latency?errors=true").await;
    assert_eq!(errors["spans"], 1);
    assert_eq!(
        errors["buckets"],
        json!([{"lo_us": 1200, "hi_us": 1200, "count": 1}])
    );
    let tagged = ok(&cubesat, "/api/latency?tag=reviews.version=v2&buckets=1").await;
    assert_eq!(
        tagged["buckets"],
        json!([{"lo_us": 2510, "hi_us": 2530, "count": 2}])
    );
    let (p3, p3_end) = (sent["p3"].start_us, sent["p3"].start_us + 1000);
    let window = ok(
        &cubesat,
        &format!("/api/latency?start_us={p3}&end_us={p3_end}&service=productpage"),
    )
    .await;
    assert_eq!(window["spans"], 2); // the root and the details client span
    let none = ok(&cubesat, "/api/latency?service=nobody").await;
    assert_eq!(
        none,
        json!({"spans": 0, "scale": "log", "buckets": [], "p50_us": null, "p95_us": null, "p99_us": null})
    );
}

#[tokio::test]
async fn bad_parameters_get_400_naming_them() {
    let cubesat = dev(&[]);
    let cases: &[(&str, u16, &str)] = &[
        ("/api/traces?limit=0", 400, "`limit`"),
        ("/api/traces?limit=1001", 400, "`limit`"),
        ("/api/traces?limit=many", 400, "`limit`"),
        ("/api/traces?min_duration_us=-1", 400, "`min_duration_us`"),
        ("/api/traces?max_duration_us=1.5", 400, "`max_duration_us`"),
        (
            "/api/traces?min_duration_us=10&max_duration_us=9",
            400,
            "`min_duration_us`",
        ),
        ("/api/traces?start_us=yesterday", 400, "`start_us`"),
        ("/api/traces?end_us=", 400, "`end_us`"),
        ("/api/traces?start_us=10&end_us=9", 400, "`start_us`"),
        ("/api/traces?errors=maybe", 400, "`errors`"),
        ("/api/traces?tag=novalue", 400, "`tag`"),
        ("/api/traces?tag==v", 400, "`tag`"),
        ("/api/traces?service=", 400, "`service`"),
        ("/api/traces?operation=", 400, "`operation`"),
        ("/api/traces?service=a&service=b", 400, "`service`"),
        ("/api/traces?servcie=a", 400, "`servcie`"),
        ("/api/traces?buckets=3", 400, "`buckets`"),
        ("/api/latency?buckets=0", 400, "`buckets`"),
        ("/api/latency?buckets=201", 400, "`buckets`"),
        ("/api/latency?limit=5", 400, "`limit`"),
        ("/api/latency?errors=yes", 400, "`errors`"),
        ("/api/services?service=x", 400, "`service`"),
        ("/api/dependencies?x=1", 400, "`x`"),
        ("/api/status?verbose=1", 400, "`verbose`"),
        ("/api/traces/xyz", 400, "`trace_id`"),
        (
            "/api/traces/0123456789abcdef0123456789abcdeg",
            400,
            "`trace_id`",
        ),
        (
            "/api/traces/0123456789abcdef0123456789abcdef",
            404,
            "0123456789abcdef0123456789abcdef",
        ),
        ("/api/services/nobody/operations", 404, "nobody"),
        ("/api/nothing-here", 404, "/api/nothing-here"),
    ];
    for (path, want_status, names) in cases {
        let (status, body) = get(&cubesat, path).await;
        assert_eq!(status, *want_status, "GET {path}: {body}");
        let message = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("GET {path}: no error message in {body}"));
        assert!(
            message.contains(names),
            "GET {path}: {message:?} should name {names}"
        );
    }
    // The same parameters, well formed, are fine on an empty store.
    let empty = ok(
        &cubesat,
        "/api/traces?service=a&operation=b&tag=k=v&tag=k2=v%3D2&min_duration_us=0&max_duration_us=10\
         &errors=true&start_us=0&end_us=99&limit=1000",
    )
    .await;
    assert_eq!(empty["traces"], json!([]));
    assert_eq!(ok(&cubesat, "/api/services").await, json!({"services": []}));
    assert_eq!(
        ok(&cubesat, "/api/dependencies").await,
        json!({"edges": []})
    );
}

/// Reads server-sent events from `/api/live` until `n` data events have arrived.
async fn read_live(body: &mut hyper::body::Incoming, n: usize, within: Duration) -> Vec<Value> {
    use http_body_util::BodyExt;
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while events.len() < n {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("only {} live events: {text}", events.len()))
            .expect("stream open")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            for line in event.lines() {
                if let Some(data) = line.strip_prefix("data: ") {
                    events.push(serde_json::from_str(data).expect("event JSON"));
                }
            }
        }
    }
    events
}

#[tokio::test]
async fn live_tail_streams_new_spans_and_does_not_hold_up_shutdown() {
    let mut cubesat = dev(&[]);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: http::Uri = format!("http://{}/api/live", cubesat.admin)
        .parse()
        .unwrap();
    let response = client.get(uri).await.expect("GET /api/live");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut body = response.into_body();

    let sent = send_spans("grpc", &cubesat, &Value::Array(bookinfo_trace(2))).await;
    let events = read_live(&mut body, 7, Duration::from_secs(15)).await;
    let by_span: HashMap<&str, &Value> = events
        .iter()
        .map(|e| (e["span_id"].as_str().unwrap(), e))
        .collect();
    for (label, service, operation, kind) in [
        ("p2", "productpage", "GET /productpage", "server"),
        ("rc2", "reviews", "GET ratings", "client"),
        ("t2", "ratings", "GET /ratings", "server"),
    ] {
        let event = by_span[sent[label].span_id.as_str()];
        assert_eq!(event["trace_id"], json!(sent[label].trace_id));
        assert_eq!(event["service"], service);
        assert_eq!(event["operation"], operation);
        assert_eq!(event["kind"], kind);
        assert_eq!(event["start_us"], sent[label].start_us);
    }
    assert_eq!(by_span[sent["t2"].span_id.as_str()]["error"], true);
    assert_eq!(by_span[sent["t2"].span_id.as_str()]["duration_us"], 1200);
    assert_eq!(
        by_span[sent["r2"].span_id.as_str()]["parent_span_id"],
        json!(sent["pr2"].span_id)
    );
    assert_eq!(
        by_span[sent["p2"].span_id.as_str()]["parent_span_id"],
        Value::Null
    );

    // An open live stream must not keep the process from exiting.
    assert_eq!(cubesat.terminate(Duration::from_secs(15)), Some(0));
    drop(body);
}

#[tokio::test]
async fn lightstep_tracer_spans_are_stored_too() {
    let cubesat = dev(&[]);
    let python = tool_python(
        "CUBESAT_LIGHTSTEP_PYTHON",
        "lightstep",
        "the Lightstep tracer (lightstep==4.4.8)",
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/lightstep_send.py"
    );
    let port = cubesat.ingest.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([script, "http", "127.0.0.1", &port, "developer", "none"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "lightstep_send.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sent.len(), 2);
    wait_stored(&cubesat, 2).await;
    let dec = |v: &Value| v.as_str().unwrap().parse::<u64>().unwrap();
    let trace_id = format!("{:032x}", dec(&sent[0]["trace_id"]));

    let traces = ok(&cubesat, "/api/traces?service=inventory").await;
    assert_eq!(traces["traces"][0]["trace_id"], json!(trace_id));
    assert_eq!(traces["traces"][0]["spans"], 2);
    // A 64-bit Lightstep id finds the trace too.
    let trace = ok(&cubesat, &format!("/api/traces/{}", &trace_id[16..])).await;
    let spans = trace["spans"].as_array().unwrap();
    for s in &sent {
        let span = spans
            .iter()
            .find(|x| x["span_id"] == json!(format!("{:016x}", dec(&s["span_id"]))))
            .unwrap_or_else(|| panic!("span {s} not stored: {trace}"));
        assert_eq!(span["operation"], s["name"]);
        assert_eq!(span["service"], "inventory");
        let parent = s["parent_span_id"]
            .as_str()
            .map(|p| json!(format!("{:016x}", p.parse::<u64>().unwrap())));
        assert_eq!(span["parent_span_id"], parent.unwrap_or(Value::Null));
    }
}

#[tokio::test]
async fn with_an_upstream_dev_mode_forwards_and_stores() {
    let (capture, server, cubesat) = ServeToCapture::new()
        .dev()
        .batch_timeout("50ms")
        .no_ready_wait()
        .start()
        .await;
    let upstream = format!("http://{}", server.addr);
    let sent = send_spans("grpc", &cubesat, &Value::Array(bookinfo_trace(0))).await;
    let forwarded = capture.wait_otlp_spans(7, Duration::from_secs(15)).await;
    let forwarded_ids: BTreeSet<String> = forwarded
        .iter()
        .map(|(span, _, _)| span.span_id.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let sent_ids: BTreeSet<String> = sent.values().map(|s| s.span_id.clone()).collect();
    assert_eq!(forwarded_ids, sent_ids);

    wait_stored(&cubesat, 7).await;
    let trace = ok(&cubesat, &format!("/api/traces/{}", sent["p0"].trace_id)).await;
    let stored_ids: BTreeSet<String> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["span_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored_ids, sent_ids);
    let status = ok(&cubesat, "/api/status").await;
    assert_eq!(status["upstream"]["url"], json!(format!("{upstream}/")));
    assert_eq!(status["upstream"]["reachable"], true);
}

#[tokio::test]
async fn status_reports_listeners_counts_and_the_store() {
    let cubesat = dev(&["--store-bytes", "32MiB"]);
    four_bookinfo_traces(&cubesat).await;
    let status = ok(&cubesat, "/api/status").await;
    assert_eq!(status["mode"], "dev");
    assert_eq!(
        status["listeners"]["ingest"],
        json!(cubesat.ingest.to_string())
    );
    assert_eq!(
        status["listeners"]["admin"],
        json!(cubesat.admin.to_string())
    );
    assert_eq!(status["listeners"]["tls"], Value::Null);
    assert_eq!(
        status["ui_url"],
        json!(format!("http://{}/", cubesat.admin))
    );
    assert_eq!(
        (
            &status["spans"]["received"],
            &status["spans"]["stored"],
            &status["spans"]["dropped"],
            &status["spans"]["evicted"]
        ),
        (&json!(28), &json!(28), &json!(0), &json!(0))
    );
    let services = ok(&cubesat, "/api/services").await;
    let errors: u64 = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["errors"].as_u64().unwrap())
        .sum();
    assert_eq!(status["spans"]["errors"], errors);
    assert_eq!(status["services"], 4);
    assert_eq!(
        status["traces"],
        json!({"stored": 4, "evicted": 0, "pinned": 0})
    );
    assert_eq!(status["store"]["limit_bytes"], 32 << 20);
    let used = status["store"]["used_bytes"].as_u64().unwrap();
    assert!(used > 0 && used < 32 << 20, "{status}");
    assert_eq!(status["upstream"], Value::Null);
    assert_eq!(
        cubesat.metric("cubesat_store_spans_stored_total").await,
        28.0
    );
    assert_eq!(cubesat.metric("cubesat_store_bytes").await, used as f64);
    assert_eq!(
        cubesat.metric("cubesat_store_capacity_bytes").await,
        f64::from(32 << 20)
    );
}

#[tokio::test]
async fn the_store_stays_within_store_bytes_evicting_whole_oldest_traces() {
    const TRACES: u64 = 80;
    let cubesat = dev(&["--store-bytes", "64KiB"]);
    let spec: Vec<Value> = (0..TRACES)
        .flat_map(|i| {
            bookinfo_trace(i).into_iter().map(move |mut span| {
                // Labels of each trace stay unique; attributes pad the spans a little.
                span["attributes"]["payload"] = json!("x".repeat(200));
                span["attributes"]["trace.number"] = json!(i);
                span
            })
        })
        .collect();
    let sent = send_spans("grpc", &cubesat, &Value::Array(spec)).await;
    let status = wait_stored(&cubesat, TRACES * 7).await;
    let limit = 64 << 10;
    assert_eq!(status["store"]["limit_bytes"], limit);
    let used = status["store"]["used_bytes"].as_u64().unwrap();
    assert!(used <= limit, "{status}");
    let evicted = status["traces"]["evicted"].as_u64().unwrap();
    let kept = status["traces"]["stored"].as_u64().unwrap();
    assert!(evicted > 0 && kept > 0, "{status}");
    assert_eq!(evicted + kept, TRACES, "{status}");
    assert_eq!(status["spans"]["evicted"], evicted * 7);
    assert!(cubesat.metric("cubesat_store_evicted_traces_total").await >= evicted as f64);
    assert!(cubesat.metric("cubesat_store_bytes").await <= limit as f64);

    // The newest traces are kept whole; the oldest are gone.
    let traces = ok(&cubesat, "/api/traces?limit=1000").await;
    let numbers = trace_numbers(&traces, &sent);
    let want: Vec<u64> = (TRACES - kept..TRACES).rev().collect();
    assert_eq!(numbers, want);
    assert!(
        traces["traces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["spans"] == 7)
    );
    let (status, _) = get(&cubesat, &format!("/api/traces/{}", sent["p0"].trace_id)).await;
    assert_eq!(status, 404);
    // The indexes forgot the evicted traces too.
    let services = ok(&cubesat, "/api/services").await;
    let stored: u64 = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["spans"].as_u64().unwrap())
        .sum();
    assert_eq!(stored, kept * 7);
    let oldest = ok(&cubesat, "/api/traces?tag=trace.number=0").await;
    assert_eq!(oldest["traces"], json!([]));
    // The answer says how far back the store reaches and what it evicted.
    assert_eq!(oldest["store"]["evicted_traces"], evicted);
    assert!(oldest["store"]["oldest_start_us"].as_u64() >= Some(sent["p0"].start_us));
}

#[tokio::test]
async fn bare_cubesat_is_dev_mode_and_prints_the_ui_url() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cubesat"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.starts_with("cubesat dev UI:");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(Duration::from_secs(20), lines)
        .await
        .expect("start lines")
        .unwrap();
    let admin = lines
        .iter()
        .find_map(|l| l.strip_prefix("cubesat listening: admin http "))
        .unwrap_or_else(|| panic!("no admin line: {lines:?}"))
        .to_owned();
    assert!(
        lines.contains(&format!("cubesat listening: ui http {admin}")),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        &format!("cubesat dev UI: http://{admin}/")
    );
    // The URL serves the UI, and the API beside it.
    let addr = admin.parse().unwrap();
    let (status, page) = http_get(addr, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");
    let (status, _) = http_get(addr, "/api/status").await;
    assert_eq!(status, 200);
    let _ = child.kill();
    let _ = child.wait();
}

/// One OTLP/HTTP request body: `n` spans of trace `trace` (8 or 16 bytes) of `service`, span
/// ids from `first_span`, each a child of the first; `link` adds a link from the last span.
fn otlp_body(
    service: &str,
    trace: &[u8],
    first_span: u64,
    n: u64,
    link: Option<(&[u8], u64)>,
) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as V};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::Link};
    use prost::Message;
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(V::StringValue(v.into())),
        }),
        ..Default::default()
    };
    // A 64-bit id travels in OTLP as 16 bytes, zeros on the left.
    let pad = |id: &[u8]| {
        let mut full = vec![0u8; 16 - id.len()];
        full.extend_from_slice(id);
        full
    };
    let start = 1_700_000_000_000_000_000u64;
    let spans = (0..n)
        .map(|i| Span {
            trace_id: pad(trace),
            span_id: (first_span + i).to_be_bytes().to_vec(),
            parent_span_id: if i == 0 {
                Vec::new()
            } else {
                first_span.to_be_bytes().to_vec()
            },
            name: format!("op {}", i % 3),
            kind: 2,
            start_time_unix_nano: start + i * 1000,
            end_time_unix_nano: start + i * 1000 + 500_000,
            attributes: vec![kv("http.method", "GET")],
            links: match link {
                Some((t, s)) if i == n - 1 => vec![Link {
                    trace_id: pad(t),
                    span_id: s.to_be_bytes().to_vec(),
                    ..Default::default()
                }],
                _ => Vec::new(),
            },
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service), kv("host.name", "box-1")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

async fn post_otlp(cubesat: &Cubesat, body: Vec<u8>) {
    let (status, text) = post(
        cubesat.ingest,
        "/v1/traces",
        "application/x-protobuf",
        body,
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

/// A raw HTTP/1.1 request with `host` as the Host header: (status, body).
async fn with_host(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    host: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn a_foreign_host_is_refused_dns_rebinding_protection() {
    let cubesat = dev(&[]);
    let port = cubesat.admin.port();
    for path in ["/api/status", "/", "/ui/app.js", "/api/live"] {
        let (status, body) = with_host(cubesat.admin, "GET", path, "evil.example").await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("DNS-rebinding"), "{body}");
        let (status, _) =
            with_host(cubesat.admin, "GET", path, &format!("attacker.test:{port}")).await;
        assert_eq!(status, 403, "{path}");
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "localhost".to_owned(),
    ] {
        let (status, body) = with_host(cubesat.admin, "GET", "/api/status", &host).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    // The admin endpoints of the satellite itself are not the UI's: probes keep working.
    let (status, _) = with_host(cubesat.admin, "GET", "/_live", "evil.example").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn stalled_live_tail_subscribers_never_slow_ingest() {
    use tokio::io::AsyncWriteExt;
    const STALLED: usize = 2_000;
    // The admin port's own connection limit (64 by default, tests/connections.rs) would close
    // most of these before they subscribe: raise it, so this shows the live-tail cap itself.
    let cubesat = dev(&["--admin-max-connections", "4096"]);
    // Subscribers that connect and never read a byte.
    let mut stalled = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        let mut s = tokio::net::TcpStream::connect(cubesat.admin).await.unwrap();
        s.write_all(b"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        stalled.push(s);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused_want = (STALLED - 64) as f64;
    while cubesat
        .metric("cubesat_live_subscribers_refused_total")
        .await
        < refused_want
    {
        assert!(Instant::now() < deadline, "subscribers not refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        cubesat
            .metric("cubesat_live_subscribers_refused_total")
            .await,
        refused_want,
        "at most 64 live-tail subscribers are served"
    );
    // 10,000 spans in 10 requests, while 64 subscribers are served and stalled.
    let bodies: Vec<Vec<u8>> = (0..10u8)
        .map(|i| otlp_body("load", &[i + 1; 16], 1, 1_000, None))
        .collect();
    let started = Instant::now();
    for body in bodies {
        post_otlp(&cubesat, body).await;
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "ingest of 10,000 spans took {took:?}"
    );
    wait_stored(&cubesat, 10_000).await;
    // Slow subscribers were dropped rather than waited for, and counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cubesat
        .metric("cubesat_live_subscribers_dropped_total")
        .await
        < 1.0
    {
        assert!(Instant::now() < deadline, "no slow subscriber was dropped");
        for body in (0..5u8).map(|i| otlp_body("more", &[i + 100; 16], 1, 1_000, None)) {
            post_otlp(&cubesat, body).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stalled);
}

#[tokio::test]
async fn a_retried_export_is_stored_once() {
    let cubesat = dev(&[]);
    let body = otlp_body("retry", &[7; 16], 1, 4, None);
    post_otlp(&cubesat, body.clone()).await;
    post_otlp(&cubesat, body).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while cubesat
        .metric("cubesat_store_spans_dropped_total{reason=\"duplicate\"}")
        .await
        < 4.0
    {
        assert!(Instant::now() < deadline, "duplicates not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let trace = ok(&cubesat, &format!("/api/traces/{}", "07".repeat(16))).await;
    assert_eq!(trace["spans"].as_array().unwrap().len(), 4);
    let found = ok(&cubesat, "/api/traces?service=retry").await;
    assert_eq!(found["traces"][0]["spans"], 4);
}

#[tokio::test]
async fn pinned_traces_survive_eviction_within_bounds() {
    let cubesat = dev(&["--store-bytes", "256KiB"]);
    post_otlp(&cubesat, otlp_body("keep", &[9; 8], 1, 3, None)).await;
    wait_stored(&cubesat, 3).await;
    let keep = format!("{:0>32}", "09".repeat(8));
    let short = "09".repeat(8);
    let (status, body) = with_host(
        cubesat.admin,
        "PUT",
        &format!("/api/traces/{short}/pin"),
        "localhost",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = with_host(cubesat.admin, "PUT", "/api/traces/zz/pin", "localhost").await;
    assert_eq!(status, 400);
    let (status, _) = with_host(
        cubesat.admin,
        "PUT",
        &format!("/api/traces/{}/pin", "ab".repeat(16)),
        "localhost",
    )
    .await;
    assert_eq!(status, 404);
    // Fill the store many times over.
    for i in 0..60u8 {
        post_otlp(&cubesat, otlp_body("filler", &[i + 20; 16], 1, 40, None)).await;
    }
    let status = wait_stored(&cubesat, 3 + 60 * 40).await;
    assert!(status["traces"]["evicted"].as_u64() > Some(10), "{status}");
    assert_eq!(status["traces"]["pinned"], 1);
    let trace = ok(&cubesat, &format!("/api/traces/{keep}")).await;
    assert_eq!(trace["pinned"], true);
    assert_eq!(trace["spans"].as_array().unwrap().len(), 3);
    // Unpinned, it is evicted like any other.
    let (status, _) = with_host(
        cubesat.admin,
        "DELETE",
        &format!("/api/traces/{keep}/pin"),
        "localhost",
    )
    .await;
    assert_eq!(status, 200);
    for i in 0..60u8 {
        post_otlp(&cubesat, otlp_body("filler", &[i + 100; 16], 1, 40, None)).await;
    }
    wait_stored(&cubesat, 3 + 120 * 40).await;
    let (status, _) = get(&cubesat, &format!("/api/traces/{keep}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_trace_shows_its_links_both_ways_and_its_resource() {
    let cubesat = dev(&[]);
    post_otlp(&cubesat, otlp_body("producer", &[0x31; 8], 0x100, 2, None)).await;
    post_otlp(
        &cubesat,
        otlp_body("consumer", &[0x32; 16], 0x200, 2, Some((&[0x31; 8], 0x101))),
    )
    .await;
    wait_stored(&cubesat, 4).await;
    let consumer = ok(&cubesat, &format!("/api/traces/{}", "32".repeat(16))).await;
    let last = &consumer["spans"][1];
    assert_eq!(
        last["links"],
        json!([{"trace_id": format!("{:0>32}", "31".repeat(8)), "span_id": "0000000000000101",
                "attributes": {}, "stored": true}])
    );
    let pid = last["process_id"].as_str().unwrap();
    assert_eq!(
        consumer["processes"][pid],
        json!({"service": "consumer", "attributes": {"service.name": "consumer", "host.name": "box-1"}})
    );
    let producer = ok(&cubesat, &format!("/api/traces/{}", "31".repeat(8))).await;
    let target = producer["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["span_id"] == "0000000000000101")
        .unwrap();
    assert_eq!(
        target["linked_from"],
        json!([{"trace_id": "32".repeat(16), "span_id": "0000000000000201",
                "service": "consumer", "operation": "op 1"}])
    );
}
