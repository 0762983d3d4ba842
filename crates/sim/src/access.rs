//! Authentication, permissions and rate limiting, per the `auth` and `rate_limit_headers`
//! aspects (veloz-api.md §2, §3).
//!
//! Python: public paths are `/health`, `/api/stream`, `POST /api/auth/login`; a Bearer token
//! is tried first, then `X-API-Key`; JWT users get `["read","write"]`, API-key users their
//! key's permissions; GET needs `read`, POST/DELETE `write`, key creation and deletion
//! `admin`; 401 bodies are `{"error": "authentication_required"|"invalid_token"|
//! "invalid_api_key"}`.
//!
//! C++: public paths are `/health`, `/api/health`, `/api/auth/login`, `/api/auth/refresh`
//! (plus `/metrics` while `auth.public_metrics`); `X-API-Key` is checked first and, when
//! present, there is no fallback to a Bearer token; JWT users get **no** permissions, so the
//! scoped checks (`write:orders`, `read:orders`, `write:cancel`, `read:account`, exact string
//! match) answer 403; every 401 is the middleware's pretty-printed body with
//! `WWW-Authenticate: Bearer`. Whether the real middleware is wired at all is unverified; the
//! simulator enforces it when auth is enabled. With auth disabled every permission is granted
//! (the real wiring of that case is unverified too).
//!
//! Requests that match no API route (static files, 404s, `OPTIONS`) are never authenticated,
//! so an unknown path answers 404 rather than 401 in both profiles.
//!
//! Rate limiting (when enabled; by default when auth is) applies to authenticated requests and
//! to `/api/stream`, never to public paths. Bucket key: Python `key:<key_id>` for API-key users,
//! else `ip:<address>`; C++ `user:<id>` for authenticated users when `per_user`, else the address.

use std::net::SocketAddr;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use crate::app::App;
use crate::auth::verify_jwt;
use crate::config::Style;
use crate::json::J;
use crate::reply::{ApiError, JSON_CPP, RateHeaders, Reply};
use crate::routes::RouteId;
use crate::util::unix_s;

/// The C++ auth middleware's 401 body, byte for byte.
const CPP_UNAUTHORIZED: &str =
    "{\n  \"error\": \"unauthorized\",\n  \"message\": \"Authentication required\"\n}";

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Who is asking, and what they may do.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub user_id: String,
    pub key_id: Option<String>,
    pub authenticated: bool,
    perms: Option<Vec<String>>,
}

impl Principal {
    /// No authentication took place: everything is allowed.
    pub(crate) fn unrestricted() -> Principal {
        Principal {
            user_id: "anonymous".to_owned(),
            key_id: None,
            authenticated: false,
            perms: None,
        }
    }

    fn authenticated(user_id: String, key_id: Option<String>, perms: Vec<String>) -> Principal {
        Principal {
            user_id,
            key_id,
            authenticated: true,
            perms: Some(perms),
        }
    }

    pub(crate) fn has(&self, perm: &str) -> bool {
        self.perms
            .as_ref()
            .is_none_or(|p| p.iter().any(|x| x == perm))
    }
}

/// How a route is guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard {
    /// Not an API route: never authenticated, never rate limited.
    Open,
    /// An API route on the public list.
    Public,
    /// Needs credentials when auth is enabled.
    Protected,
}

impl App {
    pub(crate) fn guard(&self, route: RouteId) -> Guard {
        use RouteId::*;
        match route {
            Options | Static | StaticIndex | NotFound | Unsupported | SimStats => Guard::Open,
            Metrics if self.cfg.auth.public_metrics => Guard::Public,
            Health | Login => Guard::Public,
            Stream if self.aspects.auth == Style::Python => Guard::Public,
            ApiHealth | Refresh if self.aspects.auth == Style::Cpp => Guard::Public,
            _ => Guard::Protected,
        }
    }

    /// Authenticates a request to `route` (when auth is enabled and the route is protected).
    pub(crate) fn authenticate(
        &self,
        route: RouteId,
        headers: &HeaderMap,
    ) -> Result<Principal, Reply> {
        if !self.cfg.auth.enabled || self.guard(route) != Guard::Protected {
            return Ok(Principal::unrestricted());
        }
        let result = match self.aspects.auth {
            Style::Python => self.authenticate_python(headers),
            Style::Cpp => self.authenticate_cpp(headers),
        };
        self.metrics.auth_attempt(result.is_ok());
        result
    }

