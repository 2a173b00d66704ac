use opentelemetry_proto::tonic::trace::v1::Status;
use proptest::prelude::*;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::span::Link;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

use super::index::{Postings, attribute_hash, post, tag_hash, unpost};
use super::span::text;
use super::*;

const MS: u64 = 1_000_000;

fn attr(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A span of trace `trace`, id `id` (parent `parent`, 0 = root), starting at `start_ms`.
fn span(trace: u8, id: u8, parent: u8, name: &str, start_ms: u64, dur_us: u64) -> Span {
    let mut trace_id = vec![0; 16];
    trace_id[0] = 0xab;
    trace_id[15] = trace;
    Span {
        trace_id,
        span_id: vec![0, 0, 0, 0, 0, 0, trace, id],
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            vec![0, 0, 0, 0, 0, 0, trace, parent]
        },
        name: name.to_owned(),
        kind: 2,
        start_time_unix_nano: start_ms * MS,
        end_time_unix_nano: start_ms * MS + dur_us * 1000,
        ..Default::default()
    }
}

fn bookinfo(store: &mut Store, trace: u8, start_ms: u64, ratings_fail: bool) {
    let mut root = span(trace, 1, 0, "GET /productpage", start_ms, 5_000);
    root.attributes
        .push(attr("http.status_code", Value::IntValue(200)));
    store.insert("productpage", root).unwrap();
    store
        .insert(
            "details",
            span(trace, 2, 1, "GET /details", start_ms + 1, 800),
        )
        .unwrap();
    store
        .insert(
            "reviews",
            span(trace, 3, 1, "GET /reviews", start_ms + 2, 2_500),
        )
        .unwrap();
    let mut ratings = span(trace, 4, 3, "GET /ratings", start_ms + 3, 1_000);
    if ratings_fail {
        ratings.status = Some(Status {
            code: StatusCode::Error as i32,
            message: "boom".into(),
        });
        ratings
            .attributes
            .push(attr("http.status_code", Value::IntValue(500)));
    }
    store.insert("ratings", ratings).unwrap();
}

fn ids(traces: &[TraceSummary]) -> Vec<u8> {
    traces
        .iter()
        .map(|t| u8::from_str_radix(&t.trace_id[30..], 16).unwrap())
        .collect()
}

#[test]
fn services_operations_and_errors() {
    let mut store = Store::new(1 << 20);
    for t in 1..=4 {
        bookinfo(&mut store, t, u64::from(t) * 100, t == 2);
    }
    let services = store.services();
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["details", "productpage", "ratings", "reviews"]);
    let ratings = &services[2];
    assert_eq!((ratings.spans, ratings.errors), (4, 1));
    assert_eq!(ratings.error_rate, 0.25);
    assert_eq!(ratings.p50_us, Some(1_000));
    assert_eq!(services[1].operations, 1);
    let ops = store.operations("reviews").unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!((ops[0].name.as_str(), ops[0].spans), ("GET /reviews", 4));
    assert!(store.operations("nope").is_none());
}

