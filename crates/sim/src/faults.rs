//! Fault, latency and divergence injection: what to do to one request, and the connection
//! wrapper that can break a connection on purpose.
//!
//! Design decisions:
//! - **Decided per request, from a per-request RNG.** Rule matching is precomputed per route
//!   slot (`METHOD template`), so a route with no rule costs one branch. When a slot has rules,
//!   a `SmallRng` is seeded from the simulator seed and the request's sequence number, so a
//!   seeded simulator driven by the same request sequence injects the same faults, without a
//!   lock shared by connections.
//! - **Connection-level faults go through [`FaultIo`]**, a wrapper around the accepted
//!   `TcpStream` that shares a small atomic state with the request handler. The handler flags
//!   the connection and returns a dummy answer; when hyper writes it, the wrapper instead
//!   - *reset*: sets `SO_LINGER` to zero and fails the write, so hyper drops the connection
//!     and the kernel answers with a RST;
//!   - *garbage*: writes seeded random bytes (never starting like `HTTP/`) instead of the
//!     answer, then fails the write so the connection is closed (FIN).
//!
//!   Neither lets the request reach the handler, so a reset `POST` places no order.
//!   *hang* needs no wrapper: the request future waits for shutdown and then errors out.
//! - *slow_body* applies to whole bodies only: an event stream is already paced by its events.
//!   Latency, stalls and terminal faults apply to every route, streams included, except the
//!   simulator's own `/__sim/stats`.
//! - **Stall N every M** is aligned on the Unix epoch: a request arriving while
//!   `(now % M) < N` waits until the window ends. Coordinated-omission tests rely on every
//!   request in the window being delayed, not a fraction of them.
//! - **Injected latency counts from the request's arrival**, the kernel's receive stamp of its
//!   last segment (module `rxstamp`; stamping is asked for only when a latency or stall rule
//!   exists), not from when the simulator's thread woke up to handle it: a gateway configured
//!   to take 200 µs answers 200 µs after the request reached it, whatever this process's own
//!   wake-up cost. A normal answer is prepared first and handed to hyper at the deadline, so
//!   the simulator's own handling is inside the latency too. Without a stamp (refused, or the first requests before the kernel turned
//!   stamping on) the wait counts from the handler's start. Stall windows are judged by the
//!   same arrival time.
//! - **Sub-millisecond waits.** tokio's timer has 1 ms granularity, so a 200 µs delay would
//!   become 1 ms. With `latency.spin` (the default, "precise") the wait is a timerfd until
//!   150 µs before the deadline and yields to the scheduler for the rest (module `hrtimer`:
//!   a timerfd alone wakes ~50 µs late on a VM whose idle vCPUs halt): on time at P90 at the
//!   CPU cost of the last 150 µs, where yielding the whole wait (the earlier design) cost a
//!   core at 1,000 req/s with 1 ms injected. `spin = false` uses
//!   tokio's timer alone.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{FaultKind, LatencyModel, SimConfig};
use crate::routes::{self, SLOT_COUNT};
use crate::rxstamp::{Arrival, StampedStream};

/// What the rules say for one route slot.
#[derive(Debug, Clone, Default)]
pub(crate) struct SlotPlan {
    pub latency: Option<LatencyModel>,
    /// Indices into `SimConfig::faults`.
    pub faults: Vec<usize>,
    /// Indices into `SimConfig::divergence.changed_fields`.
    pub changed: Vec<usize>,
}

impl SlotPlan {
    fn active(&self) -> bool {
        self.latency.is_some() || !self.faults.is_empty() || !self.changed.is_empty()
    }
}

/// Per-slot rules, precomputed from the configuration.
#[derive(Debug)]
pub(crate) struct Plan {
    slots: Vec<SlotPlan>,
    active: Vec<bool>,
    faults: Vec<(FaultKind, f64)>,
    changed_fractions: Vec<f64>,
    seed: u64,
}

/// A connection-breaking fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Terminal {
    Reset,
    Hang,
    Garbage { bytes: usize },
    Error { status: u16 },
}

/// Everything decided for one request.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    pub stall: Option<(Duration, Duration)>,
    pub latency: Option<Duration>,
    pub terminal: Option<Terminal>,
    pub slow_body: Option<(Duration, usize)>,
    /// `changed_field` rules that fire for this answer.
    pub changed: Vec<usize>,
    /// Seeds the garbage bytes.
    pub noise: u64,
}

