//! Capture (`--capture FILE`): every request that passes through the mirror, appended to an
//! NDJSON file that `shadowgate replay` sends again later.
//!
//! **Off the client's path.** The proxy hands each request (method, path and query, headers,
//! body as the `Bytes` it already holds, arrival time, client address, connection number) to
//! a bounded channel with `try_send`; a writer thread redacts, serializes and appends. A full
//! channel drops the record and counts it — capture never slows a client down. The file is
//! flushed every interval and at the end, so a killed mirror loses at most an interval and
//! leaves at most a torn last line, which [`read_capture`] skips with a warning.
//!
//! **Secrets.** Unless `--capture-secrets` is given, secret header values and secret body
//! fields are replaced with the rules' [`Redactor`] tokens (`[redacted:<8 hex>]`, the same as
//! in `discrepancies.ndjson`), and each record says which headers were redacted, so a replay
//! can tell the user why its requests do not authenticate. `--capture-secrets` is meant for
//! CI captures against test gateways with throw-away credentials.
//!
//! **Bodies** are stored as UTF-8 text when they are, else as base64 (`body_base64`). A body
//! over the mirror's body limit is not buffered for capture either: the record says
//! `body_omitted` and a replay skips it (counted), rather than send a truncated write.
//!
//! **Line format** (one JSON object per line):
//! `{"seq":0,"t_us":1234,"method":"POST","path":"/api/order?x=1","headers":[["content-type","application/json"]],"body":"{…}","client":"127.0.0.1","conn":3}`
//! plus `"body_base64":true`, `"body_omitted":true` and `"redacted":["authorization"]` when
//! they apply. `t_us` is microseconds since the capture started (the replay's pacing).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};
use shadowgate_diff::Redactor;

/// Records waiting for the writer before new ones are dropped.
pub const DEFAULT_QUEUE: usize = 8192;

/// Capture settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// The NDJSON file (appended to).
    pub path: PathBuf,
    /// Keep secrets (only for test gateways with throw-away credentials).
    pub secrets: bool,
    /// Channel capacity.
    pub queue: usize,
}

/// One captured request, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedRequest {
    /// Order of arrival at the mirror.
    pub seq: u64,
    /// Microseconds since the capture started.
    pub t_us: u64,
    /// Request method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header fields in order (names lower-case; `host` is left out: each upstream gets its
    /// own).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body (UTF-8 text, or base64 when `body_base64`).
    #[serde(default)]
    pub body: String,
    /// `body` is base64.
    #[serde(default, skip_serializing_if = "is_false")]
    pub body_base64: bool,
    /// The body was over the limit and not captured.
    #[serde(default, skip_serializing_if = "is_false")]
    pub body_omitted: bool,
    /// The client's address.
    #[serde(default)]
    pub client: Option<String>,
    /// The client connection's number (requests of one connection came in this order).
    #[serde(default)]
    pub conn: u64,
    /// Headers whose values were redacted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl CapturedRequest {
    /// The body's bytes.
    ///
    /// # Errors
    /// The base64 text is not valid.
    pub fn body_bytes(&self) -> Result<Vec<u8>, String> {
        if self.body_base64 {
            base64::engine::general_purpose::STANDARD
                .decode(self.body.as_bytes())
                .map_err(|e| format!("body_base64 is not valid base64: {e}"))
        } else {
            Ok(self.body.clone().into_bytes())
        }
    }
}

/// What the proxy hands over (cheap: the header map is cloned, the body is shared).
#[derive(Debug)]
struct Raw {
    at: Instant,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Option<Bytes>,
    client: IpAddr,
    conn: u64,
}

/// Counters of a capture.
#[derive(Debug, Default)]
pub struct CaptureCounts {
    /// Records written.
    pub written: AtomicU64,
    /// Records dropped because the writer was behind.
    pub dropped: AtomicU64,
    /// Records whose body was over the limit (written without it).
    pub omitted: AtomicU64,
    /// Records that could not be written (I/O errors).
    pub failed: AtomicU64,
}

