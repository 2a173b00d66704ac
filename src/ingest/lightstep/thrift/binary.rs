//! TBinaryProtocol for the one call Lightstep's Thrift service has:
//! `ReportResponse Report(1: Auth auth, 2: ReportRequest request)`.
//!
//! Reads the CALL message into the shared [`ThriftReport`] model and writes the REPLY the
//! Python tracer parses (same method name and seqid). Framing comes from the `thrift` crate,
//! with its size limits set to the body length, so no length field can make it allocate past
//! what arrived; unknown fields and fields of an unexpected type are skipped, as generated
//! Thrift code does, and strings are read as bytes (non-UTF-8 is repaired, not refused).

use thrift::TConfiguration;
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TFieldIdentifier, TInputProtocol, TListIdentifier,
    TMessageIdentifier, TMessageType, TOutputProtocol, TStructIdentifier, TType,
};

use super::{
    KeyValue, LogRecord, Metrics, MetricsSample, NamedCounter, Runtime, SpanRecord, TagValue,
    ThriftError, ThriftReport, TraceJoinId,
};

/// The method name of the call.
const REPORT: &str = "Report";

/// A decoded `Report` call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The method name, echoed in the reply.
    pub name: String,
    /// The sequence id, echoed in the reply.
    pub seqid: i32,
    /// `auth.access_token`, if the call carried one.
    pub access_token: Option<String>,
    /// The report.
    pub report: ThriftReport,
}

type Reader<'a> = TBinaryInputProtocol<&'a [u8]>;

impl From<thrift::Error> for ThriftError {
    fn from(error: thrift::Error) -> Self {
        ThriftError::Binary(error.to_string())
    }
}

