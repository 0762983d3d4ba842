//! The lean HTTP/1.1 client of the timed path: one keep-alive connection per Goose user,
//! straight on hyper's connection API (no pool, no redirects, no cookies, no middleware), with
//! `TCP_NODELAY` and a connect timeout.
//!
//! Goose's own client (reqwest) is not used for the timed requests: its pool, its per-request
//! allocations and Goose's millisecond timing cost more than the 150 µs the gate measures.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::LoadError;
use crate::rxstamp::{Arrival, StampedStream};

/// A parsed and resolved target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given, without a trailing '/'.
    pub url: String,
    /// `host[:port]` as written.
    pub authority: String,
    /// The `Host` header.
    pub host_header: HeaderValue,
    /// Path prefix from the URL (`""` or `/prefix`), prepended to every request path.
    pub base_path: String,
    /// The resolved address connections go to.
    pub addr: SocketAddr,
}

impl Target {
    /// Parses an `http://host[:port][/prefix]` URL and resolves its host.
    pub async fn resolve(url: &str) -> Result<Target, LoadError> {
        let bad = |reason: &str| LoadError::BadTarget {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| bad(&format!("{e}; write e.g. http://127.0.0.1:8080")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported by the load generator (TLS would be part of every \
                     measured request): target the gateway's plain-HTTP port",
                ));
            }
            _ => return Err(bad("expected an http:// URL, e.g. http://127.0.0.1:8080")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| bad("no host; write e.g. http://127.0.0.1:8080"))?;
        if uri.query().is_some() {
            return Err(bad(
                "a query string belongs in the scenario's paths, not the target",
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let host_header = HeaderValue::from_str(authority.as_str())
            .map_err(|_| bad("the host is not a valid Host header"))?;
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| LoadError::Resolve {
                authority: authority.to_string(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| LoadError::Resolve {
                authority: authority.to_string(),
                reason: "no address".to_owned(),
            })?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Ok(Target {
            url: url.trim_end_matches('/').to_owned(),
            authority: authority.to_string(),
            host_header,
            base_path,
            addr,
        })
    }

    /// A target for an address (the in-process calibration server).
    pub fn for_addr(addr: SocketAddr) -> Target {
        let authority = addr.to_string();
        Target {
            url: format!("http://{authority}"),
            host_header: HeaderValue::from_str(&authority)
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            authority,
            base_path: String::new(),
            addr,
        }
    }

    /// Fails with a clear error when nothing accepts a connection at the target.
    pub async fn preflight(&self, timeout: Duration) -> Result<(), LoadError> {
        let unreachable = |reason: String| LoadError::Unreachable {
            url: self.url.clone(),
            addr: self.addr.to_string(),
            reason,
        };
        match tokio::time::timeout(timeout, TcpStream::connect(self.addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable(format!(
                "no answer to a TCP connect within {}",
                humantime::format_duration(timeout)
            ))),
        }
    }
}

/// Why an exchange failed (maps onto the `counts.csv` columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Connect refused/timed out, or the connection closed or reset before the answer.
    Connect,
    /// No complete answer within the request timeout.
    Timeout,
    /// Anything else (protocol error, body error, bad request URI).
    Other,
}

impl Failure {
    /// A short label for Goose's error summary.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Connect => "connection failed or closed before the answer",
            Failure::Timeout => "timeout",
            Failure::Other => "protocol error",
        }
    }
}

/// One keep-alive HTTP/1.1 connection (or none yet).
#[derive(Debug, Default)]
pub struct Conn {
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Connections opened (the first one included).
    pub connects: u64,
    /// The kernel's receive stamp of the last segment read (module `rxstamp`).
    arrival: Arrival,
    /// Whether the current connection's reads carry kernel stamps.
    stamping: bool,
}

/// An answer: status and, when asked for, the body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Option<Bytes>,
}

/// The most body bytes kept for value extraction.
const MAX_KEPT_BODY: usize = 1 << 20;

