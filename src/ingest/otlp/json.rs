//! OTLP/JSON -> protobuf for `/v1/traces`: the JSON is read straight into the prost types
//! (opentelemetry-proto's serde support: ids as hex, 64-bit integers as strings or numbers),
//! with no `serde_json::Value` tree in between, then encoded once.
//!
//! The one thing the generated types do not read is an enum given by name: the OTLP/JSON
//! spec allows `"kind": "SPAN_KIND_SERVER"` and `"code": "STATUS_CODE_ERROR"`, but the
//! fields are plain `i32`. [`EnumNames`] wraps the deserializer and reads every `i32` as a
//! number or one of those names; everything else passes through untouched. (An `i32` does not
//! know its field, so a kind given a status code's name reads as that code's number.)

use std::fmt;
use std::mem::size_of;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::ingest::http::BodyError;
use crate::ingest::json::JsonModel;

/// What the prost model of an OTLP/JSON export takes: per object at most a `Span` (the
/// largest message) twice over (a vector grown by doubling holds up to twice what it
/// needs), per other token an owned string's or id's allocation. Measured with a counting
/// allocator on 0.3-2.4 MB bodies of empty spans, resources, events, links, attributes,
/// array values, ids and names: the estimate is 1.15x-11x the peak allocated by the decode.
pub const EXPORT_JSON: JsonModel = JsonModel {
    what: "OTLP/JSON export",
    object_cost: 2 * size_of::<Span>(),
    token_cost: 64,
};

/// OTLP JSON -> protobuf. Ids are hex, 64-bit integers strings or numbers, enums numbers
/// or their names (`SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`); unknown keys are ignored.
pub fn json_to_protobuf(json: &[u8]) -> Result<Bytes, BodyError> {
    let invalid = |e: serde_json::Error| BodyError::Invalid(format!("invalid OTLP JSON: {e}"));
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let request: ExportTraceServiceRequest =
        serde::Deserialize::deserialize(EnumNames(&mut deserializer)).map_err(invalid)?;
    deserializer.end().map_err(invalid)?;
    Ok(Bytes::from(request.encode_to_vec()))
}

/// The number of an OTLP trace enum value's name.
fn enum_number(name: &str) -> Option<i32> {
    SpanKind::from_str_name(name)
        .map(|kind| kind as i32)
        .or_else(|| StatusCode::from_str_name(name).map(|code| code as i32))
}

/// A deserializer (or visitor, seed, sequence or map) whose `i32`s may be enum names, all the
/// way down.
struct EnumNames<T>(T);