#[test]
fn trace_search_filters_and_orders_newest_first() {
    let mut store = Store::new(1 << 20);
    for t in 1..=5 {
        bookinfo(&mut store, t, u64::from(t) * 100, t == 2 || t == 4);
    }
    let all = store.traces(&SpanQuery::default(), 50);
    assert_eq!(ids(&all), [5, 4, 3, 2, 1]);
    assert_eq!(all[0].spans, 4);
    assert_eq!(all[0].root_service, "productpage");
    assert_eq!(all[0].root_operation, "GET /productpage");
    assert_eq!(
        all[0].services,
        ["details", "productpage", "ratings", "reviews"]
    );
    assert_eq!(all[0].duration_us, 5_000);
    assert_eq!(ids(&store.traces(&SpanQuery::default(), 2)), [5, 4]);

    let q = |f: &dyn Fn(&mut SpanQuery)| {
        let mut q = SpanQuery::default();
        f(&mut q);
        ids(&store.traces(&q, 50))
    };
    assert_eq!(q(&|q| q.errors_only = true), [4, 2]);
    assert_eq!(
        q(&|q| q.tags = vec![("http.status_code".into(), "500".into())]),
        [4, 2]
    );
    assert_eq!(
        q(&|q| q.tags = vec![("http.status_code".into(), "200".into())]),
        [5, 4, 3, 2, 1]
    );
    // Filters hold for the same span: productpage never has a 500.
    assert_eq!(
        q(&|q| {
            q.service = Some("productpage".into());
            q.tags = vec![("http.status_code".into(), "500".into())];
        }),
        Vec::<u8>::new()
    );
    assert_eq!(
        q(&|q| {
            q.service = Some("reviews".into());
            q.operation = Some("GET /reviews".into());
        }),
        [5, 4, 3, 2, 1]
    );
    assert_eq!(
        q(&|q| q.operation = Some("GET /reviews".into())),
        [5, 4, 3, 2, 1]
    );
    assert_eq!(
        q(&|q| {
            q.service = Some("reviews".into());
            q.operation = Some("GET /ratings".into());
        }),
        Vec::<u8>::new()
    );
    assert_eq!(q(&|q| q.service = Some("nope".into())), Vec::<u8>::new());
    assert_eq!(q(&|q| q.min_duration_us = Some(5_000)), [5, 4, 3, 2, 1]);
    assert_eq!(
        q(&|q| {
            q.min_duration_us = Some(801);
            q.max_duration_us = Some(999);
        }),
        Vec::<u8>::new()
    );
    // Time window on span starts (ms -> µs): traces 2 and 3 start at 200 and 300 ms.
    assert_eq!(
        q(&|q| {
            q.start_us = Some(200_000);
            q.end_us = Some(300_000);
        }),
        [3, 2]
    );
    let matched = store.traces(
        &SpanQuery {
            service: Some("details".into()),
            ..Default::default()
        },
        1,
    );
    assert_eq!(matched[0].matched, 1);
}

#[test]
fn latency_buckets_are_contiguous_inclusive_and_narrow_exactly() {
    let mut store = Store::new(1 << 20);
    for t in 1..=10 {
        bookinfo(&mut store, t, u64::from(t) * 100, false);
    }
    let latency = store.latency(&SpanQuery::default(), 7, Scale::Linear);
    assert_eq!(latency.spans, 40);
    assert!(latency.buckets.len() <= 7);
    assert_eq!(latency.buckets.iter().map(|b| b.count).sum::<u64>(), 40);
    assert_eq!(latency.buckets[0].lo_us, 800);
    assert_eq!(latency.buckets.last().unwrap().hi_us, 5_000);
    for pair in latency.buckets.windows(2) {
        assert_eq!(pair[1].lo_us, pair[0].hi_us + 1);
    }
    for bucket in &latency.buckets {
        let narrowed = SpanQuery {
            min_duration_us: Some(bucket.lo_us),
            max_duration_us: Some(bucket.hi_us),
            ..Default::default()
        };
        assert_eq!(store.matching_spans(&narrowed).count() as u64, bucket.count);
    }
    // One distinct duration: a single one-microsecond bucket.
    let one = store.latency(
        &SpanQuery {
            service: Some("details".into()),
            ..Default::default()
        },
        20,
        Scale::Log,
    );
    assert_eq!(
        one.buckets,
        [Bucket {
            lo_us: 800,
            hi_us: 800,
            count: 10
        }]
    );
    let none = store.latency(
        &SpanQuery {
            service: Some("nope".into()),
            ..Default::default()
        },
        20,
        Scale::Log,
    );
    assert_eq!((none.spans, none.buckets.len(), none.p50_us), (0, 0, None));
}

#[test]
fn dependencies_follow_parent_links_across_services() {
    let mut store = Store::new(1 << 20);
    for t in 1..=3 {
        bookinfo(&mut store, t, u64::from(t) * 100, false);
    }
    // A same-service child is not an edge.
    store
        .insert("productpage", span(1, 9, 1, "render", 101, 10))
        .unwrap();
    let edges: Vec<(String, String, u64)> = store
        .dependencies()
        .into_iter()
        .map(|e| (e.parent, e.child, e.calls))
        .collect();
    assert_eq!(
        edges,
        [
            ("productpage".into(), "details".into(), 3),
            ("productpage".into(), "reviews".into(), 3),
            ("reviews".into(), "ratings".into(), 3),
        ]
    );
}

