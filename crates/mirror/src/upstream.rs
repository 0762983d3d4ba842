//! Connections to the upstreams.
//!
//! **Primary: one upstream connection per client connection, driven by the client
//! connection's own task.** HTTP/1.1 carries one exchange at a time per connection, so a client
//! connection never needs more than one primary connection. Keeping that connection's hyper
//! dispatcher in the same task as the client connection (instead of in a pool with a task per
//! connection, as hyper-util's client does) removes two cross-task hand-offs per request: the
//! request, the primary's answer and its body move between futures that one task polls, on one
//! thread, without waking another. That is the "leaner hop" the 2k req/s latency goal needs.
//! The connection opens on the first request (not at accept), is reused while the primary keeps
//! it alive, and is reopened when the primary closes it. A request that was never written
//! (the pooled connection had just closed) is retried once on a fresh connection; one that was
//! written is not, since it may have had an effect.
//!
//! **Candidate (and secondary): a keep-alive pool of self-driven connections**
//! ([`ShadowPool`]): the shadow future that uses a connection also drives it, so a shadow
//! exchange costs no task hand-offs either. Idle connections are kept per proxy worker: a
//! socket stays registered with the reactor of the thread that opened it, so one used from
//! the other worker would have its answer read by that worker's reactor and handed across
//! (a wake-up of both threads per exchange; measured ~0.4 extra eventfd writes per mirrored
//! request with one shared list). Connections opened are counted (churn). Each worker's list
//! keeps at most as many idle connections as there are shadow permits; the permits bound the
//! total in use.
//!
//! Every connector sets `TCP_NODELAY` and a connect timeout.
//!
//! **Timeouts per request without a timer per request** ([`within`]): on a proxy worker, the
//! primary's and the shadow's timeouts are deadlines in per-worker FIFO queues (one per length
//! of timeout, so each queue is in deadline order), watched by one sleeping task per worker
//! that is re-armed only when it fires. A tokio timeout per request costs a timer-wheel insert
//! and remove under the driver's lock, and whenever its deadline is the earliest one the driver
//! knows (every shadow's 2 s timeout, nearly always) an eventfd write to unpark the driver and
//! an extra `epoll_wait`. Here a request costs an allocation and a queue push; the watcher
//! wakes about once per timeout length, or when a deadline passes.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::body::ReqBody;
use crate::config::Upstream;
use crate::stats::lock;

/// A future handed to the client connection's task to drive.
pub(crate) type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Work for the client connection's task besides serving the connection itself.
pub(crate) enum Work {
    /// A primary connection's dispatcher (dropped with the client connection).
    Upstream(Driver),
    /// A shadow exchange (handed to the runtime if the client connection ends first).
    Shadow(Driver),
}

/// Why the primary gave no answer.
#[derive(Debug)]
pub(crate) enum PrimaryError {
    /// TCP connect failed (refused, unreachable, DNS).
    Connect(std::io::Error),
    /// TCP connect took longer than the connect timeout.
    ConnectTimeout(Duration),
    /// No response headers within the primary timeout.
    Timeout(Duration),
    /// The connection broke or the answer was not HTTP.
    Http(hyper::Error),
}

impl PrimaryError {
    /// Short reason for the 502/504 body (no secrets: no request data in it).
    pub(crate) fn reason(&self) -> String {
        match self {
            PrimaryError::Connect(e) => format!("connect failed: {e}"),
            PrimaryError::ConnectTimeout(d) => {
                format!("connect timed out after {}", humanize(*d))
            }
            PrimaryError::Timeout(d) => {
                format!("no response headers within {}", humanize(*d))
            }
            PrimaryError::Http(e) => format!("invalid or broken response: {e}"),
        }
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Where and how to connect to the primary.
#[derive(Debug)]
pub(crate) struct PrimaryTarget {
    host: String,
    /// Resolved once when the host is an IP literal (no resolver call per connect).
    addr: Option<SocketAddr>,
    port: u16,
    connect_timeout: Duration,
    opened: Counter,
}

impl PrimaryTarget {
    pub(crate) fn new(u: &Upstream, connect_timeout: Duration, opened: Counter) -> PrimaryTarget {
        PrimaryTarget {
            addr: u
                .host
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, u.port)),
            host: u.host.clone(),
            port: u.port,
            connect_timeout,
            opened,
        }
    }