impl Plan {
    pub(crate) fn new(cfg: &SimConfig, seed: u64) -> Plan {
        let mut slots = vec![SlotPlan::default(); SLOT_COUNT];
        for (key, slot) in routes::table_keys(cfg.aspects().paths) {
            let plan = &mut slots[slot];
            plan.latency = cfg
                .latency
                .routes
                .iter()
                .find(|(p, _)| p.matches(&key))
                .map(|(_, m)| *m)
                .or(cfg.latency.default)
                .filter(|m| !m.is_zero());
            plan.faults = cfg
                .faults
                .iter()
                .enumerate()
                .filter(|(_, f)| {
                    f.fraction > 0.0 && f.route.as_ref().is_none_or(|p| p.matches(&key))
                })
                .map(|(i, _)| i)
                .collect();
            plan.changed = cfg
                .divergence
                .changed_fields
                .iter()
                .enumerate()
                .filter(|(_, c)| c.fraction > 0.0 && c.route.matches(&key))
                .map(|(i, _)| i)
                .collect();
        }
        Plan {
            active: slots.iter().map(SlotPlan::active).collect(),
            slots,
            faults: cfg.faults.iter().map(|f| (f.kind, f.fraction)).collect(),
            changed_fractions: cfg
                .divergence
                .changed_fields
                .iter()
                .map(|c| c.fraction)
                .collect(),
            seed,
        }
    }

    /// Whether some rule waits from a request's arrival (latency, stall): connections then ask
    /// the kernel for receive stamps.
    pub(crate) fn times_arrivals(&self) -> bool {
        self.slots.iter().any(|s| s.latency.is_some())
            || self
                .faults
                .iter()
                .any(|(k, f)| *f > 0.0 && matches!(k, FaultKind::Stall { .. }))
    }

    /// Whether any rule applies to `slot`.
    pub(crate) fn is_active(&self, slot: usize) -> bool {
        self.active.get(slot).copied().unwrap_or(false)
    }

    /// Decides what happens to request number `seq` on `slot`; `None` when nothing can.
    pub(crate) fn decide(&self, slot: usize, seq: u64) -> Option<Decision> {
        if !self.is_active(slot) {
            return None;
        }
        let plan = &self.slots[slot];
        let mut rng = request_rng(self.seed, seq);
        let mut d = Decision {
            noise: rng.next_u64(),
            ..Decision::default()
        };
        if let Some(model) = &plan.latency {
            d.latency = Some(sample_latency(model, &mut rng)).filter(|l| !l.is_zero());
        }
        for &i in &plan.faults {
            let (kind, fraction) = self.faults[i];
            // Draw for every rule, so adding a rule does not shift the draws of the others.
            let fires = rng.random::<f64>() < fraction;
            if !fires {
                continue;
            }
            match kind {
                FaultKind::Stall { stall, every } => d.stall = d.stall.or(Some((stall, every))),
                FaultKind::SlowBody { delay, chunk_bytes } => {
                    d.slow_body = d.slow_body.or(Some((delay, chunk_bytes)));
                }
                FaultKind::Reset => d.terminal = d.terminal.or(Some(Terminal::Reset)),
                FaultKind::Hang => d.terminal = d.terminal.or(Some(Terminal::Hang)),
                FaultKind::Garbage { bytes } => {
                    d.terminal = d.terminal.or(Some(Terminal::Garbage { bytes }));
                }
                FaultKind::Error { status } => {
                    d.terminal = d.terminal.or(Some(Terminal::Error { status }));
                }
            }
        }
        for &i in &plan.changed {
            if rng.random::<f64>() < self.changed_fractions[i] {
                d.changed.push(i);
            }
        }
        Some(d)
    }
}