/// Reads a TBinaryProtocol (strict or not) `Report` CALL message.
pub fn read_call(body: &[u8]) -> Result<Call, ThriftError> {
    // Nothing in a message can be longer than the message.
    let limit = Some(body.len());
    let config = TConfiguration::builder()
        .max_message_size(limit)
        .max_frame_size(limit)
        .max_string_size(limit)
        .max_container_size(limit)
        .max_recursion_depth(Some(64))
        .build()?;
    let mut p = TBinaryInputProtocol::with_config(body, false, config);
    let message = p.read_message_begin()?;
    if !matches!(
        message.message_type,
        TMessageType::Call | TMessageType::OneWay
    ) {
        return Err(ThriftError::Binary(format!(
            "expected a CALL message, got {:?}",
            message.message_type
        )));
    }
    if message.name != REPORT {
        return Err(ThriftError::Binary(format!(
            "unknown method {:?}: the only method is {REPORT:?}",
            message.name
        )));
    }
    let mut access_token = None;
    let mut report = None;
    each_field(&mut p, |p, id, ty| {
        match (id, ty) {
            (1, TType::Struct) => each_field(p, |p, id, ty| {
                Ok(match (id, ty) {
                    (1, TType::String) => {
                        access_token = Some(string(p)?);
                        true
                    }
                    _ => false,
                })
            })?,
            (2, TType::Struct) => report = Some(read_report(p)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    p.read_message_end()?;
    let report = report
        .ok_or_else(|| ThriftError::Binary("the call has no request argument (field 2)".into()))?;
    Ok(Call {
        name: message.name,
        seqid: message.sequence_number,
        access_token,
        report,
    })
}

/// Writes the REPLY: `Report_result { 0: success = ReportResponse { commands = [], timing } }`.
pub fn write_reply(
    name: &str,
    seqid: i32,
    receive_micros: i64,
    transmit_micros: i64,
) -> Result<Vec<u8>, ThriftError> {
    let mut out = Vec::with_capacity(96);
    let mut p = TBinaryOutputProtocol::new(&mut out, true);
    p.write_message_begin(&TMessageIdentifier::new(name, TMessageType::Reply, seqid))?;
    p.write_struct_begin(&TStructIdentifier::new("Report_result"))?;
    p.write_field_begin(&TFieldIdentifier::new("success", TType::Struct, 0))?;
    p.write_struct_begin(&TStructIdentifier::new("ReportResponse"))?;
    p.write_field_begin(&TFieldIdentifier::new("commands", TType::List, 1))?;
    p.write_list_begin(&TListIdentifier::new(TType::Struct, 0))?;
    p.write_list_end()?;
    p.write_field_end()?;
    p.write_field_begin(&TFieldIdentifier::new("timing", TType::Struct, 2))?;
    p.write_struct_begin(&TStructIdentifier::new("Timing"))?;
    p.write_field_begin(&TFieldIdentifier::new("receive_micros", TType::I64, 1))?;
    p.write_i64(receive_micros)?;
    p.write_field_end()?;
    p.write_field_begin(&TFieldIdentifier::new("transmit_micros", TType::I64, 2))?;
    p.write_i64(transmit_micros)?;
    p.write_field_end()?;
    p.write_field_stop()?;
    p.write_struct_end()?;
    p.write_field_end()?;
    p.write_field_stop()?;
    p.write_struct_end()?;
    p.write_field_end()?;
    p.write_field_stop()?;
    p.write_struct_end()?;
    p.write_message_end()?;
    p.flush()?;
    Ok(out)
}

/// Reads a struct, handing each field to `field`, which returns false to have it skipped.
fn each_field<'a>(
    p: &mut Reader<'a>,
    mut field: impl FnMut(&mut Reader<'a>, i16, TType) -> Result<bool, ThriftError>,
) -> Result<(), ThriftError> {
    p.read_struct_begin()?;
    loop {
        let ident = p.read_field_begin()?;
        if ident.field_type == TType::Stop {
            break;
        }
        if !field(p, ident.id.unwrap_or(-1), ident.field_type)? {
            p.skip(ident.field_type)?;
        }
        p.read_field_end()?;
    }
    p.read_struct_end()?;
    Ok(())
}

/// Reads a list of `element`s; a list of another element type is skipped as empty.
fn list<'a, T>(
    p: &mut Reader<'a>,
    element: TType,
    mut read: impl FnMut(&mut Reader<'a>) -> Result<T, ThriftError>,
) -> Result<Vec<T>, ThriftError> {
    let ident = p.read_list_begin()?;
    let mut out = Vec::new();
    for _ in 0..ident.size {
        if ident.element_type == element {
            out.push(read(p)?);
        } else {
            p.skip(ident.element_type)?;
        }
    }
    p.read_list_end()?;
    Ok(out)
}

fn string(p: &mut Reader<'_>) -> Result<String, ThriftError> {
    Ok(String::from_utf8_lossy(&p.read_bytes()?).into_owned())
}

fn read_report(p: &mut Reader<'_>) -> Result<ThriftReport, ThriftError> {
    let mut r = ThriftReport::default();
    each_field(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::Struct) => r.runtime = Some(read_runtime(p)?),
            (3, TType::List) => r.span_records = Some(list(p, TType::Struct, read_span)?),
            (4, TType::List) => r.log_records = Some(list(p, TType::Struct, read_log)?),
            (5, TType::I64) => r.timestamp_offset_micros = Some(p.read_i64()?),
            (9, TType::List) => r.counters = Some(list(p, TType::Struct, read_counter)?),
            (11, TType::Struct) => r.internal_metrics = Some(read_metrics(p)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(r)
}

fn read_runtime(p: &mut Reader<'_>) -> Result<Runtime, ThriftError> {
    let mut r = Runtime::default();
    each_field(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::String) => r.guid = Some(string(p)?),
            (3, TType::String) => r.group_name = Some(string(p)?),
            (4, TType::List) => r.attrs = Some(list(p, TType::Struct, read_key_value)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(r)
}

fn read_key_value(p: &mut Reader<'_>) -> Result<KeyValue, ThriftError> {
    let mut kv = KeyValue::default();
    each_field(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::String) => kv.key = Some(string(p)?),
            (2, TType::String) => kv.value = Some(TagValue::Str(string(p)?)),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(kv)
}

fn read_join_id(p: &mut Reader<'_>) -> Result<TraceJoinId, ThriftError> {
    let mut join = TraceJoinId::default();
    each_field(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::String) => join.trace_key = Some(string(p)?),
            (2, TType::String) => join.value = Some(string(p)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(join)
}

fn read_span(p: &mut Reader<'_>) -> Result<SpanRecord, ThriftError> {
    let mut s = SpanRecord::default();
    each_field(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::String) => s.span_guid = Some(string(p)?),
            (3, TType::String) => s.span_name = Some(string(p)?),
            (4, TType::List) => s.join_ids = Some(list(p, TType::Struct, read_join_id)?),
            (5, TType::I64) => s.oldest_micros = Some(p.read_i64()?),
            (6, TType::I64) => s.youngest_micros = Some(p.read_i64()?),
            (8, TType::List) => s.attributes = Some(list(p, TType::Struct, read_key_value)?),
            (9, TType::Bool) => s.error_flag = Some(p.read_bool()?),
            (10, TType::List) => s.log_records = Some(list(p, TType::Struct, read_log)?),
            (11, TType::String) => s.trace_guid = Some(string(p)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(s)
}

fn read_log(p: &mut Reader<'_>) -> Result<LogRecord, ThriftError> {
    let mut l = LogRecord::default();
    each_field(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::I64) => l.timestamp_micros = Some(p.read_i64()?),
            (3, TType::String) => l.span_guid = Some(string(p)?),
            (4, TType::String) => l.stable_name = Some(string(p)?),
            (5, TType::String) => l.message = Some(string(p)?),
            (6, TType::String) => l.level = Some(string(p)?),
            (8, TType::String) => l.filename = Some(string(p)?),
            (9, TType::I64) => l.line_number = Some(p.read_i64()?),
            (11, TType::String) => l.payload_json = Some(TagValue::Str(string(p)?)),
            (12, TType::Bool) => l.error_flag = Some(p.read_bool()?),
            (13, TType::List) => l.fields = Some(list(p, TType::Struct, read_key_value)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(l)
}

fn read_counter(p: &mut Reader<'_>) -> Result<NamedCounter, ThriftError> {
    let mut c = NamedCounter::default();
    each_field(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::String) => c.name = Some(string(p)?),
            (2, TType::I64) => c.value = Some(p.read_i64()?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(c)
}

fn read_metrics(p: &mut Reader<'_>) -> Result<Metrics, ThriftError> {
    let mut m = Metrics::default();
    each_field(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::List) => m.counts = Some(list(p, TType::Struct, read_sample)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(m)
}

fn read_sample(p: &mut Reader<'_>) -> Result<MetricsSample, ThriftError> {
    let mut s = MetricsSample::default();
    each_field(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::String) => s.name = Some(string(p)?),
            (2, TType::I64) => s.int64_value = Some(p.read_i64()?),
            (3, TType::Double) => s.double_value = Some(p.read_double()?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a `Report` call the way the Python tracer's generated code does.
    fn python_like_call(seqid: i32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut p = TBinaryOutputProtocol::new(&mut out, true);
        let field = |p: &mut TBinaryOutputProtocol<&mut Vec<u8>>, name: &str, ty, id| {
            p.write_field_begin(&TFieldIdentifier::new(name, ty, id))
                .unwrap()
        };
        let kv = |p: &mut TBinaryOutputProtocol<&mut Vec<u8>>, k: &str, v: &[u8]| {
            p.write_struct_begin(&TStructIdentifier::new("KeyValue"))
                .unwrap();
            field(p, "Key", TType::String, 1);
            p.write_string(k).unwrap();
            field(p, "Value", TType::String, 2);
            p.write_bytes(v).unwrap();
            p.write_field_stop().unwrap();
        };
        p.write_message_begin(&TMessageIdentifier::new(
            "Report",
            TMessageType::Call,
            seqid,
        ))
        .unwrap();
        p.write_struct_begin(&TStructIdentifier::new("Report_args"))
            .unwrap();
        field(&mut p, "auth", TType::Struct, 1);
        field(&mut p, "access_token", TType::String, 1);
        p.write_string("tok").unwrap();
        p.write_field_stop().unwrap();
        field(&mut p, "request", TType::Struct, 2);
        // An unknown field first: it must be skipped.
        field(&mut p, "future", TType::Double, 42);
        p.write_double(1.5).unwrap();
        field(&mut p, "runtime", TType::Struct, 1);
        field(&mut p, "guid", TType::String, 1);
        p.write_string("a1").unwrap();
        field(&mut p, "group_name", TType::String, 3);
        p.write_string("inventory").unwrap();
        field(&mut p, "attrs", TType::List, 4);
        p.write_list_begin(&TListIdentifier::new(TType::Struct, 1))
            .unwrap();
        kv(&mut p, "lightstep.tracer_platform", b"python");
        p.write_field_stop().unwrap();
        field(&mut p, "span_records", TType::List, 3);
        p.write_list_begin(&TListIdentifier::new(TType::Struct, 1))
            .unwrap();
        field(&mut p, "span_guid", TType::String, 1);
        p.write_string("b").unwrap();
        field(&mut p, "span_name", TType::String, 3);
        p.write_string("UPDATE").unwrap();
        field(&mut p, "oldest_micros", TType::I64, 5);
        p.write_i64(1_000_000).unwrap();
        field(&mut p, "youngest_micros", TType::I64, 6);
        p.write_i64(1_000_250).unwrap();
        field(&mut p, "attributes", TType::List, 8);
        p.write_list_begin(&TListIdentifier::new(TType::Struct, 2))
            .unwrap();
        kv(&mut p, "parent_span_guid", b"a");
        kv(&mut p, "bytes", b"caf\xff");
        field(&mut p, "log_records", TType::List, 10);
        p.write_list_begin(&TListIdentifier::new(TType::Struct, 1))
            .unwrap();
        field(&mut p, "timestamp_micros", TType::I64, 1);
        p.write_i64(1_000_100).unwrap();
        field(&mut p, "fields", TType::List, 13);
        p.write_list_begin(&TListIdentifier::new(TType::Struct, 1))
            .unwrap();
        kv(&mut p, "event", b"cache miss");
        p.write_field_stop().unwrap();
        field(&mut p, "trace_guid", TType::String, 11);
        p.write_string("ff").unwrap();
        p.write_field_stop().unwrap(); // span
        field(&mut p, "timestamp_offset_micros", TType::I64, 5);
        p.write_i64(9).unwrap();
        p.write_field_stop().unwrap(); // request
        p.write_field_stop().unwrap(); // args
        p.write_message_end().unwrap();
        out
    }

    proptest::proptest! {
        /// Garbage and corrupted calls are errors or reports, never panics.
        #[test]
        fn corrupted_calls_never_panic(
            at in 0usize..4096,
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 1..8),
            garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            let _ = read_call(&garbage);
            let mut call = python_like_call(1);
            let at = at % call.len();
            for (i, b) in bytes.iter().enumerate() {
                if let Some(slot) = call.get_mut(at + i) {
                    *slot = *b;
                }
            }
            if let Ok(call) = read_call(&call) {
                let _ = super::super::to_report_request(call.report, call.access_token);
            }
        }
    }

    #[test]
    fn reads_a_report_call() {
        let call = read_call(&python_like_call(7)).unwrap();
        assert_eq!((call.name.as_str(), call.seqid), ("Report", 7));
        assert_eq!(call.access_token.as_deref(), Some("tok"));
        let runtime = call.report.runtime.as_ref().unwrap();
        assert_eq!(runtime.group_name.as_deref(), Some("inventory"));
        let span = &call.report.span_records.as_ref().unwrap()[0];
        assert_eq!(span.trace_guid.as_deref(), Some("ff"));
        assert_eq!(span.youngest_micros, Some(1_000_250));
        assert_eq!(
            span.attributes.as_ref().unwrap()[1].value,
            Some(TagValue::Str("caf\u{fffd}".into()))
        );
        assert_eq!(call.report.timestamp_offset_micros, Some(9));

        let req = super::super::to_report_request(call.report, call.access_token).unwrap();
        let span = &req.spans[0];
        assert_eq!(span.span_context.as_ref().unwrap().span_id, 0xb);
        assert_eq!(
            span.references[0].span_context.as_ref().unwrap().span_id,
            0xa
        );
        assert_eq!(span.duration_micros, 250);
        assert_eq!(span.logs[0].fields[0].key, "event");
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let call = python_like_call(1);
        for cut in 0..call.len() {
            assert!(read_call(&call[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn huge_lengths_are_refused_without_allocating() {
        let mut call = python_like_call(1);
        // The access token's length field: 4 bytes before "tok".
        let at = call.windows(3).position(|w| w == b"tok").unwrap() - 4;
        call[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(read_call(&call).is_err());
        call[at..at + 4].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(read_call(&call).is_err());
    }

    #[test]
    fn other_methods_and_garbage_are_named() {
        let err = read_call(b"hello world").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid Thrift binary"),
            "{err}"
        );
        let reply = write_reply("Report", 3, 1, 2).unwrap();
        let err = read_call(&reply).unwrap_err();
        assert!(err.to_string().contains("expected a CALL"), "{err}");
    }

    #[test]
    fn reply_echoes_name_and_seqid() {
        let reply = write_reply("Report", 77, 10, 20).unwrap();
        let mut p = TBinaryInputProtocol::new(&reply[..], true);
        let message = p.read_message_begin().unwrap();
        assert_eq!(message.name, "Report");
        assert_eq!(message.message_type, TMessageType::Reply);
        assert_eq!(message.sequence_number, 77);
        // success (0) -> ReportResponse: commands (1), timing (2) -> receive, transmit.
        p.read_struct_begin().unwrap();
        assert_eq!(p.read_field_begin().unwrap().id, Some(0));
        p.read_struct_begin().unwrap();
        assert_eq!(p.read_field_begin().unwrap().id, Some(1));
        assert_eq!(p.read_list_begin().unwrap().size, 0);
        assert_eq!(p.read_field_begin().unwrap().id, Some(2));
        p.read_struct_begin().unwrap();
        p.read_field_begin().unwrap();
        assert_eq!(p.read_i64().unwrap(), 10);
        p.read_field_begin().unwrap();
        assert_eq!(p.read_i64().unwrap(), 20);
    }
}
