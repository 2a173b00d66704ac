//! Thrift JSON and binary bodies through the model and the conversion.

use super::convert::{COMPONENT_NAME, PARENT_SPAN_GUID, parse_guid, timestamp};
use super::*;

fn sample_json() -> &'static str {
    r#"{"runtime":{"guid":"00ab","start_micros":1,"group_name":"checkout","attrs":[
           {"Key":"lightstep.tracer_platform","Value":"node"},{"Key":"pid","Value":42}]},
        "oldest_micros":null,"youngest_micros":null,"timestamp_offset_micros":-7,
        "span_records":[
          {"span_guid":"2","trace_guid":"0000000000000000ffffffffffffffff","runtime_guid":null,
           "span_name":"GET /cart","join_ids":null,"oldest_micros":1764064800000000.5,
           "youngest_micros":"1764064800001500","error_flag":true,
           "attributes":[{"Key":"parent_span_guid","Value":"1"},{"Key":"n","Value":3},
             {"Key":"ratio","Value":0.5},{"Key":"ok","Value":false},{"Key":"nil","Value":null},
             {"Key":"obj","Value":{"a":[1]}}],
           "log_records":[{"timestamp_micros":1764064800000100,"stable_name":"miss",
             "payload_json":"{\"k\":1}","fields":[{"Key":"key","Value":"v"}]}]}],
        "log_records":[{"span_guid":"2","timestamp_micros":5,"message":"late"}],
        "internal_logs":null,
        "internal_metrics":{"counts":[{"name":"spans.dropped","int64_value":null,"double_value":2}]}}"#
}

fn tag<'a>(tags: &'a [pb::KeyValue], key: &str) -> Option<&'a pb::key_value::Value> {
    tags.iter()
        .find(|t| t.key == key)
        .and_then(|t| t.value.as_ref())
}

#[test]
fn json_converts_field_by_field() {
    use pb::key_value::Value;
    let report = parse_json(sample_json().as_bytes()).unwrap();
    let req = to_report_request(report, Some("tok".into())).unwrap();
    assert_eq!(req.auth.unwrap().access_token, "tok");
    assert_eq!(req.timestamp_offset_micros, -7);
    let reporter = req.reporter.unwrap();
    assert_eq!(reporter.reporter_id, 0xab);
    assert_eq!(
        tag(&reporter.tags, COMPONENT_NAME),
        Some(&Value::StringValue("checkout".into()))
    );
    assert_eq!(tag(&reporter.tags, "pid"), Some(&Value::IntValue(42)));

    let span = &req.spans[0];
    let ctx = span.span_context.as_ref().unwrap();
    assert_eq!((ctx.trace_id, ctx.span_id), (u64::MAX, 2));
    assert_eq!(span.operation_name, "GET /cart");
    assert_eq!(span.references.len(), 1);
    let parent = span.references[0].span_context.as_ref().unwrap();
    assert_eq!((parent.trace_id, parent.span_id), (u64::MAX, 1));
    assert!(tag(&span.tags, PARENT_SPAN_GUID).is_none());
    let start = span.start_timestamp.unwrap();
    assert_eq!((start.seconds, start.nanos), (1_764_064_800, 0));
    assert_eq!(span.duration_micros, 1500);
    assert_eq!(tag(&span.tags, "n"), Some(&Value::IntValue(3)));
    assert_eq!(tag(&span.tags, "ratio"), Some(&Value::DoubleValue(0.5)));
    assert_eq!(tag(&span.tags, "ok"), Some(&Value::BoolValue(false)));
    assert_eq!(tag(&span.tags, "nil"), Some(&Value::StringValue("".into())));
    assert_eq!(
        tag(&span.tags, "obj"),
        Some(&Value::JsonValue(r#"{"a":[1]}"#.into()))
    );
    assert_eq!(tag(&span.tags, "error"), Some(&Value::BoolValue(true)));

    assert_eq!(
        span.logs.len(),
        2,
        "own log and the top-level one naming it"
    );
    let log = &span.logs[0];
    assert_eq!(log.timestamp.unwrap().nanos, 100_000);
    assert_eq!(
        tag(&log.fields, "event"),
        Some(&Value::StringValue("miss".into()))
    );
    assert_eq!(
        tag(&log.fields, "payload"),
        Some(&Value::JsonValue(r#"{"k":1}"#.into()))
    );
    assert_eq!(
        tag(&log.fields, "key"),
        Some(&Value::StringValue("v".into()))
    );
    assert_eq!(
        tag(&span.logs[1].fields, "message"),
        Some(&Value::StringValue("late".into()))
    );

    let counts = req.internal_metrics.unwrap().counts;
    assert_eq!(counts[0].name, "spans.dropped");
    assert_eq!(
        counts[0].value,
        Some(pb::metrics_sample::Value::DoubleValue(2.0))
    );
}

#[test]
fn converted_report_is_scanned_by_the_wire_layer() {
    let report = parse_json(sample_json().as_bytes()).unwrap();
    let bytes = Bytes::from(to_report_request(report, None).unwrap().encode_to_vec());
    let scan = crate::wire::report::scan_report(&bytes, 1 << 20).unwrap();
    assert_eq!(scan.spans.count, 1);
    assert_eq!(scan.client_dropped_spans, 2);
    assert_eq!(scan.timestamp_offset_micros, -7);
}

#[test]
fn bad_guids_and_json_are_named() {
    let err = to_report_request(
        parse_json(br#"{"span_records":[{"span_guid":"xyz","trace_guid":"1"}]}"#).unwrap(),
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"span_records[0].span_guid is not a hex guid: "xyz""#
    );
    let err = to_report_request(
        parse_json(br#"{"span_records":[{"span_guid":"1","trace_guid":null}]}"#).unwrap(),
        None,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "span_records[0].trace_guid is missing");
    let err = parse_json(br#"{"span_records":{"oops":1}}"#).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid Thrift ReportRequest JSON")
    );
    let err = parse_json(br#"{"span_records":[{"oldest_micros":"soon"}]}"#).unwrap_err();
    assert!(
        err.to_string().contains("\"soon\" is not a 64-bit integer"),
        "{err}"
    );
    assert!(parse_json(b"{").is_err());
}

#[test]
fn guids_take_the_low_64_bits() {
    assert_eq!(parse_guid("1", "x").unwrap(), 1);
    assert_eq!(parse_guid("FFFFFFFFFFFFFFFF", "x").unwrap(), u64::MAX);
    assert_eq!(
        parse_guid("0123456789abcdef0000000000000002", "x").unwrap(),
        2
    );
    assert!(parse_guid("+1", "x").is_err());
    assert!(parse_guid("", "x").is_err());
}

#[test]
fn empty_report_is_fine() {
    let req = to_report_request(parse_json(b"{}").unwrap(), None).unwrap();
    assert!(req.spans.is_empty());
    assert!(req.auth.is_none());
}

#[test]
fn negative_micros_stay_ordered() {
    let t = timestamp(-1);
    assert_eq!((t.seconds, t.nanos), (-1, 999_999_000));
}
