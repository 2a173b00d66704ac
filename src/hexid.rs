//! Trace and span ids as hex text: the one place that formats and parses them, for the
//! Thrift route (guids), translation (the `parent_span_guid` and `otel.trace_id` tags) and
//! the developer-mode store and API.
//!
//! Only ASCII hex digits are accepted (`u64::from_str_radix` alone would take a leading `+`).

/// Lowercase hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn all_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A 64-bit id written in 1 to 16 hex digits.
pub fn parse_u64(s: &str) -> Option<u64> {
    (s.len() <= 16 && all_hex(s))
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

/// A 128-bit id written in exactly 32 hex digits, as its 16 big-endian bytes.
pub fn parse_u128(s: &str) -> Option<[u8; 16]> {
    (s.len() == 32 && all_hex(s))
        .then(|| u128::from_str_radix(s, 16).ok().map(u128::to_be_bytes))
        .flatten()
}

/// A trace id of 32 hex digits, or of 16 (a 64-bit id, zero-padded on the left as W3C does).
pub fn parse_trace_id(s: &str) -> Option<[u8; 16]> {
    match s.len() {
        32 => parse_u128(s),
        16 => parse_u64(s).map(|low| u128::from(low).to_be_bytes()),
        _ => None,
    }
}

/// The low 64 bits of a hex guid of any length, as tracers report 128-bit ids to a 64-bit
/// field.
pub fn low_u64(s: &str) -> Option<u64> {
    all_hex(s)
        .then(|| parse_u64(&s[s.len().saturating_sub(16)..]))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_what_is_not_hex() {
        assert_eq!(encode(&[0x00, 0xab, 0x10]), "00ab10");
        assert_eq!(parse_u64("00000000000000ff"), Some(255));
        assert_eq!(parse_u64("+f"), None);
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("10000000000000000"), None);
        let id = [7u8; 16];
        assert_eq!(parse_u128(&encode(&id)), Some(id));
        assert_eq!(parse_u128("7"), None);
        let mut padded = [0u8; 16];
        padded[15] = 1;
        assert_eq!(parse_trace_id("0000000000000001"), Some(padded));
        assert_eq!(parse_trace_id("1"), None);
        assert_eq!(low_u64("ffffffffffffffff0000000000000002"), Some(2));
        assert_eq!(low_u64("12g4"), None);
    }
}