impl Conn {
    /// Opens the connection now if there is none (used to warm up before `t0`).
    pub async fn ensure(
        &mut self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<(), Failure> {
        if self.sender.as_ref().is_some_and(|s| !s.is_closed()) {
            return Ok(());
        }
        self.sender = None;
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) | Err(_) => return Err(Failure::Connect),
        };
        // Requests are small and latency-bound: never wait for Nagle.
        let _ = stream.set_nodelay(true);
        let stream = StampedStream::new(stream, self.arrival.clone());
        self.stamping = stream.stamping();
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|_| Failure::Connect)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, "load connection ended with an error");
            }
        });
        self.sender = Some(sender);
        self.connects += 1;
        Ok(())
    }

    /// When the last answer arrived on this host (the kernel's receive stamp of its last
    /// segment), given the user-space time `read_at` it was read; `None` without a stamp.
    pub fn arrived(&self, read_at: Instant) -> Option<Instant> {
        if self.stamping {
            self.arrival.instant(read_at)
        } else {
            None
        }
    }

    /// Forgets the connection (after a timeout, when its state is unknown).
    pub fn reset(&mut self) {
        self.sender = None;
    }

    /// Sends one request and reads the whole answer; keeps the body when `keep_body`.
    /// Connects first if needed. On failure the connection is dropped.
    pub async fn exchange(
        &mut self,
        addr: SocketAddr,
        connect_timeout: Duration,
        req: Request<Full<Bytes>>,
        keep_body: bool,
    ) -> Result<Answer, Failure> {
        self.ensure(addr, connect_timeout).await?;
        let Some(sender) = self.sender.as_mut() else {
            return Err(Failure::Connect);
        };
        if sender.ready().await.is_err() {
            // The server closed the idle connection: one fresh connection, then give up.
            self.sender = None;
            self.ensure(addr, connect_timeout).await?;
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err(Failure::Connect);
        };
        self.arrival.clear();
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(classify(&e));
            }
        };
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut kept: Option<Vec<u8>> = keep_body.then(Vec::new);
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let (Some(buf), Ok(data)) = (kept.as_mut(), frame.into_data())
                        && buf.len() + data.len() <= MAX_KEPT_BODY
                    {
                        buf.extend_from_slice(&data);
                    }
                }
                Err(e) => {
                    self.sender = None;
                    return Err(classify(&e));
                }
            }
        }
        Ok(Answer {
            status,
            body: kept.map(Bytes::from),
        })
    }
}

fn classify(e: &hyper::Error) -> Failure {
    let io = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some();
    if e.is_timeout() {
        Failure::Timeout
    } else if io
        || e.is_incomplete_message()
        || e.is_canceled()
        || e.is_closed()
        || e.is_body_write_aborted()
    {
        Failure::Connect
    } else {
        Failure::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn target_urls_are_checked() {
        let t = Target::resolve("http://127.0.0.1:8080/").await.unwrap();
        assert_eq!(t.url, "http://127.0.0.1:8080");
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.base_path, "");
        assert_eq!(t.host_header, "127.0.0.1:8080");
        let t = Target::resolve("http://127.0.0.1/gw").await.unwrap();
        assert_eq!((t.addr.port(), t.base_path.as_str()), (80, "/gw"));
        for bad in [
            "https://127.0.0.1",
            "127.0.0.1:8080",
            "http://",
            "http://h:1/?a=b",
            "ftp://x",
        ] {
            let err = Target::resolve(bad).await.unwrap_err();
            assert!(matches!(err, LoadError::BadTarget { .. }), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn preflight_names_an_unreachable_target() {
        // Bind then drop: the port is (almost certainly) closed.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let t = Target::for_addr(addr);
        let err = t.preflight(Duration::from_secs(2)).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("unreachable") && text.contains(&addr.to_string()),
            "{text}"
        );
    }
}
