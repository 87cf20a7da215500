//! Response bodies streamed from an upstream to the client, frame by frame (no buffering), with
//! `proxy_read_timeout` applied between two successive reads as nginx does.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::pool::Lease;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response the proxy gives.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

pub fn full(data: impl Into<Bytes>) -> ProxyBody {
    Full::new(data.into()).map_err(|e| match e {}).boxed()
}

/// An upstream body whose reads time out after `timeout` of silence, and whose connection goes
/// back to the pool once the body has been read to its end.
pub struct TimedBody {
    inner: Incoming,
    timeout: Duration,
    /// The read timer, created the first time a read has to wait (most small bodies never do)
    /// and re-armed from the start of each wait.
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
    lease: Option<Lease>,
}

impl TimedBody {
    pub fn new(inner: Incoming, timeout: Duration, lease: Lease) -> Self {
        let mut body = TimedBody {
            inner,
            timeout,
            sleep: None,
            armed: false,
            lease: Some(lease),
        };
        // An empty body is never polled: its connection is free right away.
        body.release_if_done();
        body
    }

    fn release_if_done(&mut self) {
        if self.inner.is_end_stream() {
            if let Some(lease) = self.lease.take() {
                lease.release();
            }
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                match &frame {
                    Some(Err(_)) => this.lease = None,
                    None => {
                        if let Some(lease) = this.lease.take() {
                            lease.release();
                        }
                    }
                    Some(Ok(_)) => this.release_if_done(),
                }
                Poll::Ready(frame.map(|f| f.map_err(BoxError::from)))
            }
            Poll::Pending => {
                if !this.armed {
                    this.armed = true;
                    let deadline = Instant::now() + this.timeout;
                    match &mut this.sleep {
                        Some(sleep) => sleep.as_mut().reset(deadline),
                        None => this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                let Some(sleep) = this.sleep.as_mut() else {
                    return Poll::Pending;
                };
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        tracing::warn!("upstream timed out while reading response body");
                        this.lease = None;
                        Poll::Ready(Some(Err("upstream timed out (proxy_read_timeout)".into())))
                    }
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
