//! SSE subscribers: N event streams held open for the whole run, beside the request schedule.
//!
//! Each subscriber is a plain task with its own connection (not a Goose user: a stream is not
//! a scheduled request and must not take tickets). It counts events (keep-alive comments are
//! not events) and records the gap between consecutive events of its stream, in ns, as the
//! `<target>:GET:<route>;lag` series (only gaps that end inside the measured window). A gateway
//! that stalls its event loop under load shows it here first. An event's time is the kernel's
//! receive stamp of the data that carried it (module `rxstamp`), like an answer's: the `tick`
//! pacer reads sockets when the generator's thread wakes, not when data arrives. A stream that
//! ends is reopened after 100 ms; reopenings are counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use shadowgate_record::{LocalRecorder, Outcome, SeriesId};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::rxstamp::{Arrival, StampedStream};
use crate::worker::Shared;

/// What the subscribers saw.
#[derive(Debug, Default)]
pub(crate) struct SseCounters {
    /// Streams opened with a 2xx answer.
    pub opened: AtomicU64,
    /// Streams that could not be opened (connect error or non-2xx).
    pub failed: AtomicU64,
    /// Events received in the measured window.
    pub events: AtomicU64,
    /// Events received in total.
    pub events_total: AtomicU64,
    /// Streams that ended and were reopened.
    pub reopened: AtomicU64,
}

/// One subscriber's settings.
#[derive(Debug, Clone)]
pub(crate) struct SseTask {
    pub path: String,
    pub lag: SeriesId,
    pub stream: SeriesId,
}

/// Runs one subscriber until `stop` turns true.
pub(crate) async fn subscriber(
    shared: Arc<Shared>,
    task: SseTask,
    counters: Arc<SseCounters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut local = shared.recorder.local();
    // Bounded: every turn either waits for `stop` or for a stream, and ends when `stop` is set.
    let mut first = true;
    while !*stop.borrow() {
        if !first {
            counters.reopened.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = stop.changed() => break,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        first = false;
        tokio::select! {
            _ = stop.changed() => break,
            () = one_stream(&shared, &task, &counters, &mut local) => {}
        }
    }
}

async fn one_stream(
    shared: &Shared,
    task: &SseTask,
    counters: &SseCounters,
    local: &mut LocalRecorder,
) {
    let measured_now = |now: Instant| match shared.t0.get() {
        Some(t0) => now >= *t0 + shared.phases.window_start && now < *t0 + shared.phases.window_end,
        None => false,
    };
    let fail = |local: &mut LocalRecorder, outcome: Outcome| {
        counters.failed.fetch_add(1, Ordering::Relaxed);
        if measured_now(Instant::now()) {
            local.count(task.stream, outcome);
        }
    };
    let stream = match tokio::time::timeout(
        shared.connect_timeout,
        TcpStream::connect(shared.target.addr),
    )
    .await
    {
        Ok(Ok(s)) => s,
        _ => return fail(local, Outcome::ConnectError),
    };
    let _ = stream.set_nodelay(true);
    let arrival = Arrival::default();
    let stream = StampedStream::new(stream, arrival.clone());
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return fail(local, Outcome::ConnectError);
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut path = shared.target.base_path.clone();
    path.push_str(&task.path);
    let mut req = Request::get(path)
        .header(http::header::HOST, shared.target.host_header.clone())
        .header(http::header::ACCEPT, "text/event-stream");
    if let Some((name, value)) = &shared.auth {
        req = req.header(name, value.clone());
    }
    let Ok(req) = req.body(Empty::<Bytes>::new()) else {
        return fail(local, Outcome::OtherError);
    };
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(_) => return fail(local, Outcome::ConnectError),
    };
    let status = resp.status().as_u16();
    if measured_now(Instant::now()) {
        local.count_status(task.stream, status);
    }
    if !(200..300).contains(&status) {
        counters.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    counters.opened.fetch_add(1, Ordering::Relaxed);
    let mut body = resp.into_body();
    let mut parser = EventParser::default();
    let mut last_event: Option<Instant> = None;
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let read_at = Instant::now();
        let now = arrival.instant(read_at).unwrap_or(read_at);
        let events = parser.feed(&data);
        for _ in 0..events {
            counters.events_total.fetch_add(1, Ordering::Relaxed);
            if measured_now(now) {
                counters.events.fetch_add(1, Ordering::Relaxed);
                if let Some(prev) = last_event {
                    let gap = u64::try_from(now.saturating_duration_since(prev).as_nanos())
                        .unwrap_or(u64::MAX);
                    local.record(task.lag, gap.max(1));
                }
            }
            last_event = Some(now);
        }
    }
}

/// Splits an SSE byte stream into events (blocks separated by a blank line); comment-only
/// blocks (`: keep-alive`) are not events.
#[derive(Debug, Default)]
pub(crate) struct EventParser {
    line: Vec<u8>,
    /// The current block has a field line (`data:`, `event:`, `id:`, `retry:`).
    has_field: bool,
}

impl EventParser {
    /// Feeds bytes; returns how many events they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let mut events = 0;
        for &b in bytes {
            if b != b'\n' {
                if b != b'\r' {
                    self.line.push(b);
                }
                continue;
            }
            if self.line.is_empty() {
                if self.has_field {
                    events += 1;
                }
                self.has_field = false;
            } else if self.line[0] != b':' {
                self.has_field = true;
            }
            self.line.clear();
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_counts_events_across_chunks_and_skips_comments() {
        let mut p = EventParser::default();
        assert_eq!(
            p.feed(b"id: 1\nevent: market\ndata: {}\n\n: keep-alive\n\n"),
            1
        );
        assert_eq!(p.feed(b"data: {\"a\""), 0);
        assert_eq!(p.feed(b":1}\n"), 0);
        assert_eq!(p.feed(b"\n"), 1);
        assert_eq!(
            p.feed(b"retry: 3000\r\nevent: market-data\r\ndata: {}\r\n\r\n"),
            1
        );
        assert_eq!(p.feed(b"\n\n\n"), 0);
    }
}
