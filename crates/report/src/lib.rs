//! shadowgate-report: the rollout plan's phase gates as data, verdicts over merged run
//! directories, and renderers for people and for CI.
//!
//! ```text
//!  run dirs ──Measurements::open──▶ merged Run + per-dir facts ──evaluate(criteria)──▶ Report
//!                                                                                      │
//!        term · md · json · csv · junit · html · hgrm  ◀── render::* (any io::Write) ──┘
//! ```
//!
//! Design decisions:
//! - **Criteria are data** ([`criteria`], [`expr`]): `scenarios/phases.toml` holds the plan's
//!   numbers as expressions (`p99 < "1ms"`, `error_rate < 0.1%`, `ratio(p50, primary) <= 1/7`,
//!   Goose's compact `p50<150us`), parsed and unit-checked up front; every problem in the file
//!   is reported at once with its line and the fix. `scenarios/rollback.toml` ([`rollback`])
//!   uses the same language.
//! - **Measuring is apart from rendering** (as in oha): [`evaluate`] produces a plain
//!   [`Report`] (its JSON is a stable, versioned schema, see [`model`]); renderers only format
//!   it, so every format shows the same numbers.
//! - **Merging is exact**: histograms add, counts add ([`shadowgate_record::merge`]); facts in
//!   each manifest's `extra` (generator limits, measured window, coverage) are read per
//!   directory before merging ([`measure`]).
//! - **Missing data never passes**: a criterion without data is `no-data` (fails) or, where the
//!   file says `missing = "skip"`, `skipped`; a gate where nothing was judged fails.
//! - **The generator is not the gateway**: throughput on a run whose load generator could not
//!   hold its rate is `generator-limited`, not a gateway failure (and not a pass).
//! - **Discrepancies in sections** ([`sections`]): order flows, event streams, audit log and
//!   exchanges, decided by the line's kind (and, for the shared `not-compared` kind, by which
//!   producer wrote it), so a stream gap gates with the streams and an unmapped order id with
//!   the flows. The producers' own counters (flows, id map, stream routes, audit-diff) come
//!   from the manifests; the SSE `;lag` series is read only for the stream section and the
//!   `sse_lag_*` metrics, never as request latency.
//! - **"Slower" needs significance**: candidate vs primary latency is compared with a
//!   Mann-Whitney U test computed from the histogram buckets ([`stats`]), with its effect
//!   size, so small noisy shifts are not called regressions.

pub mod alerts;
pub mod criteria;
pub mod error;
pub mod eval;
pub mod expr;
pub mod measure;
pub mod model;
pub mod prom;
pub mod render;
pub mod rollback;
pub mod sections;
pub mod stats;
pub mod units;
pub mod watch;

pub use criteria::{Criteria, Criterion, Missing, Phase, RoutePattern, RouteScope};
pub use error::{ConfigErrors, ConfigIssue, ReportError};
pub use eval::{Options, evaluate};
pub use measure::{Measurements, Source};
pub use model::{Report, SCHEMA_VERSION, SectionKind, Status, Verdict};
pub use rollback::{Action, RollbackMatrix, Rule};
