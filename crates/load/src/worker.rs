//! The timed path: what one Goose user does per transaction.
//!
//! Each Goose user owns a [`Worker`] (kept in its session data): one keep-alive connection, a
//! [`LocalRecorder`] shard of the run's histograms, a lateness histogram, reusable buffers and
//! the follow-up steps of its flows. A transaction takes the next schedule ticket from the
//! shared queue (or a follow-up step that has come due), sends the request of its mix entry,
//! records, and hands the timing to Goose. Nothing on this path takes a lock shared with other
//! users per request: shards flush into the run at most once per interval, live progress
//! figures at most every 250 ms.
//!
//! Timings, all from the same `Instant`s:
//! - response (the gate's figure) = answer complete − **intended** send time: includes any
//!   time the ticket waited for a free connection, so a stalled gateway is charged for every
//!   request it delayed (coordinated-omission corrected);
//! - service = answer complete − actual send time (the `;service` series);
//! - send lateness = actual − intended send time.
//!
//! "Answer complete" is the kernel's receive timestamp of the answer's last segment (module
//! `rxstamp`), not the time this thread woke up to read it; the difference is recorded as the
//! run's receive delay.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use goose::goose::{GooseUser, Transaction, TransactionFunction, TransactionResult};
use hdrhistogram::Histogram;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use shadowgate_record::{LatencyRecorder, LocalRecorder, Outcome, SeriesId};

use crate::client::{Conn, Failure, Target};
use crate::pacer::{Phase, Phases, Ticket, new_histogram};
use crate::scenario::{Entry, Step};
use crate::template::RenderCtx;

/// A step with everything precomputed for the hot path.
#[derive(Debug)]
pub(crate) struct CompiledStep {
    pub step: Step,
    pub response: SeriesId,
    pub service: SeriesId,
    /// The body when it has no variables (cloned per request: a reference count).
    pub static_body: Option<Bytes>,
    /// Static header values (rendered once); `None` where a template has variables.
    pub static_headers: Vec<Option<HeaderValue>>,
    /// Label Goose aggregates the request under (`GET`, `/api/market`).
    pub goose_method: String,
    pub goose_name: String,
}

/// An entry with compiled steps.
#[derive(Debug)]
pub(crate) struct CompiledEntry {
    pub entry: Entry,
    pub steps: Vec<CompiledStep>,
}

/// Run-wide counters a worker adds to when it is dropped.
#[derive(Debug)]
pub(crate) struct Totals {
    /// Actual − intended send time of measured requests, ns.
    pub lateness: Histogram<u64>,
    /// Service time of measured requests, ns (for the connection-capacity hint).
    pub service_sum_ns: u128,
    /// How long after the kernel's receive stamp this generator read each measured answer
    /// that had one, ns (its own wake-up and parsing: not charged to the gateway); its count
    /// is the number of stamped answers.
    pub receive_delay: Histogram<u64>,
    /// Requests sent, by phase of their ticket: warm-up, measured, tail.
    pub sent: [u64; 3],
    /// Requests whose actual send time fell inside the measured window (any phase).
    pub sent_in_window: u64,
    /// Measured requests that failed (no answer).
    pub failed: u64,
    /// Flows started / completed / broken (a step failed or a value could not be extracted).
    pub flows_started: u64,
    pub flows_completed: u64,
    pub flows_broken: u64,
    /// Follow-up steps still waiting when the run ended.
    pub flows_unfinished: u64,
    /// Follow-up steps of broken flows, never sent (the gateway's doing, not the schedule's).
    pub steps_not_sent: u64,
    /// Connections opened.
    pub connects: u64,
}

impl Totals {
    pub fn new() -> Totals {
        Totals {
            lateness: new_histogram(),
            service_sum_ns: 0,
            receive_delay: new_histogram(),
            sent: [0; 3],
            sent_in_window: 0,
            failed: 0,
            flows_started: 0,
            flows_completed: 0,
            flows_broken: 0,
            flows_unfinished: 0,
            steps_not_sent: 0,
            connects: 0,
        }
    }

