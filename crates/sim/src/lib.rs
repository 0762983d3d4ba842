//! shadowgate-sim: a reference gateway that speaks the VeloZ API (veloz-api.md) in two
//! profiles, `python` and `cpp`, with fault and divergence injection, so the mirror, the load
//! generator and the report can be tested against gateways whose differences are known.
//!
//! ```no_run
//! # async fn demo() -> Result<(), shadowgate_sim::SimError> {
//! use shadowgate_sim::{Profile, SimConfig};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|source| {
//!     shadowgate_sim::SimError::Bind { addr: "127.0.0.1:0".into(), source }
//! })?;
//! let sim = shadowgate_sim::start(SimConfig::default_for(Profile::Cpp), listener).await?;
//! println!("listening on {}", sim.local_addr());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Design decisions (details in each module):
//! - **One router, one switch per difference.** Every §9 difference is an *aspect* (paths,
//!   envelope, shapes, login, auth, errors, sse, rate-limit headers, JSON format, headers)
//!   that is rendered either the Python or the C++ way ([`config::Aspects`]); the `cpp`
//!   profile has every aspect C++ by default and each can be switched back to Python
//!   (`[differences]`), so "identical" pairs are one config away.
//! - **A simulated engine behind both** ([`engine`]), in-process, with the old simulating
//!   engine's events; the C++ profile derives its order and account caches from the same
//!   events the way the C++ bridge does (so it is wrong the same way).
//! - **Injection is counted.** Latency, stalls, resets, hangs, garbage, slow bodies, 5xx,
//!   changed fields, dropped SSE events and engine-side divergence are all counted in
//!   [`StatsSnapshot`] (`GET /__sim/stats`), so a test can compare what a detector found with
//!   what was injected.
//! - **Deterministic when seeded.** All injection decisions come from RNGs seeded by the
//!   simulator seed and the request (or stream) sequence number; the engine's prices come from
//!   the seed and an epoch-aligned tick grid. Two seeded simulators driven by the same request
//!   sequence answer the same, except for veloz-api.md §8's noise fields.
//! - **Not the bottleneck.** Routing is a `match`, static headers are `from_static`, bodies
//!   are `Bytes`, counters are relaxed atomics, nothing logs per request above `trace`.
//! - **Audit logs** in each profile's format ([`audit`]: Python `[AUDIT]` lines, C++ daily
//!   NDJSON files), off unless configured, so audit-log consistency can be tested.

pub mod audit;
pub mod auth;
pub mod engine;
pub mod ratelimit;

pub mod config;
pub mod hrtimer;
pub mod json;
pub mod routes;
pub mod rxstamp;
pub mod stats;

mod access;
mod app;
mod body;
mod cpp_state;
mod faults;
mod handlers;
mod metrics;
mod reply;
mod server;
mod sse;
mod util;

pub use config::{ConfigErrors, Differences, Profile, RawSimConfig, SimConfig};
pub use server::{SimServer, start};
pub use stats::StatsSnapshot;

/// Errors of the simulator library.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is invalid (every problem is listed).
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The listener handed to [`start`] has no usable local address.
    #[error("the listener has no local address: {source}")]
    Listener {
        #[source]
        source: std::io::Error,
    },
    /// The audit log could not be opened (or its directory created).
    #[error("cannot open the audit log {path}: {source}")]
    Audit {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
