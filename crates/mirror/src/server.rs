//! Starting, serving and stopping: the accept loops (proxy and admin), the per-connection task,
//! and the shutdown sequence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use shadowgate_record::{Manifest, RunKind, RunWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::analysis::{self, AnalysisState, Setup, Submitter};
use crate::body::RespBody;
use crate::capture::{CaptureHandle, Capturer};
use crate::config::MirrorConfig;
use crate::error::MirrorError;
use crate::proxy::{self, ConnCtx, Shared};
use crate::shadow::{Breaker, Shadow};
use crate::stats::{Metrics, Routes, Shards, lock};
use crate::summary::Summary;
use crate::upstream::{Driver, PrimaryLink, PrimaryTarget, ShadowPool, Work};

/// Record shards: a few per worker thread, so two threads rarely share one.
const SHARDS: usize = 8;

/// A running mirror. Stop it with [`Mirror::shutdown`]; dropping it stops serving too (the run
/// directory is then finished by the comparison thread once the last request has ended).
#[derive(Debug)]
pub struct Mirror {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    dir: PathBuf,
    shutdown_tx: watch::Sender<bool>,
    workers: Vec<Worker>,
    admin: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    state: Arc<Mutex<AnalysisState>>,
    submitter: Submitter,
    analysis: Option<std::thread::JoinHandle<()>>,
    concurrency: usize,
    shadow_timeout: Duration,
    capture: Option<Arc<Capturer>>,
}

