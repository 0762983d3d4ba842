//! `GET /api/stream`: the engine's events as Server-Sent Events (veloz-api.md §4).
//!
//! The stream is fed from [`Engine::subscribe_after`], which hands out the history after a
//! given id and a live receiver taken under one lock, so nothing is lost or repeated between
//! replay and live events. Frames are written as they come, never buffered beyond one replay
//! chunk. The stream ends when the client goes away or the simulator shuts down.
//!
//! Python style: `id: N\nevent: <engine type>\ndata: <engine line, json.dumps spacing>\n\n`;
//! with no `?last_id` the whole ring is replayed on connect, `?last_id=N` resumes after N,
//! `Last-Event-ID` is ignored, no `retry:`; `: keep-alive\n\n` after the keep-alive interval
//! without a frame.
//!
//! C++ style: event names `market-data`, `order-update` (order_update, order_state and fill),
//! `account`, `error`, `system` (anything else); every frame carries `retry: <ms>` after its
//! data (the broadcaster's `format_sse(retry_ms)`); history is replayed only when a last id is
//! given (`Last-Event-ID` header, else `?last_id`); the keep-alive is an `event: keepalive`
//! frame with data `{}` and the id of the last event sent. The C++ data JSON is built by the
//! bridge from its parsed structs and its exact shape could not be read, so the simulator
//! chooses compact objects built from the event's fields:
//! - `market-data`: `{"symbol","last_price","last_update_ns"}`
//! - `order-update`: `{"type"}` + the C++ order object for order_update/order_state lines
//!   (see [`crate::cpp_state::CppOrder`]), or `{"type":"fill","client_order_id","symbol","qty",
//!   "price","ts_ns"}` for fills
//! - `account`: `{"balances":{ASSET: free},"last_update_ns"}`
//! - `error`: `{"message","ts_ns"}`
//!
//! Injected divergence: `divergence.dropped_sse_fraction` of the events are left out of each
//! stream (decided per stream from a seeded RNG) and counted; `divergence.dropped_sse_kinds`
//! limits it to some engine event types (e.g. `["fill"]`), whose other events are never drawn
//! for, so the count is exactly what a comparer should find missing.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::Value;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Style;
use crate::cpp_state::CppOrder;
use crate::engine::{Event, EventKind};
use crate::json::{J, JsonStyle};
use crate::stats::Stats;

/// What a stream needs to know; built by the handler.
pub(crate) struct SseSetup {
    pub style: Style,
    pub json: JsonStyle,
    pub keepalive: Duration,
    pub retry_ms: u64,
    pub drop_fraction: f64,
    /// Engine event types the drop applies to (empty: all).
    pub drop_kinds: Vec<String>,
    pub rng: SmallRng,
    pub history: Vec<Arc<Event>>,
    pub rx: broadcast::Receiver<Arc<Event>>,
    pub shutdown: watch::Receiver<bool>,
    pub stats: Arc<Stats>,
}

/// Decrements the open-stream gauge when the stream is dropped (client gone or shutdown).
struct Guard(Arc<Stats>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.sse_closed();
    }
}

struct State {
    setup: SseSetup,
    replayed: bool,
    last_id: u64,
    last_write: Instant,
    _guard: Guard,
}

/// The event stream as body chunks. Counts the stream as open until it is dropped.
pub(crate) fn event_stream(setup: SseSetup) -> impl futures_util::Stream<Item = Bytes> + Send {
    setup.stats.sse_opened();
    let guard = Guard(Arc::clone(&setup.stats));
    let state = State {
        setup,
        replayed: false,
        last_id: 0,
        last_write: Instant::now(),
        _guard: guard,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        let chunk = next_chunk(&mut st).await?;
        st.last_write = Instant::now();
        Some((chunk, st))
    })
}

/// The next bytes to write, or `None` when the stream ends.
async fn next_chunk(st: &mut State) -> Option<Bytes> {
    if !st.replayed {
        st.replayed = true;
        let history = std::mem::take(&mut st.setup.history);
        let mut buf = BytesMut::new();
        let mut n = 0;
        for ev in &history {
            if keep(st, ev) {
                write_event(&st.setup, ev, &mut buf);
                st.last_id = ev.id;
                n += 1;
            }
        }
        if !buf.is_empty() {
            st.setup.stats.sse_events(n);
            return Some(buf.freeze());
        }
    }
    // Bounded by the stream's life: every turn either returns a chunk or consumes an event.
    loop {
        let deadline = st.last_write + st.setup.keepalive;
        let setup = &mut st.setup;
        let next = tokio::select! {
            _ = setup.shutdown.wait_for(|stop| *stop) => None,
            got = tokio::time::timeout_at(deadline, setup.rx.recv()) => Some(got),
        };
        match next {
            None => return None,
            Some(Err(_elapsed)) => return Some(keepalive(&st.setup, st.last_id)),
            Some(Ok(Ok(ev))) => {
                if !keep(st, &ev) {
                    continue;
                }
                let mut buf = BytesMut::new();
                write_event(&st.setup, &ev, &mut buf);
                st.last_id = ev.id;
                st.setup.stats.sse_events(1);
                return Some(buf.freeze());
            }
            // A slow reader lost events, as it would with the real ring; carry on.
            Some(Ok(Err(RecvError::Lagged(_)))) => continue,
            Some(Ok(Err(RecvError::Closed))) => return None,
        }
    }
}

