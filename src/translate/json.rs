//! OTLP `AnyValue` <-> JSON text, for the values Lightstep can only hold as `json_value`:
//! arrays and key-value lists. Both directions keep the order (and duplicates) of map keys,
//! which a detour through `serde_json::Value` would sort away.

use std::fmt::Write as _;

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Writes `value` as compact JSON. Bytes become base64 strings; non-finite doubles and values
/// that only make sense inside a profile's dictionary (`string_value_strindex`) become `null`.
pub fn to_json(value: Option<&AnyValue>) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

fn write_value(value: Option<&AnyValue>, out: &mut String) {
    match value.and_then(|v| v.value.as_ref()) {
        None | Some(any_value::Value::StringValueStrindex(_)) => out.push_str("null"),
        Some(any_value::Value::StringValue(s)) => write_string(s, out),
        Some(any_value::Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(any_value::Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(any_value::Value::DoubleValue(d)) => match serde_json::Number::from_f64(*d) {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => out.push_str("null"),
        },
        Some(any_value::Value::BytesValue(b)) => {
            write_string(&base64::engine::general_purpose::STANDARD.encode(b), out)
        }
        Some(any_value::Value::ArrayValue(array)) => {
            out.push('[');
            for (i, v) in array.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(Some(v), out);
            }
            out.push(']');
        }
        Some(any_value::Value::KvlistValue(list)) => {
            out.push('{');
            for (i, kv) in list.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(&kv.key, out);
                out.push(':');
                write_value(kv.value.as_ref(), out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    // Serialising a &str to JSON cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned()));
}

/// Parses JSON text into an array or key-value list; `None` when the text is not valid JSON or
/// its top level is a scalar (those stay strings: the text itself is the most faithful form).
pub fn structured_from_json(text: &str) -> Option<AnyValue> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = AnySeed.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    match value.value {
        Some(any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_)) => Some(value),
        _ => None,
    }
}

struct AnySeed;

impl<'de> DeserializeSeed<'de> for AnySeed {
    type Value = AnyValue;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<AnyValue, D::Error> {
        deserializer.deserialize_any(AnyVisitor)
    }
}

struct AnyVisitor;

fn any(value: any_value::Value) -> AnyValue {
    AnyValue { value: Some(value) }
}

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = AnyValue;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<AnyValue, E> {
        Ok(any(any_value::Value::BoolValue(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<AnyValue, E> {
        Ok(any(any_value::Value::IntValue(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<AnyValue, E> {
        Ok(any(match i64::try_from(v) {
            Ok(i) => any_value::Value::IntValue(i),
            Err(_) => any_value::Value::DoubleValue(v as f64),
        }))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<AnyValue, E> {
        Ok(any(any_value::Value::DoubleValue(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<AnyValue, E> {
        Ok(any(any_value::Value::StringValue(v.to_owned())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue { value: None })
    }

    fn visit_none<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue { value: None })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::new();
        while let Some(v) = seq.next_element_seed(AnySeed)? {
            values.push(v);
        }
        Ok(any(any_value::Value::ArrayValue(ArrayValue { values })))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(AnySeed)?;
            values.push(KeyValue {
                key,
                // A JSON null in a map is an absent value.
                value: value.value.is_some().then_some(value),
                ..Default::default()
            });
        }
        Ok(any(any_value::Value::KvlistValue(KeyValueList { values })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_types() {
        let text = r#"{"z":1,"a":[true,2.5,"s",null],"m":{"b":null}}"#;
        let value = structured_from_json(text).unwrap();
        assert_eq!(to_json(Some(&value)), text);
    }

    #[test]
    fn scalars_and_bad_json_stay_strings() {
        assert!(structured_from_json("5").is_none());
        assert!(structured_from_json("\"x\"").is_none());
        assert!(structured_from_json("[1,").is_none());
        assert!(structured_from_json("[1] x").is_none());
    }
}