/// Starts the mirror on listeners the caller has bound (so tests hand in `127.0.0.1:0`).
/// Creates the run directory (refusing one that already holds a run) before serving.
///
/// # Errors
/// The run directory cannot be created, a listener has no address, or the comparison
/// thread cannot start.
pub async fn start(
    config: MirrorConfig,
    listener: TcpListener,
    admin: Option<TcpListener>,
) -> Result<Mirror, MirrorError> {
    let local_addr = listener
        .local_addr()
        .map_err(|source| MirrorError::Listener {
            which: "proxy",
            source,
        })?;
    let admin_addr = admin
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()
        .map_err(|source| MirrorError::Listener {
            which: "admin",
            source,
        })?;

    // The capture file, then the run directory: a bad --capture or --out fails before
    // anything is served.
    let capture = match &config.capture {
        None => None,
        Some(c) => Some(Arc::new(
            Capturer::start(c, config.rules.redactor().clone(), config.interval).map_err(
                |source| MirrorError::Capture {
                    path: c.path.clone(),
                    source,
                },
            )?,
        )),
    };
    let mut manifest = Manifest::new(RunKind::Mirror, config.tool_version.clone());
    manifest
        .targets
        .insert("primary".into(), config.primary.url.clone());
    manifest
        .targets
        .insert("candidate".into(), config.candidate.url.clone());
    if let Some(s) = &config.secondary {
        manifest.targets.insert("secondary".into(), s.url.clone());
    }
    manifest.scenario.clone_from(&config.rules_source);
    manifest.phase.clone_from(&config.phase);
    manifest
        .extra
        .insert("mirror_settings".into(), settings_json(&config, local_addr));
    let run = Arc::new(RunWriter::create(&config.out, manifest)?.with_interval(config.interval));
    let recorder = run.latency()?;
    let writer = run.discrepancies()?;
    writer.set_flush_interval(config.interval);
    let flow_writer = writer.clone();

    let metrics = Arc::new(Metrics::new());
    let shards = Arc::new(Shards::new(&recorder, SHARDS));
    let shared_cell: Arc<OnceLock<Arc<Shared>>> = Arc::new(OnceLock::new());
    let cell = Arc::clone(&shared_cell);
    let started = analysis::start(Setup {
        rules: Arc::clone(&config.rules),
        metrics: Arc::clone(&metrics),
        shards: Arc::clone(&shards),
        run: Arc::clone(&run),
        writer,
        recorder: recorder.clone(),
        interval: config.interval,
        queue: config.shadow.compare_queue.get(),
        queue_bytes: config.shadow.compare_queue_bytes,
        hold_max: config.shadow.hold_max,
        learn: config.secondary.is_some(),
        manifest_extra: Box::new(move |state| match cell.get() {
            Some(shared) => serde_json::to_value(Summary::collect(shared, state, false))
                .unwrap_or(serde_json::Value::Null),
            None => serde_json::Value::Null,
        }),
    })
    .map_err(MirrorError::Thread)?;

    let concurrency = config.shadow.concurrency.get();
    let flows = crate::flows::build(&config, &metrics, flow_writer)?;
    let shadow = Arc::new(Shadow {
        candidate_pool: ShadowPool::new(
            &config.candidate,
            config.connect_timeout,
            concurrency,
            metrics.connections("candidate"),
        ),
        secondary_pool: config.secondary.as_ref().map(|s| {
            ShadowPool::new(
                s,
                config.connect_timeout,
                concurrency,
                metrics.connections("secondary"),
            )
        }),
        candidate: config.candidate.clone(),
        secondary: config.secondary.clone(),
        permits: Arc::new(Semaphore::new(concurrency)),
        breaker: Breaker::new(
            config.shadow.breaker_failures.get(),
            config.shadow.breaker_pause,
            Arc::clone(&metrics),
        ),
        timeout: config.shadow.timeout,
        body_limit: config.body_limit,
        preserve_host: config.preserve_host,
        rules: Arc::clone(&config.rules),
        metrics: Arc::clone(&metrics),
        shards: Arc::clone(&shards),
        submitter: started.submitter.clone(),
        flows: flows.clone(),
        id_wait: config.ids.wait,
    });
    // Event streams: one thread, one shared candidate subscription per stream route.
    let sse = Arc::new(
        crate::sse::SseHub::start(crate::sse::SseSetup {
            rules: Arc::clone(&config.rules),
            candidate: config.candidate.clone(),
            connect_timeout: config.connect_timeout,
            writer: run.discrepancies()?,
            recorder: recorder.clone(),
            // Order events feed the flow comparison; candidate ids map through its id map.
            orders: match &flows {
                Some(f) => Arc::clone(f) as Arc<dyn crate::sse::OrderEventSink>,
                None => Arc::new(crate::sse::NoOrderEvents),
            },
            ids: match &flows {
                Some(f) => Arc::clone(&f.ids) as Arc<dyn crate::sse::CandidateIds>,
                None => Arc::new(crate::sse::SameIds),
            },
            metrics: Arc::clone(&metrics),
        })
        .map_err(MirrorError::Thread)?,
    );
    let primary = Arc::new(PrimaryTarget::new(
        &config.primary,
        config.connect_timeout,
        metrics.connections("primary"),
    ));
    let shared = Arc::new(Shared {
        rules: Arc::clone(&config.rules),
        routes: Routes::new(
            Arc::clone(&config.rules),
            Arc::clone(&metrics),
            recorder,
            config.secondary.is_some(),
        ),
        shards,
        shadow,
        primary,
        primary_url: config.primary.url.clone(),
        primary_host: config.primary.host_header.clone(),
        preserve_host: config.preserve_host,
        body_limit: config.body_limit,
        primary_timeout: config.primary_timeout,
        capture: capture.clone(),
        sse,
    });
    let _ = shared_cell.set(Arc::clone(&shared));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    if let Some(f) = &flows {
        tokio::spawn(crate::flows::sweeper(Arc::clone(f), shutdown_rx.clone()));
    }
    let listener = listener
        .into_std()
        .map_err(|source| MirrorError::Listener {
            which: "proxy",
            source,
        })?;
    let mut workers = Vec::with_capacity(config.workers.get());
    for i in 0..config.workers.get() {
        let l = listener
            .try_clone()
            .map_err(|source| MirrorError::Listener {
                which: "proxy",
                source,
            })?;
        workers.push(Worker::spawn(
            i,
            l,
            Arc::clone(&shared),
            shutdown_rx.clone(),
            config.shutdown_grace,
        )?);
    }
    drop(listener);
    let admin = admin.map(|l| {
        tokio::spawn(admin_loop(
            l,
            Arc::clone(&shared),
            Arc::clone(&started.state),
            shutdown_rx,
        ))
    });
    Ok(Mirror {
        local_addr,
        admin_addr,
        dir: config.out,
        shutdown_tx,
        workers,
        admin,
        shared,
        state: started.state,
        submitter: started.submitter,
        analysis: Some(started.join),
        concurrency,
        shadow_timeout: config.shadow.timeout,
        capture,
    })
}

fn settings_json(c: &MirrorConfig, listen: SocketAddr) -> serde_json::Value {
    serde_json::json!({
        "listen": listen.to_string(),
        "shadow_concurrency": c.shadow.concurrency.get(),
        "shadow_timeout_ms": c.shadow.timeout.as_millis(),
        "connect_timeout_ms": c.connect_timeout.as_millis(),
        "primary_timeout_ms": c.primary_timeout.as_millis(),
        "body_limit_bytes": c.body_limit,
        "interval_ms": c.interval.as_millis(),
        "breaker_failures": c.shadow.breaker_failures.get(),
        "breaker_pause_ms": c.shadow.breaker_pause.as_millis(),
        "preserve_host": c.preserve_host,
        "learned_noise": c.secondary.is_some(),
    })
}