/// The RNG for one request (or one SSE stream): seed and sequence number mixed so that
/// neighbouring sequence numbers give unrelated streams.
pub(crate) fn request_rng(seed: u64, seq: u64) -> SmallRng {
    SmallRng::seed_from_u64(splitmix64(seed ^ splitmix64(seq)))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One draw from a latency model.
pub(crate) fn sample_latency(model: &LatencyModel, rng: &mut SmallRng) -> Duration {
    match *model {
        LatencyModel::Fixed(d) => d,
        LatencyModel::Uniform { low, high } => {
            let span = high.saturating_sub(low).as_nanos() as f64;
            low + Duration::from_nanos((span * rng.random::<f64>()) as u64)
        }
        LatencyModel::LogNormal { median, p99 } => {
            // 2.326 = z of the 99th percentile of the standard normal.
            let sigma = (p99.as_secs_f64() / median.as_secs_f64()).ln() / 2.326;
            // Box-Muller; 1 - u keeps the logarithm finite.
            let u1 = 1.0 - rng.random::<f64>();
            let u2 = rng.random::<f64>();
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            let secs = median.as_secs_f64() * (sigma * z).exp();
            // A far tail draw is capped rather than stalling a connection for hours.
            Duration::from_secs_f64(secs.clamp(0.0, 60.0))
        }
    }
}

/// How long a request arriving now waits under a stall-every rule.
pub(crate) fn stall_wait(stall: Duration, every: Duration, now: SystemTime) -> Duration {
    let since = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let every_ns = every.as_nanos().max(1);
    let into = since % every_ns;
    let stall_ns = stall.as_nanos();
    if into < stall_ns {
        Duration::from_nanos((stall_ns - into) as u64)
    } else {
        Duration::ZERO
    }
}

/// Waits until `deadline`, precisely when `precise` (see the module docs).
pub(crate) async fn wait_until(deadline: Instant, precise: bool) {
    if precise {
        crate::hrtimer::sleep_until(deadline).await;
    } else {
        tokio::time::sleep_until(deadline).await;
    }
}

/// Seeded garbage that cannot be mistaken for an HTTP answer.
pub(crate) fn garbage_bytes(bytes: usize, noise: u64) -> Bytes {
    let mut rng = SmallRng::seed_from_u64(noise);
    let mut out = vec![0u8; bytes.max(1)];
    rng.fill_bytes(&mut out);
    out[0] = 0xff;
    Bytes::from(out)
}

const MODE_NORMAL: u8 = 0;
const MODE_RESET: u8 = 1;
const MODE_GARBAGE: u8 = 2;

/// State shared between one connection's [`FaultIo`] and its request handler.
#[derive(Debug, Default)]
pub(crate) struct ConnCtl {
    mode: AtomicU8,
    garbage: Mutex<Option<Bytes>>,
    /// The kernel's receive stamp of the last segment read (when stamping was asked for).
    pub(crate) arrival: Arrival,
}

impl ConnCtl {
    /// The next write resets the connection.
    pub(crate) fn reset(&self) {
        self.mode.store(MODE_RESET, Ordering::Release);
    }

    /// The next write sends `bytes` instead of the answer, then closes.
    pub(crate) fn garbage(&self, bytes: Bytes) {
        *self.garbage.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        self.mode.store(MODE_GARBAGE, Ordering::Release);
    }
}

/// A `TcpStream` that a request handler can break on purpose (see the module docs), and
/// whose reads carry the kernel's receive stamps when `stamp` (into `ctl.arrival`).
#[derive(Debug)]
pub(crate) struct FaultIo {
    inner: StampedStream,
    ctl: Arc<ConnCtl>,
    /// Garbage still to write, taken from `ctl` on the first write in garbage mode.
    pending: Option<Bytes>,
}

impl FaultIo {
    pub(crate) fn new(inner: TcpStream, ctl: Arc<ConnCtl>, stamp: bool) -> FaultIo {
        let inner = if stamp {
            StampedStream::new(inner, ctl.arrival.clone())
        } else {
            StampedStream::plain(inner)
        };
        FaultIo {
            inner,
            ctl,
            pending: None,
        }
    }

    /// Handles a write in a fault mode; `None` in normal mode.
    fn poll_fault(&mut self, cx: &mut Context<'_>) -> Option<Poll<io::Result<usize>>> {
        match self.ctl.mode.load(Ordering::Acquire) {
            MODE_NORMAL => None,
            MODE_RESET => {
                // Zero linger turns the close hyper is about to do into a RST.
                let _ = self.inner.get_ref().set_zero_linger();
                Some(Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "injected reset",
                ))))
            }
            _ => {
                if self.pending.is_none() {
                    let taken = self
                        .ctl
                        .garbage
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take();
                    self.pending = Some(taken.unwrap_or_else(|| Bytes::from_static(b"\xff")));
                }
                // Write the garbage fully, then fail so that the connection is closed.
                while let Some(buf) = self.pending.as_mut().filter(|b| !b.is_empty()) {
                    match Pin::new(&mut self.inner).poll_write(cx, buf) {
                        Poll::Ready(Ok(0)) => break,
                        Poll::Ready(Ok(n)) => {
                            bytes::Buf::advance(buf, n);
                        }
                        Poll::Ready(Err(e)) => return Some(Poll::Ready(Err(e))),
                        Poll::Pending => return Some(Poll::Pending),
                    }
                }
                Some(Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "injected garbage",
                ))))
            }
        }
    }
}

