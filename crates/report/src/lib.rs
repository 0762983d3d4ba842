//! shadowgate-report: criteria as data, verdicts over merged runs, renderers.

pub mod criteria;
pub mod error;
pub mod eval;
pub mod expr;
pub mod measure;
pub mod model;
pub mod render;
pub mod rollback;
pub mod stats;
pub mod units;

pub use criteria::{Criteria, Criterion, Missing, Phase, RoutePattern, RouteScope};
pub use error::{ConfigErrors, ConfigIssue, ReportError};
pub use eval::{Options, evaluate};
pub use measure::{Measurements, Source};
pub use model::{Report, SCHEMA_VERSION, Status, Verdict};
pub use rollback::{Action, RollbackMatrix, Rule};