impl Mirror {
    /// The proxy's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.dir
    }

    /// A handle on what `--capture` writes (`None` without capture); it stays valid after
    /// [`Mirror::shutdown`], when its counts are final.
    pub fn capture(&self) -> Option<CaptureHandle> {
        self.capture.as_ref().map(|c| CaptureHandle(Arc::clone(c)))
    }

    /// The run so far (what `/summary` serves).
    pub fn summary(&self) -> Summary {
        Summary::collect(&self.shared, &lock(&self.state), true)
    }

    /// Stops cleanly: stops accepting, lets open requests finish (up to the grace period),
    /// waits for shadow requests in flight (up to the shadow timeout), compares what is
    /// queued, writes the last interval, the held-back lines and `ended_at`. Returns the
    /// final summary.
    ///
    /// # Errors
    /// [`MirrorError::Analysis`] when the run directory could not be finished.
    pub async fn shutdown(mut self) -> Result<Summary, MirrorError> {
        let _ = self.shutdown_tx.send(true);
        for w in &mut self.workers {
            if let Some(done) = w.accepting.take() {
                let _ = done.await;
            }
        }
        // Shadow requests in flight end within their timeout; wait for all of them.
        let permits = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
        let wait = self.shadow_timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(wait, self.shared.shadow.permits.acquire_many(permits)).await;
        for w in self.workers.drain(..) {
            w.stop().await;
        }
        // Every request has been handed over: let the capture writer drain and flush.
        if let Some(c) = self.capture.clone() {
            let _ = tokio::task::spawn_blocking(move || c.finish()).await;
        }
        // The client streams have ended: report what the streams left, before the run ends.
        let sse = Arc::clone(&self.shared.sse);
        let _ = tokio::task::spawn_blocking(move || sse.stop()).await;
        if let Some(f) = &self.shared.shadow.flows {
            f.drain().await;
        }
        let submitter = self.submitter.clone();
        let stopped = tokio::task::spawn_blocking(move || submitter.stop())
            .await
            .map_err(|e| MirrorError::Analysis(e.to_string()))?;
        if let Some(join) = self.analysis.take() {
            let _ = tokio::task::spawn_blocking(move || join.join()).await;
        }
        if let Some(admin) = self.admin.take() {
            admin.abort();
            let _ = admin.await;
        }
        stopped.map_err(MirrorError::Analysis)?;
        Ok(self.summary())
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(admin) = self.admin.take() {
            admin.abort();
        }
    }
}

