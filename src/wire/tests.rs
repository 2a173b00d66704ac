//! Varints, the field walk and the framing checks, against prost where it matters.

use super::*;

#[test]
fn varint_round_trip_and_length() {
    for v in [
        0u64,
        1,
        127,
        128,
        300,
        16_383,
        16_384,
        u32::MAX as u64,
        u64::MAX,
    ] {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        assert_eq!(out.len(), varint_len(v), "length of {v}");
        let mut pos = 0;
        assert_eq!(read_varint(&out, &mut pos, 1), Ok(v));
        assert_eq!(pos, out.len());
    }
}

#[test]
fn varint_errors() {
    let mut pos = 0;
    assert_eq!(
        read_varint(&[0x80, 0x80], &mut pos, 7),
        Err(WireError::Truncated { field: 7 })
    );
    let mut pos = 0;
    assert_eq!(
        read_varint(&[0xff; 11], &mut pos, 1),
        Err(WireError::VarintOverflow)
    );
    // Ten bytes reach bit 63 and no further: a tenth byte above 1 overflows, as prost says.
    let mut max = [0xff; 10];
    max[9] = 0x01;
    let mut pos = 0;
    assert_eq!(read_varint(&max, &mut pos, 1), Ok(u64::MAX));
    max[9] = 0x02;
    let mut pos = 0;
    assert_eq!(
        read_varint(&max, &mut pos, 1),
        Err(WireError::VarintOverflow)
    );
}

#[test]
fn fields_reports_ranges_and_stops_on_error() {
    // field 1 varint 150, field 2 "hi", then a truncated field 3.
    let buf = [0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x1a, 0x05, 0x00];
    let mut fields = Fields::new(&buf);
    let f1 = fields.next().unwrap().unwrap();
    assert_eq!(
        (f1.number, f1.varint(), f1.start, f1.end),
        (1, Ok(150), 0, 3)
    );
    let f2 = fields.next().unwrap().unwrap();
    assert_eq!(f2.len_range(), Ok((5, 7)));
    assert_eq!(
        fields.next().unwrap(),
        Err(WireError::Truncated { field: 3 })
    );
    assert!(fields.next().is_none());
}

#[test]
fn complete_field_waits_for_the_whole_field() {
    let buf = [0x1a, 0x03, b'a', b'b', b'c', 0x28];
    for cut in 0..5 {
        assert_eq!(complete_field(&buf[..cut]), Ok(None), "cut at {cut}");
    }
    assert_eq!(complete_field(&buf), Ok(Some((3, 5))));
    assert_eq!(complete_field(&buf[5..]), Ok(None));
    assert_eq!(complete_field(&[0x00]), Err(WireError::ZeroField));
}

proptest::proptest! {
    #[test]
    fn check_fields_finds_what_fields_finds(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        start in 0usize..300,
        end in 0usize..300,
    ) {
        let walked = Fields::within(&bytes, start, end).find_map(Result::err);
        proptest::prop_assert_eq!(check_fields(&bytes, start, end).err(), walked);
    }
}

/// Runs of mostly well-framed fields of every wire type (rarely a bad one), field numbers 0 to 20 (one- and
/// two-byte tags) and payloads of up to 200 bytes (one- and two-byte lengths), then one
/// byte possibly overwritten and the end possibly cut: inputs whose framing is right or
/// wrong in every way, where random bytes are nearly always wrong at the first byte.
fn framed_fields() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let number = prop_oneof![20 => 1u32..21, 1 => Just(0)];
    let wire_type = prop_oneof![
        9 => proptest::sample::select(vec![VARINT, FIXED64, LEN, FIXED32]),
        1 => 0u8..8,
    ];
    let field = (number, wire_type, any::<u64>(), 0usize..200);
    (
        proptest::collection::vec(field, 0..12),
        proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
        proptest::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|(fields, flip, cut)| {
            let mut out = Vec::new();
            for (number, wire_type, value, len) in fields {
                put_varint(&mut out, u64::from(number) << 3 | u64::from(wire_type));
                match wire_type {
                    VARINT => put_varint(&mut out, value),
                    FIXED64 => out.extend_from_slice(&value.to_le_bytes()),
                    FIXED32 => out.extend_from_slice(&(value as u32).to_le_bytes()),
                    LEN => {
                        put_varint(&mut out, len as u64);
                        out.extend(std::iter::repeat_n(0x42, len));
                    }
                    _ => {}
                }
            }
            if let (Some((at, byte)), false) = (flip, out.is_empty()) {
                let at = at.index(out.len());
                out[at] = byte;
            }
            if let (Some(cut), false) = (cut, out.is_empty()) {
                out.truncate(cut.index(out.len()));
            }
            out
        })
}

