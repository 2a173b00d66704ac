//! Protobuf wire scanning: varints, field walking and framing, zero-copy.
//!
//! This is the only place that knows tag numbers by heart. Nothing here allocates per field or
//! decodes a span: scanners hand out `Bytes` slices of the buffer they were given. Errors are
//! small plain values; callers turn them into protocol statuses.

mod fields;
mod framing;
pub mod otlp;
pub mod report;

pub use fields::{Field, Fields, Value, complete_field};
pub use framing::{
    any_len_allowed, both_well_framed, check_fields, check_fields_pair, check_fields_with, clamped,
    well_framed,
};

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

#[cfg(test)]
mod tests;
