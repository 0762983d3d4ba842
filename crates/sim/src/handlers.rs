//! The route handlers. Each aspect that differs between the gateways is a `match` on its
//! [`Style`], so a C++ simulator with a switch turned off answers as Python for that aspect.
//!
//! Interpretations where the C++ source could not be read (veloz-api.md marks them
//! *unverified*) are noted at the handler.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde_json::{Map, Value, json};

use crate::access::Principal;
use crate::app::App;
use crate::audit::{Action, D};
use crate::auth::{JwtHeaderStyle, mint_jwt};
use crate::body::SimBody;
use crate::config::Style;
use crate::engine::{EventKind, OrderRequest, OrderState, Side};
use crate::json::J;
use crate::metrics::process_usage;
use crate::reply::{ApiError, PROMETHEUS, Render, Reply};
use crate::routes::RouteId;
use crate::sse::{SseSetup, event_stream};
use crate::util::{
    iso8601, parse_form, percent_decode, query_param, scan_number_field, scan_order_ids,
    scan_string_field, unix_ms, unix_s,
};

/// A routed, authenticated request.
pub(crate) struct Req<'a> {
    pub route: RouteId,
    pub param: Option<&'a str>,
    pub parts: &'a hyper::http::request::Parts,
    pub body: Bytes,
    pub principal: &'a Principal,
    pub seq: u64,
    pub peer: std::net::SocketAddr,
}

impl Req<'_> {
    fn query(&self, name: &str) -> Option<String> {
        query_param(self.parts.uri.query(), name)
    }

    fn param(&self) -> String {
        percent_decode(self.param.unwrap_or(""), false)
    }

    fn is_json(&self) -> bool {
        self.parts
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("application/json"))
    }
}

fn bad(code: &'static str, message: &'static str) -> Reply {
    ApiError::new(StatusCode::BAD_REQUEST, code, message).into()
}

fn not_found(message: &'static str) -> Reply {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", message).into()
}

/// A Python request body: JSON when the content type says so, else form-encoded.
fn python_fields(r: &Req<'_>) -> Result<Map<String, Value>, Reply> {
    if r.is_json() {
        match serde_json::from_slice::<Value>(&r.body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(bad("bad_json", "Invalid JSON body")),
        }
    } else {
        let text = String::from_utf8_lossy(&r.body);
        Ok(parse_form(&text)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect())
    }
}

/// Python `str(x)` of a JSON value.
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Null => "None".to_owned(),
        other => other.to_string(),
    }
}

