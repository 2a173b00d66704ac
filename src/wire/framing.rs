//! Framing checks: whether a run of fields is soundly framed (every tag, varint and length
//! in bounds) without producing the fields. [`well_framed`] and [`both_well_framed`] answer
//! yes or no on the hot path; [`check_fields`] names the first fault when there is one.

use super::fields::step;
use super::{FIXED32, FIXED64, LEN, VARINT, WireError};

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
/// per-span check of the hot path. Both walks run on [`both_well_framed`]; only when it finds a
/// fault are the two ranges walked again, one after the other, to name the first error.
pub fn check_fields_pair(
    buf: &[u8],
    a: (usize, usize),
    b: (usize, usize),
) -> Result<(), WireError> {
    if both_well_framed(clamped(buf, a), clamped(buf, b), any_len_allowed) {
        return Ok(());
    }
    check_fields(buf, a.0, a.1)?;
    check_fields(buf, b.0, b.1)
}

/// `buf[start..end]` cut the way [`check_fields`] cuts it: empty when out of bounds.
#[inline]
pub fn clamped(buf: &[u8], (start, end): (usize, usize)) -> &[u8] {
    buf.get(start..end.min(buf.len())).unwrap_or_default()
}

/// The rule of [`both_well_framed`] and [`well_framed`] that lets a payload of any length through.
#[inline(always)]
pub fn any_len_allowed(_number: u32, _len: usize) -> bool {
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
pub fn well_framed(mut fields: &[u8], rule: impl Fn(u32, usize) -> bool + Copy) -> bool {
    while !fields.is_empty() {
        match skip_field(fields, rule) {
            Some(rest) => fields = rest,
            None => return false,
        }
    }
    true
}

/// [`well_framed`] on two runs at once. The two walks do not depend on each other, so stepping them
/// in turn lets the CPU overlap their load-to-use chains; the common field is read in the
/// loop itself, with one branch for both walks.
#[inline(never)]
pub fn both_well_framed(
    mut a: &[u8],
    mut b: &[u8],
    rule: impl Fn(u32, usize) -> bool + Copy,
) -> bool {
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
            return well_framed(a, rule) && well_framed(b, rule);
        }
        match (skip_field(a, rule), skip_field(b, rule)) {
            (Some(rest_a), Some(rest_b)) => (a, b) = (rest_a, rest_b),
            _ => return false,
        }
    }
}
