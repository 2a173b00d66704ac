//! What went wrong sending a batch upstream, where it came from, and whether a retry may help.

use tonic::Code;

/// Where a forwarding error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The upstream answered with an error status.
    Upstream,
    /// The connection to the upstream failed (refused, reset, TLS, timeout).
    Connection,
}

/// One failed upstream attempt.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{origin:?} error {code:?}: {message}")]
pub struct ForwardError {
    /// The gRPC code (transport failures surface as `Unavailable`/`Unknown`).
    pub code: Code,
    /// The status message, never containing the token (the upstream does not echo it).
    pub message: String,
    /// Where it came from.
    pub origin: ErrorSource,
}

impl ForwardError {
    /// Builds the error from a status the client call returned.
    pub fn from_status(status: &tonic::Status) -> Self {
        // tonic reports transport failures as statuses with a source error attached.
        let source = if std::error::Error::source(status).is_some() {
            ErrorSource::Connection
        } else {
            ErrorSource::Upstream
        };
        ForwardError {
            code: status.code(),
            message: status.message().to_owned(),
            origin: source,
        }
    }

    /// Whether the same batch may succeed later. Refusals of the data or the token
    /// (`INVALID_ARGUMENT`, `UNAUTHENTICATED`, `PERMISSION_DENIED`, ...) never will.
    pub fn retry_allowed(&self) -> bool {
        match self.code {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted => true,
            // A broken connection (reset, GOAWAY) without a proper status.
            Code::Unknown | Code::Internal | Code::Cancelled => {
                self.origin == ErrorSource::Connection
            }
            _ => false,
        }
    }

    /// The metrics label for the code.
    pub fn code_label(&self) -> &'static str {
        code_label(self.code)
    }
}

/// The metrics label for a gRPC code.
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: Code, source: ErrorSource) -> ForwardError {
        ForwardError {
            code,
            message: String::new(),
            origin: source,
        }
    }

    #[test]
    fn retry_policy() {
        assert!(err(Code::Unavailable, ErrorSource::Upstream).retry_allowed());
        assert!(err(Code::DeadlineExceeded, ErrorSource::Upstream).retry_allowed());
        assert!(err(Code::Unknown, ErrorSource::Connection).retry_allowed());
        assert!(!err(Code::Unknown, ErrorSource::Upstream).retry_allowed());
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
        ] {
            assert!(
                !err(code, ErrorSource::Upstream).retry_allowed(),
                "{code:?}"
            );
        }
    }
}
