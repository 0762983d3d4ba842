//! The response body type: a whole buffer (the hot path, no boxing), a buffer sent slowly
//! (the `slow_body` fault), or a stream (SSE, never buffered).

use std::convert::Infallible;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use hyper::body::{Body, Frame, SizeHint};

/// A stream of body chunks.
pub(crate) type ChunkStream = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// A response body.
pub enum SimBody {
    /// The whole body at once (`Content-Length` is set from it).
    Full(Option<Bytes>),
    /// `data` in `chunk`-byte pieces, `delay` apart (`Content-Length` still set).
    Slow {
        data: Bytes,
        chunk: usize,
        delay: Duration,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    },
    /// Chunks as they come (chunked transfer encoding).
    Stream(ChunkStream),
}

impl std::fmt::Debug for SimBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimBody::Full(b) => f
                .debug_tuple("Full")
                .field(&b.as_ref().map_or(0, Bytes::len))
                .finish(),
            SimBody::Slow {
                data, chunk, delay, ..
            } => f
                .debug_struct("Slow")
                .field("len", &data.len())
                .field("chunk", chunk)
                .field("delay", delay)
                .finish(),
            SimBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl SimBody {
    pub(crate) fn full(data: impl Into<Bytes>) -> SimBody {
        let data = data.into();
        SimBody::Full((!data.is_empty()).then_some(data))
    }

    pub(crate) fn empty() -> SimBody {
        SimBody::Full(None)
    }

    /// Turns a whole body into a slow one; other bodies are left alone.
    pub(crate) fn into_slow(self, delay: Duration, chunk: usize) -> SimBody {
        match self {
            SimBody::Full(Some(data)) => SimBody::Slow {
                data,
                chunk: chunk.max(1),
                delay,
                sleep: None,
            },
            other => other,
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            SimBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            SimBody::Slow {
                data,
                chunk,
                delay,
                sleep,
            } => {
                if data.is_empty() {
                    return Poll::Ready(None);
                }
                // The first chunk goes out at once; each later one after `delay`.
                if let Some(s) = sleep.as_mut()
                    && s.as_mut().poll(cx).is_pending()
                {
                    return Poll::Pending;
                }
                let piece = data.split_to((*chunk).min(data.len()));
                *sleep = Some(Box::pin(tokio::time::sleep(*delay)));
                Poll::Ready(Some(Ok(Frame::data(piece))))
            }
            SimBody::Stream(s) => s
                .as_mut()
                .poll_next(cx)
                .map(|c| c.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SimBody::Full(d) => d.is_none(),
            SimBody::Slow { data, .. } => data.is_empty(),
            SimBody::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            SimBody::Slow { data, .. } => SizeHint::with_exact(data.len() as u64),
            SimBody::Stream(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn slow_body_delivers_every_byte_in_chunks() {
        let mut body = SimBody::full(&b"0123456789"[..]).into_slow(Duration::from_millis(1), 4);
        assert_eq!(body.size_hint().exact(), Some(10));
        let mut chunks = Vec::new();
        while let Some(frame) = body.frame().await {
            chunks.push(frame.unwrap().into_data().unwrap());
        }
        assert_eq!(chunks, vec![&b"0123"[..], &b"4567"[..], &b"89"[..]]);
    }

    #[tokio::test]
    async fn full_body_is_one_frame() {
        let body = SimBody::full(&b"abc"[..]);
        assert_eq!(body.collect().await.unwrap().to_bytes(), &b"abc"[..]);
        assert!(SimBody::empty().is_end_stream());
    }
}
