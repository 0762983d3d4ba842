//! The simulated VeloZ engine behind both gateway profiles (veloz-api.md §7).
//!
//! It reproduces the *old* simulated engine the gateways were written against: market ticks every
//! `tick_interval`, an order is accepted (or rejected for funds / duplicate id), filled in whole
//! `fill_delay` later at the then-current market price, cancels unlock funds, unknown cancels are
//! rejected with `unknown_order`, and an `account` event follows every accept, cancel and fill.
//!
//! Design decisions:
//! - Commands are processed on the engine's own task, so an HTTP answer goes out before the engine
//!   has accepted or rejected the order — exactly like the real stdio engine. The outcome only
//!   arrives as events.
//! - Every event carries an id (1, 2, …) assigned under the same lock that appends it to the
//!   500-event ring and broadcasts it, so [`Engine::subscribe_after`] can hand out history plus a
//!   live receiver with no gap and no duplicate.
//! - Numbers in event lines are printed the way the C++ engine's `ostream` does: 6 significant
//!   digits, integral values without a fraction (`42000`, not `42000.0`).
//! - Deterministic mode puts ticks on an epoch-aligned grid and derives each tick's price from the
//!   seed and the tick index alone, so two engines with the same seed quote the same price at the
//!   same instant, whenever they started. Without it the grid starts with the engine, so two
//!   engines are phase-shifted as real ones are (a §8 noise source).
//! - Injected divergence (rejects, changed fill prices) is decided per order from a hash of the
//!   seed and the client order id, so it is reproducible, and it is counted.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Number, Value};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

/// Divergence the engine injects on purpose, so a detector's findings can be checked against it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineDivergence {
    /// Fraction of otherwise valid orders rejected with a risk reason.
    pub reject_fraction: f64,
    /// Fraction of fills executed at a price moved by `fill_price_offset`.
    pub fill_price_fraction: f64,
    /// Relative move of an injected fill price (0.001 = +0.1 %).
    pub fill_price_offset: f64,
}

/// Engine settings; [`EngineConfig::default`] matches the old simulated engine.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub seed: u64,
    pub deterministic: bool,
    pub tick_interval: Duration,
    pub fill_delay: Duration,
    pub start_price: f64,
    pub symbol: String,
    pub balances: Vec<(String, f64)>,
    pub history: usize,
    pub divergence: EngineDivergence,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            seed: 0,
            deterministic: false,
            tick_interval: Duration::from_millis(200),
            fill_delay: Duration::from_millis(300),
            start_price: 42_000.0,
            symbol: "BTCUSDT".to_owned(),
            balances: vec![("USDT".to_owned(), 100_000.0), ("BTC".to_owned(), 1.0)],
            history: 500,
            divergence: EngineDivergence::default(),
        }
    }
}

/// Order side as the engine spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }

    /// Accepts `BUY`/`buy`/`SELL`/`sell` (both gateways' spellings).
    pub fn parse(s: &str) -> Option<Side> {
        if s.eq_ignore_ascii_case("buy") {
            Some(Side::Buy)
        } else if s.eq_ignore_ascii_case("sell") {
            Some(Side::Sell)
        } else {
            None
        }
    }
}

/// A validated `ORDER` command.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRequest {
    pub side: Side,
    pub symbol: String,
    pub qty: f64,
    pub price: f64,
    pub client_order_id: String,
}

/// Engine event types (the `type` field of an engine line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Market,
    Account,
    OrderUpdate,
    OrderState,
    Fill,
    Error,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Market => "market",
            EventKind::Account => "account",
            EventKind::OrderUpdate => "order_update",
            EventKind::OrderState => "order_state",
            EventKind::Fill => "fill",
            EventKind::Error => "error",
        }
    }
}

/// One engine event, as the gateway received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// 1, 2, … per engine: the SSE id, PY's `_id`, the C++ broadcaster id.
    pub id: u64,
    pub kind: EventKind,
    pub ts_ns: u64,
    /// The engine's JSON line, including `type`, numbers as the C++ engine prints them.
    pub line: Map<String, Value>,
    pub client_order_id: Option<String>,
}

