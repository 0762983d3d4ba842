//! The comparison thread: compares every shadowed exchange, writes `discrepancies.ndjson`,
//! keeps the summary, and writes each recording interval.
//!
//! One plain OS thread, fed through a bounded channel, owns the [`Comparer`], the noise model,
//! the discrepancy writer and the interval timer. So comparing (CPU) and writing files
//! (blocking I/O) never run on the runtime's worker threads that serve clients, and none of
//! that state needs a lock of its own: only the summary the admin endpoint reads is behind a
//! mutex, taken once per exchange. When the queue is full (by count or by body bytes) the
//! exchange is dropped and counted (`queue_full`): a slow comparison never grows memory
//! without bound or slows the proxy.
//!
//! # Learned noise (`--secondary`)
//! For safe requests the shadow task also asks the secondary (a second instance of the
//! primary's implementation); both comparisons feed diff's [`NoiseModel`] (Diffy's rule). The
//! verdict on a signature needs the counts of the whole run, so regression-class lines of
//! exchanges the model observed are **held back and written at the end of the run with the
//! final verdict** (regression, or noise). Lines the rules already classed noise or ignored
//! are final and written at once. If more than `hold_max` lines are held, the oldest are
//! written early with the verdict of the moment and a `detail` saying it is provisional. The
//! live metrics and `/summary` use the verdict of the moment; the manifest's `extra.mirror`
//! keeps the final learned-noise table (per route and signature: both counts and the verdict).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};
use shadowgate_diff::{
    Class, Comparer, Comparison, Difference, Exchange, Kind, NoiseModel, NoiseThresholds,
    Outcome as CmpOutcome, Response, RuleSet, Signature,
};
use shadowgate_record::{
    Class as RecClass, Discrepancy, DiscrepancyKind, DiscrepancyWriter, RunWriter,
};

use crate::shadow::Captured;
use crate::stats::{DiscrepancyLabels, Metrics, RouteHandles, ShadowEvent, Shards, lock};

/// One exchange to compare.
#[derive(Debug)]
pub(crate) struct AnalysisJob {
    pub handles: Arc<RouteHandles>,
    pub method: Method,
    pub path: String,
    pub request_body: Bytes,
    pub primary: Captured,
    pub candidate: Captured,
    pub secondary: Option<Captured>,
}

impl AnalysisJob {
    fn size(&self) -> usize {
        self.request_body.len()
            + self.primary.size()
            + self.candidate.size()
            + self.secondary.as_ref().map_or(0, Captured::size)
    }
}

// Jobs are nearly every message: boxing them would cost an allocation per exchange.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    Job(AnalysisJob),
    /// A request that could not be compared, first of its kind on its route: one line.
    NotCompared {
        method: String,
        route: String,
        detail: String,
    },
    /// Drain, finish the run, reply.
    Stop(std::sync::mpsc::Sender<Result<(), String>>),
}

/// Hands exchanges to the comparison thread without ever blocking.
#[derive(Debug, Clone)]
pub(crate) struct Submitter {
    tx: SyncSender<Msg>,
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl Submitter {
    pub(crate) fn submit(&self, job: AnalysisJob) {
        let size = job.size();
        let before = self.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if before > 0 && before + size > self.max_bytes {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            job.handles.count(ShadowEvent::QueueFull);
            return;
        }
        match self.tx.try_send(Msg::Job(job)) {
            Ok(()) => {}
            Err(TrySendError::Full(Msg::Job(job)) | TrySendError::Disconnected(Msg::Job(job))) => {
                self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                job.handles.count(ShadowEvent::QueueFull);
            }
            Err(_) => {
                self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            }
        }
    }

    /// Best effort: a full queue loses the line (the count is kept by the caller).
    pub(crate) fn not_compared(&self, method: &str, route: &str, detail: String) {
        let _ = self.tx.try_send(Msg::NotCompared {
            method: method.to_owned(),
            route: route.to_owned(),
            detail,
        });
    }

    /// Asks the thread to drain and finish the run; waits for it.
    pub(crate) fn stop(&self) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.tx
            .send(Msg::Stop(tx))
            .map_err(|_| "the comparison thread is gone".to_owned())?;
        rx.recv()
            .map_err(|_| "the comparison thread stopped without finishing".to_owned())?
    }
}

