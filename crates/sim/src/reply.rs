//! What a handler answers ([`Reply`]) and how it becomes an HTTP response for the configured
//! aspects: envelope, JSON format, error style, headers, rate-limit headers, and injected
//! field changes.
//!
//! Header values that do not vary are `HeaderValue::from_static`, so the hot path formats
//! nothing but the body (hyper writes a per-second cached `Date` itself).

use std::borrow::Cow;

use bytes::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::body::SimBody;
use crate::config::{Aspects, Style};
use crate::json::{J, JsonStyle};
use crate::ratelimit::{RateDecision, retry_after_iso8601, retry_after_python};

pub(crate) const JSON_PY: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");
pub(crate) const JSON_CPP: HeaderValue = HeaderValue::from_static("application/json");
const HTML: HeaderValue = HeaderValue::from_static("text/html;charset=utf-8");
pub(crate) const PROMETHEUS: HeaderValue =
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
const SERVER_PY: HeaderValue = HeaderValue::from_static("SimpleHTTP/0.6 Python/3.11.7");
const CORS_ORIGIN: HeaderName = HeaderName::from_static("access-control-allow-origin");
const CORS_METHODS: HeaderName = HeaderName::from_static("access-control-allow-methods");
const CORS_HEADERS: HeaderName = HeaderName::from_static("access-control-allow-headers");
const CORS_MAX_AGE: HeaderName = HeaderName::from_static("access-control-max-age");
const X_RL_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RL_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RL_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// An answer before profile-specific rendering.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Data API JSON: wrapped in `{"status":"success","data":…}` (C++ envelope), or sent bare
    /// / as `{"items":…}` when `list` (Python).
    Data {
        status: StatusCode,
        payload: J,
        list: bool,
    },
    /// JSON sent as it is. `auth_handler`: written by a C++ auth handler, whose content type
    /// carries a charset.
    Json {
        status: StatusCode,
        body: J,
        auth_handler: bool,
    },
    Error(ApiError),
    /// Python's `send_error` page.
    Html {
        status: StatusCode,
        message: Cow<'static, str>,
    },
    /// Pre-rendered bytes.
    Raw {
        status: StatusCode,
        content_type: HeaderValue,
        body: Bytes,
        extra: Vec<(HeaderName, HeaderValue)>,
    },
    /// No body (`OPTIONS`).
    Empty {
        status: StatusCode,
        extra: Vec<(HeaderName, HeaderValue)>,
    },
    /// An event stream.
    Sse {
        content_type: HeaderValue,
        body: SimBody,
    },
}

impl Reply {
    pub(crate) fn data(payload: J) -> Reply {
        Reply::Data {
            status: StatusCode::OK,
            payload,
            list: false,
        }
    }

    pub(crate) fn list(items: Vec<J>) -> Reply {
        Reply::Data {
            status: StatusCode::OK,
            payload: J::Arr(items),
            list: true,
        }
    }

    pub(crate) fn json(body: J) -> Reply {
        Reply::Json {
            status: StatusCode::OK,
            body,
            auth_handler: false,
        }
    }

    pub(crate) fn auth_json(status: StatusCode, body: J) -> Reply {
        Reply::Json {
            status,
            body,
            auth_handler: true,
        }
    }
}

/// An error with both spellings: the Python machine code and the C++ sentence.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    /// Python `{"error": code}`.
    pub code: Cow<'static, str>,
    /// Python's extra `"message"` field, when it sends one (403 forbidden).
    pub detail: Option<Cow<'static, str>>,
    /// C++ `{"error": message}`.
    pub message: Cow<'static, str>,
    /// Written by a C++ auth handler (content type with charset).
    pub auth_handler: bool,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> ApiError {
        ApiError {
            status,
            code: code.into(),
            detail: None,
            message: message.into(),
            auth_handler: false,
        }
    }

    /// An auth-handler error: both gateways send the same code.
    pub(crate) fn auth(status: StatusCode, code: &'static str) -> ApiError {
        ApiError {
            auth_handler: true,
            ..ApiError::new(status, code, code)
        }
    }

    pub(crate) fn detail(mut self, detail: impl Into<Cow<'static, str>>) -> ApiError {
        self.detail = Some(detail.into());
        self
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply::Error(e)
    }
}

/// Rate-limit headers to add to a JSON answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateHeaders {
    pub decision: RateDecision,
}

/// Everything rendering needs from the simulator.
pub(crate) struct Render<'a> {
    pub aspects: &'a Aspects,
    pub json: JsonStyle,
}

