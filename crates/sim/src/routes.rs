//! Request routing: `(method, path)` → [`RouteId`], by `match`, for each route table.
//!
//! There are two route tables (veloz-api.md §1): the Python gateway's and the C++ gateway's.
//! Which one a simulator serves is the `paths` aspect. Every route has a template such as
//! `GET /api/orders/{id}`; statistics, fault rules and divergence rules are keyed by
//! `METHOD template`. Requests that match nothing get a pseudo-template: `(static)` for the
//! Python gateway's static-file fallback, `(unmatched)` for other unknown paths,
//! `(unsupported)` for methods the Python server has no handler for, and `*` for `OPTIONS`.

use hyper::Method;

use crate::config::Style;

/// Every route either gateway (or the simulator itself) serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteId {
    Health,
    ApiHealth,
    Config,
    ConfigPost,
    ConfigKeyGet,
    ConfigKeyPost,
    ConfigKeyDelete,
    Market,
    MarketSymbol,
    OrderPy,
    OrdersPost,
    OrdersList,
    OrderGet,
    OrderDelete,
    Cancel,
    OrdersState,
    OrderState,
    Account,
    Positions,
    Position,
    ExecPing,
    Stream,
    Login,
    Refresh,
    Logout,
    KeysList,
    KeysCreate,
    KeysDeleteQuery,
    KeysDeletePath,
    Metrics,
    Options,
    StaticIndex,
    Static,
    NotFound,
    Unsupported,
    SimStats,
}

/// Number of [`RouteId`] variants.
pub const ROUTE_COUNT: usize = RouteId::SimStats as usize + 1;

/// Every route, in declaration order.
pub const ALL_ROUTES: [RouteId; ROUTE_COUNT] = [
    RouteId::Health,
    RouteId::ApiHealth,
    RouteId::Config,
    RouteId::ConfigPost,
    RouteId::ConfigKeyGet,
    RouteId::ConfigKeyPost,
    RouteId::ConfigKeyDelete,
    RouteId::Market,
    RouteId::MarketSymbol,
    RouteId::OrderPy,
    RouteId::OrdersPost,
    RouteId::OrdersList,
    RouteId::OrderGet,
    RouteId::OrderDelete,
    RouteId::Cancel,
    RouteId::OrdersState,
    RouteId::OrderState,
    RouteId::Account,
    RouteId::Positions,
    RouteId::Position,
    RouteId::ExecPing,
    RouteId::Stream,
    RouteId::Login,
    RouteId::Refresh,
    RouteId::Logout,
    RouteId::KeysList,
    RouteId::KeysCreate,
    RouteId::KeysDeleteQuery,
    RouteId::KeysDeletePath,
    RouteId::Metrics,
    RouteId::Options,
    RouteId::StaticIndex,
    RouteId::Static,
    RouteId::NotFound,
    RouteId::Unsupported,
    RouteId::SimStats,
];

/// Method names in the order of [`method_index`].
pub const METHOD_NAMES: [&str; METHOD_COUNT] = [
    "GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "OTHER",
];

/// Number of method slots (the last one holds every other method).
pub const METHOD_COUNT: usize = 8;

/// Slot of a method in per-route tables.
pub fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::DELETE => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