/// One proxy worker: a thread with a single-threaded runtime accepting on the shared
/// listener. A connection, its primary connection and its shadow exchanges live on one
/// thread from accept to close, so nothing ever wakes another worker (a multi-threaded
/// runtime's work stealing cost about twenty context switches per request here).
#[derive(Debug)]
struct Worker {
    /// Resolves when the accept loop has ended and the connections have drained.
    accepting: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Tells the thread to stop (after the shadows it runs have ended).
    exit: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    fn spawn(
        index: usize,
        listener: std::net::TcpListener,
        shared: Arc<Shared>,
        shutdown: watch::Receiver<bool>,
        grace: Duration,
    ) -> Result<Worker, MirrorError> {
        let (accept_tx, accept_rx) = tokio::sync::oneshot::channel();
        let (exit_tx, exit_rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(MirrorError::Thread)?;
        let thread = std::thread::Builder::new()
            .name(format!("mirror-worker-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    crate::upstream::enter_worker(index);
                    match TcpListener::from_std(listener) {
                        Ok(l) => accept_loop(l, shared, shutdown, grace).await,
                        Err(e) => tracing::warn!(error = %e, "a proxy worker could not listen"),
                    }
                    let _ = accept_tx.send(());
                    // Shadows handed to this runtime finish before the thread goes.
                    let _ = exit_rx.await;
                });
            })
            .map_err(MirrorError::Thread)?;
        Ok(Worker {
            accepting: Some(accept_rx),
            exit: Some(exit_tx),
            thread: Some(thread),
        })
    }

    async fn stop(mut self) {
        if let Some(exit) = self.exit.take() {
            let _ = exit.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Not stopped through `Mirror::shutdown`: let the thread end on its own.
        if let Some(exit) = self.exit.take() {
            let _ = exit.send(());
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut conns = JoinSet::new();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    seq += 1;
                    shared.shadow.metrics.client_connections.inc();
                    conns.spawn(serve_connection(
                        Arc::clone(&shared),
                        stream,
                        peer,
                        seq,
                        shutdown.clone(),
                    ));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let drained = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::debug!("shutdown grace elapsed; closing open client connections");
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// One client connection: the hyper server connection, its primary connection's driver and
/// its shadow exchanges in one task (see `upstream`). Shadows still running when the client
/// connection ends are handed to the runtime, so they finish (and are counted) all the same.
async fn serve_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    seq: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (tx, mut rx) = mpsc::unbounded_channel::<Work>();
    let ip = peer.ip().to_canonical();
    let ctx = Arc::new(ConnCtx {
        link: PrimaryLink::new(Arc::clone(&shared.primary), tx),
        client_ip: ip,
        client_ip_header: HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        shared,
        seq,
        requests: AtomicU64::new(0),
    });
    let svc = service_fn(move |req| proxy::handle(Arc::clone(&ctx), req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        // The primary's Date (or its absence) passes through as it was.
        .auto_date_header(false)
        .serve_connection(TokioIo::new(stream), svc);
    let mut conn = pin!(conn);
    let mut upstreams: FuturesUnordered<Driver> = FuturesUnordered::new();
    let mut shadows: FuturesUnordered<Driver> = FuturesUnordered::new();
    // Made once and polled once to register: a `select!` loop would make (and register,
    // under the channel's lock) a new `changed()` future on every wake-up, several per
    // request. After that a plain version check says when it is worth polling again.
    let probe = shutdown.clone();
    let mut stop = pin!(shutdown.changed());
    let mut registered = false;
    let mut closing = false;
    // Every part is polled on every wake-up, in a fixed order, until the client connection
    // ends: the client connection, then the work it queued (a new primary connection, a
    // shadow exchange), then the primary connection and the shadows.
    std::future::poll_fn(|cx| {
        loop {
            if conn.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            while let Poll::Ready(Some(w)) = rx.poll_recv(cx) {
                match w {
                    Work::Upstream(d) => upstreams.push(d),
                    Work::Shadow(d) => shadows.push(d),
                }
            }
            while let Poll::Ready(Some(())) = upstreams.poll_next_unpin(cx) {}
            while let Poll::Ready(Some(())) = shadows.poll_next_unpin(cx) {}
            if closing || (registered && !probe.has_changed().unwrap_or(true)) {
                return Poll::Pending;
            }
            registered = true;
            if stop.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Stop taking requests; the connection is polled again to act on it.
            closing = true;
            conn.as_mut().graceful_shutdown();
        }
    })
    .await;
    // The primary connections go with the client's; the shadows are finished elsewhere.
    // Closed first: anything fired later (a body dropped with the connection) is spawned.
    drop(upstreams);
    rx.close();
    while let Ok(w) = rx.try_recv() {
        if let Work::Shadow(d) = w {
            shadows.push(d);
        }
    }
    if !shadows.is_empty() {
        tokio::spawn(async move { while shadows.next().await.is_some() {} });
    }
}

async fn admin_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    state: Arc<Mutex<AnalysisState>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = Arc::clone(&shared);
                    let state = Arc::clone(&state);
                    conns.spawn(async move {
                        let svc = service_fn(move |req| {
                            let r = admin(&shared, &state, &req);
                            async move { Ok::<_, std::convert::Infallible>(r) }
                        });
                        let _ = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // The admin endpoint keeps answering while the proxy drains (`shutdown` aborts it);
            // it stops on its own only if the mirror is gone.
            changed = shutdown.changed() => if changed.is_err() { break },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

fn admin(
    shared: &Shared,
    state: &Mutex<AnalysisState>,
    req: &Request<Incoming>,
) -> Response<RespBody> {
    let (status, ctype, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            shared.shadow.metrics.encode(),
        ),
        (&Method::GET, "/summary") => {
            let summary = Summary::collect(shared, &lock(state), true);
            let mut text = serde_json::to_string_pretty(&summary).unwrap_or_default();
            text.push('\n');
            (StatusCode::OK, "application/json", text)
        }
        (&Method::GET, "/health") => (StatusCode::OK, "application/json", "{\"ok\":true}\n".into()),
        (&Method::GET, _) => (
            StatusCode::NOT_FOUND,
            "application/json",
            "{\"error\":\"not_found\",\"endpoints\":[\"/metrics\",\"/summary\",\"/health\"]}\n"
                .into(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "application/json",
            "{\"error\":\"method_not_allowed\"}\n".into(),
        ),
    };
    let mut resp = Response::new(RespBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp
}
