//! Protobuf wire scanning: varints, field walking and framing, zero-copy.
//!
//! This is the only place that knows tag numbers by heart. Nothing here allocates per field or
//! decodes a span: scanners hand out `Bytes` slices of the buffer they were given. Errors are
//! small plain values; callers turn them into protocol statuses.

pub mod otlp;
pub mod report;

use bytes::Bytes;

/// Why a protobuf buffer could not be scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends inside a varint, a fixed-width value or a length-delimited field.
    #[error("truncated protobuf: field {field} ends past the end of the message")]
    Truncated {
        /// Field number being read (0 when the tag itself was cut).
        field: u32,
    },
    /// A varint runs longer than 10 bytes.
    #[error("malformed protobuf: varint longer than 10 bytes")]
    VarintOverflow,
    /// Field number 0 is never valid.
    #[error("malformed protobuf: field number 0")]
    ZeroField,
    /// Wire types 6 and 7 do not exist; 3 and 4 (groups) are not used by any schema we scan.
    #[error("malformed protobuf: unsupported wire type {wire_type} for field {field}")]
    BadWireType {
        /// Field number carrying the bad wire type.
        field: u32,
        /// The wire type found.
        wire_type: u8,
    },
    /// A known field arrived with a wire type its schema does not allow.
    #[error("malformed protobuf: field {field} has wire type {wire_type}, expected {expected}")]
    UnexpectedWireType {
        /// Field number.
        field: u32,
        /// The wire type found.
        wire_type: u8,
        /// The wire type the schema gives.
        expected: u8,
    },
}

/// Wire type of varint fields.
pub const VARINT: u8 = 0;
/// Wire type of 64-bit fixed fields.
pub const FIXED64: u8 = 1;
/// Wire type of length-delimited fields (strings, bytes, messages, packed repeats).
pub const LEN: u8 = 2;
/// Wire type of 32-bit fixed fields.
pub const FIXED32: u8 = 5;

/// Reads a base-128 varint at `*pos`, advancing `pos`.
#[inline]
pub fn read_varint(buf: &[u8], pos: &mut usize, field: u32) -> Result<u64, WireError> {
    // Tags and most lengths take one or two bytes: read those without entering the loop.
    match *buf.get(*pos..).unwrap_or_default() {
        [byte, ..] if byte < 0x80 => {
            *pos += 1;
            Ok(u64::from(byte))
        }
        [low, high, ..] if high < 0x80 => {
            *pos += 2;
            Ok(u64::from(low & 0x7f) | u64::from(high) << 7)
        }
        [] => Err(WireError::Truncated { field }),
        _ => read_long_varint(buf, pos, field),
    }
}

/// The rest of [`read_varint`], for varints of three bytes or more (or cut short).
#[inline(never)]
fn read_long_varint(buf: &[u8], pos: &mut usize, field: u32) -> Result<u64, WireError> {
    let mut value: u64 = 0;
    for shift in 0..10 {
        let Some(&byte) = buf.get(*pos) else {
            return Err(WireError::Truncated { field });
        };
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (shift * 7);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(WireError::VarintOverflow)
}

/// Appends `value` as a base-128 varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Number of bytes `value` takes as a varint.
#[inline]
pub fn varint_len(value: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 still takes one byte.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// One field's value as it lies on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A varint (ints, bools, enums).
    Varint(u64),
    /// 8 little-endian bytes.
    Fixed64(u64),
    /// 4 little-endian bytes.
    Fixed32(u32),
    /// Byte range `start..end` of the payload inside the scanned buffer.
    Len {
        /// First payload byte.
        start: usize,
        /// One past the last payload byte.
        end: usize,
    },
}

/// One field found by [`Fields`]: its number, value and the byte range of the whole field
/// (tag included), so callers can forward it untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Field number.
    pub number: u32,
    /// The value.
    pub value: Value,
    /// Offset of the tag's first byte.
    pub start: usize,
    /// One past the field's last byte.
    pub end: usize,
}

/// Walks the top-level fields of one protobuf message without decoding any of them.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Fields<'a> {
    /// Walks all of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self::within(buf, 0, buf.len())
    }

    /// Walks `buf[start..end]`, reporting offsets relative to `buf`.
    pub fn within(buf: &'a [u8], start: usize, end: usize) -> Self {
        Self {
            buf,
            pos: start,
            end: end.min(buf.len()),
        }
    }

    #[inline]
    fn next_field(&mut self) -> Result<Field, WireError> {
        let start = self.pos;
        let buf = &self.buf[..self.end];
        let key = read_varint(buf, &mut self.pos, 0)?;
        let number = u32::try_from(key >> 3).map_err(|_| WireError::ZeroField)?;
        if number == 0 {
            return Err(WireError::ZeroField);
        }
        let wire_type = (key & 7) as u8;
        let value = match wire_type {
            VARINT => Value::Varint(read_varint(buf, &mut self.pos, number)?),
            FIXED64 => {
                let bytes = buf
                    .get(self.pos..self.pos + 8)
                    .ok_or(WireError::Truncated { field: number })?;
                self.pos += 8;
                Value::Fixed64(u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])))
            }
            FIXED32 => {
                let bytes = buf
                    .get(self.pos..self.pos + 4)
                    .ok_or(WireError::Truncated { field: number })?;
                self.pos += 4;
                Value::Fixed32(u32::from_le_bytes(bytes.try_into().unwrap_or([0; 4])))
            }
            LEN => {
                let len = read_varint(buf, &mut self.pos, number)?;
                let len =
                    usize::try_from(len).map_err(|_| WireError::Truncated { field: number })?;
                let payload_start = self.pos;
                let payload_end = payload_start
                    .checked_add(len)
                    .filter(|end| *end <= buf.len())
                    .ok_or(WireError::Truncated { field: number })?;
                self.pos = payload_end;
                Value::Len {
                    start: payload_start,
                    end: payload_end,
                }
            }
            other => {
                return Err(WireError::BadWireType {
                    field: number,
                    wire_type: other,
                });
            }
        };
        Ok(Field {
            number,
            value,
            start,
            end: self.pos,
        })
    }
}