    fn add(&mut self, o: &Totals) {
        // Same bounds on both sides: cannot fail.
        let _ = self.lateness.add(&o.lateness);
        self.service_sum_ns += o.service_sum_ns;
        let _ = self.receive_delay.add(&o.receive_delay);
        for i in 0..3 {
            self.sent[i] += o.sent[i];
        }
        self.sent_in_window += o.sent_in_window;
        self.failed += o.failed;
        self.flows_started += o.flows_started;
        self.flows_completed += o.flows_completed;
        self.flows_broken += o.flows_broken;
        self.flows_unfinished += o.flows_unfinished;
        self.steps_not_sent += o.steps_not_sent;
        self.connects += o.connects;
    }
}

/// Live figures for the progress display.
#[derive(Debug)]
pub(crate) struct Live {
    /// Requests sent so far (every phase).
    pub sent: AtomicU64,
    /// Measured requests that failed, or answered 4xx/5xx.
    pub errors: AtomicU64,
    /// Response times (from intended send) since the progress display last looked.
    pub hist: Mutex<Histogram<u64>>,
}

/// Everything the users of one run share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub target: Target,
    pub entries: Vec<CompiledEntry>,
    pub rx: flume::Receiver<Ticket>,
    pub phases: Phases,
    /// Set once every user has run `on_start`.
    pub t0: OnceLock<Instant>,
    pub ready: AtomicUsize,
    pub ready_notify: tokio::sync::Notify,
    pub run_token: String,
    pub shard: u32,
    pub shards: u32,
    pub symbols: Vec<String>,
    pub consts: Vec<String>,
    pub auth: Option<(HeaderName, HeaderValue)>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub seed: u64,
    pub recorder: LatencyRecorder,
    pub live: Live,
    pub totals: Mutex<Totals>,
    /// Set when the run is over: idle users return at once.
    pub done: AtomicBool,
}

impl Shared {
    /// `[window_start, window_end)` as instants, once `t0` is set.
    fn window(&self) -> Option<(Instant, Instant)> {
        self.t0
            .get()
            .map(|t0| (*t0 + self.phases.window_start, *t0 + self.phases.window_end))
    }
}

/// A follow-up step of a flow, waiting for its time.
#[derive(Debug)]
struct Pending {
    due: Instant,
    entry: usize,
    step: usize,
    seq: u64,
    phase: Phase,
    extracted: Vec<String>,
}

/// What to tell Goose about one request.
#[derive(Debug)]
pub(crate) struct GooseReport {
    entry: usize,
    step: usize,
    duration: Duration,
    success: bool,
    status: Option<u16>,
    error: Option<&'static str>,
}

/// How long a user sleeps when the queue is closed (the run is over): not an instant `Ok`,
/// which would spin a core until Goose stops the user.
const CLOSED_SLEEP: Duration = Duration::from_millis(10);
/// How often a worker moves its live samples into the shared progress histogram.
const LIVE_FLUSH: Duration = Duration::from_millis(250);

/// One Goose user's state.
#[derive(Debug)]
pub(crate) struct Worker {
    shared: Arc<Shared>,
    user: usize,
    conn: Conn,
    local: LocalRecorder,
    rng: SmallRng,
    pending: Vec<Pending>,
    /// Reports of follow-up steps sent in the current transaction, for Goose.
    steps_done: Vec<GooseReport>,
    path_buf: Vec<u8>,
    buf: Vec<u8>,
    totals: Totals,
    live: Histogram<u64>,
    live_sent: u64,
    live_errors: u64,
    live_flush_at: Instant,
}