#[test]
fn evicts_whole_oldest_traces_within_the_budget() {
    let mut store = Store::new(64 << 10);
    let mut total_evicted = 0;
    for t in 0..=255u8 {
        for id in 1..=4 {
            let evicted = store
                .insert("svc", span(t, id, id - 1, "op", u64::from(t), 10))
                .unwrap();
            total_evicted += evicted.spans;
            assert!(store.stats().used_bytes <= 64 << 10);
        }
    }
    let stats = store.stats();
    assert!(stats.evicted_traces > 0);
    assert_eq!(stats.evicted_spans, total_evicted);
    assert_eq!(stats.spans + stats.evicted_spans, 256 * 4);
    let kept = store.traces(&SpanQuery::default(), MAX);
    // The newest traces survive, each whole (the last one may still be growing).
    assert_eq!(ids(&kept)[0], 255);
    let mut expected: Vec<u8> = (256 - kept.len()..256).rev().map(|t| t as u8).collect();
    expected.truncate(kept.len());
    assert_eq!(ids(&kept), expected);
    assert!(kept.iter().all(|t| t.spans == 4));
    assert_eq!(store.services()[0].spans, stats.spans);
}

const MAX: usize = usize::MAX;

#[test]
fn a_span_returning_to_an_evicted_trace_starts_it_again() {
    let mut store = Store::new(64 << 10);
    store.insert("svc", span(1, 1, 0, "first", 0, 10)).unwrap();
    for t in 2..=255u8 {
        store.insert("svc", span(t, 1, 0, "op", 1, 10)).unwrap();
    }
    assert!(
        store
            .trace(&trace_id_of(&span(1, 1, 0, "", 0, 0).trace_id).unwrap())
            .is_none()
    );
    store.insert("svc", span(1, 2, 1, "late", 2, 10)).unwrap();
    let id = trace_id_of(&span(1, 1, 0, "", 0, 0).trace_id).unwrap();
    assert_eq!(store.trace(&id).unwrap().spans.len(), 1);
    assert!(store.stats().used_bytes <= 64 << 10);
}

#[test]
fn refuses_bad_ids_and_oversized_spans() {
    let mut store = Store::new(4 << 10);
    let mut bad = span(1, 1, 0, "x", 0, 1);
    bad.trace_id = vec![1, 2, 3];
    assert_eq!(store.insert("s", bad), Err(Rejected::InvalidTraceId));
    let mut zero = span(1, 1, 0, "x", 0, 1);
    zero.trace_id = vec![0; 16];
    assert_eq!(store.insert("s", zero), Err(Rejected::InvalidTraceId));
    let mut huge = span(1, 1, 0, "x", 0, 1);
    huge.attributes
        .push(attr("body", Value::StringValue("x".repeat(8 << 10))));
    assert_eq!(store.insert("s", huge), Err(Rejected::TooLarge));
    assert_eq!(store.stats().spans, 0);
    // A 64-bit id is padded on the left.
    let mut short = span(1, 1, 0, "x", 0, 1);
    short.trace_id = vec![0, 0, 0, 0, 0, 0, 0, 7];
    store.insert("s", short).unwrap();
    assert!(
        store
            .trace(&parse_trace_id("0000000000000007").unwrap())
            .is_some()
    );
}

#[test]
fn attribute_hashes_are_the_hashes_queries_look_up() {
    for value in [
        Value::StringValue("v".into()),
        Value::BoolValue(true),
        Value::BoolValue(false),
        Value::IntValue(-42),
        Value::DoubleValue(0.25),
        Value::StringValueStrindex(3),
    ] {
        let kv = attr("k", value);
        let text = text(kv.value.as_ref().unwrap()).into_owned();
        assert_eq!(attribute_hash(&kv), Some(tag_hash("k", &text)), "{text}");
        assert_ne!(attribute_hash(&kv), Some(tag_hash("kk", &text)));
    }
    let long = attr("k", Value::StringValue("x".repeat(MAX_INDEXED_VALUE + 1)));
    assert_eq!(attribute_hash(&long), None);
    assert_eq!(attribute_hash(&attr("k", Value::BytesValue(vec![1]))), None);
}

#[test]
fn postings_stay_sorted_and_drop_the_oldest_from_the_front() {
    let mut list = Postings::new();
    for seq in [1, 3, 3, 2, 5, 4, 5] {
        post(&mut list, seq);
    }
    assert_eq!(list, [1, 2, 3, 4, 5]);
    unpost(&mut list, 1);
    unpost(&mut list, 4);
    unpost(&mut list, 9);
    assert_eq!(list, [2, 3, 5]);
}

#[test]
fn trace_ids_parse_from_hex() {
    let mut want = [0u8; 16];
    want[15] = 0xab;
    assert_eq!(
        parse_trace_id("000000000000000000000000000000ab"),
        Some(want)
    );
    assert_eq!(parse_trace_id("00000000000000AB"), Some(want));
    for bad in [
        "",
        "ab",
        "zz000000000000000000000000000000",
        "é0000000000000000000000000000ab",
    ] {
        assert_eq!(parse_trace_id(bad), None, "{bad:?}");
    }
}