/// A group of alike differences (one signature) for `/summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Request method.
    pub method: String,
    /// Route template.
    pub route: String,
    /// Difference kind.
    pub kind: String,
    /// Path with array indices as `*`.
    pub pattern: String,
    /// Class now (learned noise may still turn a regression into noise).
    pub class: String,
    /// Times seen.
    pub count: u64,
    /// Heuristic label, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Signature (16 hex digits).
    pub signature: String,
    /// First occurrence: concrete path and both values (redacted).
    pub example: Example,
}

/// One occurrence of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Concrete JSON Pointer.
    pub path: String,
    /// Primary's value (redacted).
    pub primary: serde_json::Value,
    /// Candidate's value (redacted).
    pub candidate: serde_json::Value,
}

/// One learned-noise verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnedNoise {
    /// Route template.
    pub route: String,
    /// Signature (16 hex digits).
    pub signature: String,
    /// Requests where candidate vs primary showed it.
    pub candidate: u64,
    /// Requests where secondary vs primary showed it.
    pub secondary: u64,
    /// Requests of the route compared both ways.
    pub requests: u64,
    /// `regression` or `noise`.
    pub verdict: String,
}

/// Compared exchanges by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes {
    /// No difference.
    pub matched: u64,
    /// Only ignored differences.
    pub ignored: u64,
    /// Noise (and maybe ignored), no regression.
    pub noise: u64,
    /// At least one regression.
    pub regression: u64,
}

/// What the comparison thread shares with the admin endpoint.
#[derive(Debug)]
pub(crate) struct AnalysisState {
    groups: HashMap<Signature, (Group, Class)>,
    pub outcomes: Outcomes,
    /// Lines written (or held) per class.
    pub lines: BTreeMap<&'static str, u64>,
    pub noise: Option<NoiseModel>,
    pub held: usize,
    pub write_errors: u64,
}

/// Most groups kept for `/summary` (every line is still written to the file).
const MAX_GROUPS: usize = 10_000;

impl AnalysisState {
    fn new(learn: bool) -> AnalysisState {
        AnalysisState {
            groups: HashMap::new(),
            outcomes: Outcomes::default(),
            lines: BTreeMap::new(),
            noise: learn.then(|| NoiseModel::new(NoiseThresholds::default())),
            held: 0,
            write_errors: 0,
        }
    }

    /// Groups, regressions first, then by count.
    pub(crate) fn groups(&self) -> Vec<Group> {
        let mut out: Vec<Group> = self
            .groups
            .iter()
            .map(|(sig, (g, class))| {
                let mut g = g.clone();
                g.class = class_name(current_class(self.noise.as_ref(), &g.route, *sig, *class))
                    .to_owned();
                g
            })
            .collect();
        let rank = |c: &str| match c {
            "regression" => 0,
            "noise" => 1,
            _ => 2,
        };
        out.sort_by(|a, b| {
            rank(&a.class)
                .cmp(&rank(&b.class))
                .then(b.count.cmp(&a.count))
                .then(a.signature.cmp(&b.signature))
        });
        out
    }

    pub(crate) fn learned(&self) -> Option<Vec<LearnedNoise>> {
        let model = self.noise.as_ref()?;
        let mut out: Vec<LearnedNoise> = model
            .iter()
            .map(|(route, sig, c, requests)| LearnedNoise {
                route: route.to_owned(),
                signature: sig.to_string(),
                candidate: c.candidate,
                secondary: c.secondary,
                requests,
                verdict: model
                    .classify(route, sig)
                    .map_or("regression", class_name)
                    .to_owned(),
            })
            .collect();
        out.sort_by(|a, b| (&a.route, &a.signature).cmp(&(&b.route, &b.signature)));
        Some(out)
    }
}