/// What the Python gateway's order store holds for one order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderState {
    pub client_order_id: String,
    pub symbol: String,
    pub side: String,
    pub order_qty: Option<f64>,
    pub limit_price: Option<f64>,
    pub venue_order_id: Option<String>,
    pub status: Option<String>,
    pub reason: Option<String>,
    pub executed_qty: f64,
    pub avg_price: Option<f64>,
    pub last_ts_ns: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Balance {
    pub asset: String,
    pub free: f64,
    pub locked: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccountSnapshot {
    pub ts_ns: u64,
    pub balances: Vec<Balance>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MarketSnapshot {
    pub symbol: String,
    pub price: f64,
    pub ts_ns: u64,
}

/// Counters of divergence the engine injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineInjected {
    pub rejected: u64,
    pub fill_price_changed: u64,
}

/// Reason given to orders rejected by injected divergence.
pub const INJECTED_REJECT_REASON: &str = "risk_max_notional";

/// Events kept apart from the ring for order listings (PY keeps the last 200 of them).
const ORDER_EVENTS_KEPT: usize = 1000;

/// A cheap handle on a running engine. Dropping every handle stops the engine task.
#[derive(Debug, Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    cmd: mpsc::UnboundedSender<Cmd>,
}

#[derive(Debug)]
enum Cmd {
    Place(OrderRequest),
    Cancel(String),
    BadCommand,
    Shutdown,
}

#[derive(Debug)]
struct Shared {
    cfg: EngineConfig,
    state: Mutex<State>,
    events: broadcast::Sender<Arc<Event>>,
    started_unix: u64,
    started: Instant,
    processed: AtomicU64,
    injected_rejects: AtomicU64,
    injected_fill_prices: AtomicU64,
}

#[derive(Debug)]
struct State {
    next_id: u64,
    ring: VecDeque<Arc<Event>>,
    order_events: VecDeque<Arc<Event>>,
    orders: Vec<OrderState>,
    order_index: HashMap<String, usize>,
    /// Accepted orders not yet filled or cancelled: what they hold locked.
    open: HashMap<String, OpenOrder>,
    balances: Vec<Balance>,
    account: Option<AccountSnapshot>,
    market: Option<MarketSnapshot>,
    venue_counter: u64,
}

#[derive(Debug, Clone)]
struct OpenOrder {
    side: Side,
    symbol: String,
    qty: f64,
    locked: f64,
}

impl Engine {
    /// Starts the engine task on the current tokio runtime.
    pub fn start(cfg: EngineConfig) -> Engine {
        let (events, _) = broadcast::channel(4096);
        let balances = cfg
            .balances
            .iter()
            .map(|(asset, free)| Balance {
                asset: asset.clone(),
                free: *free,
                locked: 0.0,
            })
            .collect();
        let history = cfg.history.max(1);
        let shared = Arc::new(Shared {
            cfg,
            state: Mutex::new(State {
                next_id: 1,
                ring: VecDeque::with_capacity(history),
                order_events: VecDeque::new(),
                orders: Vec::new(),
                order_index: HashMap::new(),
                open: HashMap::new(),
                balances,
                account: None,
                market: None,
                venue_counter: 0,
            }),
            events,
            started_unix: unix_ns(),
            started: Instant::now(),
            processed: AtomicU64::new(0),
            injected_rejects: AtomicU64::new(0),
            injected_fill_prices: AtomicU64::new(0),
        });
        {
            // The first account event and tick are there before anyone can ask, as a real
            // engine's start-up lines are read before the gateway serves.
            let mut state = shared.lock();
            emit_account(&shared, &mut state, shared.started_unix);
            let k = tick_index(&shared.cfg, shared.started_unix, shared.started_unix);
            emit_tick(&shared, &mut state, k, shared.started_unix);
        }
        let (cmd, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(Arc::clone(&shared), rx));
        Engine { shared, cmd }
    }

    /// Queues an order; its outcome arrives as events.
    pub fn place(&self, req: OrderRequest) {
        // A send error means the engine stopped; like a dead stdio engine, the command is lost.
        let _ = self.cmd.send(Cmd::Place(req));
    }

    /// Queues a cancel; an unknown id is rejected with `unknown_order` as an event.
    pub fn cancel(&self, client_order_id: &str) {
        let _ = self.cmd.send(Cmd::Cancel(client_order_id.to_owned()));
    }

    /// Makes the engine answer as to a command it cannot parse.
    pub fn bad_command(&self) {
        let _ = self.cmd.send(Cmd::BadCommand);
    }