fn arb_span() -> impl Strategy<Value = (u8, Span)> {
    (
        0u8..4,
        1u8..40,
        0u8..6,
        1u8..6,
        prop::sample::select(vec!["a", "b", "c"]),
        0u64..50,
        0u64..5_000,
        prop::option::of(prop::sample::select(vec!["200", "404", "500"])),
        any::<bool>(),
    )
        .prop_map(|(service, trace, id, parent, op, start, dur, code, err)| {
            let mut s = span(
                trace,
                id + 1,
                if parent > id { 0 } else { parent },
                op,
                start,
                dur,
            );
            if let Some(code) = code {
                s.attributes
                    .push(attr("http.status_code", Value::StringValue(code.into())));
            }
            if err {
                s.attributes.push(attr("error", Value::BoolValue(true)));
            }
            (service, s)
        })
}

fn arb_query() -> impl Strategy<Value = SpanQuery> {
    (
        prop::option::of(prop::sample::select(vec!["s0", "s1", "s2", "s3", "sx"])),
        prop::option::of(prop::sample::select(vec!["a", "b", "x"])),
        prop::option::of(prop::sample::select(vec!["200", "404", "500"])),
        prop::option::of(0u64..5_000),
        any::<bool>(),
        prop::option::of(0u64..50_000),
    )
        .prop_map(
            |(service, operation, code, min, errors_only, start)| SpanQuery {
                service: service.map(str::to_owned),
                operation: operation.map(str::to_owned),
                tags: code
                    .map(|c| vec![("http.status_code".to_owned(), c.to_owned())])
                    .unwrap_or_default(),
                min_duration_us: min,
                max_duration_us: None,
                errors_only,
                start_us: start,
                end_us: None,
            },
        )
}

proptest! {
    /// Index-driven search finds exactly what a scan of every stored span finds, and the
    /// budget holds after every insert.
    #[test]
    fn indexes_agree_with_a_full_scan(
        spans in prop::collection::vec(arb_span(), 1..300),
        queries in prop::collection::vec(arb_query(), 1..10),
        limit_kib in 16usize..256,
    ) {
        let mut store = Store::new(limit_kib << 10);
        for (service, span) in spans {
            let _ = store.insert(&format!("s{service}"), span);
            prop_assert!(store.stats().used_bytes <= limit_kib << 10);
        }
        for query in queries {
            let mut scanned: Vec<&Trace> = store
                .traces
                .values()
                .filter(|t| t.spans.iter().any(|s| query.matches(s)))
                .collect();
            scanned.sort_by_key(|t| std::cmp::Reverse((t.start_us, t.seq)));
            let scanned: Vec<String> = scanned.into_iter().map(Trace::id_hex).collect();
            // Newest start first, and a limit takes the newest (the search stops early).
            for limit in [MAX, 3, 1] {
                let found: Vec<String> =
                    store.traces(&query, limit).into_iter().map(|t| t.trace_id).collect();
                let want = &scanned[..scanned.len().min(limit)];
                prop_assert_eq!(&found[..], want, "{:?} limit {}", query, limit);
            }
        }
        let counted: u64 = store.services().iter().map(|s| s.spans).sum();
        prop_assert_eq!(counted, store.stats().spans);
    }
}

#[test]
fn a_span_sent_again_is_a_duplicate_and_stored_once() {
    let mut store = Store::new(1 << 20);
    store.insert("a", span(1, 1, 0, "op", 0, 10)).unwrap();
    store.insert("a", span(1, 2, 1, "op", 0, 10)).unwrap();
    assert_eq!(
        store.insert("a", span(1, 2, 1, "op", 0, 10)),
        Err(Rejected::Duplicate)
    );
    let used = store.stats().used_bytes;
    // Large traces find duplicates through their span-id map.
    for id in 3..=200u8 {
        store.insert("a", span(1, id, 1, "op", 0, 10)).unwrap();
    }
    assert_eq!(
        store.insert("a", span(1, 150, 1, "op", 0, 10)),
        Err(Rejected::Duplicate)
    );
    let id = trace_id_of(&span(1, 1, 0, "", 0, 0).trace_id).unwrap();
    assert_eq!(store.trace(&id).unwrap().spans.len(), 200);
    assert!(store.stats().used_bytes > used);
    let mut bad = span(1, 1, 0, "x", 0, 1);
    bad.span_id = vec![1, 2, 3];
    assert_eq!(store.insert("s", bad), Err(Rejected::InvalidSpanId));
}

