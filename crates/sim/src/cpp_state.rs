//! What the C++ gateway's engine bridge caches from the engine's events (veloz-api.md §1.2,
//! §1.3), kept by a task that follows the engine's event stream.
//!
//! Reproduced on purpose, because it is what makes the C++ answers differ:
//! - the order cache is **overwritten** by each `order_update` / `order_state` line; fills do
//!   not update it; `order_state` lines carry `order_qty`/`limit_price`, which the bridge does
//!   not read, so they reset `qty`/`price` to null; `created_ns` is the latest event's time;
//! - the account records only the asset **names**, every balance is 0.0;
//! - orders are listed in hash-map order (a `HashMap` with a per-process random hasher).
//!
//! Also here: the C++ config handler's key/value store (its real shape is unverified).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::engine::{Engine, Event, EventKind};
use crate::json::J;

/// One cached order, as the C++ bridge holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CppOrder {
    pub client_order_id: String,
    pub symbol: String,
    pub side: String,
    pub qty: Option<f64>,
    pub price: Option<f64>,
    pub executed_qty: f64,
    pub avg_price: f64,
    pub status: String,
    pub venue_order_id: String,
    pub reason: String,
    pub last_update_ns: u64,
    pub created_ns: u64,
}

impl CppOrder {
    /// The record an order line overwrites the cache with.
    pub(crate) fn from_event(ev: &Event) -> Option<CppOrder> {
        let line = &ev.line;
        let s = |k: &str| line.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let f = |k: &str| line.get(k).and_then(Value::as_f64);
        let id = ev.client_order_id.clone()?;
        let ts = line
            .get("ts_ns")
            .or_else(|| line.get("last_ts_ns"))
            .and_then(Value::as_u64)
            .unwrap_or(ev.ts_ns);
        Some(CppOrder {
            client_order_id: id,
            symbol: s("symbol"),
            side: s("side"),
            qty: f("qty"),
            price: f("price"),
            executed_qty: f("executed_qty").unwrap_or(0.0),
            avg_price: f("avg_price").unwrap_or(0.0),
            status: s("status"),
            venue_order_id: s("venue_order_id"),
            reason: s("reason"),
            last_update_ns: ts,
            created_ns: ev.ts_ns,
        })
    }

    /// The C++ order object (`formatOrderJson`).
    pub(crate) fn to_json(&self) -> J {
        J::obj([
            ("client_order_id", J::s(self.client_order_id.clone())),
            ("symbol", J::s(self.symbol.clone())),
            ("side", J::s(self.side.clone())),
            ("qty", J::opt_f(self.qty)),
            ("price", J::opt_f(self.price)),
            ("executed_qty", J::Float(self.executed_qty)),
            ("avg_price", J::Float(self.avg_price)),
            ("status", J::s(self.status.clone())),
            ("venue_order_id", J::s(self.venue_order_id.clone())),
            ("reason", J::s(self.reason.clone())),
            ("last_update_ns", J::UInt(self.last_update_ns)),
            ("created_ns", J::UInt(self.created_ns)),
        ])
    }
}

/// The bridge's account state: asset names only.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct CppAccount {
    pub assets: Vec<String>,
    pub last_update_ns: u64,
}

/// State the C++ profile derives from engine events, plus its config store.
#[derive(Debug, Default)]
pub(crate) struct CppState {
    orders: Mutex<HashMap<String, CppOrder>>,
    account: Mutex<Option<CppAccount>>,
    config: Mutex<Vec<(String, J)>>,
    order_counter: AtomicU64,
}

impl CppState {
    pub(crate) fn new(config: Vec<(String, J)>) -> CppState {
        CppState {
            config: Mutex::new(config),
            ..CppState::default()
        }
    }

    /// Applies one engine event to the caches.
    pub(crate) fn apply(&self, ev: &Event) {
        match ev.kind {
            EventKind::OrderUpdate | EventKind::OrderState => {
                if let Some(order) = CppOrder::from_event(ev) {
                    lock(&self.orders).insert(order.client_order_id.clone(), order);
                }
            }
            EventKind::Account => {
                let assets = ev
                    .line
                    .get("balances")
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(|b| b.get("asset").and_then(Value::as_str))
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                *lock(&self.account) = Some(CppAccount {
                    assets,
                    last_update_ns: ev.ts_ns,
                });
            }
            EventKind::Market | EventKind::Fill | EventKind::Error => {}
        }
    }

