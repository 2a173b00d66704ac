//! Protocol detection: the first bytes of a connection, read under a deadline, tell the HTTP/2
//! preface from an HTTP/1 request line; the bytes are then replayed through [`Rewind`] so
//! hyper sees the connection from its first byte.
//!
//! Reads at most the 24 bytes of the preface, and stops at the first byte that differs from it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// The HTTP/2 preface (h2c with prior knowledge, or h2 under TLS).
    Http2,
    /// Anything else: served as HTTP/1.1 (hyper answers garbage with 400).
    Http1,
    /// The client closed before sending a byte.
    Closed,
}

/// Reads until the preface is complete or ruled out. Call it under a timeout.
pub async fn read_prefix<I: AsyncRead + Unpin>(io: &mut I) -> io::Result<(Detected, Bytes)> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut len = 0;
    loop {
        let n = io.read(&mut buf[len..]).await?;
        if n == 0 {
            let detected = if len == 0 {
                Detected::Closed
            } else {
                Detected::Http1
            };
            return Ok((detected, Bytes::copy_from_slice(&buf[..len])));
        }
        len += n;
        if buf[..len] != H2_PREFACE[..len] {
            return Ok((Detected::Http1, Bytes::copy_from_slice(&buf[..len])));
        }
        if len == H2_PREFACE.len() {
            return Ok((Detected::Http2, Bytes::copy_from_slice(&buf)));
        }
    }
}

/// An IO that first yields `prefix`, then reads from `inner`; writes go straight through.
#[derive(Debug)]
pub struct Rewind<I> {
    prefix: Bytes,
    inner: I,
}

impl<I> Rewind<I> {
    /// Replays `prefix` before `inner`'s own bytes.
    pub fn new(prefix: Bytes, inner: I) -> Self {
        Self { prefix, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

delegate_async_write!(Rewind);

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn tells_h2_from_http1_and_replays_the_bytes() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(H2_PREFACE).await.unwrap();
        client.write_all(b"rest").await.unwrap();
        let (detected, prefix) = read_prefix(&mut server).await.unwrap();
        assert_eq!(detected, Detected::Http2);
        let mut replay = Rewind::new(prefix, server);
        let mut all = vec![0u8; 28];
        replay.read_exact(&mut all).await.unwrap();
        assert_eq!(&all[..24], H2_PREFACE);
        assert_eq!(&all[24..], b"rest");

        let (mut client, mut server) = tokio::io::duplex(64);
        client
            .write_all(b"POST /v1/traces HTTP/1.1\r\n")
            .await
            .unwrap();
        let (detected, prefix) = read_prefix(&mut server).await.unwrap();
        assert_eq!(detected, Detected::Http1);
        assert!(prefix.len() <= 24 && prefix.starts_with(b"POST"));
    }

    #[tokio::test]
    async fn a_dripped_preface_waits_and_an_early_close_is_seen() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&H2_PREFACE[..5]).await.unwrap();
        let read = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            read_prefix(&mut server),
        )
        .await;
        assert!(read.is_err(), "still waiting for the rest of the preface");
        drop(client);
        let (detected, _) = read_prefix(&mut server).await.unwrap();
        assert_eq!(detected, Detected::Closed);
    }
}
