//! Thrift fixtures: the reports the legacy transports' tests send (Thrift JSON as the JS and
//! Ruby tracers write it, a Thrift binary `Report` call), also the fuzz targets' seeds.

use std::time::{SystemTime, UNIX_EPOCH};

use thrift::protocol::{
    TBinaryOutputProtocol, TFieldIdentifier, TListIdentifier, TMessageIdentifier, TMessageType,
    TOutputProtocol, TStructIdentifier, TType,
};

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// A Thrift JSON report as a JS/Ruby tracer writes it, with `null`s and non-string values.
pub fn thrift_json(start: i64, span_guid: &str, name: &str) -> String {
    serde_json::json!({
        "runtime": {
            "guid": "5eed",
            "start_micros": start - 5_000_000,
            "group_name": "billing",
            "attrs": [
                {"Key": "lightstep.tracer_platform", "Value": "ruby"},
                {"Key": "pid", "Value": 4242},
                {"Key": "debug", "Value": null}
            ]
        },
        "oldest_micros": null,
        "youngest_micros": null,
        "span_records": [{
            "span_guid": span_guid,
            "trace_guid": "00000000000000000000000000000abc",
            "runtime_guid": "5eed",
            "span_name": name,
            "join_ids": null,
            "oldest_micros": start,
            "youngest_micros": start + 2_500,
            "error_flag": true,
            "attributes": [
                {"Key": "parent_span_guid", "Value": "beef"},
                {"Key": "retries", "Value": 2},
                {"Key": "ratio", "Value": 0.25},
                {"Key": "cached", "Value": false},
                {"Key": "note", "Value": null}
            ],
            "log_records": [{
                "timestamp_micros": start + 100,
                "runtime_guid": null,
                "stable_name": "charged",
                "payload_json": "{\"amount\":12}",
                "fields": null
            }]
        }],
        "log_records": null,
        "counters": null,
        "internal_logs": null,
        "internal_metrics": {"counts": [{"name": "spans.dropped", "int64_value": 3, "double_value": null}]},
        "timestamp_offset_micros": 12
    })
    .to_string()
}

/// A TBinaryProtocol `Report` call with one span, built with the thrift crate.
pub fn binary_call(seqid: i32, token: &str, span_guid: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut p = TBinaryOutputProtocol::new(&mut out, true);
    let field = |p: &mut TBinaryOutputProtocol<&mut Vec<u8>>, ty, id| {
        p.write_field_begin(&TFieldIdentifier::new("f", ty, id))
            .unwrap()
    };
    p.write_message_begin(&TMessageIdentifier::new(
        "Report",
        TMessageType::Call,
        seqid,
    ))
    .unwrap();
    p.write_struct_begin(&TStructIdentifier::new("args"))
        .unwrap();
    field(&mut p, TType::Struct, 1);
    field(&mut p, TType::String, 1);
    p.write_string(token).unwrap();
    p.write_field_stop().unwrap();
    field(&mut p, TType::Struct, 2);
    field(&mut p, TType::Struct, 1);
    field(&mut p, TType::String, 3);
    p.write_string("binary-client").unwrap();
    p.write_field_stop().unwrap();
    field(&mut p, TType::List, 3);
    p.write_list_begin(&TListIdentifier::new(TType::Struct, 1))
        .unwrap();
    field(&mut p, TType::String, 1);
    p.write_string(span_guid).unwrap();
    field(&mut p, TType::String, 11);
    p.write_string("77").unwrap();
    field(&mut p, TType::String, 3);
    p.write_string("binary op").unwrap();
    field(&mut p, TType::I64, 5);
    p.write_i64(now_micros()).unwrap();
    field(&mut p, TType::List, 8);
    p.write_list_begin(&TListIdentifier::new(TType::Struct, 1))
        .unwrap();
    field(&mut p, TType::String, 1);
    p.write_string("raw").unwrap();
    field(&mut p, TType::String, 2);
    p.write_bytes(value).unwrap();
    p.write_field_stop().unwrap();
    p.write_field_stop().unwrap(); // span
    p.write_field_stop().unwrap(); // request
    p.write_field_stop().unwrap(); // args
    p.write_message_end().unwrap();
    out
}