impl RouteId {
    /// The method a route is bound to; `None` for the catch-all routes.
    pub fn method(self) -> Option<&'static str> {
        use RouteId::*;
        Some(match self {
            Health | ApiHealth | Config | ConfigKeyGet | Market | MarketSymbol | OrdersList
            | OrderGet | OrdersState | OrderState | Account | Positions | Position | ExecPing
            | Stream | KeysList | Metrics | StaticIndex | SimStats => "GET",
            ConfigPost | ConfigKeyPost | OrderPy | OrdersPost | Cancel | Login | Refresh
            | Logout | KeysCreate => "POST",
            ConfigKeyDelete | OrderDelete | KeysDeleteQuery | KeysDeletePath => "DELETE",
            Options => "OPTIONS",
            Static | NotFound | Unsupported => return None,
        })
    }

    /// The path part of the route's template.
    pub fn path_template(self) -> &'static str {
        use RouteId::*;
        match self {
            Health => "/health",
            ApiHealth => "/api/health",
            Config | ConfigPost => "/api/config",
            ConfigKeyGet | ConfigKeyPost | ConfigKeyDelete => "/api/config/{key}",
            Market => "/api/market",
            MarketSymbol => "/api/market/{symbol}",
            OrderPy => "/api/order",
            OrdersPost | OrdersList => "/api/orders",
            OrderGet | OrderDelete => "/api/orders/{id}",
            Cancel => "/api/cancel",
            OrdersState => "/api/orders_state",
            OrderState => "/api/order_state",
            Account => "/api/account",
            Positions => "/api/account/positions",
            Position => "/api/account/positions/{symbol}",
            ExecPing => "/api/execution/ping",
            Stream => "/api/stream",
            Login => "/api/auth/login",
            Refresh => "/api/auth/refresh",
            Logout => "/api/auth/logout",
            KeysList | KeysCreate | KeysDeleteQuery => "/api/auth/keys",
            KeysDeletePath => "/api/auth/keys/{id}",
            Metrics => "/metrics",
            Options => "*",
            StaticIndex => "/",
            Static => "(static)",
            NotFound => "(unmatched)",
            Unsupported => "(unsupported)",
            SimStats => "/__sim/stats",
        }
    }

    /// Whether the route table `paths` can produce this route.
    pub fn in_table(self, paths: Style) -> bool {
        use RouteId::*;
        match self {
            Health | Config | Market | OrdersList | Cancel | Account | Stream | Login
            | KeysList | KeysCreate | Options | NotFound | SimStats => true,
            OrderPy | OrdersState | OrderState | ExecPing | KeysDeleteQuery | StaticIndex
            | Static | Unsupported => paths == Style::Python,
            ApiHealth | ConfigPost | ConfigKeyGet | ConfigKeyPost | ConfigKeyDelete
            | MarketSymbol | OrdersPost | OrderGet | OrderDelete | Positions | Position
            | Refresh | Logout | KeysDeletePath | Metrics => paths == Style::Cpp,
        }
    }
}

/// Slot of `(route, method)` in per-route tables.
pub fn slot(route: RouteId, method_idx: usize) -> usize {
    route as usize * METHOD_COUNT + method_idx
}

/// Number of `(route, method)` slots.
pub const SLOT_COUNT: usize = ROUTE_COUNT * METHOD_COUNT;

/// The `METHOD template` keys a route table can produce, with their slots (for validating
/// route patterns and for precomputing per-route plans).
pub fn table_keys(paths: Style) -> Vec<(String, usize)> {
    let mut keys = Vec::new();
    for route in ALL_ROUTES {
        if !route.in_table(paths) || route == RouteId::SimStats {
            continue;
        }
        match route.method() {
            Some(m) => {
                let idx = METHOD_NAMES.iter().position(|n| *n == m).unwrap_or(7);
                keys.push((format!("{m} {}", route.path_template()), slot(route, idx)));
            }
            None => {
                for (idx, m) in METHOD_NAMES.iter().enumerate() {
                    if catch_all_method_possible(route, idx, paths) {
                        keys.push((format!("{m} {}", route.path_template()), slot(route, idx)));
                    }
                }
            }
        }
    }
    keys
}

/// Which methods can land on a catch-all route.
fn catch_all_method_possible(route: RouteId, method_idx: usize, paths: Style) -> bool {
    match (route, paths) {
        // GET and HEAD fall back to static files in the Python server.
        (RouteId::Static, _) => method_idx == 0 || method_idx == 5,
        (RouteId::NotFound, Style::Python) => method_idx == 1 || method_idx == 2,
        (RouteId::NotFound, Style::Cpp) => method_idx != 6,
        (RouteId::Unsupported, _) => matches!(method_idx, 3 | 4 | 7),
        _ => false,
    }
}