    async fn connect(&self) -> Result<TcpStream, PrimaryError> {
        let connecting = async {
            match self.addr {
                Some(a) => TcpStream::connect(a).await,
                None => TcpStream::connect((self.host.as_str(), self.port)).await,
            }
        };
        let stream = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| PrimaryError::ConnectTimeout(self.connect_timeout))?
            .map_err(PrimaryError::Connect)?;
        // Small request/response exchanges must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        self.opened.inc();
        Ok(stream)
    }
}

/// The primary connection of one client connection.
#[derive(Debug)]
pub(crate) struct PrimaryLink {
    target: Arc<PrimaryTarget>,
    sender: Mutex<Option<http1::SendRequest<ReqBody>>>,
    work: mpsc::UnboundedSender<Work>,
}

impl PrimaryLink {
    pub(crate) fn new(target: Arc<PrimaryTarget>, work: mpsc::UnboundedSender<Work>) -> Self {
        PrimaryLink {
            target,
            sender: Mutex::new(None),
            work,
        }
    }

    /// The client connection task's work queue.
    pub(crate) fn work(&self) -> &mpsc::UnboundedSender<Work> {
        &self.work
    }

    /// Sends a request (origin-form URI, `Host` set) and returns the response head.
    pub(crate) async fn send(
        &self,
        req: Request<ReqBody>,
    ) -> Result<Response<Incoming>, PrimaryError> {
        let mut req = req;
        let mut fresh = false;
        loop {
            let mut sender = match self.take_ready().await {
                Some(s) => s,
                None => {
                    fresh = true;
                    self.open().await?
                }
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    *lock(&self.sender) = Some(sender);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    // Never written: safe to send again, once, on a new connection.
                    Some(r) if !fresh => req = r,
                    _ => return Err(PrimaryError::Http(e.into_error())),
                },
            }
        }
    }

    async fn take_ready(&self) -> Option<http1::SendRequest<ReqBody>> {
        let mut sender = lock(&self.sender).take()?;
        if sender.is_closed() {
            return None;
        }
        // The previous response body has normally been read by now; if it has not, this waits
        // for it (HTTP/1.1 cannot interleave).
        sender.ready().await.ok()?;
        Some(sender)
    }

    async fn open(&self) -> Result<http1::SendRequest<ReqBody>, PrimaryError> {
        let stream = self.target.connect().await?;
        let (sender, conn) = http1::Builder::new()
            .handshake::<_, ReqBody>(TokioIo::new(stream))
            .await
            .map_err(PrimaryError::Http)?;
        let driver: Driver = Box::pin(async move {
            // Errors surface through the request future; the connection just ends.
            let _ = conn.await;
        });
        if let Err(mpsc::error::SendError(Work::Upstream(driver) | Work::Shadow(driver))) =
            self.work.send(Work::Upstream(driver))
        {
            // The client connection is going away; let the runtime drive it instead.
            tokio::spawn(driver);
        }
        Ok(sender)
    }
}