/// What a capture wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureSummary {
    /// The file.
    pub file: PathBuf,
    /// Whether secrets were kept (`--capture-secrets`).
    pub secrets_kept: bool,
    /// Records written.
    pub written: u64,
    /// Records dropped (the writer was behind).
    pub dropped: u64,
    /// Records written without their body (over the body limit).
    pub body_omitted: u64,
    /// Records that could not be written.
    pub failed: u64,
}

/// A handle on a running capture's counters (see `Mirror::capture`).
#[derive(Debug, Clone)]
pub struct CaptureHandle(pub(crate) Arc<Capturer>);

impl CaptureHandle {
    /// What was captured so far (final once the mirror has shut down).
    pub fn summary(&self) -> CaptureSummary {
        self.0.summary()
    }
}

/// The proxy's hook: hands the request to the capture and returns the body to send on. A
/// body the proxy already holds (mirrored requests) is shared; any other non-empty body is
/// read here, up to the body limit, so the capture is complete (over the limit it streams
/// on and the record says `body_omitted`).
pub(crate) async fn observe(
    cap: &Capturer,
    parts: &http::request::Parts,
    body: crate::body::ReqBody,
    held: Option<&Bytes>,
    client: IpAddr,
    conn: u64,
    limit: usize,
) -> Result<crate::body::ReqBody, hyper::Error> {
    use crate::body::{Buffered, ReqBody, buffer_request};
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let record =
        |b: Option<Bytes>| cap.record(&parts.method, path, &parts.headers, b, client, conn);
    if let Some(b) = held {
        record(Some(b.clone()));
        return Ok(body);
    }
    match body {
        ReqBody::Full(b) => {
            record(Some(b.clone().unwrap_or_default()));
            Ok(ReqBody::Full(b))
        }
        ReqBody::Stream(incoming) => match buffer_request(incoming, limit).await {
            Buffered::Whole(bytes) => {
                record(Some(bytes.clone()));
                Ok(ReqBody::Full((!bytes.is_empty()).then_some(bytes)))
            }
            Buffered::Over(rest) => {
                record(None);
                Ok(rest)
            }
            Buffered::Failed(e) => Err(e),
        },
        other => {
            record(None);
            Ok(other)
        }
    }
}

/// A running capture: the proxy's handle.
#[derive(Debug)]
pub(crate) struct Capturer {
    tx: std::sync::Mutex<Option<SyncSender<Raw>>>,
    counts: Arc<CaptureCounts>,
    join: std::sync::Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
    secrets: bool,
}

impl Capturer {
    /// Opens (creates or appends to) the file and starts the writer thread.
    pub(crate) fn start(
        cfg: &CaptureConfig,
        redactor: Redactor,
        flush_every: Duration,
    ) -> std::io::Result<Capturer> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.path)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue.max(1));
        let counts = Arc::new(CaptureCounts::default());
        let writer = Writer {
            out: BufWriter::new(file),
            redactor: (!cfg.secrets).then_some(redactor),
            counts: Arc::clone(&counts),
            started: Instant::now(),
            seq: 0,
        };
        let join = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || writer.run(rx, flush_every))?;
        Ok(Capturer {
            tx: std::sync::Mutex::new(Some(tx)),
            counts,
            join: std::sync::Mutex::new(Some(join)),
            path: cfg.path.clone(),
            secrets: cfg.secrets,
        })
    }

    /// Hands one request to the writer; never blocks (a full queue drops and counts).
    pub(crate) fn record(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Option<Bytes>,
        client: IpAddr,
        conn: u64,
    ) {
        if body.is_none() {
            self.counts.omitted.fetch_add(1, Ordering::Relaxed);
        }
        let raw = Raw {
            at: Instant::now(),
            method: method.clone(),
            path: path.to_owned(),
            headers: headers.clone(),
            body,
            client,
            conn,
        };
        let guard = match self.tx.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let sent = match guard.as_ref() {
            Some(tx) => tx.try_send(raw),
            None => Err(TrySendError::Disconnected(raw)),
        };
        if sent.is_err() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters.
    #[cfg(test)]
    fn counts(&self) -> &CaptureCounts {
        &self.counts
    }

    /// What was captured so far.
    pub(crate) fn summary(&self) -> CaptureSummary {
        CaptureSummary {
            file: self.path.clone(),
            secrets_kept: self.secrets,
            written: self.counts.written.load(Ordering::Relaxed),
            dropped: self.counts.dropped.load(Ordering::Relaxed),
            body_omitted: self.counts.omitted.load(Ordering::Relaxed),
            failed: self.counts.failed.load(Ordering::Relaxed),
        }
    }

    /// Stops taking records, lets the writer drain and flush, and waits for it.
    pub(crate) fn finish(&self) {
        let tx = match self.tx.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        drop(tx);
        let join = match self.join.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(j) = join {
            let _ = j.join();
        }
    }
}