    /// History after `last_id` (`None`: the whole ring) and a live receiver, taken atomically.
    pub fn subscribe_after(
        &self,
        last_id: Option<u64>,
    ) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let state = self.shared.lock();
        let after = last_id.unwrap_or(0);
        let history = state
            .ring
            .iter()
            .filter(|e| e.id > after)
            .cloned()
            .collect();
        (history, self.shared.events.subscribe())
    }

    /// The newest `max` events of the given kinds (order events only), oldest first.
    pub fn recent(&self, kinds: &[EventKind], max: usize) -> Vec<Arc<Event>> {
        let state = self.shared.lock();
        let mut out: Vec<Arc<Event>> = state
            .order_events
            .iter()
            .rev()
            .filter(|e| kinds.contains(&e.kind))
            .take(max)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// Every order the engine has seen, in insertion order.
    pub fn orders_state(&self) -> Vec<OrderState> {
        self.shared.lock().orders.clone()
    }

    pub fn order_state(&self, client_order_id: &str) -> Option<OrderState> {
        let state = self.shared.lock();
        state
            .order_index
            .get(client_order_id)
            .map(|&i| state.orders[i].clone())
    }

    /// The last account event's balances; `None` before the first one.
    pub fn account(&self) -> Option<AccountSnapshot> {
        self.shared.lock().account.clone()
    }

    /// The latest market tick.
    pub fn market(&self) -> Option<MarketSnapshot> {
        self.shared.lock().market.clone()
    }

    /// Commands (orders and cancels) processed so far.
    pub fn orders_processed(&self) -> u64 {
        self.shared.processed.load(Ordering::Relaxed)
    }

    pub fn injected(&self) -> EngineInjected {
        EngineInjected {
            rejected: self.shared.injected_rejects.load(Ordering::Relaxed),
            fill_price_changed: self.shared.injected_fill_prices.load(Ordering::Relaxed),
        }
    }

    /// Stops the engine task; later commands are ignored.
    pub fn shutdown(&self) {
        let _ = self.cmd.send(Cmd::Shutdown);
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shared.cfg
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that matters
        // more than stopping the simulator would, so keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Assigns the next id, keeps the event in the ring and broadcasts it.
    fn publish(&self, state: &mut State, kind: EventKind, ts_ns: u64, line: Map<String, Value>) {
        let client_order_id = line
            .get("client_order_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let event = Arc::new(Event {
            id: state.next_id,
            kind,
            ts_ns,
            line,
            client_order_id,
        });
        state.next_id += 1;
        if state.ring.len() >= self.cfg.history.max(1) {
            state.ring.pop_front();
        }
        state.ring.push_back(Arc::clone(&event));
        if !matches!(kind, EventKind::Market | EventKind::Account) {
            if state.order_events.len() >= ORDER_EVENTS_KEPT {
                state.order_events.pop_front();
            }
            state.order_events.push_back(Arc::clone(&event));
        }
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }
}