thread_local! {
    /// The proxy worker this thread runs (`None` on any other thread): picks the list of
    /// idle shadow connections, so a connection is only used on the thread whose reactor
    /// it is registered with.
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Marks the current thread as proxy worker `index` and starts its deadline watcher (see
/// [`within`]). Called once, inside the worker's runtime, before it serves anything.
pub(crate) fn enter_worker(index: usize) {
    WORKER.set(Some(index));
    tokio::spawn(watch_deadlines());
}

/// [`within`]'s answer when the time ran out.
#[derive(Debug)]
pub(crate) struct Elapsed;

const WAITING: u8 = 0;
const DONE: u8 = 1;
const EXPIRED: u8 = 2;

/// One bounded wait.
#[derive(Debug)]
struct Deadline {
    at: Instant,
    /// `WAITING`, `DONE` (the wait ended or was dropped) or `EXPIRED`.
    state: AtomicU8,
    waker: AtomicWaker,
}

/// The waits of one timeout length on one worker: started in order, so in deadline order.
#[derive(Debug)]
struct Queue {
    limit: Duration,
    waits: VecDeque<Arc<Deadline>>,
    /// Length at which finished waits behind a long one are swept out (amortised).
    sweep_at: usize,
}

impl Queue {
    fn push(&mut self, d: Arc<Deadline>) {
        // Finished waits leave from the front, so the queue stays as long as what is in
        // flight; a long wait at the front makes the rest pile up until the sweep.
        while self
            .waits
            .front()
            .is_some_and(|f| f.state.load(Ordering::Acquire) != WAITING)
        {
            self.waits.pop_front();
        }
        if self.waits.len() >= self.sweep_at {
            self.waits
                .retain(|w| w.state.load(Ordering::Acquire) == WAITING);
            self.sweep_at = (self.waits.len() * 2).max(64);
        }
        self.waits.push_back(d);
    }
}

/// A worker's waits, and when its watcher wakes next.
#[derive(Debug, Default)]
struct Deadlines {
    queues: Vec<Queue>,
    /// When the watcher wakes: never later than any waiting deadline.
    armed: Option<Instant>,
    watcher: Option<Waker>,
}

impl Deadlines {
    /// Expires the waits due by `now`, drops finished ones and re-arms: the earliest waiting
    /// deadline, or for an empty queue the earliest a new wait on it could end.
    fn expire(&mut self, now: Instant, wake: &mut Vec<Waker>) {
        let mut next = now + Duration::from_secs(3600);
        for q in &mut self.queues {
            while let Some(front) = q.waits.front() {
                let state = front.state.load(Ordering::Acquire);
                if state == WAITING && front.at > now {
                    break;
                }
                if state == WAITING
                    && front
                        .state
                        .compare_exchange(WAITING, EXPIRED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    && let Some(w) = front.waker.take()
                {
                    wake.push(w);
                }
                q.waits.pop_front();
            }
            next = next.min(q.waits.front().map_or(now + q.limit, |f| f.at));
        }
        self.armed = Some(next);
    }
}

thread_local! {
    static DEADLINES: RefCell<Deadlines> = RefCell::new(Deadlines::default());
}

/// The worker's deadline watcher: one sleep, re-armed when it fires or when a wait of a new
/// length needs it earlier.
async fn watch_deadlines() {
    let mut until = Instant::now() + Duration::from_secs(3600);
    let mut sleep = pin!(tokio::time::sleep_until(until.into()));
    let mut wake = Vec::new();
    std::future::poll_fn(|cx| {
        loop {
            let armed = DEADLINES.with_borrow_mut(|d| {
                if !d.watcher.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    d.watcher = Some(cx.waker().clone());
                }
                *d.armed.get_or_insert(until)
            });
            if armed != until {
                until = armed;
                sleep.as_mut().reset(until.into());
            }
            ready!(sleep.as_mut().poll(cx));
            DEADLINES.with_borrow_mut(|d| d.expire(Instant::now(), &mut wake));
            for w in wake.drain(..) {
                w.wake();
            }
        }
    })
    .await
}

/// Marks a wait finished however its future ends.
struct Finished<'a>(&'a Deadline);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .state
            .compare_exchange(WAITING, DONE, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// `fut`, or [`Elapsed`] when it has not finished within `limit` (like
/// `tokio::time::timeout`, which it falls back to off the proxy workers). The future comes
/// pinned by the caller: taken by value, an async fn would hold it twice in its state (the
/// argument and the pinned local), and these futures are large.
pub(crate) async fn within<F: Future + ?Sized>(
    limit: Duration,
    mut fut: Pin<&mut F>,
) -> Result<F::Output, Elapsed> {
    if WORKER.get().is_none() {
        return tokio::time::timeout(limit, fut).await.map_err(|_| Elapsed);
    }
    let deadline = Arc::new(Deadline {
        at: Instant::now() + limit,
        state: AtomicU8::new(WAITING),
        waker: AtomicWaker::new(),
    });
    let watcher = DEADLINES.with_borrow_mut(|d| {
        let i = match d.queues.iter().position(|q| q.limit == limit) {
            Some(i) => i,
            None => {
                d.queues.push(Queue {
                    limit,
                    waits: VecDeque::new(),
                    sweep_at: 64,
                });
                d.queues.len() - 1
            }
        };
        d.queues[i].push(Arc::clone(&deadline));
        // Only a wait of a length new to this worker can end before the watcher wakes.
        if d.armed.is_some_and(|a| deadline.at < a) {
            d.armed = Some(deadline.at);
            d.watcher.clone()
        } else {
            None
        }
    });
    if let Some(w) = watcher {
        w.wake();
    }
    let _finished = Finished(&deadline);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        deadline.waker.register(cx.waker());
        if deadline.state.load(Ordering::Acquire) == EXPIRED {
            return Poll::Ready(Err(Elapsed));
        }
        Poll::Pending
    })
    .await
}

