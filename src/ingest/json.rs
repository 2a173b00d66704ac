//! The memory bound of the JSON routes (Lightstep `/api/v2/reports` and OTLP/HTTP
//! `/v1/traces` as `application/json`): the model a body decodes into is estimated from the
//! body's tokens before it is built, refused when it passes a multiple of the body or the
//! whole budget, paid for in flight, and built on the bounded blocking pool.
//!
//! A decoded model is far larger than its JSON (`{}` is two bytes on the wire and a struct of
//! hundreds in memory), so a body well under `--max-message-bytes` could otherwise build
//! gigabytes, on an async worker. Counting is one pass over the bytes without decoding; each
//! route says what its decoder spends per object and per other token ([`JsonModel`]).

use axum::http::StatusCode;
use bytes::Bytes;

use super::blocking;
use super::http::{BodyError, Route};
use super::intake::RefusalReason;
use super::refused::Refused;
use crate::pipeline::{Charge, Protocol, REQUEST_OVERHEAD};

/// Bytes the decoded model may take per byte of body. Real reports and exports expand about
/// 20x by the estimate (a span is a handful of small objects); `{}`-element bombs 200x-500x.
pub const JSON_EXPANSION: usize = 64;

/// Floor of the allowance, so tiny bodies are never refused for their framing.
const JSON_FLOOR: usize = 256 << 10;

/// Bytes the decode may take per byte of body besides its objects and tokens: the string
/// bytes copied into the model, then the protobuf encoded from it.
const BODY_COPIES: usize = 2;

/// What one route's decoder spends on a JSON body, per kind of token.
#[derive(Debug, Clone, Copy)]
pub struct JsonModel {
    /// What one body is called in refusals (`"JSON report"`, `"OTLP/JSON export"`).
    pub what: &'static str,
    /// Bytes per object: the struct or message it becomes, with its container's slack.
    pub object_cost: usize,
    /// Bytes per other key, value or element (`[`, `,` and `:` outside strings).
    pub token_cost: usize,
}

impl JsonModel {
    /// What decoding `json` will allocate at most, from its objects and other tokens (counted
    /// outside strings, in one pass, without decoding) and its size.
    pub fn bytes(&self, json: &[u8]) -> usize {
        let (mut objects, mut tokens) = (0usize, 0usize);
        let (mut in_string, mut escaped) = (false, false);
        for &byte in json {
            if in_string {
                match (escaped, byte) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'{' => objects += 1,
                b'[' | b',' | b':' => tokens += 1,
                _ => {}
            }
        }
        objects
            .saturating_mul(self.object_cost)
            .saturating_add(tokens.saturating_mul(self.token_cost))
            .saturating_add(json.len().saturating_mul(BODY_COPIES))
    }

    /// Grows `charge` by the model of `body` before it is built, or says why not (and what
    /// to count): 413 past [`JSON_EXPANSION`] times the body or past the whole budget (it
    /// could never fit), 503 when the budget cannot hold it now.
    fn pay(
        &self,
        body: &[u8],
        charge: &mut Charge,
        max_message_bytes: usize,
    ) -> Result<(), (RefusalReason, Refused)> {
        let model = self.bytes(body);
        let allowance = body.len().saturating_mul(JSON_EXPANSION).max(JSON_FLOOR);
        if model > allowance {
            return Err((
                RefusalReason::TooLarge,
                Refused::too_large(format!(
                    "the {what} decodes to more than {allowance} bytes ({JSON_EXPANSION}x its {len}-byte body; --max-message-bytes ({max_message_bytes}) bounds the body, {JSON_EXPANSION}x the body what it decodes to): send fewer spans per request",
                    what = self.what,
                    len = body.len(),
                )),
            ));
        }
        let Err(full) = charge.try_grow(model) else {
            return Ok(());
        };
        if model.saturating_add(charge.bytes()) > full.capacity {
            return Err((
                RefusalReason::TooLarge,
                Refused::too_large(format!(
                    "the {what} decodes to about {model} bytes, more than the whole {capacity}-byte buffer (--buffer-bytes) holds: send smaller requests",
                    what = self.what,
                    capacity = full.capacity,
                )),
            ));
        }
        Err((RefusalReason::Budget, BodyError::Budget(full).into()))
    }

