//! Body types of the proxy: what goes to the primary ([`ReqBody`]) and what goes back to the
//! client ([`RespBody`]), and buffering a request body up to the limit.
//!
//! Enums rather than boxed trait objects: no allocation per request, and the primary
//! connection and the server connection each have one concrete body type.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::tee::TeeBody;

/// A request body on its way to the primary.
#[derive(Debug)]
pub(crate) enum ReqBody {
    /// The client's body, streamed through untouched.
    Stream(Incoming),
    /// A body read whole (to be sent to the candidate too).
    Full(Option<Bytes>),
    /// A body that went over the buffering limit: what was read, then the rest of the stream.
    Prefixed {
        head: VecDeque<Bytes>,
        rest: Incoming,
    },
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ReqBody::Stream(b) => Pin::new(b).poll_frame(cx),
            ReqBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            ReqBody::Prefixed { head, rest } => match head.pop_front() {
                Some(d) => Poll::Ready(Some(Ok(Frame::data(d)))),
                None => Pin::new(rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Stream(b) => b.is_end_stream(),
            ReqBody::Full(b) => b.is_none(),
            ReqBody::Prefixed { head, rest } => head.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Stream(b) => b.size_hint(),
            ReqBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |d| d.len() as u64)),
            ReqBody::Prefixed { head, rest } => {
                let buffered: u64 = head.iter().map(|d| d.len() as u64).sum();
                let r = rest.size_hint();
                let mut h = SizeHint::new();
                h.set_lower(r.lower() + buffered);
                if let Some(u) = r.upper() {
                    h.set_upper(u + buffered);
                }
                h
            }
        }
    }
}

/// A response body on its way to the client.
#[derive(Debug)]
pub(crate) enum RespBody {
    /// The primary's body, passed through (and copied for the comparison when shadowed).
    Tee(TeeBody),
    /// A body made here (error answers, the admin endpoints).
    Full(Option<Bytes>),
}

impl RespBody {
    pub(crate) fn full(b: impl Into<Bytes>) -> RespBody {
        RespBody::Full(Some(b.into()))
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RespBody::Tee(t) => Pin::new(t).poll_frame(cx),
            RespBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Tee(t) => t.is_end_stream(),
            RespBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Tee(t) => t.size_hint(),
            RespBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

/// Result of reading a request body for the shadow copy.
#[derive(Debug)]
pub(crate) enum Buffered {
    /// The whole body, within the limit.
    Whole(Bytes),
    /// Over the limit: the body to send to the primary (read part, then the rest).
    Over(ReqBody),
    /// The client's body failed while being read.
    Failed(hyper::Error),
}

/// Reads a request body up to `limit` bytes. A body declared larger than the limit is not
/// read at all; one that turns out larger is passed on as read-part-then-rest.
pub(crate) async fn buffer_request(mut body: Incoming, limit: usize) -> Buffered {
    use http_body_util::BodyExt;
    if body.is_end_stream() {
        return Buffered::Whole(Bytes::new());
    }
    if body.size_hint().lower() > limit as u64 {
        return Buffered::Over(ReqBody::Stream(body));
    }
    let mut chunks: VecDeque<Bytes> = VecDeque::new();
    let mut size = 0usize;
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Buffered::Failed(e),
            Some(Ok(frame)) => {
                // Trailers are dropped: neither upstream is expected to need them on requests.
                if let Ok(data) = frame.into_data() {
                    size += data.len();
                    chunks.push_back(data);
                    if size > limit {
                        return Buffered::Over(ReqBody::Prefixed {
                            head: chunks,
                            rest: body,
                        });
                    }
                }
            }
        }
    }
    Buffered::Whole(concat(chunks.into_iter()))
}

/// Joins chunks; a single chunk is returned without copying.
pub(crate) fn concat(mut chunks: impl ExactSizeIterator<Item = Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.next().unwrap_or_default(),
        _ => {
            let mut v = Vec::new();
            for c in chunks {
                v.extend_from_slice(&c);
            }
            Bytes::from(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_joins_without_copying_one_chunk() {
        let one = Bytes::from_static(b"abc");
        let got = concat(vec![one.clone()].into_iter());
        assert_eq!(got.as_ptr(), one.as_ptr());
        let got = concat(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"c")].into_iter());
        assert_eq!(&got[..], b"abc");
        assert!(concat(Vec::<Bytes>::new().into_iter()).is_empty());
    }

    #[test]
    fn full_bodies_report_exact_sizes() {
        let b = ReqBody::Full(Some(Bytes::from_static(b"12345")));
        assert_eq!(b.size_hint().exact(), Some(5));
        assert!(!b.is_end_stream());
        let r = RespBody::full("hi");
        assert_eq!(r.size_hint().exact(), Some(2));
    }
}
