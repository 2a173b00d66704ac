//! The raw gRPC codec: a message leaves as bytes that are already encoded ([`RawMessage`])
//! and arrives as the `Bytes` tonic received. The test harness uses it for its capturing
//! upstream and raw clients. (Ingest reads its messages itself, charged from their length
//! prefix: `ingest/grpc/message.rs`; forwarding frames its batches itself, without a codec
//! buffer: `forward/send.rs`.)

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// A message already encoded, written to the wire as it is.
pub trait RawMessage: Send + 'static {
    /// Writes the encoded message.
    fn write_to(&self, dst: &mut EncodeBuf<'_>);
}

impl RawMessage for Bytes {
    fn write_to(&self, dst: &mut EncodeBuf<'_>) {
        dst.put_slice(self);
    }
}

/// Sends `T` as its bytes; receives the message bytes undecoded.
#[derive(Debug)]
pub struct RawCodec<T>(PhantomData<fn(T)>);

impl<T> Default for RawCodec<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T: RawMessage> Codec for RawCodec<T> {
    type Encode = T;
    type Decode = Bytes;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self::default()
    }

    fn decoder(&mut self) -> Self {
        Self::default()
    }
}

impl<T: RawMessage> Encoder for RawCodec<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.write_to(dst);
        Ok(())
    }
}

impl<T> Decoder for RawCodec<T> {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}
