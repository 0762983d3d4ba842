//! Helpers: simulators and small purpose-built servers on 127.0.0.1:0, a mirror started in
//! process, and an HTTP client.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shadowgate_diff::RuleSet;
use shadowgate_mirror::{Mirror, RawMirrorConfig};
use shadowgate_sim::{SimConfig, SimServer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A complete answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Headers that must pass through unchanged (not the ones that change with every answer
    /// or belong to one connection).
    pub fn stable_headers(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "date" | "connection" | "keep-alive" | "transfer-encoding"
                )
            })
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

pub async fn request(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("answer within 10 s")
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("body within 10 s")
        .unwrap()
        .to_bytes();
    Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

pub async fn get(client: &HttpClient, url: &str) -> Resp {
    request(client, Method::GET, url, &[], "").await
}

pub async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A simulator from TOML (`profile = ...` and so on).
pub async fn sim(toml: &str) -> SimServer {
    let cfg = SimConfig::from_toml_str(toml, "test.toml").unwrap();
    shadowgate_sim::start(cfg, bind().await).await.unwrap()
}

pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// An address nothing listens on (bound, then closed).
pub fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    url(addr)
}

/// A python simulator that answers alike every time (seeded, auth off).
pub const PYTHON_SEEDED: &str = "profile = \"python\"\nseed = 11\n";

pub fn test_rules() -> RuleSet {
    shadowgate_mirror::load_rules(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules/mirror-test.toml"),
    )
    .unwrap()
}

/// Starts a mirror (with an admin listener) writing into `out`.
pub async fn mirror(
    primary: &str,
    candidate: &str,
    out: &Path,
    rules: RuleSet,
    tweak: impl FnOnce(&mut RawMirrorConfig),
) -> Mirror {
    let mut raw = RawMirrorConfig {
        primary: primary.to_owned(),
        candidate: candidate.to_owned(),
        out: out.to_path_buf(),
        rules: Arc::new(rules),
        interval: Duration::from_millis(100),
        ..RawMirrorConfig::default()
    };
    tweak(&mut raw);
    let cfg = raw.validate().unwrap();
    shadowgate_mirror::start(cfg, bind().await, Some(bind().await))
        .await
        .unwrap()
}

/// Waits (bounded) until `f` holds.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("not within 5 s: {what}");
}

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>
        + Send
        + Sync,
>;

/// Serves `handler` on 127.0.0.1:0 until the returned guard is dropped.
pub async fn serve<F, Fut>(handler: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let handler: Handler = Arc::new(move |r| Box::pin(handler(r)));
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let h = Arc::clone(&handler);
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let h = Arc::clone(&h);
                    async move { Ok::<_, Infallible>(h(req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

/// A body for the purpose-built servers: whole, or fed through a channel (streams).
pub enum TestBody {
    Full(Option<Bytes>),
    Chan(mpsc::Receiver<Bytes>),
}

impl TestBody {
    pub fn text(s: impl Into<String>) -> TestBody {
        TestBody::Full(Some(Bytes::from(s.into())))
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            TestBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            TestBody::Chan(rx) => rx.poll_recv(cx).map(|o| o.map(|d| Ok(Frame::data(d)))),
        }
    }
}

/// Every file under `dir`, recursively.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
