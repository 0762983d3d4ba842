//! Test helpers: start simulators on 127.0.0.1:0, a raw HTTP/1.1 client (so tests see
//! duplicated headers, resets and garbage exactly as sent), an SSE frame reader, and a JSON
//! shape checker.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use shadowgate_sim::{SimConfig, SimServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every network wait in the tests is bounded by this.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub fn cfg(toml: &str) -> SimConfig {
    SimConfig::from_toml_str(toml, "test config").unwrap()
}

pub async fn start(cfg: SimConfig) -> SimServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    shadowgate_sim::start(cfg, listener).await.unwrap()
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Builds a request with `Connection: close`.
pub fn raw_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "DELETE" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends raw bytes and reads until the server closes (bounded by [`IO_TIMEOUT`]).
pub async fn exchange(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(raw).await?;
    let mut out = Vec::new();
    match tokio::time::timeout(IO_TIMEOUT, s.read_to_end(&mut out)).await {
        Ok(r) => r.map(|_| out),
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no EOF")),
    }
}

pub async fn req(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let raw = exchange(addr, &raw_request(method, path, headers, body))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    parse_response(&raw).unwrap_or_else(|| panic!("{method} {path}: unparsable {raw:?}"))
}

pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    req(addr, "GET", path, &[], b"").await
}

pub async fn post_json(addr: SocketAddr, path: &str, body: &str) -> Resp {
    req(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await
}

/// Status line, headers and (de-chunked) body.
pub fn parse_response(raw: &[u8]) -> Option<Resp> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Some(Resp {
        status,
        headers,
        body,
    })
}

/// The data of every complete chunk (a partial last chunk is left out).
pub fn dechunk(mut buf: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let Some(size) = std::str::from_utf8(&buf[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
        else {
            return out;
        };
        if size == 0 || buf.len() < line_end + 2 + size + 2 {
            return out;
        }
        out.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf = &buf[line_end + 2 + size + 2..];
    }
}

/// One SSE frame (or comment).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    pub id: Option<u64>,
    pub event: Option<String>,
    pub data: Option<String>,
    pub retry: Option<String>,
    pub comment: Option<String>,
}

impl Frame {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().unwrap_or("null")).unwrap()
    }
}

pub fn parse_frames(text: &str) -> Vec<Frame> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut f = Frame::default();
            for line in block.lines() {
                if let Some(c) = line.strip_prefix(':') {
                    f.comment = Some(c.trim().to_owned());
                } else if let Some((k, v)) = line.split_once(": ") {
                    match k {
                        "id" => f.id = v.parse().ok(),
                        "event" => f.event = Some(v.to_owned()),
                        "data" => f.data = Some(v.to_owned()),
                        "retry" => f.retry = Some(v.to_owned()),
                        _ => {}
                    }
                }
            }
            f
        })
        .collect()
}

/// Opens an event stream and reads frames until `done` says so or `limit` passes; returns
/// the response head and the complete frames read.
pub async fn read_sse(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    limit: Duration,
    done: impl Fn(&[Frame]) -> bool,
) -> (Resp, Vec<Frame>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&raw_request("GET", path, headers, b""))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + limit;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let frames = parse_response(&raw)
            .map(|r| complete_frames(&r.body))
            .unwrap_or_default();
        if done(&frames) {
            break;
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let resp = parse_response(&raw).expect("an SSE response head");
    let frames = complete_frames(&resp.body);
    (resp, frames)
}

fn complete_frames(body: &[u8]) -> Vec<Frame> {
    let text = String::from_utf8_lossy(body);
    // Only blocks terminated by a blank line are complete.
    match text.rfind("\n\n") {
        Some(end) => parse_frames(&text[..end + 2]),
        None => Vec::new(),
    }
}

/// Checks `v` against a shape: `"str"`, `"int"`, `"num"`, `"bool"`, `"null"`, `"obj"`,
/// `"any"`, alternatives with `|` (`"num|null"`), any other string or scalar as a literal, `[item]` (every element matches item; may be empty),
/// `{...}` (exactly these keys). Returns every mismatch.
pub fn shape_errors(v: &Value, shape: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(v, shape, "", &mut errors);
    errors
}

fn check(v: &Value, shape: &Value, path: &str, errors: &mut Vec<String>) {
    match shape {
        // A string that is not a type list is a literal to match.
        Value::String(literal)
            if !literal
                .split('|')
                .all(|t| ["str", "int", "num", "bool", "null", "obj", "any"].contains(&t)) =>
        {
            if v.as_str() != Some(literal) {
                errors.push(format!("{path}: expected \"{literal}\", got {v}"));
            }
        }
        Value::String(types) => {
            let ok = types.split('|').any(|t| match t {
                "str" => v.is_string(),
                "int" => v.is_i64() || v.is_u64(),
                "num" => v.is_number(),
                "bool" => v.is_boolean(),
                "null" => v.is_null(),
                "obj" => v.is_object(),
                "any" => true,
                _ => false,
            });
            if !ok {
                errors.push(format!("{path}: expected {types}, got {v}"));
            }
        }
        Value::Array(item) => match (v.as_array(), item.first()) {
            (Some(items), Some(item_shape)) => {
                for (i, x) in items.iter().enumerate() {
                    check(x, item_shape, &format!("{path}/{i}"), errors);
                }
            }
            (Some(_), None) => {}
            (None, _) => errors.push(format!("{path}: expected an array, got {v}")),
        },
        Value::Object(keys) => match v.as_object() {
            Some(obj) => {
                let mut want: Vec<&String> = keys.keys().collect();
                let mut got: Vec<&String> = obj.keys().collect();
                want.sort();
                got.sort();
                if want != got {
                    errors.push(format!("{path}: keys {got:?}, expected {want:?}"));
                }
                for (k, s) in keys {
                    if let Some(x) = obj.get(k) {
                        check(x, s, &format!("{path}/{k}"), errors);
                    }
                }
            }
            None => errors.push(format!("{path}: expected an object, got {v}")),
        },
        other => {
            if v != other {
                errors.push(format!("{path}: expected {other}, got {v}"));
            }
        }
    }
}

#[track_caller]
pub fn assert_shape(v: &Value, shape: &Value) {
    let errors = shape_errors(v, shape);
    assert!(errors.is_empty(), "{v}\n{}", errors.join("\n"));
}

/// Polls `f` until it returns `Some`, at most `tries` times 50 ms apart.
pub async fn eventually<T, F, Fut>(tries: usize, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..tries {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Removes the object keys named in `noise`, everywhere in `v`.
pub fn strip(v: &mut Value, noise: &[&str]) {
    match v {
        Value::Object(map) => {
            map.retain(|k, _| !noise.contains(&k.as_str()));
            for x in map.values_mut() {
                strip(x, noise);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| strip(x, noise)),
        _ => {}
    }
}
