//! shadowgate-report: criteria as data, verdicts over merged runs, renderers.

pub mod criteria;
pub mod error;
pub mod expr;
pub mod rollback;
pub mod units;

pub use criteria::{Criteria, Criterion, Missing, Phase, RoutePattern, RouteScope};
pub use error::{ConfigErrors, ConfigIssue, ReportError};
pub use rollback::{Action, RollbackMatrix, Rule};