/// The engine task: commands, ticks and delayed fills, until shutdown or every handle is gone.
async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let cfg = &shared.cfg;
    let started_unix = shared.started_unix;
    let started = shared.started;
    let mut next_tick = started + until_next_tick(cfg, started_unix, started_unix);
    // Fill delay is constant, so pending fills are already in due order.
    let mut fills: VecDeque<(Instant, String)> = VecDeque::new();
    loop {
        let next_fill = fills.front().map(|(at, _)| *at);
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Cmd::Place(req)) => {
                    shared.processed.fetch_add(1, Ordering::Relaxed);
                    let id = req.client_order_id.clone();
                    if place(&shared, req) {
                        fills.push_back((Instant::now() + cfg.fill_delay, id));
                    }
                }
                Some(Cmd::Cancel(id)) => {
                    shared.processed.fetch_add(1, Ordering::Relaxed);
                    cancel(&shared, &id);
                }
                Some(Cmd::BadCommand) => {
                    let now = unix_ns();
                    let mut line = line_of(EventKind::Error, now);
                    line.insert("message".into(), "bad_command".into());
                    let mut state = shared.lock();
                    shared.publish(&mut state, EventKind::Error, now, line);
                }
                Some(Cmd::Shutdown) | None => return,
            },
            () = tokio::time::sleep_until(next_tick) => {
                let now = unix_ns();
                let mut state = shared.lock();
                emit_tick(&shared, &mut state, tick_index(cfg, started_unix, now), now);
                drop(state);
                next_tick = Instant::now() + until_next_tick(cfg, started_unix, now);
            }
            () = sleep_until_opt(next_fill) => {
                if let Some((_, id)) = fills.pop_front() {
                    fill(&shared, &id);
                }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Tick index at `now_ns`: epoch-aligned in deterministic mode, engine-relative otherwise.
fn tick_index(cfg: &EngineConfig, started_ns: u64, now_ns: u64) -> u64 {
    let tick = cfg.tick_interval.as_nanos().max(1) as u64;
    if cfg.deterministic {
        now_ns / tick
    } else {
        now_ns.saturating_sub(started_ns) / tick
    }
}

fn until_next_tick(cfg: &EngineConfig, started_ns: u64, now_ns: u64) -> Duration {
    let tick = cfg.tick_interval.as_nanos().max(1_000_000) as u64;
    let origin = if cfg.deterministic { 0 } else { started_ns };
    let into = now_ns.saturating_sub(origin) % tick;
    Duration::from_nanos(tick - into)
}

/// The seeded, deterministic price of tick `k`: a slow drift of a few tenths of a percent plus
/// a small per-tick jitter, rounded as the engine prints it.
pub fn price_at(cfg: &EngineConfig, k: u64) -> f64 {
    let phase1 = unit(cfg.seed, 1) * std::f64::consts::TAU;
    let phase2 = unit(cfg.seed, 2) * std::f64::consts::TAU;
    let kf = k as f64;
    let drift = 0.003 * (kf / 97.0 * std::f64::consts::TAU + phase1).sin()
        + 0.0015 * (kf / 31.0 * std::f64::consts::TAU + phase2).sin();
    let jitter = 0.0004 * (unit(cfg.seed ^ 0x9e37_79b9_7f4a_7c15, k) * 2.0 - 1.0);
    round_sig6(cfg.start_price * (1.0 + drift + jitter))
}

fn emit_tick(shared: &Shared, state: &mut State, k: u64, now: u64) {
    let price = price_at(&shared.cfg, k);
    let mut line = line_of(EventKind::Market, now);
    line.insert("symbol".into(), shared.cfg.symbol.clone().into());
    line.insert("price".into(), engine_number(price));
    state.market = Some(MarketSnapshot {
        symbol: shared.cfg.symbol.clone(),
        price,
        ts_ns: now,
    });
    shared.publish(state, EventKind::Market, now, line);
}

fn emit_account(shared: &Shared, state: &mut State, now: u64) {
    let balances: Vec<Balance> = state
        .balances
        .iter()
        .map(|b| Balance {
            asset: b.asset.clone(),
            free: round_sig6(b.free),
            locked: round_sig6(b.locked),
        })
        .collect();
    let mut line = line_of(EventKind::Account, now);
    let list = balances
        .iter()
        .map(|b| {
            let mut m = Map::new();
            m.insert("asset".into(), b.asset.clone().into());
            m.insert("free".into(), engine_number(b.free));
            m.insert("locked".into(), engine_number(b.locked));
            Value::Object(m)
        })
        .collect();
    line.insert("balances".into(), Value::Array(list));
    state.account = Some(AccountSnapshot {
        ts_ns: now,
        balances,
    });
    shared.publish(state, EventKind::Account, now, line);
}

/// Handles an `ORDER`; returns whether it was accepted (and so needs a fill later).
fn place(shared: &Shared, req: OrderRequest) -> bool {
    let now = unix_ns();
    let mut state = shared.lock();
    let reject = |state: &mut State, reason: &str| {
        let mut line = line_of(EventKind::OrderUpdate, now);
        line.insert("client_order_id".into(), req.client_order_id.clone().into());
        line.insert("status".into(), "REJECTED".into());
        insert_order_fields(&mut line, &req);
        line.insert("reason".into(), reason.into());
        shared.publish(state, EventKind::OrderUpdate, now, line);
    };
    if state.order_index.contains_key(&req.client_order_id) {
        // The first order keeps its state; only an event tells of the duplicate.
        reject(&mut state, "duplicate_client_order_id");
        return false;
    }
    let injected_reject =
        decide(shared.cfg.seed, &req.client_order_id, 11) < shared.cfg.divergence.reject_fraction;
    let (asset, need) = match req.side {
        Side::Buy => (quote_asset(&req.symbol), req.qty * req.price),
        Side::Sell => (base_asset(&req.symbol), req.qty),
    };
    let funded = state
        .balances
        .iter()
        .any(|b| b.asset == asset && b.free + 1e-9 >= need);
    let reason = if !funded {
        Some("insufficient_funds")
    } else if injected_reject {
        shared.injected_rejects.fetch_add(1, Ordering::Relaxed);
        Some(INJECTED_REJECT_REASON)
    } else {
        None
    };
    let mut order = OrderState {
        client_order_id: req.client_order_id.clone(),
        symbol: req.symbol.clone(),
        side: req.side.as_str().to_owned(),
        order_qty: Some(round_sig6(req.qty)),
        limit_price: Some(round_sig6(req.price)),
        venue_order_id: None,
        status: None,
        reason: None,
        executed_qty: 0.0,
        avg_price: None,
        last_ts_ns: Some(now),
    };
    if let Some(reason) = reason {
        reject(&mut state, reason);
        order.status = Some("REJECTED".into());
        order.reason = Some(reason.into());
        upsert_order(&mut state, order.clone());
        emit_order_state(shared, &mut state, &order, now);
        return false;
    }
    if let Some(b) = state.balances.iter_mut().find(|b| b.asset == asset) {
        b.free -= need;
        b.locked += need;
    }
    state.venue_counter += 1;
    let venue = format!("sim-{}", state.venue_counter);
    state.open.insert(
        req.client_order_id.clone(),
        OpenOrder {
            side: req.side,
            symbol: req.symbol.clone(),
            qty: req.qty,
            locked: need,
        },
    );
    let mut line = line_of(EventKind::OrderUpdate, now);
    line.insert("client_order_id".into(), req.client_order_id.clone().into());
    line.insert("venue_order_id".into(), venue.clone().into());
    line.insert("status".into(), "ACCEPTED".into());
    insert_order_fields(&mut line, &req);
    shared.publish(&mut state, EventKind::OrderUpdate, now, line);
    order.status = Some("ACCEPTED".into());
    order.venue_order_id = Some(venue);
    upsert_order(&mut state, order.clone());
    emit_order_state(shared, &mut state, &order, now);
    emit_account(shared, &mut state, now);
    true
}

fn cancel(shared: &Shared, client_order_id: &str) {
    let now = unix_ns();
    let mut state = shared.lock();
    let Some(open) = state.open.remove(client_order_id) else {
        let mut line = line_of(EventKind::OrderUpdate, now);
        line.insert("client_order_id".into(), client_order_id.into());
        line.insert("status".into(), "REJECTED".into());
        line.insert("reason".into(), "unknown_order".into());
        shared.publish(&mut state, EventKind::OrderUpdate, now, line);
        return;
    };
    let asset = match open.side {
        Side::Buy => quote_asset(&open.symbol),
        Side::Sell => base_asset(&open.symbol),
    };
    if let Some(b) = state.balances.iter_mut().find(|b| b.asset == asset) {
        b.locked -= open.locked;
        b.free += open.locked;
    }
    let order = state
        .order_index
        .get(client_order_id)
        .map(|&i| state.orders[i].clone());
    let mut line = line_of(EventKind::OrderUpdate, now);
    line.insert("client_order_id".into(), client_order_id.into());
    if let Some(venue) = order.as_ref().and_then(|o| o.venue_order_id.clone()) {
        line.insert("venue_order_id".into(), venue.into());
    }
    line.insert("status".into(), "CANCELLED".into());
    shared.publish(&mut state, EventKind::OrderUpdate, now, line);
    if let Some(mut order) = order {
        order.status = Some("CANCELLED".into());
        order.last_ts_ns = Some(now);
        upsert_order(&mut state, order.clone());
        emit_order_state(shared, &mut state, &order, now);
    }
    emit_account(shared, &mut state, now);
}

fn fill(shared: &Shared, client_order_id: &str) {
    let now = unix_ns();
    let mut state = shared.lock();
    // Cancelled before its fill came due.
    let Some(open) = state.open.remove(client_order_id) else {
        return;
    };
    let market = state
        .market
        .as_ref()
        .map_or(shared.cfg.start_price, |m| m.price);
    let mut price = market;
    if decide(shared.cfg.seed, client_order_id, 23) < shared.cfg.divergence.fill_price_fraction {
        shared.injected_fill_prices.fetch_add(1, Ordering::Relaxed);
        price = round_sig6(market * (1.0 + shared.cfg.divergence.fill_price_offset));
    }
    let (quote, base) = (quote_asset(&open.symbol), base_asset(&open.symbol));
    let notional = open.qty * price;
    for b in state.balances.iter_mut() {
        match open.side {
            Side::Buy if b.asset == quote => {
                b.locked -= open.locked;
                b.free += open.locked - notional;
            }
            Side::Buy if b.asset == base => b.free += open.qty,
            Side::Sell if b.asset == base => b.locked -= open.locked,
            Side::Sell if b.asset == quote => b.free += notional,
            _ => {}
        }
    }
    if open.side == Side::Buy && !state.balances.iter().any(|b| b.asset == base) {
        state.balances.push(Balance {
            asset: base.to_owned(),
            free: open.qty,
            locked: 0.0,
        });
    }
    let mut line = line_of(EventKind::Fill, now);
    line.insert("client_order_id".into(), client_order_id.into());
    line.insert("symbol".into(), open.symbol.clone().into());
    line.insert("qty".into(), engine_number(open.qty));
    line.insert("price".into(), engine_number(price));
    shared.publish(&mut state, EventKind::Fill, now, line);
    if let Some(mut order) = state
        .order_index
        .get(client_order_id)
        .map(|&i| state.orders[i].clone())
    {
        order.status = Some("FILLED".into());
        order.executed_qty = round_sig6(open.qty);
        order.avg_price = Some(round_sig6(price));
        order.last_ts_ns = Some(now);
        upsert_order(&mut state, order.clone());
        emit_order_state(shared, &mut state, &order, now);
    }
    emit_account(shared, &mut state, now);
}

fn emit_order_state(shared: &Shared, state: &mut State, order: &OrderState, now: u64) {
    let mut line = Map::new();
    line.insert("type".into(), EventKind::OrderState.as_str().into());
    line.insert(
        "client_order_id".into(),
        order.client_order_id.clone().into(),
    );
    if let Some(status) = &order.status {
        line.insert("status".into(), status.clone().into());
    }
    line.insert("symbol".into(), order.symbol.clone().into());
    line.insert("side".into(), order.side.clone().into());
    if let Some(q) = order.order_qty {
        line.insert("order_qty".into(), engine_number(q));
    }
    if let Some(p) = order.limit_price {
        line.insert("limit_price".into(), engine_number(p));
    }
    line.insert("executed_qty".into(), engine_number(order.executed_qty));
    line.insert(
        "avg_price".into(),
        engine_number(order.avg_price.unwrap_or(0.0)),
    );
    if let Some(v) = &order.venue_order_id {
        line.insert("venue_order_id".into(), v.clone().into());
    }
    if let Some(r) = &order.reason {
        line.insert("reason".into(), r.clone().into());
    }
    line.insert("last_ts_ns".into(), now.into());
    shared.publish(state, EventKind::OrderState, now, line);
}

fn upsert_order(state: &mut State, order: OrderState) {
    match state.order_index.get(&order.client_order_id) {
        Some(&i) => state.orders[i] = order,
        None => {
            state
                .order_index
                .insert(order.client_order_id.clone(), state.orders.len());
            state.orders.push(order);
        }
    }
}

fn insert_order_fields(line: &mut Map<String, Value>, req: &OrderRequest) {
    line.insert("symbol".into(), req.symbol.clone().into());
    line.insert("side".into(), req.side.as_str().into());
    line.insert("qty".into(), engine_number(req.qty));
    line.insert("price".into(), engine_number(req.price));
}

fn line_of(kind: EventKind, ts_ns: u64) -> Map<String, Value> {
    let mut line = Map::new();
    line.insert("type".into(), kind.as_str().into());
    line.insert("ts_ns".into(), ts_ns.into());
    line
}

/// `BTCUSDT` → `USDT`: the quote asset pays for buys.
fn quote_asset(symbol: &str) -> &str {
    ["USDT", "USDC", "BUSD", "USD"]
        .into_iter()
        .find(|q| symbol.ends_with(q) && symbol.len() > q.len())
        .unwrap_or("USDT")
}

/// `BTCUSDT` → `BTC`: the base asset is what sells deliver.
fn base_asset(symbol: &str) -> &str {
    let quote = quote_asset(symbol);
    symbol
        .strip_suffix(quote)
        .filter(|b| !b.is_empty())
        .unwrap_or(symbol)
}

/// Rounds to 6 significant digits, as C++ `ostream` prints a double by default.
pub fn round_sig6(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return if x.is_finite() { 0.0 } else { x };
    }
    format!("{x:.5e}").parse().unwrap_or(x)
}