/// Python's `send_error` page (http.server's `DEFAULT_ERROR_MESSAGE`).
pub(crate) fn python_error_page(status: StatusCode, message: &str) -> String {
    let explain = match status.as_u16() {
        404 => "Nothing matches the given URI",
        501 => "Server does not support this operation",
        503 => "The server cannot process the request due to a high load",
        _ => "Server got itself in trouble",
    };
    format!(
        "<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n        <meta charset=\"utf-8\">\n        \
         <title>Error response</title>\n    </head>\n    <body>\n        <h1>Error response</h1>\n        \
         <p>Error code: {code}</p>\n        <p>Message: {message}.</p>\n        \
         <p>Error code explanation: {code} - {explain}.</p>\n    </body>\n</html>\n",
        code = status.as_u16()
    )
}

/// Changes a value so that it differs, keeping it the same JSON type where possible.
pub(crate) fn change_value(v: &mut J) {
    *v = match std::mem::replace(v, J::Null) {
        J::Int(i) => J::Int(i.wrapping_add(1)),
        J::UInt(u) => J::UInt(u.wrapping_add(1)),
        J::Float(f) => J::Float(f + 1.0),
        J::Str(s) => J::Str(Cow::Owned(format!("{s}~changed"))),
        J::Bool(b) => J::Bool(!b),
        J::Null => J::s("changed"),
        J::Arr(_) | J::Obj(_) => J::Null,
    };
}

