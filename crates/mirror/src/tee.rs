//! [`TeeBody`]: the primary's response body on its way to the client, observed as it passes.
//!
//! Frames are handed to the client as they arrive (nothing waits for the whole body); when the
//! answer is to be compared, each frame's `Bytes` is also kept (a reference-count increment,
//! not a copy) until the limit is passed. The end of the body — the last frame, an error, or
//! the body being dropped early because the client went away — completes the request
//! exactly once: latency is recorded and the shadow copy is fired (see `proxy::Pending`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::proxy::{End, Pending};

/// The primary's body, passed through and observed.
#[derive(Debug)]
pub(crate) struct TeeBody {
    inner: Incoming,
    pending: Option<Pending>,
}

impl TeeBody {
    pub(crate) fn new(inner: Incoming, pending: Pending) -> TeeBody {
        let mut t = TeeBody {
            inner,
            pending: Some(pending),
        };
        // No body at all (HEAD, 204, 304, empty): the server may never poll it.
        if t.inner.is_end_stream() {
            t.finish(End::Complete);
        }
        t
    }

    fn finish(&mut self, end: End) {
        if let Some(p) = self.pending.take() {
            p.finish(end);
        }
    }
}

impl Body for TeeBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Pending => {}
            Poll::Ready(None) => this.finish(End::Complete),
            Poll::Ready(Some(Err(_))) => this.finish(End::Failed),
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(p), Some(data)) = (this.pending.as_mut(), frame.data_ref()) {
                    p.observe(data);
                }
                // The server stops polling once the body says it has ended, so the last
                // frame is the moment to complete.
                if this.inner.is_end_stream() {
                    this.finish(End::Complete);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TeeBody {
    fn drop(&mut self) {
        if self.pending.is_some() {
            let end = if self.inner.is_end_stream() {
                End::Complete
            } else {
                End::Abandoned
            };
            self.finish(end);
        }
    }
}
