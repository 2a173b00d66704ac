//! Protobuf wire scanning: varints, field walking and framing, zero-copy.
//!
//! This is the only place that knows tag numbers by heart. Nothing here allocates per field or
//! decodes a span: scanners hand out `Bytes` slices of the buffer they were given. Errors are
//! small plain values; callers turn them into protocol statuses.

pub mod otlp;
pub mod report;

/// Why a protobuf buffer could not be scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends inside a varint, a fixed-width value or a length-delimited field.
    #[error("truncated protobuf: field {field} ends past the end of the message")]
    Truncated {
        /// Field number being read (0 when the tag itself was cut).
        field: u32,
    },
    /// A varint runs longer than 10 bytes or past 64 bits.
    #[error("malformed protobuf: varint longer than 64 bits")]
    VarintOverflow,
    /// Field number 0 is never valid.
    #[error("malformed protobuf: field number 0")]
    ZeroField,
    /// Field numbers end at 2^29 - 1.
    #[error("malformed protobuf: field number {number} is past the largest, 536870911")]
    FieldNumberTooLarge {
        /// The number the tag spells.
        number: u64,
    },
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
            // The tenth byte holds bit 63 only.
            return if shift == 9 && byte > 1 {
                Err(WireError::VarintOverflow)
            } else {
                Ok(value)
            };
        }
    }
    Err(WireError::VarintOverflow)
}