proptest::proptest! {
    #[test]
    fn well_framed_accepts_exactly_what_check_fields_accepts(bytes in framed_fields()) {
        proptest::prop_assert_eq!(well_framed(&bytes, any_len_allowed), check_fields(&bytes, 0, bytes.len()).is_ok());
    }

    #[test]
    fn well_framed_with_a_rule_accepts_exactly_what_check_fields_with_accepts(
        bytes in framed_fields(),
    ) {
        // Field 3, when present and not empty, must be 8 bytes long (like an OTLP span id).
        let rule = |number: u32, len: usize| number != 3 || len == 0 || len == 8;
        let checked = check_fields_with(&bytes, 0, bytes.len(), |number, len| {
            if rule(number, len) { Ok(()) } else { Err(WireError::ZeroField) }
        });
        proptest::prop_assert_eq!(well_framed(&bytes, rule), checked.is_ok());
    }

    #[test]
    fn well_framed_on_random_bytes(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
    ) {
        proptest::prop_assert_eq!(well_framed(&bytes, any_len_allowed), check_fields(&bytes, 0, bytes.len()).is_ok());
    }

    #[test]
    fn a_paired_check_of_framed_runs_reports_what_two_checks_in_a_row_report(
        a in framed_fields(),
        b in framed_fields(),
    ) {
        let mut bytes = a.clone();
        bytes.extend_from_slice(&b);
        let (a, b) = ((0, a.len()), (a.len(), bytes.len()));
        let in_a_row = check_fields(&bytes, a.0, a.1).and_then(|()| check_fields(&bytes, b.0, b.1));
        proptest::prop_assert_eq!(check_fields_pair(&bytes, a, b), in_a_row);
    }
}

proptest::proptest! {
    #[test]
    fn a_paired_check_reports_what_two_checks_in_a_row_report(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        cut in 0usize..256,
        a_start in 0usize..16,
        b_start in 0usize..16,
    ) {
        let cut = cut.min(bytes.len());
        let a = (a_start.min(cut), cut);
        let b = (cut + b_start.min(bytes.len() - cut), bytes.len());
        let in_a_row = check_fields(&bytes, a.0, a.1).and_then(|()| check_fields(&bytes, b.0, b.1));
        proptest::prop_assert_eq!(check_fields_pair(&bytes, a, b), in_a_row);
    }
}

#[test]
fn check_fields_on_real_framing() {
    // varint, fixed64, fixed32 and a length-delimited field, all whole.
    let mut buf = vec![
        0x08, 0x96, 0x01, 0x11, 1, 2, 3, 4, 5, 6, 7, 8, 0x1d, 1, 2, 3, 4,
    ];
    buf.extend_from_slice(&[0x22, 0x02, b'h', b'i']);
    assert_eq!(check_fields(&buf, 0, buf.len()), Ok(()));
    for cut in 1..buf.len() {
        let walked = Fields::within(&buf, 0, cut).find_map(Result::err);
        assert_eq!(check_fields(&buf, 0, cut).err(), walked, "cut at {cut}");
    }
}

#[test]
fn take_run_reads_what_next_reads_and_stops_at_other_fields() {
    // Two spans fields (3), then field 5, then a span cut short.
    let buf = [0x1a, 0x01, 0x08, 0x1a, 0x00, 0x28, 0x01, 0x1a, 0x05, 0x00];
    let mut fast = Fields::new(&buf);
    let mut slow = Fields::new(&buf);
    let mut seen = Vec::new();
    fast.take_run(0x1a, |field_start, start, end| {
        seen.push((field_start, start, end));
        Ok::<_, WireError>(())
    })
    .unwrap();
    for &(field_start, start, end) in &seen {
        let field = slow.next().unwrap().unwrap();
        assert_eq!(
            (field.start, field.len_range(), field.end),
            (field_start, Ok((start, end)), end)
        );
    }
    assert_eq!(seen.len(), 2);
    assert_eq!(fast.next(), slow.next(), "field 5 is read by next");
    assert_eq!(
        fast.take_run(0x1a, |_, _, _| Ok::<_, WireError>(())),
        Err(WireError::Truncated { field: 3 })
    );
    assert_eq!(slow.next(), Some(Err(WireError::Truncated { field: 3 })));
    assert_eq!((fast.next(), slow.next()), (None, None));
}

#[test]
fn take_run_stops_on_the_callers_error() {
    let buf = [0x1a, 0x00, 0x1a, 0x00, 0x28, 0x01];
    let mut fields = Fields::new(&buf);
    let mut calls = 0;
    let result = fields.take_run(0x1a, |_, _, _| {
        calls += 1;
        Err(WireError::ZeroField)
    });
    assert_eq!((result, calls), (Err(WireError::ZeroField), 1));
    assert!(fields.next().is_none(), "the walk ends after an error");
}

#[test]
fn the_fast_walk_refuses_what_prost_refuses() {
    // A varint field whose tenth byte passes bit 63; a field number past 2^29 - 1.
    let overflow = [
        0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ];
    let too_large = [0x80, 0x80, 0x80, 0x80, 0x10, 0x00];
    assert_eq!(
        check_fields(&overflow, 0, overflow.len()),
        Err(WireError::VarintOverflow)
    );
    assert_eq!(
        check_fields(&too_large, 0, too_large.len()),
        Err(WireError::FieldNumberTooLarge { number: 1 << 29 })
    );
    for bad in [&overflow[..], &too_large[..]] {
        assert!(!well_framed(bad, any_len_allowed));
        assert!(check_fields_pair(bad, (0, bad.len()), (0, 0)).is_err());
        assert!(Fields::new(bad).any(|field| field.is_err()));
    }
    let mut largest = vec![];
    put_varint(&mut largest, MAX_FIELD_NUMBER << 3);
    largest.push(0x00);
    assert_eq!(check_fields(&largest, 0, largest.len()), Ok(()));
    assert!(well_framed(&largest, any_len_allowed));
}

#[test]
fn fields_rejects_zero_and_groups() {
    assert_eq!(
        Fields::new(&[0x00, 0x01]).next().unwrap(),
        Err(WireError::ZeroField)
    );
    assert_eq!(
        Fields::new(&[0x0b]).next().unwrap(),
        Err(WireError::BadWireType {
            field: 1,
            wire_type: 3
        })
    );
}
