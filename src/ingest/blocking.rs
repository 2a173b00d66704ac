//! The bounded pool the CPU-heavy decoders (Thrift binary, Thrift JSON, Lightstep JSON,
//! OTLP JSON) run on, off the async workers, so one slow report never stalls `/_live` or other
//! clients' requests.
//!
//! At most one decode per core runs at a time; the rest wait their turn holding only their
//! (already charged) bodies.

use std::sync::LazyLock;

use tokio::sync::Semaphore;

/// One permit per core.
static DECODERS: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

/// A decode that did not finish.
#[derive(Debug, thiserror::Error)]
#[error("the decoder failed: {0}")]
pub struct DecodeFailed(String);

/// Runs `decode` on the blocking pool once a permit is free.
pub async fn decode<T, F>(decode: F) -> Result<T, DecodeFailed>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let _permit = DECODERS
        .acquire()
        .await
        .map_err(|e| DecodeFailed(e.to_string()))?;
    tokio::task::spawn_blocking(decode)
        .await
        .map_err(|e| DecodeFailed(e.to_string()))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs_off_the_worker_and_returns_the_value() {
        let worker = std::thread::current().id();
        let (value, thread) = super::decode(|| (7, std::thread::current().id()))
            .await
            .unwrap();
        assert_eq!(value, 7);
        assert_ne!(thread, worker);
    }
}