/// Largest field number protobuf allows.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// The field number of a tag (`key`), refusing 0 and numbers past [`MAX_FIELD_NUMBER`].
#[inline]
fn field_number(key: u64) -> Result<u32, WireError> {
    match key >> 3 {
        0 => Err(WireError::ZeroField),
        // At most 29 bits: the cast is lossless.
        number @ 1..=MAX_FIELD_NUMBER => Ok(number as u32),
        number => Err(WireError::FieldNumberTooLarge { number }),
    }
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
        let number = field_number(key)?;
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
    /// Reads the run of back-to-back length-delimited fields with the one-byte `tag` that
    /// starts where the walk stands, calling `each(field_start, payload_start, end)` for each
    /// one, in order; the walk then goes on after the run. This is a shorter path than
    /// [`Iterator::next`] for long runs of one repeated field (spans). The first error, from
    /// the framing or from `each`, ends both the run and the walk.
    #[inline(always)]
    pub fn take_run<E: From<WireError>>(
        &mut self,
        tag: u8,
        mut each: impl FnMut(usize, usize, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        debug_assert!(tag & 7 == LEN && (0x08..0x80).contains(&tag));
        let buf = &self.buf[..self.end];
        let number = u32::from(tag >> 3);
        let mut pos = self.pos;
        while buf.get(pos) == Some(&tag) {
            let mut start = pos + 1;
            let end = read_varint(buf, &mut start, number).and_then(|len| {
                usize::try_from(len)
                    .ok()
                    .and_then(|len| start.checked_add(len))
                    .filter(|end| *end <= buf.len())
                    .ok_or(WireError::Truncated { field: number })
            });
            let taken = match end {
                Ok(end) => each(pos, start, end).map(|()| end),
                Err(error) => Err(E::from(error)),
            };
            match taken {
                Ok(end) => pos = end,
                Err(error) => {
                    // As in `next`: stop after an error.
                    self.pos = self.end;
                    return Err(error);
                }
            }
        }
        self.pos = pos;
        Ok(())
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
/// error [`Fields`] would, but without producing the fields (building each [`Field`] costs more
/// than the walk itself). It checks a span that arrives on its own, and names the fault once
/// [`check_fields_pair`]'s fast walk has found one.
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

/// [`check_fields`] on two ranges of `buf` at once, reporting `a`'s error before `b`'s: the
/// per-span check of the hot path. Both walks run on [`sound_pair`]; only when it finds a
/// fault are the two ranges walked again, one after the other, to name the first error.
pub fn check_fields_pair(
    buf: &[u8],
    a: (usize, usize),
    b: (usize, usize),
) -> Result<(), WireError> {
    if sound_pair(range(buf, a), range(buf, b), any_len) {
        return Ok(());
    }
    check_fields(buf, a.0, a.1)?;
    check_fields(buf, b.0, b.1)
}

/// `buf[start..end]` cut the way [`check_fields`] cuts it: empty when out of bounds.
#[inline]
pub fn range(buf: &[u8], (start, end): (usize, usize)) -> &[u8] {
    buf.get(start..end.min(buf.len())).unwrap_or_default()
}

/// The rule of [`sound_pair`] and [`sound`] that lets a payload of any length through.
#[inline(always)]
pub fn any_len(_number: u32, _len: usize) -> bool {
    true
}

/// Whether `w` (a field's first two bytes, little-endian) starts the most common field of a
/// span: a one-byte tag of wire type LEN for fields 1 to 15 and a one-byte length. Subtracting
/// the smallest such tag (0x0A) and rotating by 3 puts the field number minus one in the low
/// bits and anything else (another wire type, a longer tag or length, field 0) at or above 15.
#[inline(always)]
fn is_short_len_field(w: u16) -> bool {
    (w.wrapping_sub(0x0A) & 0x80FF).rotate_right(3) < 15
}

/// What follows the first field of `rest`, or `None` when that field is not soundly framed or
/// is length-delimited with a payload length `rule(number, len)` refuses.
#[inline(always)]
fn skip_field(rest: &[u8], rule: impl Fn(u32, usize) -> bool) -> Option<&[u8]> {
    match *rest {
        [tag, len, ..] if is_short_len_field(u16::from_le_bytes([tag, len])) => {
            if !rule(u32::from(tag >> 3), usize::from(len)) {
                return None;
            }
            rest.get(2 + usize::from(len)..)
        }
        // The other wire types with a one-byte tag (field 1 to 15): ints, enums, timestamps.
        [tag, ref value @ ..] if (0x08..0x80).contains(&tag) => match tag & 7 {
            VARINT => {
                let last = value.iter().take(10).position(|byte| byte & 0x80 == 0)?;
                // As in `read_varint`: the tenth byte holds bit 63 only.
                if last == 9 && value[9] > 1 {
                    return None;
                }
                value.get(last + 1..)
            }
            FIXED64 => value.get(8..),
            FIXED32 => value.get(4..),
            _ => skip_other_field(rest, rule),
        },
        _ => skip_other_field(rest, rule),
    }
}

/// [`skip_field`] for the fields it does not read inline, through the general [`step`].
#[inline(never)]
fn skip_other_field(rest: &[u8], rule: impl Fn(u32, usize) -> bool) -> Option<&[u8]> {
    let (next, payload) = step(rest, 0).ok()?;
    if let Some((number, len)) = payload
        && !rule(number, len)
    {
        return None;
    }
    rest.get(next..)
}

/// Whether `fields` is a run of soundly framed fields whose length-delimited payloads all pass
/// `rule(number, len)`: exactly what [`check_fields_with`] accepts with the same rule, without
/// naming the fault.
pub fn sound(mut fields: &[u8], rule: impl Fn(u32, usize) -> bool + Copy) -> bool {
    while !fields.is_empty() {
        match skip_field(fields, rule) {
            Some(rest) => fields = rest,
            None => return false,
        }
    }
    true
}

/// [`sound`] on two runs at once. The two walks do not depend on each other, so stepping them
/// in turn lets the CPU overlap their load-to-use chains; the common field is read in the
/// loop itself, with one branch for both walks.
#[inline(never)]
pub fn sound_pair(mut a: &[u8], mut b: &[u8], rule: impl Fn(u32, usize) -> bool + Copy) -> bool {
    loop {
        while let ([tag_a, len_a, ..], [tag_b, len_b, ..]) = (a, b) {
            if !(is_short_len_field(u16::from_le_bytes([*tag_a, *len_a]))
                & is_short_len_field(u16::from_le_bytes([*tag_b, *len_b])))
            {
                break;
            }
            let (len_a, len_b) = (usize::from(*len_a), usize::from(*len_b));
            if !(rule(u32::from(tag_a >> 3), len_a) & rule(u32::from(tag_b >> 3), len_b)) {
                return false;
            }
            match (a.get(2 + len_a..), b.get(2 + len_b..)) {
                (Some(rest_a), Some(rest_b)) => (a, b) = (rest_a, rest_b),
                _ => return false,
            }
        }
        if a.is_empty() || b.is_empty() {
            return sound(a, rule) && sound(b, rule);
        }
        match (skip_field(a, rule), skip_field(b, rule)) {
            (Some(rest_a), Some(rest_b)) => (a, b) = (rest_a, rest_b),
            _ => return false,
        }
    }
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
    let number = field_number(key)?;
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
        fn sound_accepts_exactly_what_check_fields_accepts(bytes in framed_fields()) {
            proptest::prop_assert_eq!(sound(&bytes, any_len), check_fields(&bytes, 0, bytes.len()).is_ok());
        }

        #[test]
        fn sound_with_a_rule_accepts_exactly_what_check_fields_with_accepts(
            bytes in framed_fields(),
        ) {
            // Field 3, when present and not empty, must be 8 bytes long (like an OTLP span id).
            let rule = |number: u32, len: usize| number != 3 || len == 0 || len == 8;
            let checked = check_fields_with(&bytes, 0, bytes.len(), |number, len| {
                if rule(number, len) { Ok(()) } else { Err(WireError::ZeroField) }
            });
            proptest::prop_assert_eq!(sound(&bytes, rule), checked.is_ok());
        }

        #[test]
        fn sound_on_random_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            proptest::prop_assert_eq!(sound(&bytes, any_len), check_fields(&bytes, 0, bytes.len()).is_ok());
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
            assert!(!sound(bad, any_len));
            assert!(check_fields_pair(bad, (0, bad.len()), (0, 0)).is_err());
            assert!(Fields::new(bad).any(|field| field.is_err()));
        }
        let mut largest = vec![];
        put_varint(&mut largest, MAX_FIELD_NUMBER << 3);
        largest.push(0x00);
        assert_eq!(check_fields(&largest, 0, largest.len()), Ok(()));
        assert!(sound(&largest, any_len));
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
