//! The memory bound of the Thrift decoders: every element and string of the decoded model is
//! paid for before it is allocated, out of an allowance proportional to the body and out of
//! the one memory budget.
//!
//! The model is far larger than its encoding (an empty struct is one byte on the wire and a
//! few hundred in memory), so a small body could otherwise build gigabytes. A list's declared
//! length is checked against what is left before its vector is allocated, so a hostile length
//! is refused at once with a 413, not discovered element by element.

use crate::pipeline::{BudgetFull, Charge};

use super::ThriftError;

/// Bytes the decoded model may take per byte of (decompressed) body. Real reports expand
/// 2-8x (strings move, structs are a few hundred bytes); empty-struct bombs expand 100x+.
pub const MODEL_EXPANSION: usize = 16;

/// Floor of the allowance, so tiny reports are never refused for their framing.
const MODEL_FLOOR: usize = 64 << 10;

/// Budget is taken in steps of this size, not once per element.
const CHARGE_STEP: usize = 64 << 10;

/// Pays for a decoded model: a cap in bytes and, when charged, the budget behind it.
#[derive(Debug)]
pub struct ModelMeter {
    limit: usize,
    left: usize,
    prepaid: usize,
    charge: Option<Charge>,
}

impl ModelMeter {
    /// A meter for the model of a `body_len`-byte body, not charged to any budget.
    pub fn new(body_len: usize) -> Self {
        let limit = body_len.saturating_mul(MODEL_EXPANSION).max(MODEL_FLOOR);
        ModelMeter {
            limit,
            left: limit,
            prepaid: 0,
            charge: None,
        }
    }

    /// The same meter, also growing `charge` by what the model takes.
    pub fn charged(mut self, charge: Charge) -> Self {
        self.charge = Some(charge);
        self
    }

    /// The charge, grown by what the model took (it is held until the model is dropped).
    pub fn into_charge(self) -> Option<Charge> {
        self.charge
    }

    /// Pays for `bytes` more of the model, before they are allocated.
    pub fn take(&mut self, bytes: usize) -> Result<(), ThriftError> {
        if bytes > self.left {
            return Err(ThriftError::TooLarge { limit: self.limit });
        }
        self.left -= bytes;
        if bytes > self.prepaid {
            let step = (bytes - self.prepaid).max(CHARGE_STEP);
            if let Some(charge) = self.charge.as_mut() {
                charge
                    .try_grow(step)
                    .map_err(|full: BudgetFull| ThriftError::Budget(full))?;
            }
            self.prepaid += step;
        }
        self.prepaid -= bytes;
        Ok(())
    }

    /// Pays for `count` elements of `T` (a list about to be allocated).
    pub fn take_elements<T>(&mut self, count: usize) -> Result<(), ThriftError> {
        self.take(count.saturating_mul(std::mem::size_of::<T>()))
    }
}

/// An upper bound of the model a Thrift-shaped JSON body decodes into: every object a
/// struct of the largest kind, every array element or member a JSON value, every string
/// byte copied twice (UTF-8 repair, then the model).
pub fn json_model_bytes(body: &[u8]) -> usize {
    let (mut objects, mut elements) = (0usize, 0usize);
    for &b in body {
        objects += usize::from(b == b'{');
        elements += usize::from(b == b'[' || b == b',');
    }
    let largest = std::mem::size_of::<super::SpanRecord>()
        .max(std::mem::size_of::<super::LogRecord>())
        .max(std::mem::size_of::<super::KeyValue>());
    objects
        .saturating_mul(largest)
        .saturating_add(elements.saturating_mul(std::mem::size_of::<serde_json::Value>()))
        .saturating_add(body.len().saturating_mul(2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Budget, Part};

    #[test]
    fn the_allowance_is_a_multiple_of_the_body() {
        let mut meter = ModelMeter::new(1 << 20);
        meter.take(MODEL_EXPANSION << 20).unwrap();
        assert!(matches!(
            meter.take(1),
            Err(ThriftError::TooLarge { limit }) if limit == MODEL_EXPANSION << 20
        ));
        let mut tiny = ModelMeter::new(3);
        tiny.take_elements::<u64>(1000).unwrap();
    }

    #[test]
    fn a_charged_meter_grows_the_charge_in_steps_and_stops_at_the_budget() {
        let budget = Budget::new(1 << 20, 0.9, 0.5);
        let charge = budget.reserve(Part::InFlight, 100, 0).unwrap();
        let mut meter = ModelMeter::new(1 << 20).charged(charge);
        meter.take(10).unwrap();
        meter.take(10).unwrap();
        assert!(matches!(meter.take(2 << 20), Err(ThriftError::Budget(_))));
        assert_eq!(budget.used_bytes(), 100 + CHARGE_STEP);
        let charge = meter.into_charge().unwrap();
        assert_eq!(charge.bytes(), 100 + CHARGE_STEP);
        drop(charge);
        assert_eq!(budget.used_bytes(), 0);
    }

    #[test]
    fn json_bombs_estimate_far_above_their_size() {
        let bomb = format!("{{\"span_records\":[{}{{}}]}}", "{},".repeat(10_000));
        assert!(json_model_bytes(bomb.as_bytes()) > MODEL_EXPANSION * bomb.len());
    }
}
