//! The in-process null server `--calibrate` measures against: hyper's HTTP/1 server answering
//! every request at once with the same small JSON body (which carries a `client_order_id` in
//! both gateways' shapes, so order flows continue). What the generator reports against it is
//! the generator's own floor on this machine at this rate.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Response, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::error::LoadError;

const BODY: &[u8] =
    br#"{"ok":true,"client_order_id":"null","status":"success","data":{"client_order_id":"null"}}"#;

/// A running null server; stops when dropped.
#[derive(Debug)]
pub struct NullServer {
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl NullServer {
    /// Starts on `127.0.0.1:0`.
    pub async fn start() -> Result<NullServer, LoadError> {
        let listener =
            TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|source| LoadError::Start {
                    what: "the calibration server",
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| LoadError::Start {
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
                        conns.spawn(async move {
                            let svc = service_fn(|_req| async {
                                let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
                                resp.headers_mut().insert(
                                    header::CONTENT_TYPE,
                                    header::HeaderValue::from_static("application/json"),
                                );
                                Ok::<_, Infallible>(resp)
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
