//! Integration tests of the simulator: real servers on 127.0.0.1:0, driven over TCP.

mod util;

mod auth;
mod determinism;
mod faults;
mod routes;
mod scenarios;
mod sse;
