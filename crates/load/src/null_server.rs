//! The in-process null server `--calibrate` measures against: hyper's HTTP/1 server answering
//! every request at once with the same small JSON body (which carries a `client_order_id` in
//! both gateways' shapes, so order flows continue). What the generator reports against it is
//! the generator's own floor on this machine at this rate.
//!
//! `--calibrate` serves it on the generator's own runtime thread ([`NullListener`] is bound by
//! the caller and served there), so the floor is the generator's cost — send lateness, the
//! send, the loopback, the stamped read — with no server wake-up in it: waking a server's
//! thread is the server's share of an exchange, and varied from run to run with where the
//! scheduler put the two threads.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hdrhistogram::Histogram;

use bytes::Bytes;
use http::{Response, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::error::LoadError;
use crate::rxstamp::{Arrival, StampedStream};

/// The null server's own time per request, ns (see [`NullListener::server_times`]).
pub type ServerTimes = Arc<Mutex<Histogram<u64>>>;

const BODY: &[u8] =
    br#"{"ok":true,"client_order_id":"null","status":"success","data":{"client_order_id":"null"}}"#;

/// A running null server; stops when dropped.
#[derive(Debug)]
pub struct NullServer {
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

/// A bound, not yet served, null server socket: bound by the caller (so the address is known
/// up front and a TCP connect already succeeds), served by [`NullServer::serve`] on the
/// runtime that should answer.
#[derive(Debug)]
pub struct NullListener {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    times: ServerTimes,
}

impl NullListener {
    /// Binds `127.0.0.1:0`.
    pub fn bind() -> Result<NullListener, LoadError> {
        let start = |source| LoadError::Start {
            what: "the calibration server",
            source,
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(start)?;
        listener.set_nonblocking(true).map_err(start)?;
        let addr = listener.local_addr().map_err(start)?;
        // Stamping stays on while the server listens (see `rxstamp`).
        crate::rxstamp::stamp_listener(&listener);
        Ok(NullListener {
            listener,
            addr,
            times: Arc::new(Mutex::new(crate::pacer::new_histogram())),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's own time per answered request: from the kernel's receive stamp of the
    /// request (its arrival) to the answer handed to hyper, i.e. what the server itself spent
    /// — the share of the floor that is not the generator's. Requests that arrived unstamped
    /// are not counted. Shared: it fills while the server runs.
    pub fn server_times(&self) -> ServerTimes {
        Arc::clone(&self.times)
    }
}

impl NullServer {
    /// Starts on `127.0.0.1:0`, on the current runtime.
    pub async fn start() -> Result<NullServer, LoadError> {
        NullServer::serve(NullListener::bind()?)
    }

    /// Serves `listener` on the current runtime (needs one with I/O enabled).
    pub fn serve(listener: NullListener) -> Result<NullServer, LoadError> {
        let addr = listener.addr;
        let times = listener.times;
        let listener =
            TcpListener::from_std(listener.listener).map_err(|source| LoadError::Start {
                what: "the calibration server",
                source,
            })?;
        let accept = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else {
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let arrival = Arrival::default();
                        let stream = StampedStream::new(stream, arrival.clone());
                        let times = Arc::clone(&times);
                        conns.spawn(async move {
                            let svc = service_fn(move |_req| {
                                let now = Instant::now();
                                if let Some(at) = arrival.instant(now) {
                                    let ns = u64::try_from((now - at).as_nanos()).unwrap_or(u64::MAX);
                                    times
                                        .lock()
                                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                                        .saturating_record(ns.max(1));
                                }
                                async {
                                    let mut resp =
                                        Response::new(Full::new(Bytes::from_static(BODY)));
                                    resp.headers_mut().insert(
                                        header::CONTENT_TYPE,
                                        header::HeaderValue::from_static("application/json"),
                                    );
                                    Ok::<_, Infallible>(resp)
                                }
                            });
                            let _ = http1::Builder::new()
                                .keep_alive(true)
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                }
            }
        });
        Ok(NullServer { addr, accept })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for NullServer {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.accept.abort();
    }
}