fn class_name(c: Class) -> &'static str {
    match c {
        Class::Regression => "regression",
        Class::Noise => "noise",
        Class::Ignored => "ignored",
    }
}

fn current_class(model: Option<&NoiseModel>, route: &str, sig: Signature, class: Class) -> Class {
    match (class, model) {
        (Class::Regression, Some(m)) => m.classify(route, sig).unwrap_or(Class::Regression),
        (c, _) => c,
    }
}

fn rec_class(c: Class) -> RecClass {
    match c {
        Class::Regression => RecClass::Regression,
        Class::Noise => RecClass::Noise,
        Class::Ignored => RecClass::Ignored,
    }
}

fn rec_kind(k: Kind) -> DiscrepancyKind {
    match k {
        Kind::Status => DiscrepancyKind::Status,
        Kind::Header => DiscrepancyKind::Header,
        Kind::Missing => DiscrepancyKind::Missing,
        Kind::Extra => DiscrepancyKind::Extra,
        Kind::Type => DiscrepancyKind::Type,
        Kind::Value => DiscrepancyKind::Value,
        Kind::Order => DiscrepancyKind::Order,
        Kind::Size => DiscrepancyKind::Size,
        Kind::Text => DiscrepancyKind::Text,
    }
}

/// A regression line held back until learned noise decides.
#[derive(Debug)]
struct Held {
    line: Discrepancy,
    route: String,
    signature: Signature,
}

/// Starts the comparison thread. Returns the submitter and the shared state.
pub(crate) struct Started {
    pub submitter: Submitter,
    pub state: Arc<Mutex<AnalysisState>>,
    pub join: std::thread::JoinHandle<()>,
}

/// What the thread needs.
pub(crate) struct Setup {
    pub rules: Arc<RuleSet>,
    pub metrics: Arc<Metrics>,
    pub shards: Arc<Shards>,
    pub run: Arc<RunWriter>,
    pub writer: DiscrepancyWriter,
    pub recorder: shadowgate_record::LatencyRecorder,
    pub interval: Duration,
    pub queue: usize,
    pub queue_bytes: usize,
    pub hold_max: usize,
    pub learn: bool,
    /// Called every few intervals and at the end with the state, to refresh the manifest.
    pub manifest_extra: Box<dyn Fn(&AnalysisState) -> serde_json::Value + Send>,
}

pub(crate) fn start(setup: Setup) -> std::io::Result<Started> {
    let (tx, rx) = std::sync::mpsc::sync_channel(setup.queue);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let state = Arc::new(Mutex::new(AnalysisState::new(setup.learn)));
    let submitter = Submitter {
        tx,
        queued_bytes: Arc::clone(&queued_bytes),
        max_bytes: setup.queue_bytes,
    };
    let worker = Worker {
        comparer: Comparer::new(),
        cmp: Comparison::default(),
        cmp2: Comparison::default(),
        held: VecDeque::new(),
        state: Arc::clone(&state),
        queued_bytes,
        warned: false,
        setup,
    };
    let join = std::thread::Builder::new()
        .name("mirror-compare".into())
        .spawn(move || worker.run(rx))?;
    Ok(Started {
        submitter,
        state,
        join,
    })
}

struct Worker {
    comparer: Comparer,
    cmp: Comparison,
    cmp2: Comparison,
    held: VecDeque<Held>,
    state: Arc<Mutex<AnalysisState>>,
    queued_bytes: Arc<AtomicUsize>,
    warned: bool,
    setup: Setup,
}

/// Intervals between manifest refreshes (each is an fsync'd rewrite).
const MANIFEST_EVERY: u32 = 10;
/// Poll period of the queue while exchanges keep coming.
const POLL: Duration = Duration::from_millis(1);
/// Empty polls (ms) before the thread goes back to blocking on the queue.
const IDLE_POLLS: u32 = 50;