impl Worker {
    pub fn new(shared: &Arc<Shared>, user: usize) -> Worker {
        Worker {
            local: shared.recorder.local(),
            rng: SmallRng::seed_from_u64(
                shared.seed ^ (user as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            shared: Arc::clone(shared),
            user,
            conn: Conn::default(),
            pending: Vec::new(),
            steps_done: Vec::new(),
            path_buf: Vec::with_capacity(256),
            buf: Vec::with_capacity(512),
            totals: Totals::new(),
            live: new_histogram(),
            live_sent: 0,
            live_errors: 0,
            live_flush_at: Instant::now() + LIVE_FLUSH,
        }
    }

    /// Opens the connection before the schedule starts (errors are retried on first use).
    pub async fn warm_up(&mut self) {
        let _ = self
            .conn
            .ensure(self.shared.target.addr, self.shared.connect_timeout)
            .await;
    }

    /// One transaction of mix entry `entry`: the follow-up steps that have come due, then the
    /// next ticket, sent as `entry` (the follow-ups' reports go to `self.steps_done`).
    ///
    /// A follow-up never takes a ticket's place: Goose's weighted sequence decides the entry of
    /// every ticket, so the mix is the scenario's and so is the request rate, which counts a
    /// flow's steps. (When a due step replaced the transaction's ticket, the mix drifted with
    /// where the steps fell in Goose's round-robin sequence: the demo's flows lost a seventh of
    /// their share, its 1,000 req/s came out 1.5 % short and was marked generator-limited.)
    async fn next(&mut self, entry: usize) -> Option<GooseReport> {
        loop {
            if self.shared.done.load(Ordering::Relaxed) {
                tokio::time::sleep(CLOSED_SLEEP).await;
                return None;
            }
            if let Some(p) = self.take_due(Instant::now()) {
                if let Some(r) = self.send_pending(p).await {
                    self.steps_done.push(r);
                }
                continue;
            }
            let ticket = match self.shared.rx.try_recv() {
                Ok(t) => t,
                Err(flume::TryRecvError::Disconnected) => {
                    tokio::time::sleep(CLOSED_SLEEP).await;
                    return None;
                }
                Err(flume::TryRecvError::Empty) => {
                    match self.pending.iter().map(|p| p.due).min() {
                        // No timer in the common case: the queue closes at the end of the run,
                        // which wakes every waiting user.
                        None => match self.shared.rx.recv_async().await {
                            Ok(t) => t,
                            Err(_) => {
                                tokio::time::sleep(CLOSED_SLEEP).await;
                                return None;
                            }
                        },
                        Some(due) => {
                            let ticket = tokio::select! {
                                t = self.shared.rx.recv_async() => match t {
                                    Ok(t) => Some(t),
                                    Err(_) => {
                                        // Follow-ups of a closed run are not sent.
                                        tokio::time::sleep(CLOSED_SLEEP).await;
                                        return None;
                                    }
                                },
                                () = tokio::time::sleep_until(due.into()) => None,
                            };
                            self.idle_until(Instant::now());
                            match ticket {
                                Some(t) => t,
                                // A step is due: send it first.
                                None => continue,
                            }
                        }
                    }
                }
            };
            let flow = self.shared.entries[entry].steps.len() > 1;
            if flow && ticket.phase == Phase::Measured {
                self.totals.flows_started += 1;
            }
            return self
                .send(
                    entry,
                    0,
                    ticket.seq,
                    ticket.intended,
                    ticket.phase,
                    Vec::new(),
                )
                .await;
        }
    }

    /// The user waited idle until `woke`: a step that came due meanwhile is timed from `woke`.
    /// The time past its due time is the lateness of this user's wake-up (tokio's timer wakes
    /// up to 1 ms late), not a wait the gateway caused; the flow's delay simply ran that much
    /// longer. (A step that comes due while the user is busy sending keeps its due time, and
    /// the wait counts against the gateway like a late ticket.)
    fn idle_until(&mut self, woke: Instant) {
        for p in &mut self.pending {
            if p.due < woke {
                p.due = woke;
            }
        }
    }

    fn take_due(&mut self, now: Instant) -> Option<Pending> {
        let i = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.due <= now)
            .min_by_key(|(_, p)| p.due)
            .map(|(i, _)| i)?;
        Some(self.pending.swap_remove(i))
    }

    async fn send_pending(&mut self, p: Pending) -> Option<GooseReport> {
        self.send(p.entry, p.step, p.seq, p.due, p.phase, p.extracted)
            .await
    }

    /// Builds the request of `entry`/`step`.
    fn build(
        &mut self,
        entry: usize,
        step: usize,
        seq: u64,
        extracted: &[String],
    ) -> Option<Request<Full<Bytes>>> {
        let shared = Arc::clone(&self.shared);
        let cs = &shared.entries[entry].steps[step];
        let mut ctx = RenderCtx {
            seq,
            shard: shared.shard,
            shards: shared.shards,
            run: &shared.run_token,
            user: self.user,
            symbols: &shared.symbols,
            consts: &shared.consts,
            extracted,
            rng: &mut self.rng,
        };
        self.path_buf.clear();
        self.path_buf
            .extend_from_slice(shared.target.base_path.as_bytes());
        cs.step.path.render(&mut ctx, &mut self.path_buf);
        let uri = Uri::from_maybe_shared(Bytes::copy_from_slice(&self.path_buf)).ok()?;
        let mut req = Request::builder()
            .method(cs.step.method.clone())
            .uri(uri)
            .header(http::header::HOST, shared.target.host_header.clone());
        for ((name, template), fixed) in cs.step.headers.iter().zip(&cs.static_headers) {
            let value = match fixed {
                Some(v) => v.clone(),
                None => {
                    self.buf.clear();
                    template.render(&mut ctx, &mut self.buf);
                    HeaderValue::from_bytes(&self.buf).ok()?
                }
            };
            req = req.header(name, value);
        }
        if let Some((name, value)) = &shared.auth {
            req = req.header(name, value.clone());
        }
        let body = match (&cs.static_body, &cs.step.body) {
            (Some(b), _) => b.clone(),
            (None, Some(t)) => {
                self.buf.clear();
                t.render(&mut ctx, &mut self.buf);
                Bytes::copy_from_slice(&self.buf)
            }
            (None, None) => Bytes::new(),
        };
        req.body(Full::new(body)).ok()
    }

    async fn send(
        &mut self,
        entry: usize,
        step: usize,
        seq: u64,
        intended: Instant,
        phase: Phase,
        extracted: Vec<String>,
    ) -> Option<GooseReport> {
        let shared = Arc::clone(&self.shared);
        let ce = &shared.entries[entry];
        let cs = &ce.steps[step];
        let has_next = step + 1 < ce.steps.len();
        // Values are extracted from the answer of the step that names them.
        let keep_body = has_next && !cs.step.extract.is_empty();
        let req = self.build(entry, step, seq, &extracted);
        let actual = Instant::now();
        let result = match req {
            None => Err(Failure::Other),
            Some(req) => {
                let exchange =
                    self.conn
                        .exchange(shared.target.addr, shared.connect_timeout, req, keep_body);
                match tokio::time::timeout(shared.timeout, exchange).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.conn.reset();
                        Err(Failure::Timeout)
                    }
                }
            }
        };
        // The answer was complete when its last segment reached this host (the kernel's
        // stamp), not when this thread woke up to read it (module `rxstamp`).
        let read_at = Instant::now();
        let arrived = match &result {
            Ok(_) => self.conn.arrived(read_at).filter(|t| *t >= actual),
            Err(_) => None,
        };
        let done = arrived.unwrap_or(read_at);
        self.totals.sent[phase_index(phase)] += 1;
        self.live_sent += 1;
        if let Some((start, end)) = shared.window()
            && actual >= start
            && actual < end
        {
            self.totals.sent_in_window += 1;
        }
        // A request that left before its intended time (the pacer hands tickets out a few µs
        // early to cover its own wake-up overshoot) is measured from when it left: never
        // faster than its service time.
        let response = done.saturating_duration_since(intended.min(actual));
        let service = done.saturating_duration_since(actual);
        let measured = phase == Phase::Measured;
        let (success, status, error) = match &result {
            Ok(a) => ((200..400).contains(&a.status), Some(a.status), None),
            Err(f) => (false, None, Some(f.label())),
        };
        if measured {
            let resp_ns = nanos(response);
            let service_ns = nanos(service);
            self.local.record(cs.response, resp_ns);
            self.local.record(cs.service, service_ns);
            match (&result, error) {
                (Ok(a), _) => self.local.count_status(cs.response, a.status),
                (Err(f), _) => self.local.count(
                    cs.response,
                    match f {
                        Failure::Connect => Outcome::ConnectError,
                        Failure::Timeout => Outcome::Timeout,
                        Failure::Other => Outcome::OtherError,
                    },
                ),
            }
            self.totals
                .lateness
                .saturating_record(nanos(actual.saturating_duration_since(intended)).max(1));
            self.totals.service_sum_ns += u128::from(service_ns);
            if arrived.is_some() {
                self.totals
                    .receive_delay
                    .saturating_record(nanos(read_at.saturating_duration_since(done)).max(1));
            }
            self.live.saturating_record(resp_ns.max(1));
            if !success {
                self.live_errors += 1;
                if result.is_err() {
                    self.totals.failed += 1;
                }
            }
        }
        self.maybe_flush_live(read_at);