impl Render<'_> {
    /// Builds the response. `change` applies injected field changes to a JSON body.
    pub(crate) fn response(
        &self,
        reply: Reply,
        rate: Option<RateHeaders>,
        change: &mut dyn FnMut(&mut J),
    ) -> Response<SimBody> {
        let a = self.aspects;
        let (status, body, content_type, is_json, mut extra, close) = match reply {
            Reply::Data {
                status,
                payload,
                list,
            } => {
                let mut body = match (a.envelope, list) {
                    (Style::Cpp, _) => J::obj([("status", J::s("success")), ("data", payload)]),
                    (Style::Python, true) => J::obj([("items", payload)]),
                    (Style::Python, false) => payload,
                };
                change(&mut body);
                (
                    status,
                    self.bytes(&body),
                    self.json_type(false),
                    true,
                    Vec::new(),
                    false,
                )
            }
            Reply::Json {
                status,
                mut body,
                auth_handler,
            } => {
                change(&mut body);
                (
                    status,
                    self.bytes(&body),
                    self.json_type(auth_handler),
                    true,
                    Vec::new(),
                    false,
                )
            }
            Reply::Error(e) => {
                let mut body = match a.errors {
                    Style::Python => match e.detail {
                        Some(d) => J::obj([("error", J::Str(e.code)), ("message", J::Str(d))]),
                        None => J::obj([("error", J::Str(e.code))]),
                    },
                    Style::Cpp => J::obj([("error", J::Str(e.message))]),
                };
                change(&mut body);
                let ct = self.json_type(e.auth_handler);
                (e.status, self.bytes(&body), ct, true, Vec::new(), false)
            }
            Reply::Html { status, message } => {
                let page = python_error_page(status, &message);
                (status, Bytes::from(page), HTML, false, Vec::new(), true)
            }
            Reply::Raw {
                status,
                content_type,
                body,
                extra,
            } => (status, body, content_type, false, extra, false),
            Reply::Empty { status, extra } => {
                let mut resp = Response::new(SimBody::empty());
                *resp.status_mut() = status;
                self.common_headers(resp.headers_mut());
                for (k, v) in extra {
                    resp.headers_mut().append(k, v);
                }
                return resp;
            }
            Reply::Sse { content_type, body } => {
                let mut resp = Response::new(body);
                let h = resp.headers_mut();
                self.common_headers(h);
                h.insert(header::CONTENT_TYPE, content_type);
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                if a.sse == Style::Python {
                    h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
                }
                return resp;
            }
        };
        let mut resp = Response::new(SimBody::full(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        self.common_headers(h);
        h.insert(header::CONTENT_TYPE, content_type);
        if close && a.headers == Style::Python {
            // send_error closes the connection.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        for (k, v) in extra.drain(..) {
            h.append(k, v);
        }
        if let (true, Some(rate)) = (is_json, rate) {
            self.rate_headers(h, &rate);
        }
        resp
    }

    fn bytes(&self, body: &J) -> Bytes {
        Bytes::from(body.to_bytes(self.json))
    }

    fn json_type(&self, auth_handler: bool) -> HeaderValue {
        match self.aspects.json_format {
            Style::Python => JSON_PY,
            Style::Cpp if auth_handler => JSON_PY,
            Style::Cpp => JSON_CPP,
        }
    }

    /// `Server` and CORS on every Python answer.
    fn common_headers(&self, h: &mut hyper::HeaderMap) {
        if self.aspects.headers == Style::Python {
            h.insert(header::SERVER, SERVER_PY);
            h.insert(CORS_ORIGIN, HeaderValue::from_static("*"));
            h.insert(
                CORS_METHODS,
                HeaderValue::from_static("GET,POST,DELETE,OPTIONS"),
            );
            h.insert(
                CORS_HEADERS,
                HeaderValue::from_static("Content-Type,Authorization,X-API-Key"),
            );
        }
    }

    fn rate_headers(&self, h: &mut hyper::HeaderMap, rate: &RateHeaders) {
        let d = &rate.decision;
        let python = self.aspects.rate_limit_headers == Style::Python;
        // Python sends all four headers twice on a 429 (observed on the real gateway).
        let times = if python && !d.allowed { 2 } else { 1 };
        for _ in 0..times {
            h.append(X_RL_LIMIT, HeaderValue::from(d.limit));
            h.append(X_RL_REMAINING, HeaderValue::from(d.remaining));
            h.append(X_RL_RESET, HeaderValue::from(d.reset_epoch_s));
            if !d.allowed {
                let retry = if python {
                    retry_after_python(d)
                } else {
                    retry_after_iso8601(d)
                };
                if let Ok(v) = HeaderValue::from_str(&retry) {
                    h.append(header::RETRY_AFTER, v);
                }
            }
        }
    }

    /// The C++ CORS preflight answer (its middleware wiring is unverified).
    pub(crate) fn cpp_preflight_headers() -> Vec<(HeaderName, HeaderValue)> {
        vec![
            (CORS_ORIGIN, HeaderValue::from_static("*")),
            (
                CORS_METHODS,
                HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
            ),
            (
                CORS_HEADERS,
                HeaderValue::from_static("Content-Type, Authorization, X-API-Key"),
            ),
            (CORS_MAX_AGE, HeaderValue::from_static("86400")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Differences, Profile};

    fn render(profile: Profile, reply: Reply, rate: Option<RateHeaders>) -> Response<SimBody> {
        let aspects = Aspects::new(profile, &Differences::all(true));
        let json = match aspects.json_format {
            Style::Python => JsonStyle::Python,
            Style::Cpp => JsonStyle::Compact,
        };
        Render {
            aspects: &aspects,
            json,
        }
        .response(reply, rate, &mut |_| {})
    }

    fn body(resp: &Response<SimBody>) -> String {
        match resp.body() {
            SimBody::Full(Some(b)) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn envelope_and_items() {
        let r = render(Profile::Python, Reply::list(vec![J::Int(1)]), None);
        assert_eq!(body(&r), r#"{"items": [1]}"#);
        assert_eq!(
            r.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        assert_eq!(r.headers()["server"], "SimpleHTTP/0.6 Python/3.11.7");
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        let r = render(Profile::Cpp, Reply::list(vec![J::Int(1)]), None);
        assert_eq!(body(&r), r#"{"status":"success","data":[1]}"#);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert!(r.headers().get("server").is_none());
    }

    #[test]
    fn errors_per_style() {
        let e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_params",
            "Order quantity must be positive",
        );
        let r = render(Profile::Python, e.clone().into(), None);
        assert_eq!(body(&r), r#"{"error": "bad_params"}"#);
        let r = render(Profile::Cpp, e.into(), None);
        assert_eq!(body(&r), r#"{"error":"Order quantity must be positive"}"#);
        let r = render(
            Profile::Python,
            Reply::Html {
                status: StatusCode::NOT_FOUND,
                message: "Not Found".into(),
            },
            None,
        );
        assert!(body(&r).contains("<p>Message: Not Found.</p>"));
        assert_eq!(r.headers()["connection"], "close");
    }

    #[test]
    fn python_duplicates_rate_headers_on_429_and_cpp_uses_iso_retry() {
        let decision = RateDecision {
            allowed: false,
            limit: 100,
            remaining: 0,
            reset_epoch_s: 1_700_000_010,
            retry_after_s: 0.1,
        };
        let e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "Rate limit exceeded",
        );
        let r = render(
            Profile::Python,
            e.clone().into(),
            Some(RateHeaders { decision }),
        );
        assert_eq!(r.headers().get_all("x-ratelimit-limit").iter().count(), 2);
        let retry: Vec<_> = r.headers().get_all("retry-after").iter().collect();
        assert_eq!(retry, ["1", "1"]);
        let r = render(Profile::Cpp, e.into(), Some(RateHeaders { decision }));
        assert_eq!(r.headers().get_all("x-ratelimit-limit").iter().count(), 1);
        assert_eq!(r.headers()["retry-after"], "PT0.1S");
    }

    #[test]
    fn change_value_changes_every_type() {
        for mut v in [
            J::Int(1),
            J::UInt(1),
            J::Float(1.5),
            J::s("a"),
            J::Bool(true),
            J::Null,
            J::Arr(vec![]),
        ] {
            let before = v.clone();
            change_value(&mut v);
            assert_ne!(v, before);
        }
    }
}
