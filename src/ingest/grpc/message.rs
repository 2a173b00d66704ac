//! Reads the one message of a unary gRPC request, paying for it out of the budget before it
//! is buffered: the 5-byte length prefix is read first, a declared length over
//! `--max-message-bytes` is refused at once (`RESOURCE_EXHAUSTED`), one the budget cannot
//! hold is refused (`UNAVAILABLE`: at once, or after waiting briefly for room the pipeline is
//! giving back, see [`crate::pipeline::budget`]), and only then is an exactly sized buffer
//! allocated. `grpc-encoding: gzip` messages are inflated in charged steps, never past the
//! limit. The message is copied out of the HTTP/2 frames into its own buffer, so its span
//! slices pin only it, never a connection's receive buffer.

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::Body;
use http_body_util::BodyExt;
use tonic::Code;

use crate::ingest::http::{BodyError, Compression, inflate};
use crate::ingest::refused::Refused;
use crate::ingest::region::BodyBuffer;
use crate::pipeline::{Arena, Budget, BudgetFull, Charge, Part, REQUEST_OVERHEAD};

/// The gRPC length prefix: a compressed flag and a big-endian length.
const PREFIX: usize = 5;

/// Why a unary request message could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The declared (or inflated) message is over `--max-message-bytes`.
    #[error("the request message ({declared} bytes) is larger than the {limit}-byte limit")]
    TooLarge {
        /// The declared length (or, inflated, the limit plus one).
        declared: usize,
        /// The limit.
        limit: usize,
    },
    /// The budget cannot hold the message now; retry later.
    #[error("cannot take the request message now: {0}")]
    Budget(#[from] BudgetFull),
    /// A `grpc-encoding` other than gzip / identity.
    #[error("unsupported grpc-encoding {0:?}: send gzip or identity")]
    Encoding(String),
    /// The compressed flag is set but the request names no encoding.
    #[error("the message is flagged compressed but the request has no grpc-encoding")]
    FlaggedWithoutEncoding,
    /// The gzip stream is broken.
    #[error("{0}")]
    Corrupt(String),
    /// The request ended before its message did, or carried none.
    #[error("the request message is incomplete: {0}")]
    Incomplete(String),
    /// More than one message on a unary call.
    #[error("a unary call carries exactly one message")]
    ExtraData,
}

impl From<MessageError> for Refused {
    fn from(error: MessageError) -> Self {
        let code = match error {
            MessageError::TooLarge { .. } => return Refused::too_large(error),
            MessageError::Budget(_) => return Refused::unavailable(error),
            MessageError::Encoding(_) => Code::Unimplemented,
            MessageError::FlaggedWithoutEncoding
            | MessageError::Corrupt(_)
            | MessageError::Incomplete(_) => Code::Internal,
            MessageError::ExtraData => Code::InvalidArgument,
        };
        Refused::new(http::StatusCode::BAD_REQUEST, code, error.to_string())
    }
}

/// The request's `grpc-encoding`: `None` for identity.
fn encoding(headers: &HeaderMap) -> Result<Option<Compression>, MessageError> {
    match headers.get("grpc-encoding").map(|v| v.as_bytes()) {
        None | Some(b"identity") => Ok(None),
        Some(b"gzip") => Ok(Some(Compression::Gzip)),
        Some(other) => Err(MessageError::Encoding(
            String::from_utf8_lossy(other).into_owned(),
        )),
    }
}

