use opentelemetry_proto::tonic::trace::v1::Span;

use super::*;

const MS: u64 = 1_000_000;

fn span(id: u8, parent: u8, start_ms: i64, dur_ms: u64) -> Span {
    let start = (1_000_000 + start_ms) as u64 * MS;
    Span {
        trace_id: vec![7; 16],
        span_id: vec![0, 0, 0, 0, 0, 0, 0, id],
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            vec![0, 0, 0, 0, 0, 0, 0, parent]
        },
        name: format!("op{id}"),
        start_time_unix_nano: start,
        end_time_unix_nano: start + dur_ms * MS,
        ..Default::default()
    }
}

fn shifts(store: &Store) -> (Vec<u64>, HashMap<usize, i64>) {
    let trace = store.trace(&[7; 16]).unwrap();
    let mut spans: Vec<&StoredSpan> = trace.spans.iter().collect();
    spans.sort_by_key(|s| s.span_id);
    (spans.iter().map(|s| s.span_id).collect(), skew(&spans))
}

#[test]
fn a_child_of_another_service_that_starts_before_its_parent_is_centred_in_it() {
    let mut store = Store::new(1 << 20);
    store.insert("front", span(1, 0, 0, 200)).unwrap();
    // The api's clock is 30 ms behind: it seems to start before its caller.
    store.insert("api", span(2, 1, -30, 150)).unwrap();
    // Its own child shares its clock: it moves with it, no shift of its own.
    store.insert("api", span(3, 2, -25, 100)).unwrap();
    // A same-service child that ends late (async work) is never moved.
    store.insert("front", span(4, 1, 150, 100)).unwrap();
    let (ids, shifts) = shifts(&store);
    assert_eq!(ids, [1, 2, 3, 4]);
    // Centred: 25 ms from the parent's start, so 55 ms later than sent.
    assert_eq!(shifts.get(&1), Some(&55_000));
    assert_eq!(shifts.get(&2), Some(&55_000));
    assert_eq!(shifts.get(&0), None);
    assert_eq!(shifts.get(&3), None);
}

#[test]
fn a_child_longer_than_its_parent_moves_to_the_parents_start() {
    let mut store = Store::new(1 << 20);
    store.insert("front", span(1, 0, 0, 50)).unwrap();
    store.insert("api", span(2, 1, -20, 80)).unwrap();
    let (_, shifts) = shifts(&store);
    assert_eq!(shifts.get(&1), Some(&20_000));
}

#[test]
fn the_trace_json_carries_skew_processes_and_pinning() {
    let mut store = Store::new(1 << 20);
    store.insert("front", span(1, 0, 0, 200)).unwrap();
    store.insert("api", span(2, 1, -30, 150)).unwrap();
    let json = trace_json(&store, store.trace(&[7; 16]).unwrap());
    assert_eq!(json["skewed_spans"], 1);
    assert_eq!(json["pinned"], false);
    let spans = json["spans"].as_array().unwrap();
    // In start order (raw starts): the skewed child first.
    assert_eq!(spans[0]["operation"], "op2");
    assert_eq!(spans[0]["skew_us"], 55_000);
    assert!(spans[1].get("skew_us").is_none());
    let p = spans[0]["process_id"].as_str().unwrap();
    assert_eq!(json["processes"][p]["service"], "api");
    assert_eq!(spans[0]["links"], serde_json::json!([]));
}