    /// Decodes `body` with `decode` on the bounded blocking pool, its model paid for out of
    /// `charge` before it is built: refused 413 when the estimate passes [`JSON_EXPANSION`]
    /// times the body or the whole budget, 503 when the budget cannot hold it now. Returns the
    /// protobuf and the charge, shrunk to cover only it once the model and the JSON are gone.
    pub async fn decode<F>(
        &self,
        route: &Route,
        protocol: Protocol,
        body: Bytes,
        mut charge: Charge,
        decode: F,
    ) -> Result<(Bytes, Charge), Refused>
    where
        F: FnOnce(&[u8]) -> Result<Bytes, BodyError> + Send + 'static,
    {
        if let Err((reason, refused)) = self.pay(&body, &mut charge, route.max_message_bytes) {
            tracing::debug!(%refused, "refused JSON body");
            route.intake.count_refused(protocol, reason);
            return Err(refused);
        }
        let decoded = blocking::decode(move || decode(&body))
            .await
            .map_err(|error| {
                Refused::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    tonic::Code::Internal,
                    error.to_string(),
                )
            })??;
        // The model and the JSON are gone: only the protobuf is held from here on.
        charge.shrink(
            charge
                .bytes()
                .saturating_sub(decoded.len() + REQUEST_OVERHEAD),
        );
        Ok((decoded, charge))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Budget, Part};

    const MODEL: JsonModel = JsonModel {
        what: "JSON test",
        object_cost: 1000,
        token_cost: 100,
    };

    #[test]
    fn the_json_model_is_estimated_from_its_tokens_outside_strings() {
        let json = br#"{"a":"{[,:\"}"}"#;
        assert_eq!(MODEL.bytes(json), 1000 + 100 + BODY_COPIES * json.len());
        let bomb = format!(r#"{{"spans":[{}]}}"#, vec!["{}"; 1000].join(","));
        assert!(MODEL.bytes(bomb.as_bytes()) > bomb.len() * JSON_EXPANSION);
    }

    fn charge(budget: &Budget, body: &[u8]) -> Charge {
        budget.reserve(Part::InFlight, body.len(), 0).unwrap()
    }

    #[test]
    fn the_model_is_charged_before_it_is_built() {
        let budget = Budget::new(64 << 20, 0.9, 0.5);
        let body = br#"{"spans":[{"a":1},{"a":2}]}"#;
        let mut paid = charge(&budget, body);
        MODEL.pay(body, &mut paid, 1 << 20).unwrap();
        assert_eq!(paid.bytes(), body.len() + MODEL.bytes(body));
        assert_eq!(budget.part_bytes(Part::InFlight), paid.bytes());
    }

    #[test]
    fn an_element_bomb_is_refused_413_naming_the_limit() {
        let budget = Budget::new(64 << 20, 0.9, 0.5);
        let bomb = format!(r#"{{"spans":[{}]}}"#, vec!["{}"; 200_000].join(","));
        let mut paid = charge(&budget, bomb.as_bytes());
        let (reason, refused) = MODEL.pay(bomb.as_bytes(), &mut paid, 4 << 20).unwrap_err();
        assert_eq!(reason, RefusalReason::TooLarge);
        assert_eq!(refused.http_status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            refused.message().contains("decodes to more than"),
            "{refused}"
        );
        assert!(
            refused.message().contains("--max-message-bytes"),
            "{refused}"
        );
        assert_eq!(paid.bytes(), bomb.len(), "nothing more was charged");
    }

    #[test]
    fn a_model_the_budget_cannot_hold_now_is_503_and_one_it_never_could_413() {
        let body = format!(r#"{{"spans":[{}]}}"#, vec![r#"{"a":1}"#; 100].join(","));
        let model = MODEL.bytes(body.as_bytes());
        // Room for the body and half the model: the rest is held by another request.
        let budget = Budget::new(4 * model, 0.9, 0.5);
        let _other = budget.reserve(Part::InFlight, 3 * model, 0).unwrap();
        let mut paid = charge(&budget, body.as_bytes());
        let (reason, refused) = MODEL.pay(body.as_bytes(), &mut paid, 1 << 20).unwrap_err();
        assert_eq!(reason, RefusalReason::Budget);
        assert_eq!(refused.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused.message().contains("buffer full"), "{refused}");
        // A budget smaller than the model: retrying could never help.
        let small = Budget::new(model / 2, 0.9, 0.5);
        let mut paid = charge(&small, body.as_bytes());
        let (reason, refused) = MODEL.pay(body.as_bytes(), &mut paid, 1 << 20).unwrap_err();
        assert_eq!(reason, RefusalReason::TooLarge);
        assert!(refused.message().contains("--buffer-bytes"), "{refused}");
    }
}