/// Reads the request's one message within `limit` and `budget`, into `region` when it has
/// room; returns it (inflated) with the in-flight charge that pays for it: its buffer plus
/// [`REQUEST_OVERHEAD`].
pub async fn read_message<B>(
    body: B,
    headers: &HeaderMap,
    limit: usize,
    budget: &Budget,
    region: Option<&Arena>,
) -> Result<(Bytes, Charge), MessageError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let compression = encoding(headers)?;
    let mut body = std::pin::pin!(body);
    // The prefix first: nothing is buffered but these five bytes.
    let mut prefix = [0u8; PREFIX];
    let mut have = 0;
    let mut rest = Bytes::new();
    while have < PREFIX {
        let Some(mut data) = next_data(&mut body).await? else {
            return Err(MessageError::Incomplete(if have == 0 {
                "no message".into()
            } else {
                format!("{have} bytes of the 5-byte length prefix arrived")
            }));
        };
        let n = (PREFIX - have).min(data.len());
        prefix[have..have + n].copy_from_slice(&data[..n]);
        data.advance(n);
        have += n;
        rest = data;
    }
    let compressed = prefix[0] == 1;
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len > limit {
        return Err(MessageError::TooLarge {
            declared: len,
            limit,
        });
    }
    // Paid for before it is allocated.
    let mut charge = match budget
        .reserve_waiting(Part::InFlight, REQUEST_OVERHEAD + len, 0)
        .await
    {
        Ok(charge) => charge,
        Err(full) => {
            if len <= DRAIN_LIMIT {
                drain(&mut body).await;
            }
            return Err(full.into());
        }
    };
    // Uncompressed messages are read straight into the ring's region when it has room
    // (`ingest::region`); gzip ones are inflated, so their compressed bytes only pass through
    // the heap.
    let mut buf = if compressed {
        BodyBuffer::heap(len)
    } else {
        BodyBuffer::reserve(len, region, budget).await
    };
    loop {
        let take = buf.remaining().min(rest.len());
        buf.put(&rest[..take]);
        rest.advance(take);
        if rest.has_remaining() {
            return Err(MessageError::ExtraData);
        }
        match buf.next(next_data(&mut body)).await? {
            Some(data) => rest = data,
            None => break,
        }
    }
    if buf.filled() < len {
        return Err(MessageError::Incomplete(format!(
            "{} of {len} bytes arrived",
            buf.filled()
        )));
    }
    let buf = buf.freeze();
    if !compressed {
        return Ok((buf, charge));
    }
    let compression = compression.ok_or(MessageError::FlaggedWithoutEncoding)?;
    let inflated = inflate(compression, buf, limit, &mut charge).map_err(|error| match error {
        BodyError::TooLarge { limit } => MessageError::TooLarge {
            declared: limit + 1,
            limit,
        },
        BodyError::Budget(full) => MessageError::Budget(full),
        other => MessageError::Corrupt(other.to_string()),
    })?;
    Ok((inflated, charge))
}

/// Messages up to this size are read to their end (and dropped) when refused for room, so
/// the stream closes cleanly: resetting each would trip HTTP/2's guard against floods of
/// resets (`ENHANCE_YOUR_CALM`) and close the connection on its other streams. Their bytes
/// are already in flight within the stream's flow-control window.
const DRAIN_LIMIT: usize = 64 << 10;

