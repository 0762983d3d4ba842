//! Id correlation: which candidate id stands for which primary id.
//!
//! The two gateways name one order differently whenever either generates the id (Python
//! `web-<ms>`, C++ `veloz_<ns>_<n>`) and always for venue ids. The map is learned from the
//! answers of routes whose rules say where ids live (`ids = { primary, candidate }`) and from
//! order events; follow-up requests (cancel, state lookups) are rewritten through it before
//! their copy goes to the candidate.
//!
//! # Design decisions
//! - **Causality per order.** A submit's primary id is *expected* (registered as pending)
//!   synchronously when its shadow copy is fired, before the client can even have the answer.
//!   A follow-up for that id then waits for the candidate's answer ([`Correlator::resolve`]),
//!   up to a timeout, so a cancel never overtakes its order on the candidate. The wait works
//!   across worker threads: a mutex'd map (never held across an `.await`) and one
//!   `tokio::sync::Notify` per pending id.
//! - **Never guessed.** An id the map does not hold (never seen, its submit failed, or expired)
//!   is `Unmapped`; a pending one that does not resolve in time is `TimedOut`. Both are
//!   counted; the caller reports them and does not send the copy.
//! - **Bounded.** Entries expire after a TTL and the map holds at most `max` of them (oldest
//!   out first); both are counted. Expiry runs on insertion (amortized, oldest first).
//! - **Persisted** to `ids.ndjson` in the run directory, one learned pair a line
//!   (`{"kind","primary","candidate","ts"}`, `ts` in Unix milliseconds), so audit-log matching can use the same map.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::stats::lock;

/// The id map file in the run directory.
pub const IDS_FILE: &str = "ids.ndjson";

/// One learned pair, as written to `ids.ndjson`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdPair {
    /// What the ids name (`order`, `venue`, ...).
    pub kind: String,
    /// The primary's id.
    pub primary: String,
    /// The candidate's id.
    pub candidate: String,
    /// When it was learned (milliseconds since the Unix epoch).
    pub ts: u64,
}

/// How resolving an id ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// The candidate's id.
    Mapped(String),
    /// Not known (never seen, its submit failed, or expired).
    Unmapped,
    /// Pending, and the candidate did not answer within the wait.
    TimedOut,
}

#[derive(Debug)]
enum Slot {
    Pending(Arc<Notify>),
    Known(String),
    Failed,
}

#[derive(Debug)]
struct Entry {
    slot: Slot,
    at: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    /// `kind\0primary` → entry.
    map: HashMap<String, Entry>,
    /// `kind\0candidate` → primary.
    reverse: HashMap<String, String>,
    /// Insertion order, for expiry: (time, key). Stale keys (replaced entries) are skipped.
    order: VecDeque<(Instant, String)>,
}

/// Counters of the id map.
#[derive(Debug, Default)]
pub(crate) struct IdCounters {
    pub learned: AtomicU64,
    pub rewritten: AtomicU64,
    pub unmapped: AtomicU64,
    pub timed_out: AtomicU64,
    pub expired: AtomicU64,
    pub evicted: AtomicU64,
}

/// The id map. Shared by every worker thread.
#[derive(Debug)]
pub(crate) struct Correlator {
    inner: Mutex<Inner>,
    ttl: Duration,
    max: usize,
    pub counters: IdCounters,
    file: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

fn key(kind: &str, id: &str) -> String {
    let mut k = String::with_capacity(kind.len() + id.len() + 1);
    k.push_str(kind);
    k.push('\0');
    k.push_str(id);
    k
}

impl Correlator {
    /// A map with the given bounds; `dir` set: learned pairs are appended to `ids.ndjson` there.
    pub(crate) fn new(ttl: Duration, max: usize, dir: Option<&Path>) -> std::io::Result<Self> {
        let file = match dir {
            Some(d) => Some(Mutex::new(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(d.join(IDS_FILE))?,
            ))),
            None => None,
        };
        Ok(Correlator {
            inner: Mutex::new(Inner::default()),
            ttl,
            max: max.max(1),
            counters: IdCounters::default(),
            file,
        })
    }