/// Forwards `deserialize_*` methods, wrapping the visitor.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*))*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method($($arg,)* EnumNames(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for EnumNames<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any() deserialize_bool() deserialize_i8() deserialize_i16()
        deserialize_i64() deserialize_i128() deserialize_u8() deserialize_u16()
        deserialize_u32() deserialize_u64() deserialize_u128() deserialize_f32()
        deserialize_f64() deserialize_char() deserialize_str() deserialize_string()
        deserialize_bytes() deserialize_byte_buf() deserialize_option() deserialize_unit()
        deserialize_seq() deserialize_map() deserialize_identifier() deserialize_ignored_any()
        deserialize_unit_struct(name: &'static str)
        deserialize_newtype_struct(name: &'static str)
        deserialize_tuple(len: usize)
        deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_struct(name: &'static str, fields: &'static [&'static str])
        deserialize_enum(name: &'static str, variants: &'static [&'static str])
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(EnumNumber(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// Forwards `visit_*` methods that carry a plain value.
macro_rules! forward_visit {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.0.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for EnumNames<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }

    forward_visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_borrowed_str(&'de str) visit_string(String) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_some(EnumNames(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_newtype_struct(EnumNames(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(EnumNames(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(EnumNames(map))
    }

    // No OTLP type is a serde enum holding an `i32`: variants pass through unwrapped.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.0.visit_enum(data)
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for EnumNames<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(EnumNames(d))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for EnumNames<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(EnumNames(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for EnumNames<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(seed)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(EnumNames(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// Reads an `i32` given as a number or as an enum value's name, for the visitor `V`.
struct EnumNumber<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for EnumNumber<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an enum number or name (SPAN_KIND_*, STATUS_CODE_*)")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.0.visit_i64(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.0.visit_u64(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match enum_number(v) {
            Some(n) => self.0.visit_i32(n),
            None => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hexid::encode as hex;
    use crate::ingest::json::JSON_EXPANSION;

    #[test]
    fn otlp_json_with_names_strings_and_hex_ids() {
        let json = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
            "scopeSpans":[{"scope":{"name":"t"},"spans":[{
                "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
                "parentSpanId":"eee19b7ec3c1b173","name":"GET /","kind":"SPAN_KIND_SERVER",
                "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
                "attributes":[{"key":"n","value":{"intValue":"42"}}],
                "status":{"code":"STATUS_CODE_ERROR","message":"boom"}}]}]}]}"#;
        let bytes = json_to_protobuf(json).unwrap();
        let req = ExportTraceServiceRequest::decode(bytes).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(hex(&span.trace_id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(hex(&span.parent_span_id), "eee19b7ec3c1b173");
        assert_eq!(span.kind, 2);
        assert_eq!(span.status.as_ref().unwrap().code, 2);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    }

    #[test]
    fn enums_as_numbers_and_unknown_keys_are_read() {
        let json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"spanId":"0000000000000001","kind":3,"status":{"code":1},"futureField":[{"kind":"x"}]},
            {"spanId":"0000000000000002","kind":"SPAN_KIND_CONSUMER"}]}]}],"other":{}}"#;
        let req = ExportTraceServiceRequest::decode(json_to_protobuf(json).unwrap()).unwrap();
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!((spans[0].kind, spans[1].kind), (3, 5));
        assert_eq!(spans[0].status.as_ref().unwrap().code, 1);
    }

    #[test]
    fn bad_json_is_named() {
        for bad in [
            &b"{"[..],
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_BOSS"}]}]}]}"#,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":2.5}]}]}]}"#,
            br#"{"resourceSpans":[]} trailing"#,
        ] {
            let err = json_to_protobuf(bad).unwrap_err().to_string();
            assert!(err.contains("invalid OTLP JSON"), "{err}");
        }
        let err = json_to_protobuf(
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_BOSS"}]}]}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("SPAN_KIND_BOSS"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_within_a_blocking_thread_stack() {
        // Array values inside array values, past serde_json's nesting limit of 128.
        let depth = 1000;
        let value = format!(
            "{}{{}}{}",
            r#"{"arrayValue":{"values":["#.repeat(depth),
            "]}}".repeat(depth)
        );
        let json = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"attributes":[{{"key":"k","value":{value}}}]}}]}}]}}]}}"#
        );
        // tokio's blocking threads have 2 MiB stacks.
        let err = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || json_to_protobuf(json.as_bytes()).unwrap_err().to_string())
            .unwrap()
            .join()
            .unwrap();
        assert!(err.contains("recursion limit"), "{err}");
    }

    #[test]
    fn the_estimate_covers_the_model_and_refuses_empty_span_bombs() {
        for shape in [
            size_of::<Span>(),
            size_of::<opentelemetry_proto::tonic::common::v1::KeyValue>(),
            size_of::<opentelemetry_proto::tonic::trace::v1::ResourceSpans>(),
            size_of::<opentelemetry_proto::tonic::trace::v1::ScopeSpans>(),
            size_of::<opentelemetry_proto::tonic::trace::v1::span::Event>(),
            size_of::<opentelemetry_proto::tonic::trace::v1::span::Link>(),
        ] {
            assert!(EXPORT_JSON.object_cost >= 2 * shape);
        }
        let bomb = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
            vec!["{}"; 10_000].join(",")
        );
        assert!(EXPORT_JSON.bytes(bomb.as_bytes()) > bomb.len() * JSON_EXPANSION);
    }

    #[test]
    fn an_ordinary_export_is_well_within_the_allowance() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
        let attribute = |key: &str, value: &str| KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        };
        let span = Span {
            trace_id: vec![7; 16],
            span_id: vec![8; 8],
            name: "GET".into(),
            kind: 2,
            start_time_unix_nano: 1_544_712_660_000_000_000,
            end_time_unix_nano: 1_544_712_661_000_000_000,
            attributes: vec![attribute("http.method", "GET"); 10],
            ..Default::default()
        };
        let export = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span; 100],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let json = serde_json::to_vec(&export).unwrap();
        assert!(json_to_protobuf(&json).is_ok());
        let ratio = EXPORT_JSON.bytes(&json) / json.len();
        assert!(ratio * 2 < JSON_EXPANSION, "{ratio}x");
    }
}