/// Idle lists per pool: one for threads that are not workers, the rest for workers (more
/// workers than that share lists, which is correct, only slower).
const SLOTS: usize = 8;

fn slot() -> usize {
    WORKER.get().map_or(0, |i| 1 + i % (SLOTS - 1))
}

/// One thread's idle connections, on a cache line of its own (the workers never share a
/// lock word).
#[repr(align(64))]
#[derive(Debug, Default)]
struct IdleList(Mutex<Vec<Pooled>>);

/// An idle shadow connection: both halves, so whoever uses it drives it.
struct Pooled {
    sender: http1::SendRequest<Full<Bytes>>,
    conn: Pin<Box<http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
}

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled").finish_non_exhaustive()
    }
}

/// Why a shadow exchange produced no answer.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// TCP connect failed or timed out.
    Connect,
    /// The connection broke or the answer was not HTTP.
    Broken,
    /// The answer came with this status, but its body is over the limit.
    OverLimit(http::StatusCode),
}

/// A keep-alive pool for shadow requests (candidate, secondary) whose connections are driven
/// by the task that uses them: a request, its connection's I/O and its answer's body all move
/// in the one shadow future (itself run by the client connection's task, see `server`), with
/// no connection task of its own and so no cross-task hand-off. Idle connections are not
/// polled; one that the upstream closed meanwhile is found dead at checkout (one poll) and
/// dropped. Idle connections are kept per worker thread (see the module docs), at most
/// `max_idle` each; the shadow permits bound the total in use.
#[derive(Debug)]
pub(crate) struct ShadowPool {
    host: String,
    addr: Option<SocketAddr>,
    port: u16,
    connect_timeout: Duration,
    max_idle: usize,
    idle: [IdleList; SLOTS],
    opened: Counter,
}

