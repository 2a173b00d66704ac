//! The developer-mode web UI in a real browser: starts `cubesat` in dev mode, sends
//! Bookinfo-like traces through the OpenTelemetry Python SDK, then drives Debian's headless
//! Chromium with Playwright (tests/browser/check_ui.py, nothing downloaded at run time) and
//! checks what the pages show against what was sent: the service directory, the explorer's
//! `service=reviews` query, its latency histogram and bucket narrowing, the trace waterfall's
//! nesting, a span's tags on click, the service diagram and the live tail. The run leaves
//! screenshots of the four main screens in target/screenshots/, or in docs/ (the README's
//! pictures) when `CUBESAT_UPDATE_SCREENSHOTS=1`: a plain test run never touches tracked files.
//!
//! Tools: CUBESAT_OTEL_PYTHON (a Python with the OTel SDK), CUBESAT_PLAYWRIGHT_PYTHON (a Python
//! with `playwright`), CUBESAT_CHROMIUM (default /usr/bin/chromium). scripts/test installs all
//! three; a missing one fails the test with its variable named.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    BrowserCheck, Cubesat, browser_script, chromium, otel_python, screenshots_dir, tool_python,
};
use serde_json::Value;

const TRACES: usize = 6;
const ERROR_TRACE: usize = 2;
const SPANS_PER_TRACE: usize = 7;

/// One span as the SDK sent it.
#[derive(Debug, Clone)]
struct Sent {
    trace_id: String,
    span_id: String,
    parent: Option<String>,
    service: String,
    name: String,
    error: bool,
    attributes: serde_json::Map<String, Value>,
}