/// False when the event is dropped by injected divergence (and counts it).
fn keep(st: &mut State, ev: &Event) -> bool {
    if st.setup.drop_fraction <= 0.0 {
        return true;
    }
    if !st.setup.drop_kinds.is_empty() && !st.setup.drop_kinds.iter().any(|k| k == ev.kind.as_str())
    {
        return true;
    }
    if st.setup.rng.random::<f64>() < st.setup.drop_fraction {
        st.setup.stats.count_dropped_sse();
        return false;
    }
    true
}

fn keepalive(setup: &SseSetup, last_id: u64) -> Bytes {
    match setup.style {
        Style::Python => Bytes::from_static(b": keep-alive\n\n"),
        Style::Cpp => Bytes::from(format!(
            "id: {last_id}\nevent: keepalive\ndata: {{}}\nretry: {}\n\n",
            setup.retry_ms
        )),
    }
}

/// The C++ event name for an engine event.
pub(crate) fn cpp_event_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Market => "market-data",
        EventKind::OrderUpdate | EventKind::OrderState | EventKind::Fill => "order-update",
        EventKind::Account => "account",
        EventKind::Error => "error",
    }
}

fn write_event(setup: &SseSetup, ev: &Event, buf: &mut BytesMut) {
    let (name, data) = match setup.style {
        Style::Python => (
            ev.kind.as_str(),
            J::from_value(&Value::Object(ev.line.clone())),
        ),
        Style::Cpp => (cpp_event_name(ev.kind), cpp_data(ev)),
    };
    buf.put_slice(b"id: ");
    buf.put_slice(ev.id.to_string().as_bytes());
    buf.put_slice(b"\nevent: ");
    buf.put_slice(name.as_bytes());
    buf.put_slice(b"\ndata: ");
    buf.put_slice(&data.to_bytes(setup.json));
    buf.put_slice(b"\n");
    if setup.style == Style::Cpp {
        buf.put_slice(b"retry: ");
        buf.put_slice(setup.retry_ms.to_string().as_bytes());
        buf.put_slice(b"\n");
    }
    buf.put_slice(b"\n");
}