    fn authenticate_python(&self, headers: &HeaderMap) -> Result<Principal, Reply> {
        let fail = |code: &'static str| Reply::Json {
            status: StatusCode::UNAUTHORIZED,
            body: J::obj([("error", J::s(code))]),
            auth_handler: false,
        };
        if let Some(token) = bearer(headers) {
            let claims = verify_jwt(token, &self.jwt_secret, unix_s(), &self.jwt_rules)
                .map_err(|_| fail("invalid_token"))?;
            let sub = claims
                .get("sub")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned();
            return Ok(Principal::authenticated(
                sub,
                None,
                vec!["read".to_owned(), "write".to_owned()],
            ));
        }
        if let Some(raw) = headers.get(X_API_KEY).and_then(|v| v.to_str().ok()) {
            let info = self
                .keys
                .verify(raw, unix_s())
                .ok_or_else(|| fail("invalid_api_key"))?;
            return Ok(Principal::authenticated(
                info.user_id,
                Some(info.key_id),
                info.permissions,
            ));
        }
        Err(fail("authentication_required"))
    }

    fn authenticate_cpp(&self, headers: &HeaderMap) -> Result<Principal, Reply> {
        // X-API-Key first, and no fallback to a Bearer token when it is present.
        if let Some(raw) = headers.get(X_API_KEY) {
            let info = raw
                .to_str()
                .ok()
                .and_then(|raw| self.keys.verify(raw, unix_s()))
                .ok_or_else(cpp_unauthorized)?;
            return Ok(Principal::authenticated(
                info.user_id,
                Some(info.key_id),
                info.permissions,
            ));
        }
        let token = bearer(headers).ok_or_else(cpp_unauthorized)?;
        let claims = verify_jwt(token, &self.jwt_secret, unix_s(), &self.jwt_rules)
            .map_err(|_| cpp_unauthorized())?;
        let sub = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned();
        // JWT authentication carries no scoped permissions in the C++ gateway.
        Ok(Principal::authenticated(sub, None, Vec::new()))
    }

    /// The permission a route needs under the active permission model.
    pub(crate) fn required_permission(&self, route: RouteId) -> Option<&'static str> {
        use RouteId::*;
        match self.aspects.auth {
            Style::Python => match route {
                KeysCreate | KeysDeleteQuery | KeysDeletePath => Some("admin"),
                _ if self.guard(route) != Guard::Protected => None,
                _ if route.method() == Some("GET") => Some("read"),
                _ => Some("write"),
            },
            Style::Cpp => match route {
                OrdersPost | OrderPy => Some("write:orders"),
                OrdersList | OrderGet | OrdersState | OrderState => Some("read:orders"),
                OrderDelete | Cancel => Some("write:cancel"),
                Account | Positions | Position => Some("read:account"),
                _ => None,
            },
        }
    }

    /// 403 when the principal lacks the route's permission.
    pub(crate) fn permit(&self, route: RouteId, who: &Principal) -> Result<(), Reply> {
        match self.required_permission(route) {
            Some(perm) if !who.has(perm) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("Permission denied: {perm} required"),
            )
            .detail(format!("{perm} permission required"))
            .into()),
            _ => Ok(()),
        }
    }

    /// Takes a rate-limit token when the route is limited. `Err` is the 429 answer.
    pub(crate) fn rate_check(
        &self,
        route: RouteId,
        who: &Principal,
        peer: SocketAddr,
    ) -> Result<Option<RateHeaders>, Box<(Reply, RateHeaders)>> {
        let Some(limiter) = &self.limiter else {
            return Ok(None);
        };
        if !(self.guard(route) == Guard::Protected || route == RouteId::Stream) {
            return Ok(None);
        }
        let key = match (self.aspects.rate_limit_headers, &who.key_id) {
            (Style::Python, Some(k)) => format!("key:{k}"),
            (Style::Cpp, _) if self.cfg.rate_limit.per_user && who.authenticated => {
                format!("user:{}", who.user_id)
            }
            _ => format!("ip:{}", peer.ip()),
        };
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let decision = limiter.check(&key, std::time::Instant::now(), now_unix);
        let headers = RateHeaders { decision };
        if decision.allowed {
            Ok(Some(headers))
        } else {
            let reply = ApiError::auth(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded");
            Err(Box::new((
                ApiError {
                    auth_handler: false,
                    ..reply
                }
                .into(),
                headers,
            )))
        }
    }

    /// The C++ auth handlers' own Bearer check (login-protected key and logout handlers).
    pub(crate) fn bearer_subject(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let token = bearer(headers)
            .ok_or_else(|| ApiError::auth(StatusCode::UNAUTHORIZED, "unauthorized"))?;
        let claims = verify_jwt(token, &self.jwt_secret, unix_s(), &self.jwt_rules)
            .map_err(|_| ApiError::auth(StatusCode::UNAUTHORIZED, "invalid_token"))?;
        Ok(claims
            .get("sub")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned())
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .filter(|t| !t.is_empty())
}

fn cpp_unauthorized() -> Reply {
    Reply::Raw {
        status: StatusCode::UNAUTHORIZED,
        content_type: JSON_CPP,
        body: Bytes::from_static(CPP_UNAUTHORIZED.as_bytes()),
        extra: vec![(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        )],
    }
}