impl AsyncRead for FaultIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(p) = self.poll_fault(cx) {
            return p;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(p) = self.poll_fault(cx) {
            return p;
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FaultRule, SimConfig};
    use crate::config::{Profile, RoutePattern};
    use crate::routes::RouteId;

    #[tokio::test]
    async fn sub_millisecond_waits_never_end_early() {
        for us in [5u64, 30, 200, 900, 1500] {
            let d = Duration::from_micros(us);
            let t = Instant::now();
            wait_until(t + d, true).await;
            assert!(
                t.elapsed() >= d,
                "{us} µs wait ended after {:?}",
                t.elapsed()
            );
        }
    }

    fn cfg_with(faults: Vec<FaultRule>) -> SimConfig {
        let mut cfg = SimConfig::default_for(Profile::Python);
        cfg.faults = faults;
        cfg
    }

    #[test]
    fn stall_windows_are_epoch_aligned() {
        let every = Duration::from_secs(1);
        let stall = Duration::from_millis(100);
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms);
        assert_eq!(stall_wait(stall, every, at(0)), Duration::from_millis(100));
        assert_eq!(stall_wait(stall, every, at(40)), Duration::from_millis(60));
        assert_eq!(stall_wait(stall, every, at(100)), Duration::ZERO);
        assert_eq!(stall_wait(stall, every, at(999)), Duration::ZERO);
        assert_eq!(
            stall_wait(stall, every, at(1_050)),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn lognormal_matches_its_median_and_p99() {
        let model = LatencyModel::LogNormal {
            median: Duration::from_micros(150),
            p99: Duration::from_millis(1),
        };
        let mut rng = SmallRng::seed_from_u64(1);
        let mut draws: Vec<Duration> = (0..20_000)
            .map(|_| sample_latency(&model, &mut rng))
            .collect();
        draws.sort();
        let median = draws[draws.len() / 2].as_secs_f64();
        let p99 = draws[draws.len() * 99 / 100].as_secs_f64();
        assert!((median / 150e-6 - 1.0).abs() < 0.05, "median {median}");
        assert!((p99 / 1e-3 - 1.0).abs() < 0.15, "p99 {p99}");
    }

    #[test]
    fn uniform_stays_in_bounds() {
        let model = LatencyModel::Uniform {
            low: Duration::from_micros(100),
            high: Duration::from_millis(1),
        };
        let mut rng = SmallRng::seed_from_u64(2);
        for _ in 0..1000 {
            let d = sample_latency(&model, &mut rng);
            assert!(d >= Duration::from_micros(100) && d <= Duration::from_millis(1));
        }
    }

    #[test]
    fn decisions_are_reproducible_and_follow_the_fraction() {
        let cfg = cfg_with(vec![FaultRule {
            kind: FaultKind::Error { status: 503 },
            route: Some(RoutePattern::parse("GET /api/market").unwrap()),
            fraction: 0.25,
        }]);
        let plan = Plan::new(&cfg, 42);
        let market = routes::slot(RouteId::Market, 0);
        let health = routes::slot(RouteId::Health, 0);
        assert!(plan.decide(health, 0).is_none(), "no rule on /health");
        let fired = |plan: &Plan| {
            (0..4000)
                .filter(|&seq| plan.decide(market, seq).unwrap().terminal.is_some())
                .count()
        };
        let n = fired(&plan);
        assert!((800..1200).contains(&n), "{n} of 4000 at 0.25");
        assert_eq!(n, fired(&Plan::new(&cfg, 42)), "same seed, same decisions");
        assert_ne!(
            n,
            fired(&Plan::new(&cfg, 43)),
            "another seed, other decisions"
        );
    }

    #[test]
    fn garbage_never_looks_like_http() {
        for noise in 0..100 {
            let g = garbage_bytes(64, noise);
            assert_eq!(g.len(), 64);
            assert!(!g.starts_with(b"HTTP"));
        }
    }
}