    /// Every cached order, in hash-map order.
    pub(crate) fn orders(&self) -> Vec<CppOrder> {
        lock(&self.orders).values().cloned().collect()
    }

    pub(crate) fn order(&self, id: &str) -> Option<CppOrder> {
        lock(&self.orders).get(id).cloned()
    }

    pub(crate) fn account(&self) -> Option<CppAccount> {
        lock(&self.account).clone()
    }

    /// Next value of the generated-id counter (`veloz_<ns>_<n>`).
    pub(crate) fn next_order_number(&self) -> u64 {
        self.order_counter.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn config_all(&self) -> Vec<(String, J)> {
        lock(&self.config).clone()
    }

    pub(crate) fn config_get(&self, key: &str) -> Option<J> {
        lock(&self.config)
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    pub(crate) fn config_set(&self, key: &str, value: J) {
        let mut cfg = lock(&self.config);
        match cfg.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => cfg.push((key.to_owned(), value)),
        }
    }

    pub(crate) fn config_delete(&self, key: &str) -> bool {
        let mut cfg = lock(&self.config);
        let before = cfg.len();
        cfg.retain(|(k, _)| k != key);
        cfg.len() != before
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere cannot leave a cache in a state worse than stopping would.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Follows the engine's events (history first) into `state` until shutdown.
pub(crate) fn spawn_follower(
    state: Arc<CppState>,
    engine: &Engine,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (history, mut rx) = engine.subscribe_after(None);
    for ev in &history {
        state.apply(ev);
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                ev = rx.recv() => match ev {
                    Ok(ev) => state.apply(&ev),
                    // The bridge would have missed them too; the next order line overwrites.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: u64, kind: EventKind, line: Value) -> Event {
        let line = line.as_object().cloned().unwrap();
        Event {
            id,
            kind,
            ts_ns: 1000 + id,
            client_order_id: line
                .get("client_order_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            line,
        }
    }

    #[test]
    fn order_state_lines_overwrite_and_null_qty_and_price() {
        let st = CppState::default();
        st.apply(&event(
            1,
            EventKind::OrderUpdate,
            json!({"type":"order_update","ts_ns":5,"client_order_id":"a","venue_order_id":"sim-1",
                   "status":"ACCEPTED","symbol":"BTCUSDT","side":"BUY","qty":0.5,"price":42000}),
        ));
        let o = st.order("a").unwrap();
        assert_eq!(
            (o.qty, o.price, o.last_update_ns),
            (Some(0.5), Some(42000.0), 5)
        );
        st.apply(&event(
            2,
            EventKind::Fill,
            json!({"type":"fill","ts_ns":6,"client_order_id":"a","symbol":"BTCUSDT","qty":0.5,"price":1}),
        ));
        assert_eq!(
            st.order("a").unwrap().status,
            "ACCEPTED",
            "fills do not update"
        );
        st.apply(&event(
            3,
            EventKind::OrderState,
            json!({"type":"order_state","client_order_id":"a","status":"FILLED","symbol":"BTCUSDT",
                   "side":"BUY","order_qty":0.5,"limit_price":42000,"executed_qty":0.5,
                   "avg_price":41990,"last_ts_ns":7}),
        ));
        let o = st.order("a").unwrap();
        assert_eq!((o.qty, o.price), (None, None));
        assert_eq!(
            (o.executed_qty, o.avg_price, o.last_update_ns),
            (0.5, 41990.0, 7)
        );
        assert_eq!(o.venue_order_id, "", "missing strings are empty");
        assert_eq!(o.created_ns, 1003);
    }

    #[test]
    fn account_keeps_asset_names_only() {
        let st = CppState::default();
        assert!(st.account().is_none());
        st.apply(&event(
            1,
            EventKind::Account,
            json!({"type":"account","ts_ns":9,"balances":[{"asset":"USDT","free":5,"locked":0},
                   {"asset":"BTC","free":1,"locked":0}]}),
        ));
        assert_eq!(
            st.account().unwrap(),
            CppAccount {
                assets: vec!["USDT".into(), "BTC".into()],
                last_update_ns: 1001
            }
        );
    }

    #[test]
    fn config_store_sets_and_deletes() {
        let st = CppState::new(vec![("a".into(), J::Int(1))]);
        st.config_set("b", J::s("x"));
        st.config_set("a", J::Int(2));
        assert_eq!(st.config_get("a"), Some(J::Int(2)));
        assert!(st.config_delete("b"));
        assert!(!st.config_delete("b"));
        assert_eq!(st.config_all().len(), 1);
    }
}