/// Sends `traces` Bookinfo page loads (trace number `error_index` fails in ratings).
fn send_bookinfo(python: &str, ingest: SocketAddr, traces: usize, error_index: usize) -> Vec<Sent> {
    let out = Command::new(python)
        .arg(browser_script("bookinfo_send.py"))
        .arg(ingest.to_string())
        .arg(traces.to_string())
        .arg(error_index.to_string())
        .output()
        .expect("run bookinfo_send.py");
    assert!(
        out.status.success(),
        "bookinfo_send.py failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let spans: Vec<Value> = serde_json::from_slice(&out.stdout).expect("sender JSON");
    spans
        .into_iter()
        .map(|s| Sent {
            trace_id: s["trace_id"].as_str().unwrap().to_owned(),
            span_id: s["span_id"].as_str().unwrap().to_owned(),
            parent: s["parent_span_id"].as_str().map(str::to_owned),
            service: s["service"].as_str().unwrap().to_owned(),
            name: s["name"].as_str().unwrap().to_owned(),
            error: s["error"].as_bool().unwrap(),
            attributes: s["attributes"].as_object().unwrap().clone(),
        })
        .collect()
}

/// Waits until the store holds `want` spans (it is fed asynchronously).
async fn wait_stored(cubesat: &Cubesat, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = cubesat.admin_get("/api/services").await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let stored: u64 = v["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["spans"].as_u64().unwrap())
            .sum();
        if stored >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "store holds {stored} spans, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn depth(span: &Sent, by_id: &HashMap<&str, &Sent>) -> u64 {
    let mut d = 1;
    let mut cur = span;
    while let Some(parent) = cur.parent.as_deref().and_then(|p| by_id.get(p)) {
        d += 1;
        cur = parent;
    }
    d
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ui_shows_bookinfo_traces_in_a_real_browser() {
    let otel = otel_python();
    let playwright = tool_python("CUBESAT_PLAYWRIGHT_PYTHON", "playwright", "playwright");
    let chromium = chromium();

    let cubesat = Cubesat::run("dev", &[]);
    cubesat.wait_ready(200, Duration::from_secs(10)).await;
    let sent = send_bookinfo(&otel, cubesat.ingest, TRACES, ERROR_TRACE);
    assert_eq!(sent.len(), TRACES * SPANS_PER_TRACE);
    wait_stored(&cubesat, sent.len() as u64).await;

    let error_trace = sent
        .iter()
        .find(|s| s.error)
        .expect("one error span")
        .trace_id
        .clone();
    let docs = screenshots_dir();
    let config = serde_json::json!({
        "base": format!("http://{}", cubesat.admin),
        "chromium": chromium,
        "screenshots": docs,
        "trace_id": error_trace,
        "tag_service": "ratings",
    });

    // The browser script reports "LIVE_READY" once the live tail is connected; more spans are
    // sent then, and it waits on stdin for how many to expect.
    let mut browser = BrowserCheck::start(&playwright, "check_ui.py", &config);
    match browser.next_line(Duration::from_secs(180)) {
        Some(line) if line == "LIVE_READY" => {}
        other => browser.failed(&format!("expected LIVE_READY, got {other:?}")),
    }
    let live_sent = send_bookinfo(&otel, cubesat.ingest, 1, usize::MAX);
    browser.answer(&live_sent.len().to_string());
    let result = match browser.next_line(Duration::from_secs(60)) {
        Some(line) => match line.strip_prefix("RESULT ") {
            Some(json) => json.to_owned(),
            None => browser.failed(&format!("expected RESULT, got {line:?}")),
        },
        None => browser.failed("no RESULT line"),
    };
    browser.finish();
    let seen: Value = serde_json::from_str(&result).unwrap();

    assert_eq!(
        strs(&seen["console_errors"]),
        Vec::<String>::new(),
        "browser console errors"
    );

    // The pages' own logic, on hand-made inputs with known answers.
    let units = &seen["units"];
    assert_eq!(
        units["critical_overlap"],
        serde_json::json!([
            ["a", 90, 100],
            ["c", 60, 90],
            ["d", 35, 60],
            ["c", 30, 35],
            ["b", 10, 30],
            ["a", 0, 10]
        ]),
        "critical path through overlapping children"
    );
    assert_eq!(
        units["critical_overrun"],
        serde_json::json!([["b", 20, 50], ["a", 0, 20]])
    );
    assert_eq!(
        units["order_orphan"],
        serde_json::json!([["r", 0], ["k", 1], ["x", 0]])
    );
    assert_eq!(units["order_cycle"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        units["durations"],
        serde_json::json!([
            250,
            12000,
            1_500_000,
            120_000_000,
            7000,
            3000,
            "NaN",
            "NaN",
            null
        ])
    );
    assert_eq!(
        units["kinds"],
        serde_json::json!(["server", "client", "server", "9", "unspecified"])
    );
    assert_eq!(
        units["layers"],
        serde_json::json!({"a": 0, "b": 1, "c": 2, "z": 0}),
        "diagram columns with a call cycle"
    );

    // Service directory: the four services, with their span counts.
    let directory: BTreeMap<String, Value> = seen["directory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["service"].as_str().unwrap().to_owned(),
                r["cells"].clone(),
            )
        })
        .collect();
    assert_eq!(
        directory.keys().map(String::as_str).collect::<Vec<_>>(),
        ["details", "productpage", "ratings", "reviews"]
    );
    for (service, cells) in &directory {
        let count = sent.iter().filter(|s| &s.service == service).count();
        assert_eq!(cells[2], count.to_string(), "{service} span count: {cells}");
    }
    assert_eq!(directory["ratings"][3], "1", "ratings errors");
    let sorted = &seen["sorted_by_spans"];
    assert_eq!(
        strs(&sorted["services"]),
        ["productpage", "reviews", "details", "ratings"],
        "directory sorted by span count, largest first"
    );
    assert_eq!(sorted["aria_sort"], "descending");
    let reviews_ops: BTreeSet<String> = strs(&seen["operations_of_reviews"]).into_iter().collect();
    let sent_ops: BTreeSet<String> = sent
        .iter()
        .filter(|s| s.service == "reviews")
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(reviews_ops, sent_ops);

    // Explorer, service=reviews: every trace (each has reviews spans), histogram of its spans.
    let explorer = &seen["explorer"];
    assert_eq!(explorer["hash"], "#/explore?service=reviews");
    let shown: BTreeSet<String> = strs(&explorer["trace_ids"]).into_iter().collect();
    let all_traces: BTreeSet<String> = sent.iter().map(|s| s.trace_id.clone()).collect();
    assert_eq!(shown, all_traces, "traces listed for service=reviews");
    let reviews_spans = sent.iter().filter(|s| s.service == "reviews").count() as u64;
    assert_eq!(explorer["histogram_spans"], reviews_spans);
    assert_eq!(
        explorer["histogram_text"].as_str().unwrap(),
        format!("{reviews_spans} matching spans")
    );
    // The p50/p95/p99 labels lie inside the chart and cover no other label, in a wide window
    // and in a narrow one (where the p99 line has no room on its right).
    for boxes in [
        &explorer["percentile_labels"],
        &explorer["percentile_labels_narrow"],
    ] {
        assert_eq!(boxes["labels"].as_array().map(Vec::len), Some(3), "{boxes}");
        for label in boxes["labels"].as_array().unwrap() {
            assert_eq!(label["inside"], true, "label outside the chart: {boxes}");
            assert_eq!(
                label["covers"],
                serde_json::json!([]),
                "labels overlap: {boxes}"
            );
        }
    }
    let bars = explorer["bars"].as_array().unwrap();
    let in_bars: u64 = bars.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(
        in_bars, reviews_spans,
        "bar counts add up to the span count"
    );

    // Narrowing: the slowest bucket's range, and exactly the traces with a reviews span in it
    // (durations as the API reports them for each trace).
    let narrowed = &seen["narrowed"];
    let sel = &narrowed["selected_bars"].as_array().unwrap()[0];
    let (lo, hi) = (sel["lo"].as_u64().unwrap(), sel["hi"].as_u64().unwrap());
    let mut expect_narrowed = BTreeSet::new();
    for trace_id in &all_traces {
        let (status, body) = cubesat.admin_get(&format!("/api/traces/{trace_id}")).await;
        assert_eq!(status, 200, "{body}");
        let trace: Value = serde_json::from_str(&body).unwrap();
        if trace["spans"].as_array().unwrap().iter().any(|s| {
            let d = s["duration_us"].as_u64().unwrap();
            s["service"] == "reviews" && (lo..=hi).contains(&d)
        }) {
            expect_narrowed.insert(trace_id.clone());
        }
    }
    let narrowed_ids: BTreeSet<String> = strs(&narrowed["trace_ids"]).into_iter().collect();
    assert!(!expect_narrowed.is_empty());
    assert_eq!(
        narrowed_ids, expect_narrowed,
        "traces after clicking [{lo}, {hi}]"
    );

    // Trace view: every span of the error trace, nested as sent, parents before children.
    let trace = &seen["trace"];
    assert_eq!(trace["hash"], format!("#/trace/{error_trace}"));
    assert_eq!(trace["trace_id_shown"], error_trace.as_str());
    let in_trace: Vec<&Sent> = sent.iter().filter(|s| s.trace_id == error_trace).collect();
    let by_id: HashMap<&str, &Sent> = in_trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    let rows = trace["rows"].as_array().unwrap();
    assert_eq!(rows.len(), SPANS_PER_TRACE, "{rows:#?}");
    let mut position: HashMap<&str, usize> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let id = row["span_id"].as_str().unwrap();
        let span = by_id
            .get(id)
            .unwrap_or_else(|| panic!("row {id} was not sent in this trace"));
        assert_eq!(row["parent"].as_str(), span.parent.as_deref(), "{row}");
        assert_eq!(row["level"], depth(span, &by_id), "nesting of {row}");
        assert_eq!(row["service"], span.service.as_str());
        assert_eq!(row["operation"], span.name.as_str());
        assert_eq!(row["error"], span.error, "{row}");
        assert_eq!(row["visible"], true);
        assert!(
            row["bar_width"].as_f64() > Some(1.0),
            "no waterfall bar: {row}"
        );
        if let Some(parent) = &span.parent {
            let p = position[parent.as_str()];
            assert!(
                rows[p + 1..i]
                    .iter()
                    .all(|r| r["level"].as_u64() > rows[p]["level"].as_u64()),
                "{id} is not inside its parent's subtree"
            );
        }
        position.insert(id, i);
    }
    assert_eq!(rows[0]["level"], 1);
    assert_eq!(rows[0]["on_path"], true, "the root is on the critical path");
    assert_eq!(
        seen["collapsed_visible_rows"], 1,
        "Left on the root collapses the tree"
    );

    // A span's tags and logs, on click: the failing ratings server span.
    let ratings = in_trace
        .iter()
        .find(|s| s.service == "ratings")
        .expect("ratings span");
    let detail = &seen["span_detail"];
    assert_eq!(detail["span_id"], ratings.span_id.as_str());
    assert!(
        detail["heading"].as_str().unwrap().contains("GET /ratings"),
        "{detail}"
    );
    let tags = detail["tags"].as_object().unwrap();
    for (key, value) in &ratings.attributes {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(
            tags.get(key),
            Some(&Value::String(text)),
            "tag {key}: {tags:?}"
        );
    }
    assert_eq!(tags["http.status_code"], "503");
    let logs = strs(&detail["logs"]).join("\n");
    assert!(
        logs.contains("upstream reset") && logs.contains("connection refused"),
        "{logs}"
    );

    // Find in trace: the failing span's status code picks out that span alone.
    let find = &seen["find"];
    assert_eq!(find["count"], "1 of 7 spans match");
    assert_eq!(strs(&find["matches"]), [ratings.span_id.as_str()]);
    assert_eq!(strs(&find["selected"]), [ratings.span_id.as_str()]);

    // Service diagram: the three call edges, once per trace.
    let diagram = &seen["diagram"];
    let nodes: BTreeSet<String> = strs(&diagram["nodes"]).into_iter().collect();
    assert_eq!(nodes, directory.keys().cloned().collect());
    let edges: BTreeSet<(String, String, u64)> = diagram["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_str().unwrap().to_owned(),
                e[1].as_str().unwrap().to_owned(),
                e[2].as_u64().unwrap(),
            )
        })
        .collect();
    let n = TRACES as u64;
    let want: BTreeSet<(String, String, u64)> = [
        ("productpage", "details", n),
        ("productpage", "reviews", n),
        ("reviews", "ratings", n),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c))
    .collect();
    assert_eq!(edges, want);

    // Live tail: the spans sent while it was open, in an ARIA log.
    assert_eq!(seen["live_log_role"], "log");
    let live_trace = &live_sent[0].trace_id;
    let live_rows = seen["live"].as_array().unwrap();
    let of_live_trace = live_rows
        .iter()
        .filter(|r| r["trace_id"] == live_trace.as_str())
        .count();
    assert_eq!(of_live_trace, SPANS_PER_TRACE, "{live_rows:#?}");

    // Every screen: controls have accessible names, images alt text, landmarks present.
    let a11y = seen["a11y"].as_object().unwrap();
    assert_eq!(a11y.len(), 6, "{a11y:?}");
    for (screen, problems) in a11y {
        assert_eq!(strs(problems), Vec::<String>::new(), "{screen} screen");
    }

    for shot in ["services", "explorer", "trace", "diagram"] {
        let path = docs.join(format!("devmode-{shot}.png"));
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(
            len > 10_000,
            "screenshot {} is missing or empty",
            path.display()
        );
    }
}