/// Python `float(x)` of a JSON value.
fn py_float(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

fn python_order_state(o: &OrderState) -> J {
    J::obj([
        ("client_order_id", J::s(o.client_order_id.clone())),
        ("symbol", J::s(o.symbol.clone())),
        ("side", J::s(o.side.clone())),
        ("order_qty", J::opt_f(o.order_qty)),
        ("limit_price", J::opt_f(o.limit_price)),
        ("venue_order_id", J::opt_s(o.venue_order_id.as_deref())),
        ("status", J::opt_s(o.status.as_deref())),
        ("reason", J::opt_s(o.reason.as_deref())),
        ("executed_qty", J::Float(o.executed_qty)),
        ("avg_price", J::opt_f(o.avg_price)),
        ("last_ts_ns", J::opt_u(o.last_ts_ns)),
    ])
}

/// A number as the engine prints it (what Python re-serialises from an engine line): the
/// engine's snapshots are already rounded to 6 significant digits, and integral values below
/// 1e6 are printed as integers (the same rule as `engine::engine_number`, without its
/// formatting round trip).
fn engine_j(x: f64) -> J {
    if x.fract() == 0.0 && x.abs() < 1e6 {
        J::Int(x as i64)
    } else {
        J::Float(x)
    }
}

impl App {
    /// Answers a routed request.
    pub(crate) fn dispatch(self: &Arc<Self>, r: Req<'_>) -> Reply {
        use RouteId::*;
        match r.route {
            Health => self.health(),
            ApiHealth => self.api_health(),
            Config => self.config_all(),
            ConfigPost => self.config_post(&r),
            ConfigKeyGet => self.config_key_get(&r),
            ConfigKeyPost => self.config_key_post(&r),
            ConfigKeyDelete => self.config_key_delete(&r),
            Market => self.market(r.query("symbol")),
            MarketSymbol => self.market(Some(r.param())),
            OrderPy | OrdersPost => self.place_order(&r),
            OrdersList => {
                self.audit(&r, Action::ListOrders, &[]);
                self.orders_list()
            }
            OrderGet => {
                let id = r.param();
                self.audit(&r, Action::GetOrder, &[("client_order_id", D::S(&id))]);
                match self.cpp.order(&id) {
                    Some(o) => Reply::data(o.to_json()),
                    None => not_found("Order not found"),
                }
            }
            OrderDelete => {
                let id = r.param();
                self.audit(&r, Action::CancelOrder, &[("client_order_id", D::S(&id))]);
                self.engine.cancel(&id);
                Reply::data(J::obj([
                    ("client_order_id", J::s(id)),
                    ("status", J::s("cancel_requested")),
                    ("cancelled_at", J::s(iso8601(unix_s()))),
                ]))
            }
            Cancel => self.cancel(&r),
            OrdersState => {
                self.audit(&r, Action::ListOrdersState, &[]);
                Reply::list(
                    self.engine
                        .orders_state()
                        .iter()
                        .map(python_order_state)
                        .collect(),
                )
            }
            OrderState => match r.query("client_order_id") {
                None => bad("bad_params", "Missing client_order_id"),
                Some(id) => {
                    self.audit(&r, Action::GetOrder, &[("client_order_id", D::S(&id))]);
                    match self.engine.order_state(&id) {
                        Some(o) => Reply::data(python_order_state(&o)),
                        None => not_found("Order not found"),
                    }
                }
            },
            Account => {
                self.audit(&r, Action::Account, &[]);
                self.account()
            }
            // The C++ bridge never has positions.
            Positions => {
                self.audit(&r, Action::Positions, &[]);
                Reply::list(Vec::new())
            }
            Position => not_found("Position not found"),
            ExecPing => Reply::json(J::obj([("ok", J::Bool(true))])),
            Stream => self.stream(&r),
            Login => self.login(&r),
            Refresh => self.refresh(&r),
            Logout => match self.bearer_subject(&r.parts.headers) {
                Ok(_) => Reply::auth_json(StatusCode::OK, J::obj([("ok", J::Bool(true))])),
                Err(e) => e.into(),
            },
            KeysList => self.keys_list(&r),
            KeysCreate => self.keys_create(&r),
            KeysDeleteQuery | KeysDeletePath => self.keys_delete(&r),
            Metrics => Reply::Raw {
                status: StatusCode::OK,
                content_type: PROMETHEUS,
                body: Bytes::from(
                    self.metrics
                        .render(self.stats.sse_active(), self.cfg.metrics.deployment_names),
                ),
                extra: Vec::new(),
            },
            Options => Reply::Empty {
                status: StatusCode::NO_CONTENT,
                extra: match self.aspects.headers {
                    // Python's CORS headers are on every answer already.
                    Style::Python => Vec::new(),
                    Style::Cpp => Render::cpp_preflight_headers(),
                },
            },
            StaticIndex => Reply::Raw {
                status: StatusCode::OK,
                content_type: HeaderValue::from_static("text/html"),
                body: Bytes::from_static(
                    b"<!doctype html>\n<html><head><title>VeloZ</title></head>\
                      <body><h1>VeloZ (simulated gateway)</h1></body></html>\n",
                ),
                extra: Vec::new(),
            },
            Static => self.not_found_page("File not found"),
            NotFound => self.not_found_page("Not Found"),
            Unsupported => match self.aspects.errors {
                Style::Python => Reply::Html {
                    status: StatusCode::NOT_IMPLEMENTED,
                    message: Cow::Owned(format!("Unsupported method ('{}')", r.parts.method)),
                },
                Style::Cpp => ApiError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "not_implemented",
                    "Not implemented",
                )
                .into(),
            },
            SimStats => self.stats_reply(),
        }
    }

    /// Unknown routes: Python's HTML error page, or a JSON 404 (the C++ router's answer is
    /// unverified; `{"error":"Not found"}` is the simulator's choice).
    fn not_found_page(&self, python_message: &'static str) -> Reply {
        match self.aspects.errors {
            Style::Python => Reply::Html {
                status: StatusCode::NOT_FOUND,
                message: Cow::Borrowed(python_message),
            },
            Style::Cpp => not_found("Not found"),
        }
    }

    /// The injected 5xx answer.
    pub(crate) fn injected_error(&self, status: u16) -> Reply {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let reason = status.canonical_reason().unwrap_or("Internal Server Error");
        match self.aspects.errors {
            Style::Python => Reply::Html {
                status,
                message: Cow::Borrowed(reason),
            },
            Style::Cpp => ApiError::new(status, "internal_error", reason).into(),
        }
    }

    pub(crate) fn stats_reply(&self) -> Reply {
        let snap = self.stats.snapshot(self.engine.injected());
        Reply::Raw {
            status: StatusCode::OK,
            content_type: crate::reply::JSON_CPP,
            body: Bytes::from(serde_json::to_vec(&snap).unwrap_or_default()),
            extra: Vec::new(),
        }
    }

    fn health(&self) -> Reply {
        Reply::json(match self.aspects.shapes {
            Style::Python => J::obj([("ok", J::Bool(true))]),
            Style::Cpp => J::obj([
                ("status", J::s("ok")),
                ("timestamp", J::s(iso8601(unix_s()))),
            ]),
        })
    }

    fn api_health(&self) -> Reply {
        let memory_mb = process_usage().map_or(0.0, |(_, rss)| rss as f64 / 1024.0 / 1024.0);
        Reply::json(J::obj([
            ("status", J::s("ok")),
            ("timestamp", J::s(iso8601(unix_s()))),
            (
                "engine",
                J::obj([
                    ("running", J::Bool(true)),
                    ("uptime_seconds", J::UInt(self.started.elapsed().as_secs())),
                    ("orders_processed", J::UInt(self.engine.orders_processed())),
                ]),
            ),
            ("memory_mb", J::Float(memory_mb)),
            ("version", J::s("1.0.0")),
        ]))
    }

    /// Python: the fixed §1.1 object. C++: the config handler's store, enveloped (its real
    /// shape is unverified).
    fn config_all(&self) -> Reply {
        match self.aspects.shapes {
            Style::Python => Reply::json(J::obj([
                ("market_source", J::s("sim")),
                ("market_symbol", J::s(self.cfg.engine.symbol.clone())),
                ("binance_base_url", J::Null),
                ("execution_mode", J::s("sim_engine")),
                ("binance_trade_enabled", J::Bool(false)),
                ("binance_trade_base_url", J::Null),
                ("binance_user_stream_connected", J::Bool(false)),
                ("auth_enabled", J::Bool(self.cfg.auth.enabled)),
            ])),
            Style::Cpp => Reply::data(J::Obj(
                self.cpp
                    .config_all()
                    .into_iter()
                    .map(|(k, v)| (Cow::Owned(k), v))
                    .collect(),
            )),
        }
    }

    fn config_post(&self, r: &Req<'_>) -> Reply {
        match serde_json::from_slice::<Value>(&r.body) {
            Ok(Value::Object(map)) => {
                for (k, v) in &map {
                    self.cpp.config_set(k, J::from_value(v));
                }
                self.config_all()
            }
            _ => bad("bad_json", "Invalid JSON body"),
        }
    }

    fn config_key_get(&self, r: &Req<'_>) -> Reply {
        let key = r.param();
        match self.cpp.config_get(&key) {
            Some(v) => Reply::data(J::obj([("key", J::s(key)), ("value", v)])),
            None => not_found("Configuration key not found"),
        }
    }

    fn config_key_post(&self, r: &Req<'_>) -> Reply {
        let key = r.param();
        let value = match serde_json::from_slice::<Value>(&r.body) {
            Ok(Value::Object(map)) if map.contains_key("value") => J::from_value(&map["value"]),
            _ => return bad("bad_params", "Request body must be {\"value\": ...}"),
        };
        self.cpp.config_set(&key, value.clone());
        Reply::data(J::obj([("key", J::s(key)), ("value", value)]))
    }

    fn config_key_delete(&self, r: &Req<'_>) -> Reply {
        let key = r.param();
        if self.cpp.config_delete(&key) {
            Reply::data(J::obj([("key", J::s(key)), ("deleted", J::Bool(true))]))
        } else {
            not_found("Configuration key not found")
        }
    }

    /// Python: `{symbol, price, ts_ns}` (ignores `?symbol`). C++: the bridge's market snapshot
    /// for the asked symbol; an unknown symbol gets the default snapshot (zero price, steady-
    /// clock timestamps). Bid/ask fields are left out: the simulated engine quotes none.
    fn market(&self, symbol: Option<String>) -> Reply {
        let m = self.engine.market();
        match self.aspects.shapes {
            Style::Python => Reply::json(J::obj([
                (
                    "symbol",
                    J::s(
                        m.as_ref()
                            .map_or_else(|| self.cfg.engine.symbol.clone(), |m| m.symbol.clone()),
                    ),
                ),
                ("price", m.as_ref().map_or(J::Null, |m| engine_j(m.price))),
                ("ts_ns", J::opt_u(m.as_ref().map(|m| m.ts_ns))),
            ])),
            Style::Cpp => {
                let symbol = symbol.unwrap_or_else(|| self.cfg.engine.symbol.clone());
                let (price, ts) = match &m {
                    Some(m) if m.symbol == symbol => (m.price, m.ts_ns),
                    _ => (0.0, self.steady_ns()),
                };
                Reply::json(J::obj([
                    ("symbol", J::s(symbol)),
                    ("last_price", J::Float(price)),
                    ("volume_24h", J::Float(0.0)),
                    ("last_trade_id", J::UInt(0)),
                    ("last_update_ns", J::UInt(ts)),
                    ("exchange_ts_ns", J::UInt(ts)),
                ]))
            }
        }
    }

    fn place_order(&self, r: &Req<'_>) -> Reply {
        match self.aspects.shapes {
            Style::Python => {
                let fields = match python_fields(r) {
                    Ok(f) => f,
                    Err(reply) => return reply,
                };
                let side = fields
                    .get("side")
                    .map_or_else(|| "BUY".to_owned(), py_str)
                    .to_uppercase();
                let symbol = fields
                    .get("symbol")
                    .map_or_else(|| "BTCUSDT".to_owned(), py_str);
                let qty = py_float(fields.get("qty"));
                let price = py_float(fields.get("price"));
                let (Some(side), Some(qty), Some(price)) = (
                    Side::parse(&side).filter(|_| side == "BUY" || side == "SELL"),
                    qty.filter(|q| *q > 0.0),
                    price.filter(|p| *p > 0.0),
                ) else {
                    return bad("bad_params", "Invalid order parameters");
                };
                let client_order_id = match fields.get("client_order_id") {
                    Some(v) if !py_str(v).is_empty() && !v.is_null() => py_str(v),
                    _ => format!("web-{}", unix_ms()),
                };
                self.audit(
                    r,
                    Action::PlaceOrder,
                    &[
                        ("client_order_id", D::S(&client_order_id)),
                        ("symbol", D::S(&symbol)),
                        ("side", D::S(side.as_str())),
                        ("qty", D::N(qty)),
                        ("price", D::N(price)),
                    ],
                );
                self.engine.place(OrderRequest {
                    side,
                    symbol,
                    qty,
                    price,
                    client_order_id: client_order_id.clone(),
                });
                Reply::data(J::obj([
                    ("ok", J::Bool(true)),
                    ("client_order_id", J::s(client_order_id)),
                ]))
            }
            Style::Cpp => self.place_order_cpp(r),
        }
    }

    /// The C++ order handler: hand-scanned fields, its validation order and sentences.
    fn place_order_cpp(&self, r: &Req<'_>) -> Reply {
        let text = String::from_utf8_lossy(&r.body);
        let missing = "Invalid order request: missing required fields";
        let (Some(side), Some(symbol), Some(qty)) = (
            scan_string_field(&text, "side"),
            scan_string_field(&text, "symbol"),
            scan_number_field(&text, "qty"),
        ) else {
            return bad("bad_params", missing);
        };
        let price = scan_number_field(&text, "price").unwrap_or(0.0);
        let side = match side.as_str() {
            "buy" => "BUY".to_owned(),
            "sell" => "SELL".to_owned(),
            _ => side,
        };
        let checks: [(bool, &'static str); 6] = [
            (
                side != "BUY" && side != "SELL",
                "Invalid order side: must be BUY or SELL",
            ),
            (symbol.is_empty(), "Symbol cannot be empty"),
            (qty <= 0.0, "Order quantity must be positive"),
            (!qty.is_finite(), "Order quantity must be a finite number"),
            (price < 0.0, "Order price cannot be negative"),
            (!price.is_finite(), "Order price must be a finite number"),
        ];
        if let Some((_, message)) = checks.iter().find(|(failed, _)| *failed) {
            return bad("bad_params", message);
        }
        let client_order_id = scan_string_field(&text, "client_order_id").unwrap_or_else(|| {
            format!(
                "veloz_{}_{}",
                self.steady_ns(),
                self.cpp.next_order_number()
            )
        });
        self.audit(
            r,
            Action::PlaceOrder,
            &[
                ("client_order_id", D::S(&client_order_id)),
                ("symbol", D::S(&symbol)),
                ("side", D::S(&side)),
                ("qty", D::N(qty)),
                ("price", D::N(price)),
            ],
        );
        let engine_side = if side == "BUY" { Side::Buy } else { Side::Sell };
        self.engine.place(OrderRequest {
            side: engine_side,
            symbol: symbol.clone(),
            qty,
            price,
            client_order_id: client_order_id.clone(),
        });
        Reply::data(J::obj([
            ("client_order_id", J::s(client_order_id)),
            ("symbol", J::s(symbol)),
            ("side", J::s(side)),
            ("qty", J::Float(qty)),
            ("price", J::Float(price)),
            ("status", J::s("new")),
            ("created_at", J::s(iso8601(unix_s()))),
        ]))
    }

    fn cancel(&self, r: &Req<'_>) -> Reply {
        match self.aspects.paths {
            Style::Python => {
                let fields = match python_fields(r) {
                    Ok(f) => f,
                    Err(reply) => return reply,
                };
                let id = match fields.get("client_order_id").map(py_str) {
                    Some(id) if !id.is_empty() => id,
                    _ => return bad("bad_params", "Missing client_order_id"),
                };
                if self.audit.is_some() {
                    let symbol = fields.get("symbol").map(py_str).unwrap_or_default();
                    let details = [("client_order_id", D::S(&id)), ("symbol", D::S(&symbol))];
                    self.audit(r, Action::CancelOrder, &details);
                }
                // An unknown id is still 200: the engine's rejection arrives as an event.
                self.engine.cancel(&id);
                Reply::data(J::obj([
                    ("ok", J::Bool(true)),
                    ("client_order_id", J::s(id)),
                ]))
            }
            Style::Cpp => {
                let ids = scan_order_ids(&String::from_utf8_lossy(&r.body));
                if ids.is_empty() {
                    return bad("bad_params", "No order IDs provided");
                }
                if self.audit.is_some() {
                    let joined = ids.join(",");
                    let count = ids.len() as f64;
                    let details = [("order_ids", D::S(&joined)), ("count", D::N(count))];
                    self.audit(r, Action::BulkCancel, &details);
                }
                for id in &ids {
                    self.engine.cancel(id);
                }
                Reply::data(J::obj([
                    ("cancelled_count", J::UInt(ids.len() as u64)),
                    ("cancelled_at", J::s(iso8601(unix_s()))),
                ]))
            }
        }
    }

    /// Python: the last 200 order_update/fill/error lines with `_id`. C++: the order cache.
    fn orders_list(&self) -> Reply {
        match self.aspects.shapes {
            Style::Python => Reply::list(
                self.engine
                    .recent(
                        &[EventKind::OrderUpdate, EventKind::Fill, EventKind::Error],
                        200,
                    )
                    .iter()
                    .map(|ev| {
                        let mut item = J::from_value(&Value::Object(ev.line.clone()));
                        item.push("_id", J::UInt(ev.id));
                        item
                    })
                    .collect(),
            ),
            Style::Cpp => Reply::list(self.cpp.orders().iter().map(|o| o.to_json()).collect()),
        }
    }

    /// Python: the last account event. C++: asset names with zero balances.
    fn account(&self) -> Reply {
        match self.aspects.shapes {
            Style::Python => {
                let acc = self.engine.account();
                let balances = acc.as_ref().map_or_else(Vec::new, |a| {
                    a.balances
                        .iter()
                        .map(|b| {
                            J::obj([
                                ("asset", J::s(b.asset.clone())),
                                ("free", engine_j(b.free)),
                                ("locked", engine_j(b.locked)),
                            ])
                        })
                        .collect()
                });
                Reply::data(J::obj([
                    ("ts_ns", J::opt_u(acc.as_ref().map(|a| a.ts_ns))),
                    ("balances", J::Arr(balances)),
                ]))
            }
            Style::Cpp => {
                let acc = self.cpp.account();
                let (assets, ts) = match acc {
                    Some(a) => (a.assets, a.last_update_ns),
                    None => (Vec::new(), self.steady_ns()),
                };
                Reply::data(J::obj([
                    ("total_equity", J::Float(0.0)),
                    ("available_balance", J::Float(0.0)),
                    ("unrealized_pnl", J::Float(0.0)),
                    ("open_position_count", J::UInt(0)),
                    ("total_position_notional", J::Float(0.0)),
                    ("last_update_ns", J::UInt(ts)),
                    (
                        "balances",
                        J::Obj(
                            assets
                                .into_iter()
                                .map(|a| (Cow::Owned(a), J::Float(0.0)))
                                .collect(),
                        ),
                    ),
                ]))
            }
        }
    }

    fn stream(self: &Arc<Self>, r: &Req<'_>) -> Reply {
        let style = self.aspects.sse;
        if let Some(max) = self.cfg.sse.max_streams
            && self.stats.sse_active() >= max as u64
        {
            self.stats.sse_refused();
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                "Maximum SSE connections reached",
            )
            .into();
        }
        let query_last = r
            .query("last_id")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let after = match style {
            // Python replays the whole ring unless `?last_id` says otherwise.
            Style::Python => query_last,
            // C++ replays only after a given id; with none, live events only.
            Style::Cpp => r
                .parts
                .headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .or(query_last)
                .or(Some(u64::MAX)),
        };
        let (history, rx) = self.engine.subscribe_after(after);
        let setup = SseSetup {
            style,
            json: self.json,
            keepalive: self.cfg.sse.keepalive,
            retry_ms: self.cfg.sse.retry_ms,
            drop_fraction: self.cfg.divergence.dropped_sse_fraction,
            drop_kinds: self.cfg.divergence.dropped_sse_kinds.clone(),
            rng: crate::faults::request_rng(self.seed ^ 0x5353_4500, r.seq),
            history,
            rx,
            shutdown: self.shutdown.clone(),
            stats: Arc::clone(&self.stats),
        };
        Reply::Sse {
            content_type: match style {
                Style::Python => HeaderValue::from_static("text/event-stream; charset=utf-8"),
                Style::Cpp => HeaderValue::from_static("text/event-stream"),
            },
            body: SimBody::Stream(Box::pin(event_stream(setup))),
        }
    }

    fn login(&self, r: &Req<'_>) -> Reply {
        let now = unix_s();
        let expiry = self.cfg.auth.token_expiry.as_secs();
        let password_ok = |given: &str| {
            self.cfg
                .auth
                .admin_password
                .as_deref()
                .is_some_and(|p| p == given)
        };
        let body = serde_json::from_slice::<Value>(&r.body).ok();
        let field = |name: &str| {
            body.as_ref()
                .and_then(|b| b.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match self.aspects.login {
            Style::Python => {
                if !matches!(body, Some(Value::Object(_))) {
                    return ApiError::auth(StatusCode::BAD_REQUEST, "bad_json").into();
                }
                let (Some(user), Some(password)) = (field("user_id"), field("password")) else {
                    return ApiError::auth(StatusCode::BAD_REQUEST, "bad_params").into();
                };
                if user != "admin" || !password_ok(&password) {
                    self.audit_login(r, &user, false);
                    return ApiError::auth(StatusCode::UNAUTHORIZED, "invalid_credentials").into();
                }
                self.audit_login(r, &user, true);
                let token = mint_jwt(
                    JwtHeaderStyle::Python,
                    &json!({"sub": user, "iat": now, "exp": now + expiry}),
                    &self.jwt_secret,
                );
                Reply::auth_json(
                    StatusCode::OK,
                    J::obj([("token", J::s(token)), ("token_type", J::s("Bearer"))]),
                )
            }
            Style::Cpp => {
                if body.is_none() {
                    return ApiError::auth(StatusCode::BAD_REQUEST, "invalid_request").into();
                }
                let (Some(user), Some(password)) = (field("username"), field("password")) else {
                    return ApiError::auth(StatusCode::BAD_REQUEST, "invalid_credentials_format")
                        .into();
                };
                // Any user name goes, with the admin password.
                if !password_ok(&password) {
                    self.audit_login(r, &user, false);
                    return ApiError::auth(StatusCode::UNAUTHORIZED, "invalid_credentials").into();
                }
                self.audit_login(r, &user, true);
                let access = self.access_token(&user, now);
                let jti: String = {
                    let mut b = [0u8; 16];
                    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
                    hex::encode(b)
                };
                let refresh = mint_jwt(
                    JwtHeaderStyle::Compact,
                    &json!({"sub": user, "iat": now,
                            "exp": now + self.cfg.auth.refresh_expiry.as_secs(),
                            "type": "refresh", "jti": jti}),
                    &self.jwt_secret,
                );
                Reply::auth_json(
                    StatusCode::OK,
                    J::obj([
                        ("access_token", J::s(access)),
                        ("refresh_token", J::s(refresh)),
                        ("expires_in", J::UInt(expiry)),
                        ("token_type", J::s("Bearer")),
                    ]),
                )
            }
        }
    }

    fn audit_login(&self, r: &Req<'_>, user: &str, ok: bool) {
        if ok {
            self.audit_event(Action::LoginSuccess, user, Some(r.peer.ip()), &[]);
        } else {
            let reason = [("reason", D::S("invalid_credentials"))];
            self.audit_event(Action::LoginFailed, user, Some(r.peer.ip()), &reason);
        }
    }

    fn access_token(&self, user: &str, now: u64) -> String {
        let exp = now + self.cfg.auth.token_expiry.as_secs();
        mint_jwt(
            JwtHeaderStyle::Compact,
            &json!({"sub": user, "iat": now, "exp": exp, "type": "access"}),
            &self.jwt_secret,
        )
    }

    /// C++ `POST /api/auth/refresh` (the refresh token must say `type: refresh`).
    fn refresh(&self, r: &Req<'_>) -> Reply {
        let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
            return ApiError::auth(StatusCode::BAD_REQUEST, "invalid_request").into();
        };
        let Some(token) = body.get("refresh_token").and_then(Value::as_str) else {
            return ApiError::auth(StatusCode::BAD_REQUEST, "missing_refresh_token").into();
        };
        let now = unix_s();
        let claims = crate::auth::verify_jwt(token, &self.jwt_secret, now, &self.jwt_rules);
        let user = match claims {
            Ok(c) if c.get("type").and_then(Value::as_str) == Some("refresh") => c
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            _ => return ApiError::auth(StatusCode::UNAUTHORIZED, "invalid_token").into(),
        };
        Reply::auth_json(
            StatusCode::OK,
            J::obj([
                ("access_token", J::s(self.access_token(&user, now))),
                ("expires_in", J::UInt(self.cfg.auth.token_expiry.as_secs())),
            ]),
        )
    }

    /// The user the key handlers act for: C++ handlers demand their own Bearer token.
    fn key_user(&self, r: &Req<'_>) -> Result<String, Reply> {
        match self.aspects.auth {
            Style::Cpp => self.bearer_subject(&r.parts.headers).map_err(Reply::from),
            Style::Python => Ok(r.principal.user_id.clone()),
        }
    }

    fn keys_list(&self, r: &Req<'_>) -> Reply {
        let user = match self.key_user(r) {
            Ok(u) => u,
            Err(reply) => return reply,
        };
        self.audit(r, Action::KeyList, &[]);
        let keys = self.keys.list();
        match self.aspects.shapes {
            Style::Python => Reply::json(J::obj([(
                "keys",
                J::Arr(
                    keys.iter()
                        .map(|k| {
                            J::obj([
                                ("key_id", J::s(k.key_id.clone())),
                                ("user_id", J::s(k.user_id.clone())),
                                ("name", J::s(k.name.clone())),
                                ("created_at", J::UInt(k.created_at)),
                                ("last_used_at", J::opt_u(k.last_used_at)),
                                ("revoked", J::Bool(k.revoked)),
                                (
                                    "permissions",
                                    J::Arr(k.permissions.iter().map(|p| J::s(p.clone())).collect()),
                                ),
                            ])
                        })
                        .collect(),
                ),
            )])),
            // C++ lists the caller's keys, times as local-time ISO strings suffixed `Z`
            // (the simulator uses UTC), and an unused key's `last_used` as the epoch.
            Style::Cpp => Reply::auth_json(
                StatusCode::OK,
                J::obj([(
                    "keys",
                    J::Arr(
                        keys.iter()
                            .filter(|k| self.aspects.auth == Style::Python || k.user_id == user)
                            .map(|k| {
                                J::obj([
                                    ("key_id", J::s(k.key_id.clone())),
                                    ("user_id", J::s(k.user_id.clone())),
                                    ("name", J::s(k.name.clone())),
                                    ("created_at", J::s(iso8601(k.created_at))),
                                    ("last_used", J::s(iso8601(k.last_used_at.unwrap_or(0)))),
                                    ("revoked", J::Bool(k.revoked)),
                                    (
                                        "permissions",
                                        J::Arr(
                                            k.permissions.iter().map(|p| J::s(p.clone())).collect(),
                                        ),
                                    ),
                                ])
                            })
                            .collect(),
                    ),
                )]),
            ),
        }
    }

    fn keys_create(&self, r: &Req<'_>) -> Reply {
        let user = match self.key_user(r) {
            Ok(u) => u,
            Err(reply) => return reply,
        };
        let body = serde_json::from_slice::<Value>(&r.body).ok();
        let name = body
            .as_ref()
            .and_then(|b| b.get("name"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        let permissions: Option<Vec<String>> = body
            .as_ref()
            .and_then(|b| b.get("permissions"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            });
        match self.aspects.shapes {
            Style::Python => {
                if !matches!(body, Some(Value::Object(_))) {
                    return bad("bad_json", "Invalid JSON body");
                }
                let Some(name) = name else {
                    return bad("bad_params", "Missing key name");
                };
                let perms = permissions.unwrap_or_else(|| vec!["read".to_owned()]);
                let created = self.keys.create(&user, &name, perms, unix_s());
                let details = [("key_id", D::S(&created.key_id)), ("name", D::S(&name))];
                self.audit(r, Action::KeyCreate, &details);
                Reply::Json {
                    status: StatusCode::CREATED,
                    body: J::obj([
                        ("key_id", J::s(created.key_id)),
                        ("api_key", J::s(created.api_key)),
                        (
                            "message",
                            J::s("Store this key securely; it will not be shown again."),
                        ),
                    ]),
                    auth_handler: false,
                }
            }
            Style::Cpp => {
                if body.is_none() {
                    return ApiError::auth(StatusCode::BAD_REQUEST, "invalid_request").into();
                }
                let (Some(name), Some(perms)) = (name, permissions) else {
                    return ApiError::auth(StatusCode::BAD_REQUEST, "missing_required_fields")
                        .into();
                };
                let created = self.keys.create(&user, &name, perms, unix_s());
                let details = [("key_id", D::S(&created.key_id)), ("name", D::S(&name))];
                self.audit(r, Action::KeyCreate, &details);
                Reply::auth_json(
                    StatusCode::OK,
                    J::obj([
                        ("key_id", J::s(created.key_id)),
                        ("raw_key", J::s(created.api_key)),
                        (
                            "message",
                            J::s("Save this key - it will not be shown again"),
                        ),
                    ]),
                )
            }
        }
    }

    fn keys_delete(&self, r: &Req<'_>) -> Reply {
        if let Err(reply) = self.key_user(r) {
            return reply;
        }
        let id = match r.route {
            RouteId::KeysDeletePath => Some(r.param()),
            _ => r.query("key_id"),
        };
        let Some(id) = id.filter(|i| !i.is_empty()) else {
            return bad("bad_params", "Missing key_id");
        };
        let revoked = self.keys.revoke(&id);
        if revoked {
            self.audit(r, Action::KeyRevoke, &[("key_id", D::S(&id))]);
        }
        match self.aspects.shapes {
            Style::Python if revoked => {
                Reply::json(J::obj([("ok", J::Bool(true)), ("key_id", J::s(id))]))
            }
            Style::Python => not_found("API key not found"),
            Style::Cpp if revoked => {
                Reply::auth_json(StatusCode::OK, J::obj([("ok", J::Bool(true))]))
            }
            Style::Cpp => ApiError::auth(StatusCode::NOT_FOUND, "key_not_found").into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{engine_number, round_sig6};

    #[test]
    fn engine_j_matches_the_engine_number_rule() {
        for x in [
            42000.0,
            42142.4,
            0.01,
            1.0,
            999_999.0,
            1_000_000.0,
            1_234_567.0,
            -3.0,
            0.0,
        ] {
            let x = round_sig6(x);
            assert_eq!(engine_j(x), J::from_value(&engine_number(x)), "{x}");
        }
    }

    #[test]
    fn python_conversions() {
        assert_eq!(py_str(&json!("buy")), "buy");
        assert_eq!(py_str(&json!(true)), "True");
        assert_eq!(py_str(&json!(null)), "None");
        assert_eq!(py_float(Some(&json!(" 0.5 "))), Some(0.5));
        assert_eq!(py_float(Some(&json!(2))), Some(2.0));
        assert_eq!(py_float(Some(&json!([1]))), None);
        assert_eq!(py_float(None), None);
    }
}