impl Drop for Capturer {
    fn drop(&mut self) {
        self.finish();
    }
}

struct Writer {
    out: BufWriter<File>,
    redactor: Option<Redactor>,
    counts: Arc<CaptureCounts>,
    started: Instant,
    seq: u64,
}

impl Writer {
    fn run(mut self, rx: Receiver<Raw>, flush_every: Duration) {
        let mut last_flush = Instant::now();
        loop {
            let wait = flush_every.saturating_sub(last_flush.elapsed());
            match rx.recv_timeout(wait) {
                Ok(raw) => self.write(raw),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_flush.elapsed() >= flush_every {
                self.flush();
                last_flush = Instant::now();
            }
        }
        self.flush();
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::warn!(error = %e, "capture file: flush failed");
        }
    }

    fn write(&mut self, raw: Raw) {
        let rec = to_record(&raw, self.seq, self.started, self.redactor.as_ref());
        self.seq += 1;
        let mut line = match serde_json::to_vec(&rec) {
            Ok(l) => l,
            Err(_) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        line.push(b'\n');
        match self.out.write_all(&line) {
            Ok(()) => {
                self.counts.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "capture record not written");
            }
        }
    }
}

fn to_record(
    raw: &Raw,
    seq: u64,
    started: Instant,
    redactor: Option<&Redactor>,
) -> CapturedRequest {
    let mut headers = Vec::with_capacity(raw.headers.len());
    let mut redacted = Vec::new();
    for (name, value) in &raw.headers {
        let name = name.as_str();
        if name == "host" {
            continue;
        }
        let text = match redactor.and_then(|r| r.redact_header_value(name, value.as_bytes())) {
            Some(token) => {
                if !redacted.iter().any(|r| r == name) {
                    redacted.push(name.to_owned());
                }
                token
            }
            None => String::from_utf8_lossy(value.as_bytes()).into_owned(),
        };
        headers.push((name.to_owned(), text));
    }
    let (body, body_base64) = match &raw.body {
        None => (String::new(), false),
        Some(b) => {
            let b = match redactor {
                Some(r) => r.redact_body(b),
                None => std::borrow::Cow::Borrowed(&b[..]),
            };
            match std::str::from_utf8(&b) {
                Ok(text) => (text.to_owned(), false),
                Err(_) => (base64::engine::general_purpose::STANDARD.encode(&b), true),
            }
        }
    };
    let path = match redactor {
        Some(r) => r.redact_text(&raw.path).into_owned(),
        None => raw.path.clone(),
    };
    CapturedRequest {
        seq,
        t_us: raw.at.saturating_duration_since(started).as_micros() as u64,
        method: raw.method.as_str().to_owned(),
        path,
        headers,
        body,
        body_base64,
        body_omitted: raw.body.is_none(),
        client: Some(raw.client.to_string()),
        conn: raw.conn,
        redacted,
    }
}

/// A capture file read back.
#[derive(Debug, Default)]
pub struct CaptureFile {
    /// The records, in file order.
    pub requests: Vec<CapturedRequest>,
    /// Problems with `line` numbers (a torn last line among them); reading went on.
    pub warnings: Vec<String>,
}

