//! Helpers shared by the end-to-end tests: run the real binary, spawn it as a server and read
//! back its bound address, talk plain HTTP/1.1 to loopback, make temp dirs. Every wait here is
//! bounded; a spawned server is killed when its handle drops.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_shadowgate");

/// Generous bound for anything that should take well under a second.
pub const WAIT: Duration = Duration::from_secs(30);

/// A fresh, empty directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("shadowgate-test-")
        .tempdir()
        .unwrap()
}

/// What a finished run of the binary left behind.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `shadowgate ARGS...` to completion (killed after `WAIT`), with RUST_LOG unset so that
/// stderr holds only what the command itself prints.
pub fn run(args: &[&str]) -> Output {
    run_with_timeout(args, WAIT)
}

pub fn run_with_timeout(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_bounded(&mut child, limit)
        .unwrap_or_else(|| panic!("shadowgate {args:?} did not finish within {limit:?}"));
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Polls `child` until it exits or `limit` passes; on timeout kills it and returns `None`.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A `shadowgate` server process (e.g. `sim`), killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The first stdout line (the one naming the address).
    pub first_line: String,
    stderr: Option<thread::JoinHandle<String>>,
}

impl Server {
    /// Spawns `shadowgate ARGS...` and waits (bounded) for its first stdout line, which must
    /// name the bound address.
    pub fn spawn(args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Some(drain(child.stderr.take().unwrap()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Keeps reading after the first line so the server never blocks on a full pipe.
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let first_line = match rx.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                let err = stderr.map(|h| h.join().unwrap()).unwrap_or_default();
                panic!("shadowgate {args:?} printed no address ({status}); stderr:\n{err}");
            }
        };
        let addr = parse_addr(&first_line)
            .unwrap_or_else(|| panic!("no socket address in first line {first_line:?}"));
        Server {
            child,
            addr,
            first_line,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends `signal` (e.g. "TERM", "INT") with kill(1) and waits (bounded) for the exit.
    /// Returns the exit status and everything the server wrote to stderr.
    pub fn signal_and_wait(mut self, signal: &str) -> (ExitStatus, String) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
        let status = wait_bounded(&mut self.child, WAIT)
            .unwrap_or_else(|| panic!("server did not stop within {WAIT:?} after SIG{signal}"));
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        (status, stderr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds a socket address in a line such as `listening on http://127.0.0.1:4321` or `127.0.0.1:4321`.
pub fn parse_addr(line: &str) -> Option<SocketAddr> {
    line.split_whitespace().find_map(|word| {
        let word = word
            .trim_start_matches("http://")
            .trim_end_matches(['/', ',', '.', ';']);
        word.parse().ok()
    })
}

/// A minimal HTTP/1.1 exchange over loopback: one request, `Connection: close`, read to EOF.
/// Returns the status code and the body (chunked bodies are decoded).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    for _ in 0..100_000 {
        let Some((size, rest)) = s.split_once("\r\n") else {
            break;
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A throwaway HTTP server on 127.0.0.1:0 that answers every request with `response` (a full
/// raw HTTP response) and then closes; serves at most `max_conns` connections.
pub fn canned_server(response: &'static str, max_conns: usize) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming().take(max_conns) {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            // Read the request head (bounded) before answering.
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 64 * 1024 {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(response.as_bytes());
        }
    });
    addr
}

/// An address on 127.0.0.1 with nothing listening (bound, then released).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

#[test]
fn parse_addr_finds_the_address_in_common_first_lines() {
    let want: SocketAddr = "127.0.0.1:4321".parse().unwrap();
    assert_eq!(parse_addr("127.0.0.1:4321"), Some(want));
    assert_eq!(
        parse_addr("listening on http://127.0.0.1:4321/"),
        Some(want)
    );
    assert_eq!(
        parse_addr("sim (cpp) listening on 127.0.0.1:4321."),
        Some(want)
    );
    assert_eq!(parse_addr("no address here"), None);
}

/// A simulator of one profile running in this test process (on its own small runtime, so
/// the test thread can block on the binary), with authentication off. Stopped on drop.
pub struct InProcessSim {
    runtime: Option<tokio::runtime::Runtime>,
    sim: Option<shadowgate_sim::SimServer>,
    pub addr: SocketAddr,
}

impl InProcessSim {
    pub fn start(profile: &str) -> InProcessSim {
        let profile = shadowgate_sim::Profile::parse(profile).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sim = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut config = shadowgate_sim::SimConfig::default_for(profile);
            config.auth.enabled = false;
            shadowgate_sim::start(config, listener).await.unwrap()
        });
        let addr = sim.local_addr();
        InProcessSim {
            runtime: Some(runtime),
            sim: Some(sim),
            addr,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for InProcessSim {
    fn drop(&mut self) {
        if let (Some(runtime), Some(sim)) = (self.runtime.take(), self.sim.take()) {
            runtime.block_on(async {
                let _ = tokio::time::timeout(WAIT, sim.shutdown()).await;
            });
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl std::fmt::Debug for InProcessSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessSim")
            .field("addr", &self.addr)
            .finish()
    }
}