impl ShadowPool {
    pub(crate) fn new(
        u: &Upstream,
        connect_timeout: Duration,
        max_idle: usize,
        opened: Counter,
    ) -> ShadowPool {
        ShadowPool {
            addr: u
                .host
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, u.port)),
            host: u.host.clone(),
            port: u.port,
            connect_timeout,
            max_idle,
            idle: std::array::from_fn(|_| IdleList::default()),
            opened,
        }
    }

    async fn connect(&self) -> Result<Pooled, ExchangeError> {
        let connecting = async {
            match self.addr {
                Some(a) => TcpStream::connect(a).await,
                None => TcpStream::connect((self.host.as_str(), self.port)).await,
            }
        };
        // Without a connect timeout a black-holed candidate would hold every shadow permit
        // for the whole shadow timeout.
        let stream = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| ExchangeError::Connect)?
            .map_err(|_| ExchangeError::Connect)?;
        let _ = stream.set_nodelay(true);
        self.opened.inc();
        let (sender, conn) = http1::Builder::new()
            .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|_| ExchangeError::Broken)?;
        Ok(Pooled {
            sender,
            conn: Box::pin(conn),
        })
    }

    /// An idle connection of this thread that is still open, or `None`.
    async fn take_idle(&self) -> Option<Pooled> {
        let idle = &self.idle[slot()].0;
        // Bounded: each turn removes one connection from the pool.
        loop {
            let mut p = lock(idle).pop()?;
            // One poll: a connection the upstream closed while idle finishes here.
            let open =
                std::future::poll_fn(|cx| Poll::Ready(p.conn.as_mut().poll(cx).is_pending())).await;
            if open && !p.sender.is_closed() {
                return Some(p);
            }
        }
    }

    fn put_back(&self, p: Pooled) {
        let mut idle = lock(&self.idle[slot()].0);
        if idle.len() < self.max_idle {
            idle.push(p);
        }
    }

    /// Sends `req` and reads the answer whole (up to `limit` bytes). The caller bounds it
    /// with the shadow timeout; a connection dropped mid-exchange is closed, not pooled.
    pub(crate) async fn exchange(
        &self,
        req: Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<(http::response::Parts, Bytes), ExchangeError> {
        let mut req = req;
        let mut fresh = false;
        loop {
            let Pooled {
                mut sender,
                mut conn,
            } = match self.take_idle().await {
                Some(p) => p,
                None => {
                    fresh = true;
                    // Boxed: rare, and large inline in every exchange's future.
                    Box::pin(self.connect()).await?
                }
            };
            let mut conn_done = false;
            let outcome = {
                let exchange = exchange_on(&mut sender, req, limit);
                tokio::pin!(exchange);
                loop {
                    tokio::select! {
                        biased;
                        r = &mut exchange => break r,
                        _ = conn.as_mut(), if !conn_done => conn_done = true,
                    }
                }
            };
            match outcome {
                Ok(answer) => {
                    if !conn_done && !sender.is_closed() {
                        self.put_back(Pooled { sender, conn });
                    }
                    return Ok(answer);
                }
                // Never written (the pooled connection had just closed): once more, fresh.
                Err(Attempt::NotSent(r)) if !fresh => req = r,
                Err(Attempt::NotSent(_)) => return Err(ExchangeError::Broken),
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
    }
}

// The unsent request comes back by value to be sent again; boxing it would cost an
// allocation on a path that is rare anyway.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    NotSent(Request<Full<Bytes>>),
    Failed(ExchangeError),
}

async fn exchange_on(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
    limit: usize,
) -> Result<(http::response::Parts, Bytes), Attempt> {
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    let resp = match sender.try_send_request(req).await {
        Ok(r) => r,
        Err(mut e) => {
            return Err(match e.take_message() {
                Some(r) => Attempt::NotSent(r),
                None => Attempt::Failed(ExchangeError::Broken),
            });
        }
    };
    let (parts, body) = resp.into_parts();
    if crate::headers::is_event_stream(&parts.headers) {
        // Streams are compared by a later stage; reading one would hold the permit until
        // the deadline.
        return Ok((parts, Bytes::new()));
    }
    match Limited::new(body, limit).collect().await {
        Ok(b) => Ok((parts, b.to_bytes())),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Attempt::Failed(ExchangeError::OverLimit(parts.status)))
        }
        Err(_) => Err(Attempt::Failed(ExchangeError::Broken)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a worker: a wait ends with its future, or with `Elapsed` at its deadline, even when
    /// a longer wait was registered first (the watcher is re-armed for the shorter length).
    #[tokio::test]
    async fn within_on_a_worker_ends_with_the_future_or_its_deadline() {
        enter_worker(0);
        // Far longer than the test may take: if the short wait below waited for this one's
        // deadline, the outer bound would fail the test.
        let long = tokio::spawn(async {
            let never = pin!(std::future::pending::<()>());
            within(Duration::from_secs(600), never).await
        });
        tokio::task::yield_now().await;
        let outer = Duration::from_secs(60);
        let short = tokio::time::timeout(
            outer,
            within(
                Duration::from_millis(20),
                pin!(std::future::pending::<()>()),
            ),
        )
        .await
        .expect("the short wait must not wait for the long one");
        assert!(matches!(short, Err(Elapsed)));
        assert_eq!(
            within(Duration::from_millis(20), pin!(async { 7 }))
                .await
                .ok(),
            Some(7)
        );
        // Many waits that finish in time leave nothing behind to expire.
        for i in 0..200 {
            let got = within(Duration::from_millis(5), pin!(async { i })).await;
            assert_eq!(got.ok(), Some(i));
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        let waiting = DEADLINES.with_borrow(|d| {
            d.queues
                .iter()
                .flat_map(|q| q.waits.iter())
                .filter(|w| w.state.load(Ordering::Acquire) == WAITING)
                .count()
        });
        assert_eq!(waiting, 1, "only the long wait is still waiting");
        long.abort();
    }

    /// Off the workers it is tokio's timeout.
    #[test]
    fn within_off_a_worker_falls_back_to_tokio() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = within(
                Duration::from_millis(10),
                pin!(std::future::pending::<()>()),
            )
            .await;
            assert!(matches!(r, Err(Elapsed)));
            assert!(DEADLINES.with_borrow(|d| d.queues.is_empty()));
        });
    }

    #[test]
    fn reasons_name_the_failure() {
        let e = PrimaryError::ConnectTimeout(Duration::from_millis(1500));
        assert_eq!(e.reason(), "connect timed out after 1500ms");
        let e = PrimaryError::Timeout(Duration::from_secs(30));
        assert_eq!(e.reason(), "no response headers within 30s");
        let e = PrimaryError::Connect(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(e.reason().starts_with("connect failed: "));
    }
}
