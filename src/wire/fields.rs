//! The field walk: [`Fields`] hands out each field of a buffer with its value's position,
//! and [`complete_field`] finds where a field ends in a message that arrives in pieces.

use super::{FIXED32, FIXED64, LEN, VARINT, WireError, field_number, read_varint};

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

/// Checks the framing of the field at `pos` in `buf` (cut at the walk's end): the position
/// after it, and for a length-delimited field its number and payload length.
#[inline(always)]
pub(super) fn step(buf: &[u8], mut pos: usize) -> Result<(usize, Option<(u32, usize)>), WireError> {
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