impl Fields<'_> {
    /// The next field if it is length-delimited and its tag is the one byte `tag`, read on a
    /// shorter path than [`Iterator::next`]: for long runs of one repeated field (spans).
    /// `None` when the next field is anything else (or there is none), consuming nothing.
    #[inline]
    pub fn next_if_tag(&mut self, tag: u8) -> Option<Result<Field, WireError>> {
        debug_assert!(tag & 7 == LEN && (0x08..0x80).contains(&tag));
        let buf = &self.buf[..self.end];
        if buf.get(self.pos) != Some(&tag) {
            return None;
        }
        let start = self.pos;
        let number = u32::from(tag >> 3);
        let mut pos = start + 1;
        let field = read_varint(buf, &mut pos, number).and_then(|len| {
            usize::try_from(len)
                .ok()
                .and_then(|len| pos.checked_add(len))
                .filter(|end| *end <= buf.len())
                .map(|end| Field {
                    number,
                    value: Value::Len { start: pos, end },
                    start,
                    end,
                })
                .ok_or(WireError::Truncated { field: number })
        });
        // As in `next`: stop after an error.
        self.pos = field.map_or(self.end, |f| f.end);
        Some(field)
    }
}

impl Iterator for Fields<'_> {
    type Item = Result<Field, WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let item = self.next_field();
        if item.is_err() {
            // Stop after the first error: the rest of the buffer has no known framing.
            self.pos = self.end;
        }
        Some(item)
    }
}

impl Field {
    /// The payload range of a length-delimited field, or a wire-type error naming it.
    #[inline]
    pub fn len_range(&self) -> Result<(usize, usize), WireError> {
        match self.value {
            Value::Len { start, end } => Ok((start, end)),
            _ => Err(self.unexpected(LEN)),
        }
    }

    /// The value of a varint field, or a wire-type error naming it.
    #[inline]
    pub fn varint(&self) -> Result<u64, WireError> {
        match self.value {
            Value::Varint(v) => Ok(v),
            _ => Err(self.unexpected(VARINT)),
        }
    }

    fn unexpected(&self, expected: u8) -> WireError {
        let wire_type = match self.value {
            Value::Varint(_) => VARINT,
            Value::Fixed64(_) => FIXED64,
            Value::Fixed32(_) => FIXED32,
            Value::Len { .. } => LEN,
        };
        WireError::UnexpectedWireType {
            field: self.number,
            wire_type,
            expected,
        }
    }
}

/// Checks that `buf[start..end]` is a run of soundly framed fields, finding the same first
/// error [`Fields`] would, but without producing the fields: the per-span check of the hot path,
/// where building each [`Field`] costs more than the walk itself.
#[inline]
pub fn check_fields(buf: &[u8], start: usize, end: usize) -> Result<(), WireError> {
    let buf = &buf[..end.min(buf.len())];
    let mut pos = start;
    if pos >= buf.len() {
        return Ok(());
    }
    loop {
        // The common field of a span (a string or small message: one-byte tag of wire type LEN
        // for fields 1 to 15, one-byte length) in a tight loop: one 16-bit test a field, and
        // the bound checked once when the run of such fields ends.
        let mut tag = 0u8;
        while let Some(&[t, len]) = buf.get(pos..pos + 2).and_then(|b| b.first_chunk::<2>()) {
            if u16::from_le_bytes([t, len]) & 0x8087 != u16::from(LEN) || t < 0x08 {
                break;
            }
            tag = t;
            pos += 2 + usize::from(len);
        }
        if pos > buf.len() {
            return Err(WireError::Truncated {
                field: u32::from(tag >> 3),
            });
        }
        if pos == buf.len() {
            return Ok(());
        }
        pos = step(buf, pos)?.0;
        if pos == buf.len() {
            return Ok(());
        }
    }
}