/// A JSON number as the C++ engine prints it: 6 significant digits; integral values below 1e6
/// without a fraction. (ostream switches to exponent notation from 1e6 on, which JSON readers
/// take as a float.)
pub fn engine_number(x: f64) -> Value {
    let r = round_sig6(x);
    if r.fract() == 0.0 && r.abs() < 1e6 {
        Value::Number(Number::from(r as i64))
    } else {
        Number::from_f64(r).map_or(Value::Null, Value::Number)
    }
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// SplitMix64 of (seed, k) mapped to [0, 1).
fn unit(seed: u64, k: u64) -> f64 {
    (splitmix(seed ^ splitmix(k)) >> 11) as f64 / (1u64 << 53) as f64
}

/// A reproducible draw in [0, 1) for one order and one purpose (`salt`).
fn decide(seed: u64, client_order_id: &str, salt: u64) -> f64 {
    // FNV-1a over the id, then mixed with the seed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in client_order_id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    unit(seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15), h)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EngineConfig {
        EngineConfig {
            tick_interval: Duration::from_millis(50),
            fill_delay: Duration::from_millis(30),
            ..EngineConfig::default()
        }
    }

    fn order(id: &str, side: Side, qty: f64, price: f64) -> OrderRequest {
        OrderRequest {
            side,
            symbol: "BTCUSDT".into(),
            qty,
            price,
            client_order_id: id.into(),
        }
    }

    /// Waits (bounded) until the receiver yields an event matching `pred`.
    async fn wait_for(
        rx: &mut broadcast::Receiver<Arc<Event>>,
        pred: impl Fn(&Event) -> bool,
    ) -> Arc<Event> {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let e = rx.recv().await.expect("engine alive");
                if pred(&e) {
                    return e;
                }
            }
        })
        .await
        .expect("event within 5 s")
    }

    #[test]
    fn numbers_print_like_ostream() {
        assert_eq!(engine_number(42000.0).to_string(), "42000");
        assert_eq!(engine_number(99580.06).to_string(), "99580.1");
        assert_eq!(engine_number(0.01).to_string(), "0.01");
        assert_eq!(engine_number(1_000_000.0).to_string(), "1000000.0");
        assert_eq!(round_sig6(123456.78), 123457.0);
    }

    #[test]
    fn assets_split_from_symbol() {
        assert_eq!(
            (base_asset("BTCUSDT"), quote_asset("BTCUSDT")),
            ("BTC", "USDT")
        );
        assert_eq!(
            (base_asset("ETHUSDC"), quote_asset("ETHUSDC")),
            ("ETH", "USDC")
        );
    }

    #[test]
    fn deterministic_prices_depend_only_on_seed_and_tick() {
        let a = EngineConfig {
            seed: 7,
            deterministic: true,
            ..cfg()
        };
        let b = EngineConfig {
            seed: 7,
            deterministic: true,
            ..cfg()
        };
        let c = EngineConfig {
            seed: 8,
            deterministic: true,
            ..cfg()
        };
        for k in [0, 1, 500, 1_000_000] {
            assert_eq!(price_at(&a, k), price_at(&b, k));
            let p = price_at(&a, k);
            assert!(
                (p / 42_000.0 - 1.0).abs() < 0.01,
                "price {p} stays near the start price"
            );
        }
        assert_ne!(price_at(&a, 3), price_at(&c, 3));
        // Epoch-aligned ticks: the same instant gives the same index whatever the start.
        assert_eq!(
            tick_index(&a, 1, 1_000_000_000),
            tick_index(&a, 999, 1_000_000_000)
        );
    }

    #[tokio::test]
    async fn order_is_accepted_then_filled_with_account_updates() {
        let engine = Engine::start(cfg());
        let (history, mut rx) = engine.subscribe_after(None);
        assert!(
            history.iter().any(|e| e.kind == EventKind::Account),
            "account at start"
        );
        engine.place(order("o1", Side::Buy, 0.01, 42_000.0));
        let ack = wait_for(&mut rx, |e| e.kind == EventKind::OrderUpdate).await;
        assert_eq!(ack.line["status"], "ACCEPTED");
        assert_eq!(ack.line["venue_order_id"], "sim-1");
        assert_eq!(ack.line["price"].to_string(), "42000");
        let fill = wait_for(&mut rx, |e| e.kind == EventKind::Fill).await;
        assert_eq!(fill.line["qty"].to_string(), "0.01");
        let st = engine.order_state("o1").expect("order known");
        assert_eq!(st.status.as_deref(), Some("FILLED"));
        assert_eq!(st.executed_qty, 0.01);
        let acct = wait_for(&mut rx, |e| e.kind == EventKind::Account).await;
        let btc = acct.line["balances"][1]["free"].as_f64().expect("number");
        assert!((btc - 1.01).abs() < 1e-9, "BTC credited: {btc}");
        assert_eq!(engine.orders_processed(), 1);
        assert_eq!(
            engine
                .recent(&[EventKind::OrderUpdate, EventKind::Fill], 200)
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn rejects_unfunded_duplicate_and_unknown_cancel() {
        let engine = Engine::start(cfg());
        let (_, mut rx) = engine.subscribe_after(None);
        engine.place(order("big", Side::Buy, 100.0, 42_000.0));
        let e = wait_for(&mut rx, |e| e.kind == EventKind::OrderUpdate).await;
        assert_eq!(
            (e.line["status"].as_str(), e.line["reason"].as_str()),
            (Some("REJECTED"), Some("insufficient_funds"))
        );
        engine.place(order("o2", Side::Sell, 0.5, 43_000.0));
        wait_for(&mut rx, |e| {
            e.kind == EventKind::OrderUpdate && e.line["status"] == "ACCEPTED"
        })
        .await;
        engine.place(order("o2", Side::Sell, 0.1, 43_000.0));
        let e = wait_for(&mut rx, |e| e.kind == EventKind::OrderUpdate).await;
        assert_eq!(e.line["reason"], "duplicate_client_order_id");
        engine.cancel("nope");
        let e = wait_for(&mut rx, |e| e.kind == EventKind::OrderUpdate).await;
        assert_eq!(
            (e.line["status"].as_str(), e.line["reason"].as_str()),
            (Some("REJECTED"), Some("unknown_order"))
        );
    }

    #[tokio::test]
    async fn cancel_before_fill_unlocks_and_prevents_fill() {
        let engine = Engine::start(EngineConfig {
            fill_delay: Duration::from_millis(300),
            ..cfg()
        });
        let (_, mut rx) = engine.subscribe_after(None);
        engine.place(order("c1", Side::Buy, 1.0, 40_000.0));
        engine.cancel("c1");
        let e = wait_for(&mut rx, |e| {
            e.kind == EventKind::OrderUpdate && e.line["status"] == "CANCELLED"
        })
        .await;
        assert_eq!(e.line["venue_order_id"], "sim-1");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            engine.recent(&[EventKind::Fill], 10).is_empty(),
            "no fill after cancel"
        );
        let acct = engine.account().expect("account");
        let usdt = &acct.balances[0];
        assert_eq!((usdt.free, usdt.locked), (100_000.0, 0.0));
        assert_eq!(
            engine.order_state("c1").and_then(|o| o.status),
            Some("CANCELLED".into())
        );
    }

    #[tokio::test]
    async fn subscribe_after_resumes_without_gap() {
        let engine = Engine::start(cfg());
        engine.bad_command();
        engine.bad_command();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (all, _) = engine.subscribe_after(None);
        let ids: Vec<u64> = all.iter().map(|e| e.id).collect();
        assert!(
            ids.windows(2).all(|w| w[1] == w[0] + 1),
            "ids consecutive: {ids:?}"
        );
        let (tail, mut rx) = engine.subscribe_after(Some(ids[1]));
        assert_eq!(tail.first().map(|e| e.id), Some(ids[1] + 1));
        let last = tail.last().map_or(ids[1], |e| e.id);
        engine.bad_command();
        let next = wait_for(&mut rx, |_| true).await;
        assert!(next.id > last, "live events continue after history");
        assert_eq!(engine.recent(&[EventKind::Error], 200).len(), 3);
    }

    #[tokio::test]
    async fn injected_divergence_is_counted_and_reproducible() {
        let div = EngineDivergence {
            reject_fraction: 0.3,
            fill_price_fraction: 0.3,
            fill_price_offset: 0.01,
        };
        let engine = Engine::start(EngineConfig {
            seed: 42,
            divergence: div,
            ..cfg()
        });
        let (_, mut rx) = engine.subscribe_after(None);
        let n = 40;
        for i in 0..n {
            engine.place(order(&format!("d{i}"), Side::Buy, 0.001, 42_000.0));
        }
        let mut rejected = 0;
        let mut outcomes = 0;
        while outcomes < n {
            let e = wait_for(&mut rx, |e| e.kind == EventKind::OrderUpdate).await;
            outcomes += 1;
            if e.line.get("reason").and_then(Value::as_str) == Some(INJECTED_REJECT_REASON) {
                rejected += 1;
            }
        }
        let expected: u64 = (0..n)
            .filter(|i| decide(42, &format!("d{i}"), 11) < 0.3)
            .count() as u64;
        assert_eq!(engine.injected().rejected, expected);
        assert_eq!(rejected, expected);
        assert!(expected > 0 && expected < n as u64);
    }
}
