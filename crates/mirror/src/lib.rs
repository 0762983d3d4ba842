//! `shadowgate-mirror`: the shadow proxy. Clients are served by the **primary**; each request
//! the rules allow is copied to the **candidate**, and the two answers are compared with
//! `shadowgate-diff` and recorded into a run directory with `shadowgate-record`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), shadowgate_mirror::MirrorError> {
//! use shadowgate_mirror::{RawMirrorConfig, load_rules};
//! let raw = RawMirrorConfig {
//!     primary: "http://127.0.0.1:8080".into(),
//!     candidate: "http://127.0.0.1:8081".into(),
//!     out: "reports/run-1".into(),
//!     rules: std::sync::Arc::new(load_rules("scenarios/veloz.toml")?),
//!     ..RawMirrorConfig::default()
//! };
//! let config = raw.validate()?; // every problem at once, before binding
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let mirror = shadowgate_mirror::start(config, listener, None).await?;
//! println!("{}", mirror.local_addr());
//! let summary = mirror.shutdown().await?;
//! println!("coverage {:?}", summary.coverage);
//! # Ok(()) }
//! ```
//!
//! # Design decisions
//!
//! **The primary path is sacred.** The client's answer is the primary's status, headers (less
//! hop-by-hop fields) and body, forwarded frame by frame as they arrive. The shadow copy is
//! fired only once the primary's body has passed, from a separate connection pool, with a
//! `try_acquire`d permit out of `--shadow-concurrency`: when none is free the copy is dropped
//! and counted, never queued behind the client. The candidate's timeout, its circuit breaker
//! and the comparison all run off the client's path; a candidate that refuses, resets, hangs,
//! answers slowly or sends garbage changes nothing the client sees.
//!
//! **Pipeline** (module `proxy`): route → decide (write policy, sampling) → forward headers →
//! buffer the request body (mirrored requests only) → primary → answer → complete (record,
//! fire the shadow). Module `shadow` sends the copy and module `analysis` compares it on a
//! dedicated thread.
//!
//! **Leaner hop.** The proxy runs on `--workers` threads (default 2), each a single-threaded
//! runtime accepting on the shared listener, like nginx's workers. A client connection's task
//! also drives its own primary connection (no pool, no hand-off to a connection task) and its
//! shadow exchanges, whose candidate connections come from a keep-alive pool of connections
//! driven by whoever uses them (module `upstream`). So a request, its primary exchange and its
//! shadow never wake another task or thread; the comparison thread polls its queue instead of
//! being woken per exchange. Measured on two cores: about 24 context switches per request with
//! a work-stealing runtime and hyper-util's pooled client, about 3 with this layout.
//!
//! **Headers.** Hop-by-hop fields (RFC 9110 §7.6.1: `Connection` and the fields it names,
//! `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`, plus
//! `Proxy-Authenticate`/`Proxy-Authorization`) are removed in both directions;
//! `X-Forwarded-For` gets the client address appended. **`Host`**: each upstream gets its own
//! authority from its URL (as nginx's `proxy_pass` does by default), so a gateway that checks
//! its own host name is not confused; `--preserve-host` sends the client's `Host` to every
//! upstream instead. Header names travel lower-case (HTTP/1.1 names are case-insensitive);
//! the primary's `Date` passes through and none is added.
//!
//! **Writes are not mirrored by accident.** Only GET, HEAD and OPTIONS are mirrored without
//! a rule. Any other method — PUT and DELETE included — needs its route's `write_policy` set
//! to `mirror` or `mirror-marked` (which adds `X-Shadowgate-Shadow: 1`). Routes can translate
//! the request for the candidate (method, path with captures, JSON body mapping) and sample
//! a percentage, optionally keyed (header, query parameter, template capture, request body
//! field or client address) so one account's or order's requests are all in or all out.
//!
//! **Bodies.** Mirrored bodies are buffered for comparison up to `--body-limit` (1 MiB).
//! Beyond it the body streams on untouched and the exchange is counted as
//! `body_over_limit` (with one `not-compared` line per route in `discrepancies.ndjson`).
//! Event streams (`text/event-stream`) pass through unbuffered; module `sse` compares them.
//!
//! **Accounting.** Every eligible copy ends in exactly one of: compared, dropped (budget),
//! breaker open, timeout, connect error, error, body over limit, event stream, primary failed,
//! queue full. Coverage (`compared ÷ eligible`) is in `/summary`, `/metrics` and the
//! manifest's `extra.mirror`, so a run where the candidate could not keep up is never read as
//! a clean one. Connections opened to each upstream are counted (churn).
//!
//! **Recording.** `latency.hlog`: per target (`primary`, `candidate`, `secondary`) per
//! method and route template, the time to the full response (the primary's from the request's
//! arrival at the mirror; an event stream records no time). `counts.csv`: outcomes by status
//! class and error, and shadow drops (budget and breaker) on the candidate's rows. Both are
//! written every interval by the comparison thread and at shutdown; `discrepancies.ndjson`
//! is flushed every interval. Differences are redacted by the comparison engine before they
//! reach any file or endpoint; nothing from a request (headers, query, body) is written,
//! except to the capture file.
//!
//! **Capture** (`--capture FILE`, module `capture`): every request, with its body, arrival
//! offset and client, appended as NDJSON for `shadowgate replay` — handed to a writer thread
//! through a bounded queue (full: dropped and counted), secrets redacted with the rules'
//! redactor unless `--capture-secrets`. Non-mirrored request bodies are read (up to the body
//! limit) so the capture is complete; that is the only change to the primary path.
//!
//! **Order flows and ids** (modules `correlate`, `flows`): routes whose rules say where order
//! ids live (`ids`, `flow = "submit" | "cancel" | "state"`) teach the mirror which candidate
//! id stands for which primary id; follow-ups reach the candidate with its own id, and only
//! after the candidate has answered the order's submit (unmapped or timed-out ids are counted
//! and reported, never guessed). Each order's whole flow is compared per `[flows]` (answers,
//! order events of watched streams, state polls once quiet); the map goes to `ids.ndjson`.
//! Each side's state polls carry the credential headers the order's submit carried to that
//! side, held in memory with the flow only (never written); a bulk request (a JSON array of
//! ids) has every id rewritten.
//!
//! **Learned noise** (`--secondary`): see module `analysis` — regression lines of routes the
//! noise model observed are written at the end of the run with the final verdict.
//!
//! **Errors.** The primary unreachable → `502 {"error":"bad_gateway","upstream":"primary",
//! "url":…,"reason":…}` within the connect timeout; no response headers within
//! `--primary-timeout` → `504` with `"error":"gateway_timeout"`.

mod analysis;
mod body;
mod capture;
mod config;
mod correlate;
mod error;
mod flows;
mod headers;
mod proxy;
pub mod rules_file;
mod server;
mod shadow;
mod sse;
mod stats;
mod summary;
mod tee;
mod upstream;

pub use analysis::{Example, Group, LearnedNoise, Outcomes};
pub use capture::{
    CaptureConfig, CaptureFile, CaptureHandle, CaptureSummary, CapturedRequest, read_capture,
};
pub use config::{IdConfig, MirrorConfig, RawMirrorConfig, ShadowConfig, Upstream, defaults};
pub use correlate::{IDS_FILE, IdPair};
pub use error::{ConfigError, MirrorError};
pub use flows::{FlowGroup, FlowSummary, IdSummary};
pub use rules_file::{RuleProblem, RulesFileError, default_rules, load_rules, parse_rules};
pub use server::{Mirror, start};
pub use sse::StreamSummary;
pub use summary::{
    BreakerSummary, Connections, Lines, RouteSummary, ShadowCounts, Summary, TargetCounts,
};