#[test]
fn a_pinned_trace_survives_eviction_and_pins_are_bounded() {
    let mut store = Store::new(256 << 10);
    store.insert("svc", span(1, 1, 0, "keep", 0, 10)).unwrap();
    let keep = trace_id_of(&span(1, 1, 0, "", 0, 0).trace_id).unwrap();
    assert_eq!(store.pin(&keep), Ok(()));
    assert_eq!(store.pin(&keep), Ok(()), "pinning twice is fine");
    assert_eq!(store.pin(&[0xee; 16]), Err(PinError::NotFound));
    for t in 2..=255u8 {
        for id in 1..=4 {
            store
                .insert("svc", span(t, id, id - 1, "op", u64::from(t), 10))
                .unwrap();
        }
    }
    let stats = store.stats();
    assert!(stats.evicted_traces > 30, "{stats:?}");
    assert_eq!(stats.pinned_traces, 1);
    assert!(store.trace(&keep).unwrap().pinned);
    // How far back: the oldest trace eviction would take next, not the pinned one.
    assert!(stats.oldest_start_us > Some(0));
    // At most MAX_PINNED.
    let kept: Vec<TraceId> = store.traces.values().map(|t| t.id).collect();
    for id in kept.iter().filter(|id| **id != keep).take(MAX_PINNED - 1) {
        store.pin(id).unwrap();
    }
    let extra = kept
        .iter()
        .rfind(|id| !store.trace(id).unwrap().pinned)
        .unwrap();
    assert_eq!(store.pin(extra), Err(PinError::TooMany));
    assert!(store.unpin(&keep));
    assert!(!store.unpin(&[0xee; 16]));
    assert_eq!(store.stats().pinned_traces, MAX_PINNED as u64 - 1);
    // Pinned traces together hold at most a quarter of the budget.
    let mut tiny = Store::new(64 << 10);
    for id in 1..=150u8 {
        tiny.insert("svc", span(1, id, 1, "op", 0, 10)).unwrap();
    }
    assert_eq!(tiny.pin(&keep), Err(PinError::TooLarge));
}

#[test]
fn links_are_indexed_both_ways() {
    let mut store = Store::new(1 << 20);
    store
        .insert("producer", span(1, 1, 0, "send", 0, 10))
        .unwrap();
    let mut consumer = span(2, 1, 0, "receive", 1, 10);
    consumer.links.push(Link {
        trace_id: span(1, 1, 0, "", 0, 0).trace_id,
        span_id: span(1, 1, 0, "", 0, 0).span_id,
        ..Default::default()
    });
    store.insert("consumer", consumer).unwrap();
    let target = trace_id_of(&span(1, 1, 0, "", 0, 0).trace_id).unwrap();
    let from = store.linked_from(&target);
    assert_eq!(from.len(), 1);
    let (trace, linking, span_id) = from[0];
    assert_eq!(trace.id_hex(), hex(&span(2, 1, 0, "", 0, 0).trace_id));
    assert_eq!(&*linking.operation, "receive");
    assert_eq!(
        span_id,
        span_id_of(&span(1, 1, 0, "", 0, 0).span_id).unwrap()
    );
    assert!(store.linked_from(&[0xee; 16]).is_empty());
}

#[test]
fn resources_are_interned_and_given_back_with_their_last_span() {
    let mut store = Store::new(64 << 10);
    let resource = || {
        vec![
            attr("service.name", Value::StringValue("api".into())),
            attr("k8s.pod.name", Value::StringValue("api-1".into())),
        ]
    };
    let a = store.process(resource());
    let b = store.process(resource());
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(a.service, "api");
    assert_eq!(store.process(Vec::new()).service, UNKNOWN_SERVICE);
    store.insert_in(&a, span(1, 1, 0, "op", 0, 10)).unwrap();
    drop((a, b));
    let id = trace_id_of(&span(1, 1, 0, "", 0, 0).trace_id).unwrap();
    let stored = &store.trace(&id).unwrap().spans[0];
    assert_eq!(stored.process.attributes.len(), 2);
    // The whole span decodes again.
    let decoded = stored.decode(&id);
    assert_eq!(decoded.name, "op");
    assert_eq!(decoded.span_id, span(1, 1, 0, "", 0, 0).span_id);
    for t in 2..=255u8 {
        store.insert("other", span(t, 1, 0, "op", 1, 10)).unwrap();
    }
    assert!(store.trace(&id).is_none());
    assert!(
        !store.processes.values().any(|p| p.service == "api"),
        "the resource went with its last span"
    );
}