/// The data object of a C++ frame (see the module docs for the chosen shapes).
pub(crate) fn cpp_data(ev: &Event) -> J {
    let line = &ev.line;
    let num = |k: &str| {
        line.get(k)
            .and_then(Value::as_f64)
            .map_or(J::Null, J::Float)
    };
    let text = |k: &str| J::s(line.get(k).and_then(Value::as_str).unwrap_or("").to_owned());
    match ev.kind {
        EventKind::Market => J::obj([
            ("symbol", text("symbol")),
            ("last_price", num("price")),
            ("last_update_ns", J::UInt(ev.ts_ns)),
        ]),
        EventKind::OrderUpdate | EventKind::OrderState => {
            let mut obj = J::obj([("type", J::s(ev.kind.as_str()))]);
            if let Some(J::Obj(pairs)) = CppOrder::from_event(ev).map(|o| o.to_json())
                && let J::Obj(head) = &mut obj
            {
                head.extend(pairs);
            }
            obj
        }
        EventKind::Fill => J::obj([
            ("type", J::s("fill")),
            ("client_order_id", text("client_order_id")),
            ("symbol", text("symbol")),
            ("qty", num("qty")),
            ("price", num("price")),
            ("ts_ns", J::UInt(ev.ts_ns)),
        ]),
        EventKind::Account => {
            let balances = line
                .get("balances")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(|b| {
                            let asset = b.get("asset")?.as_str()?.to_owned();
                            let free = b.get("free").and_then(Value::as_f64).unwrap_or(0.0);
                            Some((asset.into(), J::Float(free)))
                        })
                        .collect()
                })
                .unwrap_or_default();
            J::obj([
                ("balances", J::Obj(balances)),
                ("last_update_ns", J::UInt(ev.ts_ns)),
            ])
        }
        EventKind::Error => J::obj([("message", text("message")), ("ts_ns", J::UInt(ev.ts_ns))]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(id: u64, kind: EventKind, line: Value) -> Arc<Event> {
        let line = line.as_object().cloned().unwrap();
        Arc::new(Event {
            id,
            kind,
            ts_ns: 10,
            client_order_id: line
                .get("client_order_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            line,
        })
    }

    fn setup(style: Style, history: Vec<Arc<Event>>) -> (SseSetup, broadcast::Sender<Arc<Event>>) {
        let (tx, rx) = broadcast::channel(16);
        let (stop_tx, stop_rx) = watch::channel(false);
        // A dropped sender would end the stream at once; these tests never shut down.
        std::mem::forget(stop_tx);
        let json = match style {
            Style::Python => JsonStyle::Python,
            Style::Cpp => JsonStyle::Compact,
        };
        (
            SseSetup {
                style,
                json,
                keepalive: Duration::from_millis(50),
                retry_ms: 3000,
                drop_fraction: 0.0,
                drop_kinds: Vec::new(),
                rng: crate::faults::request_rng(1, 1),
                history,
                rx,
                shutdown: stop_rx,
                stats: Arc::new(Stats::new(0)),
            },
            tx,
        )
    }

    #[tokio::test]
    async fn python_frames_replay_then_live_then_keepalive() {
        use futures_util::StreamExt;
        let history = vec![ev(
            1,
            EventKind::Market,
            json!({"type":"market","symbol":"BTCUSDT","ts_ns":10,"price":42000}),
        )];
        let (setup, tx) = setup(Style::Python, history);
        let stats = Arc::clone(&setup.stats);
        let mut s = Box::pin(event_stream(setup));
        let first = s.next().await.unwrap();
        assert_eq!(
            first,
            &b"id: 1\nevent: market\ndata: {\"price\": 42000, \"symbol\": \"BTCUSDT\", \"ts_ns\": 10, \"type\": \"market\"}\n\n"[..]
        );
        tx.send(ev(
            2,
            EventKind::Error,
            json!({"type":"error","ts_ns":10,"message":"bad_command"}),
        ))
        .unwrap();
        let second = s.next().await.unwrap();
        assert!(second.starts_with(b"id: 2\nevent: error\n"), "{second:?}");
        let third = s.next().await.unwrap();
        assert_eq!(third, &b": keep-alive\n\n"[..]);
        assert_eq!(stats.sse_active(), 1);
        drop(s);
        assert_eq!(stats.sse_active(), 0);
    }

    #[tokio::test]
    async fn cpp_frames_use_cpp_names_retry_and_keepalive_events() {
        use futures_util::StreamExt;
        let history = vec![
            ev(
                4,
                EventKind::Fill,
                json!({"type":"fill","ts_ns":10,"client_order_id":"a","symbol":"BTCUSDT","qty":0.5,"price":42000}),
            ),
            ev(
                5,
                EventKind::Market,
                json!({"type":"market","symbol":"BTCUSDT","ts_ns":10,"price":42000.5}),
            ),
        ];
        let (setup, _tx) = setup(Style::Cpp, history);
        let mut s = Box::pin(event_stream(setup));
        let replay = String::from_utf8(s.next().await.unwrap().to_vec()).unwrap();
        assert_eq!(
            replay,
            "id: 4\nevent: order-update\ndata: {\"type\":\"fill\",\"client_order_id\":\"a\",\"symbol\":\"BTCUSDT\",\"qty\":0.5,\"price\":42000,\"ts_ns\":10}\nretry: 3000\n\n\
             id: 5\nevent: market-data\ndata: {\"symbol\":\"BTCUSDT\",\"last_price\":42000.5,\"last_update_ns\":10}\nretry: 3000\n\n"
        );
        let ka = s.next().await.unwrap();
        assert_eq!(
            ka,
            &b"id: 5\nevent: keepalive\ndata: {}\nretry: 3000\n\n"[..]
        );
    }

    #[tokio::test]
    async fn drops_can_be_limited_to_some_event_kinds() {
        use futures_util::StreamExt;
        let history: Vec<Arc<Event>> = (1..=20)
            .map(|i| {
                if i % 2 == 0 {
                    ev(
                        i,
                        EventKind::Fill,
                        json!({"type":"fill","client_order_id":"a"}),
                    )
                } else {
                    ev(i, EventKind::Error, json!({"type":"error","message":"x"}))
                }
            })
            .collect();
        let (mut setup, _tx) = setup(Style::Python, history);
        setup.drop_fraction = 1.0;
        setup.drop_kinds = vec!["fill".into()];
        let stats = Arc::clone(&setup.stats);
        let mut s = Box::pin(event_stream(setup));
        let replay = String::from_utf8(s.next().await.unwrap().to_vec()).unwrap();
        assert_eq!(replay.matches("event: error").count(), 10);
        assert_eq!(replay.matches("event: fill").count(), 0);
        let snap = stats.snapshot(Default::default());
        assert_eq!(snap.divergence.dropped_sse_events, 10);
    }

    #[tokio::test]
    async fn dropped_events_are_counted() {
        use futures_util::StreamExt;
        let history: Vec<Arc<Event>> = (1..=200)
            .map(|i| {
                ev(
                    i,
                    EventKind::Error,
                    json!({"type":"error","ts_ns":1,"message":"x"}),
                )
            })
            .collect();
        let (mut setup, _tx) = setup(Style::Python, history);
        setup.drop_fraction = 0.3;
        let stats = Arc::clone(&setup.stats);
        let mut s = Box::pin(event_stream(setup));
        let replay = s.next().await.unwrap();
        let sent = replay.windows(4).filter(|w| w == b"id: ").count() as u64;
        let snap = stats.snapshot(Default::default());
        assert_eq!(sent + snap.divergence.dropped_sse_events, 200);
        assert!((30..90).contains(&snap.divergence.dropped_sse_events));
        assert_eq!(snap.sse.events_sent, sent);
    }
}