        // The flow continues only after a successful answer it can take its values from.
        if has_next {
            let values = match (&result, success) {
                (Ok(answer), true) => extract(&cs.step, answer.body.as_deref(), extracted),
                _ => None,
            };
            match values {
                Some(values) => self.pending.push(Pending {
                    // The delay runs from when the answer arrived, not when it was read.
                    due: done + ce.steps[step + 1].step.delay,
                    entry,
                    step: step + 1,
                    seq,
                    phase,
                    extracted: values,
                }),
                None if measured => {
                    self.totals.flows_broken += 1;
                    self.totals.steps_not_sent += (ce.steps.len() - step - 1) as u64;
                }
                None => {}
            }
        } else if ce.steps.len() > 1 && measured {
            if success {
                self.totals.flows_completed += 1;
            } else {
                self.totals.flows_broken += 1;
            }
        }
        measured.then_some(GooseReport {
            entry,
            step,
            duration: response,
            success,
            status,
            error,
        })
    }

    fn maybe_flush_live(&mut self, now: Instant) {
        if now < self.live_flush_at {
            return;
        }
        self.flush_live();
        self.live_flush_at = now + LIVE_FLUSH;
    }

    fn flush_live(&mut self) {
        let live = &self.shared.live;
        live.sent
            .fetch_add(std::mem::take(&mut self.live_sent), Ordering::Relaxed);
        live.errors
            .fetch_add(std::mem::take(&mut self.live_errors), Ordering::Relaxed);
        if !self.live.is_empty() {
            let mut h = live
                .hist
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = h.add(&self.live);
            drop(h);
            self.live.reset();
        }
    }
}

