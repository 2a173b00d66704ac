//! What one connection is doing: how many requests are in flight (a request counts until its
//! response body is finished or dropped), so the connection can be closed once it has been
//! idle long enough; when the next HTTP/1 request's head began to arrive ([`ReadMarker`]), so
//! headers get their own timeout, apart from keep-alive idleness; and the request body's
//! minimum data rate, so a client that drips its body byte by byte is cut off.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

/// The minimum rate a request body must keep up, after a grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    /// Bytes per second, averaged since the request's headers arrived; 0 turns the check off.
    pub bytes_per_second: u64,
    /// Time a body may take before its rate is checked.
    pub grace: Duration,
}

/// Why a request body was cut off.
#[derive(Debug, thiserror::Error)]
#[error(
    "request body arrived too slowly: {received} bytes in {elapsed:?}, below the minimum of {rate} bytes/s"
)]
pub struct TooSlow {
    received: u64,
    elapsed: Duration,
    rate: u64,
}

/// What a connection is doing now.
#[derive(Debug, Clone, Copy, Default)]
struct State {
    /// Requests in flight.
    in_flight: usize,
    /// When bytes of the next request's head began to arrive, with nothing in flight.
    head_started: Option<Instant>,
}

/// The activity of one connection, shared by its requests and its reader.
#[derive(Debug, Clone)]
pub struct Activity(watch::Sender<State>);

impl Activity {
    /// A connection with nothing in flight.
    pub fn new() -> Self {
        Activity(watch::Sender::new(State::default()))
    }

    /// Marks a request in flight until the returned guard drops.
    pub fn begin(&self) -> InFlight {
        self.0.send_modify(|s| {
            s.in_flight += 1;
            s.head_started = None;
        });
        InFlight(self.0.clone())
    }

    /// Notes that bytes arrived: with nothing in flight, they begin the next request's head.
    pub fn bytes_arrived(&self) {
        self.0.send_if_modified(|s| {
            let starts = s.in_flight == 0 && s.head_started.is_none();
            if starts {
                s.head_started = Some(Instant::now());
            }
            starts
        });
    }

    /// Resolves once nothing has been in flight, and no request has begun, for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        let mut rx = self.0.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            if state.in_flight > 0 || state.head_started.is_some() {
                // The sender lives in `self`: `changed` cannot fail while we borrow it.
                let _ = rx.changed().await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(idle) => return,
                _ = rx.changed() => {}
            }
        }
    }

    /// Resolves once a request's head has been arriving for `timeout` without completing.
    pub async fn head_overdue(&self, timeout: Duration) {
        let mut rx = self.0.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            match state.head_started {
                Some(started) if state.in_flight == 0 => tokio::select! {
                    _ = tokio::time::sleep_until(started + timeout) => return,
                    _ = rx.changed() => {}
                },
                _ => {
                    let _ = rx.changed().await;
                }
            }
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// One request in flight; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight(watch::Sender<State>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .send_modify(|s| s.in_flight = s.in_flight.saturating_sub(1));
    }
}

/// A connection's IO that tells its [`Activity`] when bytes arrive (HTTP/1 only: on HTTP/2,
/// frames such as PINGs arrive without any request).
#[derive(Debug)]
pub struct ReadMarker<I> {
    inner: I,
    activity: Option<Activity>,
}

impl<I> ReadMarker<I> {
    /// Reports `inner`'s reads to `activity`, if given.
    pub fn new(inner: I, activity: Option<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ReadMarker<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(activity) = &self.activity
            && matches!(polled, Poll::Ready(Ok(())))
            && buf.filled().len() > before
        {
            activity.bytes_arrived();
        }
        polled
    }
}

delegate_async_write!(ReadMarker);

/// A response body that keeps its request in flight until it is finished or dropped.
pub struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl TrackedBody {
    /// Wraps `inner`, holding `in_flight` until the body is done.
    pub fn new(inner: Body, in_flight: InFlight) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails once it falls below its [`MinRate`].
pub struct MinRateBody<B> {
    inner: B,
    rate: MinRate,
    started: Instant,
    received: u64,
    timer: Pin<Box<Sleep>>,
}

impl<B> MinRateBody<B> {
    /// Checks `inner` against `rate`, from now.
    pub fn new(inner: B, rate: MinRate) -> Self {
        let started = Instant::now();
        Self {
            inner,
            rate,
            started,
            received: 0,
            timer: Box::pin(tokio::time::sleep_until(started + rate.grace)),
        }
    }

    /// When the bytes received so far stop being enough.
    fn deadline(&self) -> Instant {
        let earned =
            Duration::from_secs_f64(self.received as f64 / self.rate.bytes_per_second as f64);
        self.started + self.rate.grace.max(earned)
    }
}

impl<B> http_body::Body for MinRateBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if self.rate.bytes_per_second == 0 => Poll::Pending,
            Poll::Pending => {
                let deadline = self.deadline();
                if self.timer.deadline() != deadline {
                    self.timer.as_mut().reset(deadline);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(TooSlow {
                        received: self.received,
                        elapsed: self.started.elapsed(),
                        rate: self.rate.bytes_per_second,
                    })))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_resolves_only_after_the_last_request_ends() {
        let activity = Activity::new();
        let guard = activity.begin();
        let idle = tokio::time::timeout(
            Duration::from_secs(5),
            activity.idle_for(Duration::from_secs(1)),
        );
        assert!(idle.await.is_err(), "busy is never idle");
        drop(guard);
        let started = Instant::now();
        activity.idle_for(Duration::from_secs(1)).await;
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_started_head_has_its_own_deadline_and_is_not_idle() {
        let activity = Activity::new();
        activity.bytes_arrived();
        let started = Instant::now();
        let idle = tokio::time::timeout(
            Duration::from_secs(5),
            activity.idle_for(Duration::from_secs(1)),
        );
        assert!(idle.await.is_err(), "a request is arriving: not idle");
        activity.head_overdue(Duration::from_secs(7)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(7));
        // Once the head is complete (the request is in flight), the deadline is gone.
        let guard = activity.begin();
        let overdue = tokio::time::timeout(
            Duration::from_secs(5),
            activity.head_overdue(Duration::from_secs(1)),
        );
        assert!(overdue.await.is_err());
        drop(guard);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dripping_body_fails_after_the_grace_and_a_fast_one_passes() {
        let rate = MinRate {
            bytes_per_second: 100,
            grace: Duration::from_secs(2),
        };
        let (mut tx, rx) = futures_channel();
        let body = MinRateBody::new(rx, rate);
        let reader = tokio::spawn(async move { body.collect().await.map(|c| c.to_bytes()) });
        for _ in 0..10 {
            tx.send(Bytes::from_static(b"x")).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let err = reader.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("too slowly"), "{err}");

        let (mut tx, rx) = futures_channel();
        let body = MinRateBody::new(rx, rate);
        let reader = tokio::spawn(async move { body.collect().await.map(|c| c.to_bytes()) });
        for _ in 0..5 {
            tx.send(Bytes::from(vec![0u8; 200])).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        drop(tx);
        assert_eq!(reader.await.unwrap().unwrap().len(), 1000);
    }

    /// A body fed by a channel, ending when the sender drops.
    fn futures_channel() -> (Feed, ChannelBody) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (Feed(tx), ChannelBody(rx))
    }

    struct Feed(tokio::sync::mpsc::Sender<Bytes>);

    impl Feed {
        async fn send(&mut self, data: Bytes) {
            let _ = self.0.send(data).await;
        }
    }

    struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

    impl http_body::Body for ChannelBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|d| d.map(|d| Ok(Frame::data(d))))
        }
    }
}