/// Reads a capture file's text. A torn last line (no final newline) is skipped with a
/// warning; any other line that is not a record is an error naming its line.
///
/// # Errors
/// `line N: reason` for the first bad line that is not the torn last one.
pub fn read_capture(text: &str) -> Result<CaptureFile, String> {
    let mut out = CaptureFile::default();
    let complete = text.is_empty() || text.ends_with('\n');
    let count = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<CapturedRequest>(line) {
            Ok(r) => out.requests.push(r),
            Err(e) if !complete && i + 1 == count => {
                out.warnings
                    .push(format!("line {}: torn last line skipped ({e})", i + 1));
            }
            Err(e) => return Err(format!("line {}: not a capture record: {e}", i + 1)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn raw(body: Option<&[u8]>) -> Raw {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("h:1"));
        headers.insert("authorization", HeaderValue::from_static("Bearer abc"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        Raw {
            at: Instant::now(),
            method: Method::POST,
            path: "/api/order?token=xyz".into(),
            headers,
            body: body.map(Bytes::copy_from_slice),
            client: "127.0.0.1".parse().unwrap(),
            conn: 3,
        }
    }

    #[test]
    fn secrets_are_redacted_unless_kept() {
        let r = raw(Some(br#"{"password":"hunter2","qty":1}"#));
        let rec = to_record(&r, 0, r.at, Some(&Redactor::default()));
        let line = serde_json::to_string(&rec).unwrap();
        assert!(!line.contains("abc") && !line.contains("hunter2"), "{line}");
        assert!(line.contains("[redacted:"), "{line}");
        assert_eq!(rec.redacted, vec!["authorization"]);
        assert!(rec.headers.iter().all(|(n, _)| n != "host"));
        let rec = to_record(&r, 0, r.at, None);
        let line = serde_json::to_string(&rec).unwrap();
        assert!(line.contains("Bearer abc") && line.contains("hunter2"));
        assert!(rec.redacted.is_empty());
    }

    #[test]
    fn binary_bodies_round_trip_as_base64() {
        let r = raw(Some(&[0xff, 0x00, 0x10]));
        let rec = to_record(&r, 7, r.at, None);
        assert!(rec.body_base64);
        let back: CapturedRequest =
            serde_json::from_str(&serde_json::to_string(&rec).unwrap()).unwrap();
        assert_eq!(back.body_bytes().unwrap(), vec![0xff, 0x00, 0x10]);
        assert_eq!((back.seq, back.conn), (7, 3));
        let omitted = to_record(&raw(None), 0, Instant::now(), None);
        assert!(omitted.body_omitted);
    }

    #[test]
    fn reading_tolerates_a_torn_last_line_only() {
        let good =
            serde_json::to_string(&to_record(&raw(Some(b"x")), 0, Instant::now(), None)).unwrap();
        let text = format!("{good}\n{good}\n{{\"seq\":");
        let f = read_capture(&text).unwrap();
        assert_eq!(f.requests.len(), 2);
        assert_eq!(f.warnings.len(), 1);
        assert!(f.warnings[0].starts_with("line 3"));
        let e = read_capture(&format!("nope\n{good}\n")).unwrap_err();
        assert!(e.starts_with("line 1"), "{e}");
    }

    #[test]
    fn the_writer_thread_appends_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = CaptureConfig {
            path: dir.path().join("c.ndjson"),
            secrets: false,
            queue: 16,
        };
        let c = Capturer::start(&cfg, Redactor::default(), Duration::from_millis(10)).unwrap();
        let r = raw(Some(b"{}"));
        for _ in 0..5 {
            c.record(&r.method, &r.path, &r.headers, r.body.clone(), r.client, 1);
        }
        c.finish();
        // After finish, records are dropped and counted, never queued.
        c.record(&r.method, &r.path, &r.headers, None, r.client, 1);
        assert_eq!(c.counts().written.load(Ordering::Relaxed), 5);
        assert_eq!(c.counts().dropped.load(Ordering::Relaxed), 1);
        let f = read_capture(&std::fs::read_to_string(&cfg.path).unwrap()).unwrap();
        assert_eq!(f.requests.len(), 5);
        assert_eq!(
            f.requests.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
    }
}