impl Drop for Worker {
    /// Hands this user's counters to the run (its recorder shard flushes itself).
    fn drop(&mut self) {
        self.flush_live();
        self.totals.flows_unfinished += self
            .pending
            .iter()
            .filter(|p| p.phase == Phase::Measured)
            .count() as u64;
        self.totals.connects += self.conn.connects;
        let mut t = self
            .shared
            .totals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        t.add(&self.totals);
    }
}

fn phase_index(p: Phase) -> usize {
    match p {
        Phase::Warmup => 0,
        Phase::Measured => 1,
        Phase::Tail => 2,
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The flow's values after `step`'s answer: the previous ones plus what `step` extracts.
/// `None` when a value is missing (the flow cannot continue).
fn extract(step: &Step, body: Option<&[u8]>, mut values: Vec<String>) -> Option<Vec<String>> {
    if step.extract.is_empty() {
        return Some(values);
    }
    let json: serde_json::Value = serde_json::from_slice(body?).ok()?;
    for (idx, pointer) in &step.extract {
        let v = json.pointer(pointer)?;
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => return None,
            other => other.to_string(),
        };
        if values.len() <= *idx {
            values.resize(*idx + 1, String::new());
        }
        values[*idx] = text;
    }
    Some(values)
}

// ---------------------------------------------------------------------------------------------
// Goose glue
// ---------------------------------------------------------------------------------------------

/// The worker lives in the user's session data. Goose clones session data only to seed new
/// users; a clone is empty (each user builds its own worker and connection in `on_start`).
/// The mutex is never locked: `get_mut` gives access through `&mut`, it is only there to make
/// the slot `Sync` as Goose requires.
#[derive(Debug, Default)]
struct Slot(Mutex<Option<Box<Worker>>>);

impl Clone for Slot {
    fn clone(&self) -> Self {
        Slot::default()
    }
}

fn take_worker(user: &mut GooseUser) -> Option<Box<Worker>> {
    let slot = user.get_session_data_mut::<Slot>()?;
    match slot.0.get_mut() {
        Ok(w) => w.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    }
}

fn put_worker(user: &mut GooseUser, worker: Box<Worker>) {
    match user.get_session_data_mut::<Slot>() {
        Some(slot) => match slot.0.get_mut() {
            Ok(w) => *w = Some(worker),
            Err(poisoned) => *poisoned.into_inner() = Some(worker),
        },
        None => user.set_session_data(Slot(Mutex::new(Some(worker)))),
    }
}

/// `on_start`: builds the worker, opens its connection, and reports the user ready.
pub(crate) fn on_start(shared: Arc<Shared>) -> Transaction {
    let f: TransactionFunction = Arc::new(move |user| {
        let shared = Arc::clone(&shared);
        Box::pin(async move {
            let mut w = Box::new(Worker::new(&shared, user.weighted_users_index));
            w.warm_up().await;
            put_worker(user, w);
            shared.ready.fetch_add(1, Ordering::SeqCst);
            shared.ready_notify.notify_waiters();
            Ok(())
        })
    });
    Transaction::new(f).set_name("connect").set_on_start()
}

/// `on_stop`: drops the worker, which hands its counters to the run.
pub(crate) fn on_stop() -> Transaction {
    let f: TransactionFunction = Arc::new(move |user| {
        Box::pin(async move {
            drop(take_worker(user));
            Ok(())
        })
    });
    Transaction::new(f).set_name("disconnect").set_on_stop()
}

/// The transaction of mix entry `entry`.
pub(crate) fn entry_transaction(
    shared: Arc<Shared>,
    entry: usize,
) -> Result<Transaction, goose::GooseError> {
    let name = shared.entries[entry].entry.name.clone();
    let weight = shared.entries[entry].entry.weight as usize;
    let f: TransactionFunction = Arc::new(move |user| {
        let shared = Arc::clone(&shared);
        Box::pin(async move { run_entry(user, shared, entry).await })
    });
    Transaction::new(f).set_name(&name).set_weight(weight)
}

async fn run_entry(user: &mut GooseUser, shared: Arc<Shared>, entry: usize) -> TransactionResult {
    let mut worker = match take_worker(user) {
        Some(w) => w,
        None => Box::new(Worker::new(&shared, user.weighted_users_index)),
    };
    let report = worker.next(entry).await;
    let steps = std::mem::take(&mut worker.steps_done);
    put_worker(user, worker);
    for r in steps.into_iter().chain(report) {
        let cs = &shared.entries[r.entry].steps[r.step];
        user.record_custom_request_duration(
            &cs.goose_method,
            &cs.goose_name,
            r.duration,
            r.success,
            r.status,
            r.error,
        )
        .await?;
    }
    Ok(())
}

/// Compiles the plan's entries: series ids and static parts.
pub(crate) fn compile(
    entries: &[Entry],
    target_name: &str,
    recorder: &LatencyRecorder,
) -> Result<Vec<CompiledEntry>, shadowgate_record::RecordError> {
    use shadowgate_record::{Measure, SeriesKey};
    let mut out = Vec::new();
    for e in entries {
        let mut steps = Vec::new();
        for s in &e.steps {
            let method = s.method.as_str().to_owned();
            let response = recorder.series(SeriesKey::new(
                target_name,
                &method,
                &s.route,
                Measure::Response,
            )?)?;
            let service = recorder.series(SeriesKey::new(
                target_name,
                &method,
                &s.route,
                Measure::Service,
            )?)?;
            let static_body = s
                .body
                .as_ref()
                .and_then(|b| b.static_bytes())
                .map(Bytes::from);
            let static_headers = s
                .headers
                .iter()
                .map(|(_, t)| {
                    t.static_bytes()
                        .and_then(|b| HeaderValue::from_bytes(&b).ok())
                })
                .collect();
            steps.push(CompiledStep {
                goose_method: if s.method == Method::GET {
                    "GET".to_owned()
                } else {
                    method.clone()
                },
                goose_name: s.route.clone(),
                step: s.clone(),
                response,
                service,
                static_body,
                static_headers,
            });
        }
        out.push(CompiledEntry {
            entry: e.clone(),
            steps,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;

    fn step_with(extract: Vec<(usize, String)>) -> Step {
        Step {
            method: Method::POST,
            path: Template::parse("/x", |_| None).unwrap(),
            route: "/x".into(),
            headers: Vec::new(),
            body: None,
            delay: Duration::ZERO,
            extract,
        }
    }

    #[test]
    fn extraction_takes_strings_and_numbers_and_fails_on_missing() {
        let s = step_with(vec![(0, "/data/client_order_id".into()), (1, "/n".into())]);
        let body = br#"{"data":{"client_order_id":"veloz_1_2"},"n":7}"#;
        assert_eq!(
            extract(&s, Some(body), Vec::new()).unwrap(),
            vec!["veloz_1_2".to_owned(), "7".to_owned()]
        );
        assert!(extract(&s, Some(br#"{"data":{}}"#), Vec::new()).is_none());
        assert!(extract(&s, Some(b"<html>"), Vec::new()).is_none());
        assert!(extract(&s, None, Vec::new()).is_none());
        // Nothing to extract: values pass through.
        let plain = step_with(Vec::new());
        assert_eq!(
            extract(&plain, None, vec!["a".into()]).unwrap(),
            vec!["a".to_owned()]
        );
    }

    #[test]
    fn empty_slot_clones() {
        let s = Slot::default();
        let c = s.clone();
        assert!(c.0.lock().unwrap().is_none());
    }
}
