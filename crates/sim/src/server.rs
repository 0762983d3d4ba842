//! Starting and stopping a simulator: [`start`] takes a validated [`SimConfig`] and an
//! already-bound listener (tests hand in `127.0.0.1:0`), and returns a [`SimServer`] handle.
//!
//! Connections are served by hyper's HTTP/1 server with keep-alive, `TCP_NODELAY` on every
//! accepted socket, and each socket wrapped in [`FaultIo`] so a request can break its own
//! connection. The Python profile keeps HTTP/1.1 keep-alive although the real server closes
//! after every answer (HTTP/1.0): closing would make the simulator the bottleneck of a load
//! test. It does send Python's `Server` header, CORS headers and title-case header names.
//!
//! Shutdown is graceful and bounded: the accept loop stops, event streams and hung requests
//! are released, open connections finish their answer and close; whatever is still open after
//! `server.shutdown_grace` is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::SimError;
use crate::app::{self, App};
use crate::auth::{ApiKeyStore, JwtRules};
use crate::config::{Profile, SimConfig, Style};
use crate::cpp_state::{self, CppState};
use crate::engine::Engine;
use crate::faults::{ConnCtl, FaultIo, Plan};
use crate::json::{J, JsonStyle};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::routes::RouteId;
use crate::stats::{Stats, StatsSnapshot};
use crate::util::unix_s;

/// A running simulator.
#[derive(Debug)]
pub struct SimServer {
    local_addr: SocketAddr,
    app: Arc<App>,
    shutdown_tx: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
    follower: Option<JoinHandle<()>>,
}

/// Starts a simulator on `listener` (needs a tokio runtime with the time and net drivers).
pub async fn start(config: SimConfig, listener: TcpListener) -> Result<SimServer, SimError> {
    let local_addr = listener
        .local_addr()
        .map_err(|source| SimError::Listener { source })?;
    // Before the engine starts: like the C++ gateway, no start without its audit directory.
    let audit =
        crate::audit::AuditLog::open(&config.audit, config.profile).map_err(|(path, source)| {
            SimError::Audit {
                path: path.display().to_string(),
                source,
            }
        })?;
    let aspects = config.aspects();
    let seed = config.seed.unwrap_or_else(rand::random);
    let mut engine_cfg = config.engine.clone();
    engine_cfg.seed = seed;
    engine_cfg.deterministic = config.deterministic;
    let engine = Engine::start(engine_cfg);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let jwt_secret = config.auth.jwt_secret.clone().unwrap_or_else(|| {
        // Python with an empty secret: a random one per process.
        let mut b = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
        hex::encode(b).into_bytes()
    });
    let keys = ApiKeyStore::new();
    // Python creates a default admin key when an admin password is set, and never shows it.
    let admin_key =
        (aspects.auth == Style::Python && config.auth.admin_password.is_some()).then(|| {
            keys.create(
                "admin",
                "default-admin",
                vec!["read".into(), "write".into(), "admin".into()],
                unix_s(),
            )
        });
    let limiter = config.rate_limit.enabled.then(|| {
        RateLimiter::new(
            config.rate_limit.capacity,
            config.rate_limit.refill_per_s,
            config.rate_limit.idle_ttl,
        )
    });
    let cpp = Arc::new(CppState::new(vec![
        ("market_source".into(), J::s("sim")),
        ("market_symbol".into(), J::s(config.engine.symbol.clone())),
        ("execution_mode".into(), J::s("sim_engine")),
        ("auth_enabled".into(), J::Bool(config.auth.enabled)),
    ]));
    // The C++ caches are only read by the C++ shapes.
    let follower = (config.profile == Profile::Cpp)
        .then(|| cpp_state::spawn_follower(Arc::clone(&cpp), &engine, shutdown_rx.clone()));

    let app = Arc::new(App {
        audit,
        aspects,
        json: match aspects.json_format {
            Style::Python => JsonStyle::Python,
            Style::Cpp => JsonStyle::Compact,
        },
        seed,
        engine,
        stats: Arc::new(Stats::new(config.divergence.changed_fields.len())),
        metrics: Metrics::new(),
        metrics_on: RouteId::Metrics.in_table(aspects.paths),
        plan: Plan::new(&config, seed),
        keys,
        admin_key,
        limiter,
        jwt_secret,
        jwt_rules: match aspects.auth {
            Style::Python => JwtRules::python(),
            Style::Cpp => JwtRules::cpp(),
        },
        cpp,
        shutdown: shutdown_rx.clone(),
        started: Instant::now(),
        cfg: config,
    });

    let mut builder = http1::Builder::new();
    builder.keep_alive(true);
    if aspects.headers == Style::Python {
        builder.title_case_headers(true);
    }
    let accept = tokio::spawn(accept_loop(
        listener,
        Arc::clone(&app),
        builder,
        shutdown_rx,
    ));
    tracing::debug!(addr = %local_addr, profile = %app.cfg.profile, "simulator started");
    Ok(SimServer {
        local_addr,
        app,
        shutdown_tx,
        accept: Some(accept),
        follower,
    })
}

async fn accept_loop(
    listener: TcpListener,
    app: Arc<App>,
    builder: http1::Builder,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    let stamp = app.plan.times_arrivals();
    if stamp {
        // Keeps the kernel stamping while we listen, so a request queued on a connection not
        // yet accepted still counts from its arrival.
        crate::rxstamp::stamp_listener(&listener);
    }
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            // Reap finished connections so the set stays small.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctl = Arc::new(ConnCtl::default());
        let io = TokioIo::new(FaultIo::new(stream, Arc::clone(&ctl), stamp));
        let app = Arc::clone(&app);
        let svc = service_fn(move |req| app::handle(Arc::clone(&app), Arc::clone(&ctl), peer, req));
        let conn = graceful.watch(builder.serve_connection(io, svc));
        conns.spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = app.cfg.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("shutdown grace elapsed; dropping open connections");
    }
    conns.abort_all();
    // Bounded: every task was aborted.
    while conns.join_next().await.is_some() {}
}

impl SimServer {
    /// The address the simulator listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What was served and injected so far (the same as `GET /__sim/stats`).
    pub fn stats(&self) -> StatsSnapshot {
        self.app.stats.snapshot(self.app.engine.injected())
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SimConfig {
        &self.app.cfg
    }

    /// The seed in use (drawn at random when the configuration has none).
    pub fn seed(&self) -> u64 {
        self.app.seed
    }

    /// The JWT secret in use (the Python profile draws one per process when none is set),
    /// so tests can mint tokens.
    pub fn jwt_secret(&self) -> &[u8] {
        &self.app.jwt_secret
    }

    /// The Python profile's default admin API key (read/write/admin), which the real gateway
    /// creates but never reveals; exposed so tests can exercise the API-key path.
    pub fn admin_api_key(&self) -> Option<&str> {
        self.app.admin_key.as_ref().map(|k| k.api_key.as_str())
    }

    /// Stops accepting, releases streams and hung requests, lets open answers finish (at most
    /// `server.shutdown_grace`), and stops the engine.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        if let Some(follower) = self.follower.take() {
            let _ = follower.await;
        }
        self.app.engine.shutdown();
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        // Without a graceful shutdown, still stop every task this server started.
        let _ = self.shutdown_tx.send(true);
        self.app.engine.shutdown();
    }
}
