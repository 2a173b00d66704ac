//! [`Refused`]: the one answer a client gets when cubesat will not take its request. It pairs
//! the HTTP status, the gRPC code and the message, so every transport says the same thing
//! about the same fault; each error type of ingest converts into it once, without side
//! effects (the intake counts refusals; conversions only describe them).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tonic::Code;

use super::http::BodyError;
use super::intake::IngestError;
use crate::pipeline::PushError;

/// A refused request: HTTP status, gRPC code and the message, kept together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    http: StatusCode,
    grpc: Code,
    message: String,
}

impl Refused {
    /// The client sent something cubesat cannot read (400, `INVALID_ARGUMENT`).
    pub fn bad_request(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            message.to_string(),
        )
    }

    /// The request is over a size limit (413, `RESOURCE_EXHAUSTED`).
    pub fn too_large(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::ResourceExhausted,
            message.to_string(),
        )
    }

    /// cubesat has no room now (or is draining); retry later (503, `UNAVAILABLE`).
    pub fn unavailable(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::Unavailable,
            message.to_string(),
        )
    }

    /// Any other pairing.
    pub fn new(http: StatusCode, grpc: Code, message: String) -> Self {
        Self {
            http,
            grpc,
            message,
        }
    }

    /// The HTTP status.
    pub fn http_status(&self) -> StatusCode {
        self.http
    }

    /// The gRPC code.
    pub fn grpc_code(&self) -> Code {
        self.grpc
    }

    /// What the client is told.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The gRPC status.
    pub fn into_status(self) -> tonic::Status {
        tonic::Status::new(self.grpc, self.message)
    }

    /// A plain-text HTTP reply; 503s say when to come back.
    ///
    /// The text always starts with `Failed:`. The Python Lightstep tracer ignores the status
    /// and parses the body as a `ReportResponse`; `F` (0x46) is a tag with wire type 6, which
    /// does not exist, so the body can never parse as a success and the tracer keeps its spans.
    pub fn text_response(self) -> Response {
        let mut response = (self.http, format!("Failed: {}\n", self.message)).into_response();
        if self.http == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        self.text_response()
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<IngestError> for Refused {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::Untranslatable(crate::translate::TranslateError::TooLarge { .. }) => {
                Refused::too_large(error)
            }
            IngestError::Malformed(_)
            | IngestError::MalformedOtlp(_)
            | IngestError::Untranslatable(_) => Refused::bad_request(error),
            IngestError::Unavailable(PushError::Closed) => {
                Refused::unavailable("satellite is shutting down; retry")
            }
            IngestError::Unavailable(e @ PushError::Full { .. }) => {
                Refused::unavailable(format!("satellite is overloaded ({e}); retry later"))
            }
            IngestError::Unavailable(PushError::Spool(e)) => Refused::unavailable(format!(
                "satellite cannot spool the report ({e}); retry later"
            )),
            // A token is a credential: clients (and Lightstep's own collectors) treat a bad
            // one as UNAUTHENTICATED, and neither gRPC nor OTel clients retry it.
            IngestError::Token(_) => Refused::new(
                StatusCode::UNAUTHORIZED,
                Code::Unauthenticated,
                error.to_string(),
            ),
        }
    }
}

impl From<BodyError> for Refused {
    fn from(error: BodyError) -> Self {
        match error {
            BodyError::TooLarge { .. } => Refused::too_large(error),
            BodyError::Budget(_) => Refused::unavailable(error),
            BodyError::MediaType { .. } => Refused::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::InvalidArgument,
                error.to_string(),
            ),
            BodyError::Encoding(_) | BodyError::Corrupt { .. } | BodyError::Invalid(_) => {
                Refused::bad_request(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_is_503_and_unavailable_with_a_retry_after() {
        let refused = Refused::from(IngestError::Unavailable(PushError::Closed));
        assert_eq!(refused.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.grpc_code(), Code::Unavailable);
        let response = refused.text_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn body_errors_keep_their_http_meaning() {
        let too_large = Refused::from(BodyError::TooLarge { limit: 4 });
        assert_eq!(too_large.http_status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(too_large.grpc_code(), Code::ResourceExhausted);
        let media = Refused::from(BodyError::MediaType {
            found: "text/plain".into(),
            expected: "application/json",
        });
        assert_eq!(media.http_status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(media.message().contains("text/plain"));
    }
}