/// The next data frame's bytes (trailers skipped); `None` at the end of the body.
async fn next_data<B>(body: &mut std::pin::Pin<&mut B>) -> Result<Option<Bytes>, MessageError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| MessageError::Incomplete(e.into().to_string()))?;
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// Reads a refused message's remaining frames, dropping each, for at most a second.
async fn drain<B>(body: &mut std::pin::Pin<&mut B>)
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let all = async { while let Ok(Some(_)) = next_data(body).await {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), all).await;
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use http_body_util::{Full, StreamBody};

    use super::*;

    fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    /// Reads a request whose whole body is `wire`, with no region.
    async fn read_whole(
        wire: Vec<u8>,
        headers: &HeaderMap,
        limit: usize,
        budget: &Budget,
    ) -> Result<(Bytes, Charge), MessageError> {
        read_message(Full::new(Bytes::from(wire)), headers, limit, budget, None).await
    }

    fn gzip_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-encoding", http::HeaderValue::from_static("gzip"));
        h
    }

    #[tokio::test]
    async fn a_message_split_over_frames_is_read_and_charged_exactly() {
        let budget = Budget::new(1 << 20, 0.9, 0.5);
        let wire = framed(0, b"hello world");
        let frames: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = wire
            .chunks(3)
            .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let (message, charge) = read_message(body, &HeaderMap::new(), 100, &budget, None)
            .await
            .unwrap();
        assert_eq!(message, "hello world");
        assert_eq!(charge.bytes(), REQUEST_OVERHEAD + 11);
        assert_eq!(budget.part_bytes(Part::InFlight), REQUEST_OVERHEAD + 11);
    }

    #[tokio::test]
    async fn an_oversized_or_unaffordable_declaration_is_refused_before_the_body() {
        let budget = Budget::new(64 << 10, 0.9, 0.5);
        // Only the prefix is sent: the refusal must not wait for (or buffer) the body.
        let headers = HeaderMap::new();
        let declare = |len: u32| {
            let mut prefix = vec![0u8];
            prefix.extend_from_slice(&len.to_be_bytes());
            read_whole(prefix, &headers, 4 << 20, &budget)
        };
        let error = declare(1 << 30).await.unwrap_err();
        assert!(matches!(error, MessageError::TooLarge { declared, .. } if declared == 1 << 30));
        assert_eq!(Refused::from(error).grpc_code(), Code::ResourceExhausted);
        let error = declare(1 << 20).await.unwrap_err();
        assert_eq!(Refused::from(error).grpc_code(), Code::Unavailable);
        assert_eq!(budget.used_bytes(), 0);
    }

    #[tokio::test]
    async fn gzip_is_inflated_within_the_limit() {
        let budget = Budget::new(64 << 20, 0.9, 0.5);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 8 << 20]).unwrap();
        let bomb = framed(1, &enc.finish().unwrap());
        let error = read_whole(bomb, &gzip_headers(), 1 << 20, &budget)
            .await
            .unwrap_err();
        assert_eq!(Refused::from(error).grpc_code(), Code::ResourceExhausted);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(b"spans").unwrap();
        let small = framed(1, &enc.finish().unwrap());
        let (message, _charge) = read_whole(small, &gzip_headers(), 1 << 20, &budget)
            .await
            .unwrap();
        assert_eq!(message, "spans");
        let flagged = framed(1, b"x");
        let error = read_whole(flagged, &HeaderMap::new(), 10, &budget)
            .await
            .unwrap_err();
        assert_eq!(Refused::from(error).grpc_code(), Code::Internal);
    }

    #[tokio::test]
    async fn truncated_and_doubled_messages_are_refused() {
        let budget = Budget::new(1 << 20, 0.9, 0.5);
        let mut cut = framed(0, b"hello");
        cut.truncate(7);
        let error = read_whole(cut, &HeaderMap::new(), 100, &budget)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("2 of 5 bytes"), "{error}");
        let mut two = framed(0, b"a");
        two.extend(framed(0, b"b"));
        let error = read_whole(two, &HeaderMap::new(), 100, &budget)
            .await
            .unwrap_err();
        assert!(matches!(error, MessageError::ExtraData));
    }

    #[tokio::test]
    async fn a_message_is_read_into_the_region_when_it_has_room() {
        let budget = Budget::new(1 << 20, 0.9, 0.5);
        let region = Arena::new(64).unwrap();
        let headers = HeaderMap::new();
        let read = |message: &'static [u8], region| {
            let body = Full::new(Bytes::from(framed(0, message)));
            read_message(body, &headers, 100, &budget, region)
        };
        let (message, _charge) = read(b"in the region", Some(&region)).await.unwrap();
        assert_eq!(message, "in the region");
        assert!(region.holds(&message[3..]));
        let (message, _charge) = read(&[b'x'; 60], Some(&region)).await.unwrap();
        assert!(!region.holds(&message), "no room: read to the heap");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_message_moves_out_of_the_region() {
        let budget = Budget::new(1 << 20, 0.9, 0.5);
        let region = Arena::new(1 << 10).unwrap();
        let wire = framed(0, b"slowly, slowly");
        let (tx, rx) = tokio::sync::mpsc::channel::<
            Result<http_body::Frame<Bytes>, std::convert::Infallible>,
        >(4);
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        tx.send(Ok(http_body::Frame::data(Bytes::copy_from_slice(
            &wire[..9],
        ))))
        .await
        .unwrap();
        let reader = tokio::spawn({
            let region = region.clone();
            async move { read_message(body, &HeaderMap::new(), 100, &budget, Some(&region)).await }
        });
        tokio::time::sleep(crate::ingest::region::REGION_HOLD / 2).await;
        assert_eq!(region.used(), 14, "reading into the region");
        tokio::time::sleep(crate::ingest::region::REGION_HOLD).await;
        assert_eq!(region.used(), 0, "moved out: the room is back");
        tx.send(Ok(http_body::Frame::data(Bytes::copy_from_slice(
            &wire[9..],
        ))))
        .await
        .unwrap();
        drop(tx);
        let (message, _charge) = reader.await.unwrap().unwrap();
        assert_eq!(message, "slowly, slowly");
        assert!(!region.holds(&message));
    }
}
