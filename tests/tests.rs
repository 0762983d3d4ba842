//! End-to-end tests of the `shadowgate` binary: one test binary (`autotests = false`), one
//! module per command, real servers on 127.0.0.1:0.

mod audit_cli;
mod cli;
mod demo_cli;
mod health;
mod mirror_cli;
mod nginx;
mod replay_cli;
mod report_cli;
mod sim_cli;
mod util;
mod validate_cli;