#[test]
fn a_tag_filter_reads_encoded_attributes_of_every_type() {
    let mut store = Store::new(1 << 20);
    let mut s = span(1, 1, 0, "op", 0, 10);
    s.attributes = vec![
        attr("s", Value::StringValue("text, with comma".into())),
        attr("b", Value::BoolValue(true)),
        attr("i", Value::IntValue(-7)),
        attr("d", Value::DoubleValue(0.5)),
        attr(
            "long",
            Value::StringValue("y".repeat(MAX_INDEXED_VALUE + 5)),
        ),
    ];
    store.insert("svc", s).unwrap();
    let hit = |k: &str, v: &str| {
        !store
            .traces(
                &SpanQuery {
                    tags: vec![(k.into(), v.into())],
                    ..Default::default()
                },
                10,
            )
            .is_empty()
    };
    assert!(hit("s", "text, with comma"));
    assert!(hit("b", "true"));
    assert!(hit("i", "-7"));
    assert!(hit("d", "0.5"));
    assert!(hit("long", &"y".repeat(MAX_INDEXED_VALUE + 5)));
    assert!(!hit("i", "7"));
    assert!(!hit("s", "text"));
}

#[test]
fn log_buckets_are_contiguous_and_widen() {
    let mut store = Store::new(4 << 20);
    for t in 1..=200u8 {
        let dur = 100 * u64::from(t) * u64::from(t);
        store.insert("svc", span(t, 1, 0, "op", 0, dur)).unwrap();
    }
    let latency = store.latency(&SpanQuery::default(), 20, Scale::Log);
    assert_eq!(latency.scale, Scale::Log);
    assert_eq!(latency.buckets.iter().map(|b| b.count).sum::<u64>(), 200);
    assert_eq!(latency.buckets[0].lo_us, 100);
    assert_eq!(latency.buckets.last().unwrap().hi_us, 4_000_000);
    for pair in latency.buckets.windows(2) {
        assert_eq!(pair[1].lo_us, pair[0].hi_us + 1);
    }
    let width = |b: &Bucket| b.hi_us - b.lo_us + 1;
    assert!(width(latency.buckets.last().unwrap()) > 50 * width(&latency.buckets[0]));
}

proptest! {
    /// Percentiles by selection are the nearest-rank percentiles of the sorted values.
    #[test]
    fn percentiles_by_selection_match_a_sort(mut values in prop::collection::vec(0u64..1_000, 0..400)) {
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let want = [50, 95, 99].map(|p| percentile(&sorted, p));
        prop_assert_eq!(super::query::percentiles(&mut values), want);
    }

    /// The in-place comparison of encoded values reads them as `text` does.
    #[test]
    fn encoded_values_compare_as_their_text(
        value in prop_oneof![
            any::<i64>().prop_map(Value::IntValue),
            any::<bool>().prop_map(Value::BoolValue),
            "[a-z0-9 ,=-]{0,12}".prop_map(Value::StringValue),
            any::<f64>().prop_map(Value::DoubleValue),
            prop::collection::vec(any::<u8>(), 0..4).prop_map(Value::BytesValue),
        ],
        other in prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            "[a-z0-9 ,=-]{0,12}",
            Just("+1".to_owned()),
            Just("01".to_owned()),
        ],
    ) {
        let mut store = Store::new(1 << 20);
        let mut s = span(1, 1, 0, "op", 0, 10);
        s.attributes = vec![attr("k", value.clone())];
        store.insert("svc", s).unwrap();
        let stored = &store.traces.values().next().unwrap().spans[0];
        let own = text(&AnyValue { value: Some(value) }).into_owned();
        prop_assert!(stored.has_attribute("k", &own));
        prop_assert_eq!(stored.has_attribute("k", &other), own == other);
        prop_assert!(!stored.has_attribute("j", &own));
    }
}

/// Nearest-rank percentile of sorted `values`, the plain way (what selection must match).
fn percentile(sorted: &[u64], p: u64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() as u64 * p).div_ceil(100).max(1) as usize;
    sorted.get(rank - 1).copied()
}