/// A routed request: the route and its path parameter (`{id}`, `{key}`, `{symbol}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved<'a> {
    pub route: RouteId,
    pub param: Option<&'a str>,
}

fn plain(route: RouteId) -> Resolved<'static> {
    Resolved { route, param: None }
}

/// `rest` must be one non-empty path segment.
fn segment(rest: &str) -> Option<&str> {
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// Routes a request in the given route table.
pub fn resolve<'a>(method: &Method, path: &'a str, paths: Style) -> Resolved<'a> {
    if path == "/__sim/stats" && *method == Method::GET {
        return plain(RouteId::SimStats);
    }
    if *method == Method::OPTIONS {
        return plain(RouteId::Options);
    }
    match paths {
        Style::Python => resolve_python(method, path),
        Style::Cpp => resolve_cpp(method, path),
    }
}

fn resolve_python<'a>(method: &Method, path: &'a str) -> Resolved<'a> {
    use RouteId::*;
    match *method {
        Method::GET => plain(match path {
            "/health" => Health,
            "/api/config" => Config,
            "/api/market" => Market,
            "/api/orders" => OrdersList,
            "/api/orders_state" => OrdersState,
            "/api/order_state" => OrderState,
            "/api/account" => Account,
            "/api/execution/ping" => ExecPing,
            "/api/stream" => Stream,
            "/api/auth/keys" => KeysList,
            "/" => StaticIndex,
            _ => Static,
        }),
        Method::HEAD => plain(Static),
        Method::POST => plain(match path {
            "/api/order" => OrderPy,
            "/api/cancel" => Cancel,
            "/api/auth/login" => Login,
            "/api/auth/keys" => KeysCreate,
            _ => NotFound,
        }),
        Method::DELETE => plain(match path {
            "/api/auth/keys" => KeysDeleteQuery,
            _ => NotFound,
        }),
        _ => plain(Unsupported),
    }
}