    /// Entries held now.
    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).map.len()
    }

    /// Drops expired entries and, over the cap, the oldest ones.
    fn prune(&self, inner: &mut Inner, now: Instant) {
        // Bounded: each turn pops one element.
        while let Some((at, k)) = inner.order.front() {
            let expired = now.saturating_duration_since(*at) >= self.ttl;
            let over = inner.map.len() > self.max;
            if !expired && !over {
                break;
            }
            let (at, k) = (*at, k.clone());
            inner.order.pop_front();
            // A key re-inserted later has a newer entry: not this one.
            if inner.map.get(&k).is_some_and(|e| e.at == at)
                && let Some(e) = inner.map.remove(&k)
            {
                if let Slot::Known(c) = &e.slot
                    && let Some((kind, _)) = k.split_once('\0')
                {
                    inner.reverse.remove(&key(kind, c));
                }
                if let Slot::Pending(n) = &e.slot {
                    n.notify_waiters();
                }
                if expired {
                    self.counters.expired.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.counters.evicted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn insert(&self, inner: &mut Inner, k: String, slot: Slot) {
        let now = Instant::now();
        if let Some(Entry {
            slot: Slot::Pending(n),
            ..
        }) = inner.map.insert(k.clone(), Entry { slot, at: now })
        {
            n.notify_waiters();
        }
        inner.order.push_back((now, k));
        self.prune(inner, now);
    }

    /// A submit for `primary` is on its way to the candidate: follow-ups wait for it.
    pub(crate) fn expect(&self, kind: &str, primary: &str) {
        let mut inner = lock(&self.inner);
        let k = key(kind, primary);
        if matches!(inner.map.get(&k), Some(e) if matches!(e.slot, Slot::Pending(_))) {
            return;
        }
        self.insert(&mut inner, k, Slot::Pending(Arc::new(Notify::new())));
    }

    /// The candidate's submit failed or carried no id: waiters give up at once.
    pub(crate) fn fail(&self, kind: &str, primary: &str) {
        let mut inner = lock(&self.inner);
        let k = key(kind, primary);
        if let Some(e) = inner.map.get_mut(&k)
            && let Slot::Pending(n) = std::mem::replace(&mut e.slot, Slot::Failed)
        {
            n.notify_waiters();
        }
    }

    /// Learns `primary` ↔ `candidate` and wakes whoever waits for it.
    pub(crate) fn learn(&self, kind: &str, primary: &str, candidate: &str) {
        {
            let mut inner = lock(&self.inner);
            let k = key(kind, primary);
            if matches!(inner.map.get(&k), Some(Entry { slot: Slot::Known(c), .. }) if c == candidate)
            {
                return;
            }
            inner
                .reverse
                .insert(key(kind, candidate), primary.to_owned());
            self.insert(&mut inner, k, Slot::Known(candidate.to_owned()));
        }
        self.counters.learned.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = &self.file {
            let pair = IdPair {
                kind: kind.to_owned(),
                primary: primary.to_owned(),
                candidate: candidate.to_owned(),
                ts: SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            };
            if let Ok(mut line) = serde_json::to_vec(&pair) {
                line.push(b'\n');
                // Buffered: a write reaches the file when the buffer fills or at a flush.
                let _ = lock(f).write_all(&line);
            }
        }
    }

    /// The candidate's id for `primary`, if known now (no waiting).
    #[cfg(test)]
    pub(crate) fn get(&self, kind: &str, primary: &str) -> Option<String> {
        match &lock(&self.inner).map.get(&key(kind, primary))?.slot {
            Slot::Known(c) => Some(c.clone()),
            _ => None,
        }
    }

    /// The primary's id for a candidate id.
    pub(crate) fn primary_of(&self, kind: &str, candidate: &str) -> Option<String> {
        lock(&self.inner)
            .reverse
            .get(&key(kind, candidate))
            .cloned()
    }

    /// The candidate's id for `primary`, waiting up to `wait` while its submit is pending.
    /// Counts unmapped and timed-out ids.
    pub(crate) async fn resolve(&self, kind: &str, primary: &str, wait: Duration) -> Resolved {
        let r = self.resolve_inner(kind, primary, wait).await;
        match &r {
            Resolved::Mapped(_) => &self.counters.rewritten,
            Resolved::Unmapped => &self.counters.unmapped,
            Resolved::TimedOut => &self.counters.timed_out,
        }
        .fetch_add(1, Ordering::Relaxed);
        r
    }

    async fn resolve_inner(&self, kind: &str, primary: &str, wait: Duration) -> Resolved {
        let deadline = tokio::time::Instant::now() + wait;
        let k = key(kind, primary);
        // Bounded: each turn either returns or waits for a wake-up before the deadline.
        for _ in 0..16 {
            let notify = {
                let inner = lock(&self.inner);
                match inner.map.get(&k) {
                    None => return Resolved::Unmapped,
                    Some(e) if self.ttl <= e.at.elapsed() => return Resolved::Unmapped,
                    Some(e) => match &e.slot {
                        Slot::Known(c) => return Resolved::Mapped(c.clone()),
                        Slot::Failed => return Resolved::Unmapped,
                        Slot::Pending(n) => Arc::clone(n),
                    },
                }
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Resolved between the look and the registration: look again.
            if !matches!(
                lock(&self.inner).map.get(&k).map(|e| &e.slot),
                Some(Slot::Pending(_))
            ) {
                continue;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Resolved::TimedOut;
            }
        }
        Resolved::TimedOut
    }

    /// Writes buffered pairs to the file.
    pub(crate) fn flush(&self) {
        if let Some(f) = &self.file {
            let _ = lock(f).flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(ttl_ms: u64, max: usize) -> Correlator {
        Correlator::new(Duration::from_millis(ttl_ms), max, None).unwrap()
    }

    #[tokio::test]
    async fn learns_and_resolves_both_ways() {
        let m = map(60_000, 100);
        m.learn("order", "web-1", "veloz_1_1");
        assert_eq!(
            m.resolve("order", "web-1", Duration::from_millis(1)).await,
            Resolved::Mapped("veloz_1_1".into())
        );
        assert_eq!(m.primary_of("order", "veloz_1_1").as_deref(), Some("web-1"));
        // Kinds are apart.
        assert_eq!(
            m.resolve("venue", "web-1", Duration::from_millis(1)).await,
            Resolved::Unmapped
        );
        assert_eq!(m.counters.unmapped.load(Ordering::Relaxed), 1);
        assert_eq!(m.counters.rewritten.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_follow_up_waits_for_the_submit() {
        let m = Arc::new(map(60_000, 100));
        m.expect("order", "a");
        let m2 = Arc::clone(&m);
        let learner = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            m2.learn("order", "a", "b");
        });
        let r = m.resolve("order", "a", Duration::from_secs(5)).await;
        assert_eq!(r, Resolved::Mapped("b".into()));
        learner.join().unwrap();
    }

    #[tokio::test]
    async fn waiter_times_out_and_failed_submits_are_unmapped() {
        let m = map(60_000, 100);
        m.expect("order", "slow");
        let t0 = std::time::Instant::now();
        assert_eq!(
            m.resolve("order", "slow", Duration::from_millis(50)).await,
            Resolved::TimedOut
        );
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert_eq!(m.counters.timed_out.load(Ordering::Relaxed), 1);
        m.expect("order", "bad");
        m.fail("order", "bad");
        assert_eq!(
            m.resolve("order", "bad", Duration::from_secs(5)).await,
            Resolved::Unmapped
        );
    }

    #[tokio::test]
    async fn entries_expire_and_the_map_is_capped() {
        let m = map(40, 1000);
        m.learn("order", "old", "x");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            m.resolve("order", "old", Duration::from_millis(1)).await,
            Resolved::Unmapped
        );
        m.learn("order", "new", "y");
        assert_eq!(m.counters.expired.load(Ordering::Relaxed), 1);
        assert_eq!(m.len(), 1);
        assert!(m.primary_of("order", "x").is_none());

        let m = map(60_000, 3);
        for i in 0..10 {
            m.learn("order", &format!("p{i}"), &format!("c{i}"));
        }
        assert_eq!(m.len(), 3);
        assert_eq!(m.counters.evicted.load(Ordering::Relaxed), 7);
        assert_eq!(m.get("order", "p9").as_deref(), Some("c9"));
        assert!(m.get("order", "p0").is_none());
    }

    #[test]
    fn pairs_are_written_to_the_run_directory() {
        let dir = tempfile::tempdir().unwrap();
        let m = Correlator::new(Duration::from_secs(60), 10, Some(dir.path())).unwrap();
        m.learn("order", "web-1", "veloz_1");
        m.learn("order", "web-1", "veloz_1");
        m.learn("venue", "sim-1", "sim-9");
        m.flush();
        let text = std::fs::read_to_string(dir.path().join(IDS_FILE)).unwrap();
        let pairs: Vec<IdPair> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(pairs.len(), 2, "a pair learned twice is written once");
        assert_eq!(pairs[0].candidate, "veloz_1");
        assert_eq!(pairs[1].kind, "venue");
    }
}