impl Worker {
    /// The loop. While exchanges keep coming it polls the queue every millisecond and takes
    /// whatever has gathered: a sender then never has to wake this thread (a futex call and
    /// two context switches per exchange, which on two cores cost more than the comparison).
    /// After [`IDLE_POLLS`] empty polls it blocks on the queue until the next interval.
    fn run(mut self, rx: Receiver<Msg>) {
        let interval = self.setup.interval;
        let mut next = Instant::now() + interval;
        let mut ticks = 0u32;
        let mut idle = 0u32;
        loop {
            let mut got = 0u32;
            // Bounded per turn so the interval is written on time under any load.
            while got < 4096 {
                match rx.try_recv() {
                    Ok(msg) => {
                        got += 1;
                        if let Some(reply) = self.handle(msg) {
                            self.stop(&rx, reply);
                            return;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        let _ = self.finish();
                        return;
                    }
                }
            }
            idle = if got > 0 { 0 } else { idle.saturating_add(1) };
            if Instant::now() >= next {
                self.tick();
                ticks += 1;
                if ticks.is_multiple_of(MANIFEST_EVERY) {
                    self.refresh_manifest();
                }
                next += interval;
                // After a long stall, do not write a burst of empty intervals.
                if next < Instant::now() {
                    next = Instant::now() + interval;
                }
            }
            if got > 0 {
                continue;
            }
            if idle < IDLE_POLLS {
                std::thread::sleep(POLL);
                continue;
            }
            let wait = next.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(msg) => {
                    idle = 0;
                    if let Some(reply) = self.handle(msg) {
                        self.stop(&rx, reply);
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.finish();
                    return;
                }
            }
        }
    }

    /// Handles one message; returns the reply channel of a stop request.
    fn handle(&mut self, msg: Msg) -> Option<std::sync::mpsc::Sender<Result<(), String>>> {
        match msg {
            Msg::Job(job) => {
                self.queued_bytes.fetch_sub(job.size(), Ordering::AcqRel);
                self.compare(job);
                None
            }
            Msg::NotCompared {
                method,
                route,
                detail,
            } => {
                self.not_compared(method, route, detail);
                None
            }
            Msg::Stop(reply) => Some(reply),
        }
    }

    /// Compares whatever is still queued (it was accepted), then finishes the run.
    fn stop(&mut self, rx: &Receiver<Msg>, reply: std::sync::mpsc::Sender<Result<(), String>>) {
        while let Ok(msg) = rx.try_recv() {
            if let Some(other) = self.handle(msg) {
                let _ = other.send(Err("already stopping".into()));
            }
        }
        let _ = reply.send(self.finish());
    }

    fn warn(&mut self, what: &str, e: &dyn std::fmt::Display) {
        lock(&self.state).write_errors += 1;
        if !self.warned {
            self.warned = true;
            tracing::warn!(error = %e, "{what} failed; the run directory may be incomplete");
        }
    }

    fn tick(&mut self) {
        self.setup.shards.flush();
        if let Err(e) = self.setup.recorder.write_interval() {
            self.warn("writing an interval", &e);
        }
        if let Err(e) = self.setup.writer.flush() {
            self.warn("flushing discrepancies", &e);
        }
    }

    fn refresh_manifest(&mut self) {
        let extra = (self.setup.manifest_extra)(&lock(&self.state));
        if let Err(e) = self.setup.run.update_manifest(|m| {
            m.extra.insert("mirror".into(), extra);
        }) {
            self.warn("updating the manifest", &e);
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        // Final verdicts for the held lines.
        let held: Vec<Held> = self.held.drain(..).collect();
        for h in held {
            let mut line = h.line;
            let class = {
                let st = lock(&self.state);
                current_class(st.noise.as_ref(), &h.route, h.signature, Class::Regression)
            };
            line.class = rec_class(class);
            self.write(&line);
        }
        {
            let mut st = lock(&self.state);
            st.held = 0;
        }
        self.setup.metrics.held_back.set(0);
        self.setup.shards.flush();
        self.refresh_manifest();
        self.setup
            .run
            .finish()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn write(&mut self, line: &Discrepancy) {
        if let Err(e) = self.setup.writer.write(line) {
            self.warn("writing a discrepancy", &e);
        }
    }

    fn not_compared(&mut self, method: String, route: String, detail: String) {
        let line = Discrepancy {
            ts: SystemTime::now(),
            method,
            route,
            flow_id: None,
            kind: DiscrepancyKind::NotCompared,
            path: String::new(),
            primary: serde_json::Value::Null,
            candidate: serde_json::Value::Null,
            signature: String::new(),
            class: RecClass::Ignored,
            label: None,
            detail: Some(detail),
        };
        *lock(&self.state).lines.entry("ignored").or_default() += 1;
        self.write(&line);
    }

    fn compare(&mut self, job: AnalysisJob) {
        let rules = Arc::clone(&self.setup.rules);
        let ph = header_pairs(&job.primary.headers);
        let ch = header_pairs(&job.candidate.headers);
        let exchange = Exchange {
            method: job.method.as_str(),
            path: &job.path,
            request_body: &job.request_body,
            primary: Response {
                status: job.primary.status.as_u16(),
                headers: &ph,
                body: &job.primary.body,
            },
            candidate: Response {
                status: job.candidate.status.as_u16(),
                headers: &ch,
                body: &job.candidate.body,
            },
        };
        self.comparer.compare(&rules, &exchange, &mut self.cmp);
        let learned = match &job.secondary {
            Some(sec) => {
                let sh = header_pairs(&sec.headers);
                let ex2 = Exchange {
                    candidate: Response {
                        status: sec.status.as_u16(),
                        headers: &sh,
                        body: &sec.body,
                    },
                    ..exchange
                };
                self.comparer.compare(&rules, &ex2, &mut self.cmp2);
                true
            }
            None => false,
        };
        let handles = &job.handles;
        handles.count(ShadowEvent::Compared);
        let now = SystemTime::now();
        let mut to_write: Vec<Discrepancy> = Vec::new();
        let mut to_hold: Vec<Held> = Vec::new();
        {
            let mut st = lock(&self.state);
            let learn = learned && st.noise.is_some();
            if learn && let Some(model) = st.noise.as_mut() {
                model.observe(&self.cmp, &self.cmp2);
            }
            // The outcome by the verdict of the moment.
            let mut worst = CmpOutcome::Match;
            for d in &self.cmp.differences {
                let class = if learn {
                    current_class(st.noise.as_ref(), &self.cmp.route, d.signature, d.class)
                } else {
                    d.class
                };
                worst = worse(worst, class);
                *st.lines.entry(class_name(class)).or_default() += 1;
                self.setup
                    .metrics
                    .discrepancies
                    .get_or_create(&DiscrepancyLabels {
                        method: self.cmp.method.clone(),
                        route: self.cmp.route.clone(),
                        kind: d.kind.as_str(),
                        class: class_name(class),
                    })
                    .inc();
                if st.groups.len() < MAX_GROUPS || st.groups.contains_key(&d.signature) {
                    let entry = st
                        .groups
                        .entry(d.signature)
                        .or_insert_with(|| (group(&self.cmp, d), d.class));
                    entry.0.count += 1;
                }
                let line = discrepancy(&self.cmp, d, now);
                if learn && d.class == Class::Regression {
                    to_hold.push(Held {
                        line,
                        route: self.cmp.route.clone(),
                        signature: d.signature,
                    });
                } else {
                    to_write.push(line);
                }
            }
            match worst {
                CmpOutcome::Match => st.outcomes.matched += 1,
                CmpOutcome::Ignored => st.outcomes.ignored += 1,
                CmpOutcome::Noise => st.outcomes.noise += 1,
                CmpOutcome::Regression => st.outcomes.regression += 1,
            }
            self.setup
                .metrics
                .comparison(
                    &self.cmp.method,
                    &self.cmp.route,
                    match worst {
                        CmpOutcome::Match => "match",
                        CmpOutcome::Ignored => "ignored",
                        CmpOutcome::Noise => "noise",
                        CmpOutcome::Regression => "regression",
                    },
                )
                .inc();
        }
        for line in &to_write {
            self.write(line);
        }
        for h in to_hold {
            self.held.push_back(h);
        }
        // Over the cap: the oldest go out now, with the verdict of the moment.
        while self.held.len() > self.setup.hold_max {
            let Some(h) = self.held.pop_front() else {
                break;
            };
            let mut line = h.line;
            let class = {
                let st = lock(&self.state);
                current_class(st.noise.as_ref(), &h.route, h.signature, Class::Regression)
            };
            line.class = rec_class(class);
            line.detail = Some(match line.detail.take() {
                Some(d) => format!("{d}; provisional learned-noise verdict (hold buffer full)"),
                None => "provisional learned-noise verdict (hold buffer full)".to_owned(),
            });
            self.write(&line);
        }
        let held = self.held.len();
        lock(&self.state).held = held;
        self.setup
            .metrics
            .held_back
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }
}

fn worse(a: CmpOutcome, c: Class) -> CmpOutcome {
    let b = match c {
        Class::Regression => CmpOutcome::Regression,
        Class::Noise => CmpOutcome::Noise,
        Class::Ignored => CmpOutcome::Ignored,
    };
    let rank = |o: CmpOutcome| match o {
        CmpOutcome::Match => 0,
        CmpOutcome::Ignored => 1,
        CmpOutcome::Noise => 2,
        CmpOutcome::Regression => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}

fn header_pairs(h: &HeaderMap) -> Vec<(&str, &[u8])> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect()
}

fn group(cmp: &Comparison, d: &Difference) -> Group {
    Group {
        method: cmp.method.clone(),
        route: cmp.route.clone(),
        kind: d.kind.as_str().to_owned(),
        pattern: d.pattern.clone(),
        class: class_name(d.class).to_owned(),
        count: 0,
        label: d.label.map(|l| l.as_str().to_owned()),
        signature: d.signature.to_string(),
        example: Example {
            path: d.path.clone(),
            primary: d.primary.clone(),
            candidate: d.candidate.clone(),
        },
    }
}

fn discrepancy(cmp: &Comparison, d: &Difference, ts: SystemTime) -> Discrepancy {
    Discrepancy {
        ts,
        method: cmp.method.clone(),
        route: cmp.route.clone(),
        flow_id: None,
        kind: rec_kind(d.kind),
        path: d.path.clone(),
        // Already redacted by the comparison engine.
        primary: d.primary.clone(),
        candidate: d.candidate.clone(),
        signature: d.signature.to_string(),
        class: rec_class(d.class),
        label: d.label.map(|l| l.as_str().to_owned()),
        detail: d.detail.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_order() {
        assert_eq!(
            worse(CmpOutcome::Match, Class::Ignored),
            CmpOutcome::Ignored
        );
        assert_eq!(worse(CmpOutcome::Noise, Class::Ignored), CmpOutcome::Noise);
        assert_eq!(
            worse(CmpOutcome::Noise, Class::Regression),
            CmpOutcome::Regression
        );
    }

    #[test]
    fn kinds_map_one_to_one() {
        for k in [
            Kind::Status,
            Kind::Header,
            Kind::Missing,
            Kind::Extra,
            Kind::Type,
            Kind::Value,
            Kind::Order,
            Kind::Size,
            Kind::Text,
        ] {
            assert_eq!(rec_kind(k).as_str(), k.as_str());
        }
    }
}