fn resolve_cpp<'a>(method: &Method, path: &'a str) -> Resolved<'a> {
    use RouteId::*;
    let with = |route, rest: &'a str| match segment(rest) {
        Some(p) => Resolved {
            route,
            param: Some(p),
        },
        None => plain(NotFound),
    };
    match *method {
        Method::GET => match path {
            "/health" => plain(Health),
            "/api/health" => plain(ApiHealth),
            "/api/config" => plain(Config),
            "/api/market" => plain(Market),
            "/api/orders" => plain(OrdersList),
            "/api/account" => plain(Account),
            "/api/account/positions" => plain(Positions),
            "/api/stream" => plain(Stream),
            "/api/auth/keys" => plain(KeysList),
            "/metrics" => plain(Metrics),
            _ => {
                if let Some(rest) = path.strip_prefix("/api/config/") {
                    with(ConfigKeyGet, rest)
                } else if let Some(rest) = path.strip_prefix("/api/market/") {
                    with(MarketSymbol, rest)
                } else if let Some(rest) = path.strip_prefix("/api/orders/") {
                    with(OrderGet, rest)
                } else if let Some(rest) = path.strip_prefix("/api/account/positions/") {
                    with(Position, rest)
                } else {
                    plain(NotFound)
                }
            }
        },
        Method::POST => match path {
            "/api/config" => plain(ConfigPost),
            "/api/orders" => plain(OrdersPost),
            "/api/cancel" => plain(Cancel),
            "/api/auth/login" => plain(Login),
            "/api/auth/refresh" => plain(Refresh),
            "/api/auth/logout" => plain(Logout),
            "/api/auth/keys" => plain(KeysCreate),
            _ => match path.strip_prefix("/api/config/") {
                Some(rest) => with(ConfigKeyPost, rest),
                None => plain(NotFound),
            },
        },
        Method::DELETE => {
            if let Some(rest) = path.strip_prefix("/api/orders/") {
                with(OrderDelete, rest)
            } else if let Some(rest) = path.strip_prefix("/api/auth/keys/") {
                with(KeysDeletePath, rest)
            } else if let Some(rest) = path.strip_prefix("/api/config/") {
                with(ConfigKeyDelete, rest)
            } else {
                plain(NotFound)
            }
        }
        _ => plain(NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_table_routes_and_falls_back_to_static_and_404() {
        let r = |m: Method, p: &str| resolve(&m, p, Style::Python).route;
        assert_eq!(r(Method::GET, "/api/market"), RouteId::Market);
        assert_eq!(r(Method::POST, "/api/order"), RouteId::OrderPy);
        assert_eq!(r(Method::POST, "/api/orders"), RouteId::NotFound);
        assert_eq!(r(Method::GET, "/api/health"), RouteId::Static);
        assert_eq!(r(Method::GET, "/metrics"), RouteId::Static);
        assert_eq!(
            r(Method::DELETE, "/api/auth/keys"),
            RouteId::KeysDeleteQuery
        );
        assert_eq!(r(Method::PUT, "/api/order"), RouteId::Unsupported);
        assert_eq!(r(Method::OPTIONS, "/anything"), RouteId::Options);
        assert_eq!(r(Method::GET, "/__sim/stats"), RouteId::SimStats);
    }

    #[test]
    fn cpp_table_extracts_path_parameters() {
        let got = resolve(&Method::DELETE, "/api/orders/abc-1", Style::Cpp);
        assert_eq!(got.route, RouteId::OrderDelete);
        assert_eq!(got.param, Some("abc-1"));
        let got = resolve(&Method::GET, "/api/market/ETHUSDT", Style::Cpp);
        assert_eq!(
            (got.route, got.param),
            (RouteId::MarketSymbol, Some("ETHUSDT"))
        );
        assert_eq!(
            resolve(&Method::GET, "/api/orders/", Style::Cpp).route,
            RouteId::NotFound
        );
        assert_eq!(
            resolve(&Method::GET, "/api/orders/a/b", Style::Cpp).route,
            RouteId::NotFound
        );
        assert_eq!(
            resolve(&Method::POST, "/api/order", Style::Cpp).route,
            RouteId::NotFound
        );
        assert_eq!(
            resolve(&Method::GET, "/api/orders_state", Style::Cpp).route,
            RouteId::NotFound
        );
    }

    #[test]
    fn every_resolved_route_is_in_its_table() {
        let paths = [
            "/",
            "/health",
            "/api/health",
            "/api/config",
            "/api/config/k",
            "/api/market",
            "/api/market/X",
            "/api/order",
            "/api/orders",
            "/api/orders/1",
            "/api/cancel",
            "/api/orders_state",
            "/api/order_state",
            "/api/account",
            "/api/account/positions",
            "/api/account/positions/BTC",
            "/api/execution/ping",
            "/api/stream",
            "/api/auth/login",
            "/api/auth/refresh",
            "/api/auth/logout",
            "/api/auth/keys",
            "/api/auth/keys/vk_1",
            "/metrics",
            "/nope",
        ];
        let methods = [
            Method::GET,
            Method::POST,
            Method::DELETE,
            Method::PUT,
            Method::HEAD,
        ];
        for table in [Style::Python, Style::Cpp] {
            let keys: Vec<usize> = table_keys(table).into_iter().map(|(_, s)| s).collect();
            for m in &methods {
                for p in paths {
                    let r = resolve(m, p, table).route;
                    assert!(r.in_table(table), "{m} {p} -> {r:?} not in {table:?}");
                    let s = slot(r, method_index(m));
                    assert!(
                        keys.contains(&s),
                        "{m} {p} -> {r:?}: slot missing from table_keys"
                    );
                }
            }
        }
    }
}
