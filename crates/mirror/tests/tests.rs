//! Integration tests of the shadow proxy: simulators and purpose-built servers on
//! 127.0.0.1:0, the mirror started in process, run directories read back with `Run::open`.

mod comparing;
mod faults;
mod flows;
mod secrets;
mod sse_compare;
mod streams;
mod util;
mod writes;