/// [`check_fields`], also calling `on_len(number, payload_len)` for each length-delimited field
/// once its framing is checked, in order, so a caller can check sizes (of ids, say) in the same
/// walk. The first error, from either, ends the walk.
#[inline]
pub fn check_fields_with<E: From<WireError>>(
    buf: &[u8],
    start: usize,
    end: usize,
    mut on_len: impl FnMut(u32, usize) -> Result<(), E>,
) -> Result<(), E> {
    let buf = &buf[..end.min(buf.len())];
    let mut pos = start;
    while pos < buf.len() {
        let (next, payload) = step(buf, pos)?;
        pos = next;
        if let Some((number, len)) = payload {
            on_len(number, len)?;
        }
    }
    Ok(())
}

/// [`check_fields`] on two ranges of `buf` at once, reporting `a`'s error before `b`'s. The
/// two walks do not depend on each other, so stepping them in turn lets the CPU overlap their
/// load-to-use chains: two spans checked together cost much less than two checked in a row.
pub fn check_fields_pair(
    buf: &[u8],
    a: (usize, usize),
    b: (usize, usize),
) -> Result<(), WireError> {
    let buf_a = &buf[..a.1.min(buf.len())];
    let buf_b = &buf[..b.1.min(buf.len())];
    let (mut pos_a, mut pos_b) = (a.0, b.0);
    while pos_a < buf_a.len() && pos_b < buf_b.len() {
        pos_a = step(buf_a, pos_a)?.0;
        match step(buf_b, pos_b) {
            Ok((next, _)) => pos_b = next,
            Err(error) => {
                check_fields(buf, pos_a, a.1)?;
                return Err(error);
            }
        }
    }
    check_fields(buf, pos_a, a.1)?;
    check_fields(buf, pos_b, b.1)
}

/// Checks the framing of the field at `pos` in `buf` (cut at the walk's end): the position
/// after it, and for a length-delimited field its number and payload length.
#[inline(always)]
fn step(buf: &[u8], mut pos: usize) -> Result<(usize, Option<(u32, usize)>), WireError> {
    // Most fields of a span are strings and small messages: a one-byte tag of wire type LEN
    // (field 1 to 15) and a one-byte length. Skip those in one step.
    if let Some(&[tag, len]) = buf.get(pos..pos + 2).and_then(|b| b.first_chunk::<2>())
        && tag & 0x87 == LEN
        && tag >= 0x08
        && len < 0x80
    {
        pos += 2 + usize::from(len);
        if pos > buf.len() {
            return Err(WireError::Truncated {
                field: u32::from(tag >> 3),
            });
        }
        return Ok((pos, Some((u32::from(tag >> 3), usize::from(len)))));
    }
    let key = read_varint(buf, &mut pos, 0)?;
    let number = u32::try_from(key >> 3).map_err(|_| WireError::ZeroField)?;
    if number == 0 {
        return Err(WireError::ZeroField);
    }
    let truncated = WireError::Truncated { field: number };
    let mut payload = None;
    pos = match (key & 7) as u8 {
        VARINT => {
            read_varint(buf, &mut pos, number)?;
            pos
        }
        FIXED64 => pos + 8,
        FIXED32 => pos + 4,
        LEN => {
            let len = read_varint(buf, &mut pos, number)?;
            let len = usize::try_from(len).map_err(|_| truncated)?;
            payload = Some((number, len));
            pos.checked_add(len).ok_or(truncated)?
        }
        wire_type => {
            return Err(WireError::BadWireType {
                field: number,
                wire_type,
            });
        }
    };
    if pos > buf.len() {
        return Err(truncated);
    }
    Ok((pos, payload))
}

/// Field number and total size (tag included) of the field at the start of `buf`, or `None`
/// while `buf` holds only part of it: for reading a message that arrives in pieces.
pub fn complete_field(buf: &[u8]) -> Result<Option<(u32, usize)>, WireError> {
    match Fields::within(buf, 0, buf.len()).next() {
        None | Some(Err(WireError::Truncated { .. })) => Ok(None),
        Some(Err(other)) => Err(other),
        Some(Ok(field)) => Ok(Some((field.number, field.end))),
    }
}

/// Slices `buf[start..end]` without copying.
#[inline]
pub fn slice(buf: &Bytes, (start, end): (usize, usize)) -> Bytes {
    buf.slice(start..end)
}

#[cfg(test)]
mod tests {
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
    fn next_if_tag_reads_what_next_reads_or_nothing() {
        // Two spans fields (3), then field 5, then a span cut short.
        let buf = [0x1a, 0x01, 0x08, 0x1a, 0x00, 0x28, 0x01, 0x1a, 0x05, 0x00];
        let mut fast = Fields::new(&buf);
        let mut slow = Fields::new(&buf);
        for _ in 0..2 {
            assert_eq!(fast.next_if_tag(0x1a), slow.next());
        }
        assert_eq!(fast.next_if_tag(0x1a), None, "field 5 is not consumed");
        assert_eq!(fast.next(), slow.next());
        assert_eq!(
            fast.next_if_tag(0x1a),
            Some(Err(WireError::Truncated { field: 3 }))
        );
        assert_eq!(slow.next(), Some(Err(WireError::Truncated { field: 3 })));
        assert_eq!((fast.next(), slow.next()), (None, None));
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
}
