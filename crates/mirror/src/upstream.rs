//! Connections to the upstreams.
//!
//! **Primary: one upstream connection per client connection, driven by the client
//! connection's own task.** HTTP/1.1 carries one exchange at a time per connection, so a client
//! connection never needs more than one primary connection. Keeping that connection's hyper
//! dispatcher in the same task as the client connection (instead of in a pool with a task per
//! connection, as hyper-util's client does) removes two cross-task hand-offs per request: the
//! request, the primary's answer and its body move between futures that one task polls, on one
//! thread, without waking another. That is the "leaner hop" the 2k req/s latency goal needs.
//! The connection opens on the first request (not at accept), is reused while the primary keeps
//! it alive, and is reopened when the primary closes it. A request that was never written
//! (the pooled connection had just closed) is retried once on a fresh connection; one that was
//! written is not, since it may have had an effect.
//!
//! **Candidate (and secondary): a shared keep-alive pool** (hyper-util's legacy client) behind
//! a counting connector, so connection churn is visible. The pool has no per-host cap of its
//! own; the shadow permits are the bound.
//!
//! Every connector sets `TCP_NODELAY` and a connect timeout.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::body::ReqBody;
use crate::config::Upstream;
use crate::stats::lock;

/// A connection future handed to the client connection's task to drive.
pub(crate) type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why the primary gave no answer.
#[derive(Debug)]
pub(crate) enum PrimaryError {
    /// TCP connect failed (refused, unreachable, DNS).
    Connect(std::io::Error),
    /// TCP connect took longer than the connect timeout.
    ConnectTimeout(Duration),
    /// No response headers within the primary timeout.
    Timeout(Duration),
    /// The connection broke or the answer was not HTTP.
    Http(hyper::Error),
}

impl PrimaryError {
    /// Short reason for the 502/504 body (no secrets: no request data in it).
    pub(crate) fn reason(&self) -> String {
        match self {
            PrimaryError::Connect(e) => format!("connect failed: {e}"),
            PrimaryError::ConnectTimeout(d) => {
                format!("connect timed out after {}", humanize(*d))
            }
            PrimaryError::Timeout(d) => {
                format!("no response headers within {}", humanize(*d))
            }
            PrimaryError::Http(e) => format!("invalid or broken response: {e}"),
        }
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Where and how to connect to the primary.
#[derive(Debug)]
pub(crate) struct PrimaryTarget {
    host: String,
    /// Resolved once when the host is an IP literal (no resolver call per connect).
    addr: Option<SocketAddr>,
    port: u16,
    connect_timeout: Duration,
    opened: Counter,
}

impl PrimaryTarget {
    pub(crate) fn new(u: &Upstream, connect_timeout: Duration, opened: Counter) -> PrimaryTarget {
        PrimaryTarget {
            addr: u
                .host
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, u.port)),
            host: u.host.clone(),
            port: u.port,
            connect_timeout,
            opened,
        }
    }

    async fn connect(&self) -> Result<TcpStream, PrimaryError> {
        let connecting = async {
            match self.addr {
                Some(a) => TcpStream::connect(a).await,
                None => TcpStream::connect((self.host.as_str(), self.port)).await,
            }
        };
        let stream = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| PrimaryError::ConnectTimeout(self.connect_timeout))?
            .map_err(PrimaryError::Connect)?;
        // Small request/response exchanges must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        self.opened.inc();
        Ok(stream)
    }
}

/// The primary connection of one client connection.
#[derive(Debug)]
pub(crate) struct PrimaryLink {
    target: Arc<PrimaryTarget>,
    sender: Mutex<Option<http1::SendRequest<ReqBody>>>,
    drivers: mpsc::UnboundedSender<Driver>,
}

impl PrimaryLink {
    pub(crate) fn new(target: Arc<PrimaryTarget>, drivers: mpsc::UnboundedSender<Driver>) -> Self {
        PrimaryLink {
            target,
            sender: Mutex::new(None),
            drivers,
        }
    }

    /// Sends a request (origin-form URI, `Host` set) and returns the response head.
    pub(crate) async fn send(
        &self,
        req: Request<ReqBody>,
    ) -> Result<Response<Incoming>, PrimaryError> {
        let mut req = req;
        let mut fresh = false;
        loop {
            let mut sender = match self.take_ready().await {
                Some(s) => s,
                None => {
                    fresh = true;
                    self.open().await?
                }
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    *lock(&self.sender) = Some(sender);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    // Never written: safe to send again, once, on a new connection.
                    Some(r) if !fresh => req = r,
                    _ => return Err(PrimaryError::Http(e.into_error())),
                },
            }
        }
    }

    async fn take_ready(&self) -> Option<http1::SendRequest<ReqBody>> {
        let mut sender = lock(&self.sender).take()?;
        if sender.is_closed() {
            return None;
        }
        // The previous response body has normally been read by now; if it has not, this waits
        // for it (HTTP/1.1 cannot interleave).
        sender.ready().await.ok()?;
        Some(sender)
    }

    async fn open(&self) -> Result<http1::SendRequest<ReqBody>, PrimaryError> {
        let stream = self.target.connect().await?;
        let (sender, conn) = http1::Builder::new()
            .handshake::<_, ReqBody>(TokioIo::new(stream))
            .await
            .map_err(PrimaryError::Http)?;
        let driver: Driver = Box::pin(async move {
            // Errors surface through the request future; the connection just ends.
            let _ = conn.await;
        });
        if let Err(mpsc::error::SendError(driver)) = self.drivers.send(driver) {
            // The client connection is going away; let the runtime drive it instead.
            tokio::spawn(driver);
        }
        Ok(sender)
    }
}

/// Connector of the shadow pools: hyper-util's with `TCP_NODELAY` and a connect timeout, and
/// a counter of connections opened (churn).
#[derive(Debug, Clone)]
pub(crate) struct CountingConnector {
    inner: HttpConnector,
    opened: Counter,
}

/// Boxed: hyper-util does not export its connect error type, and connects are rare.
type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ConnectFuture = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send>>;

impl tower_service::Service<Uri> for CountingConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.inner, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = tower_service::Service::<Uri>::call(&mut self.inner, uri);
        let opened = self.opened.clone();
        Box::pin(async move {
            let io = connecting.await.map_err(BoxError::from)?;
            opened.inc();
            Ok(io)
        })
    }
}

/// The shadow client type (candidate and secondary).
pub(crate) type ShadowClient = Client<CountingConnector, Full<Bytes>>;

/// A keep-alive pool for shadow requests.
pub(crate) fn shadow_client(
    connect_timeout: Duration,
    max_idle: usize,
    opened: Counter,
) -> ShadowClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    // Without it a black-holed candidate holds every shadow permit for the whole shadow
    // timeout.
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(true);
    let connector = CountingConnector {
        inner: http,
        opened,
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(max_idle)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        // The mirror sets `Host` itself (see the crate docs).
        .set_host(false)
        .build(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_failure() {
        let e = PrimaryError::ConnectTimeout(Duration::from_millis(1500));
        assert_eq!(e.reason(), "connect timed out after 1500ms");
        let e = PrimaryError::Timeout(Duration::from_secs(30));
        assert_eq!(e.reason(), "no response headers within 30s");
        let e = PrimaryError::Connect(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(e.reason().starts_with("connect failed: "));
    }
}
