//! The nginx traffic split (`nginx-config`, scenarios/nginx, scripts/adjust-traffic-split.sh)
//! and the HAProxy alternative, against a real nginx and haproxy on loopback.
//!
//! nginx cannot listen on port 0, so each nginx gets a port found free by binding
//! 127.0.0.1:0 and releasing it, and is restarted on another port if that one was taken in
//! the meantime. Every nginx runs in the foreground with its pid, logs and temp files in the
//! test's temp dir, and is stopped when its handle drops. These tests need nginx and haproxy
//! installed: scripts/test.sh installs them; without them the tests fail and say so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::util::{BIN, Server, WAIT, run, tempdir, wait_bounded};

/// A system tool, from $ENV, PATH or /usr/sbin (Debian's place, not on every user's PATH).
fn tool(name: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    let path = on_path.unwrap_or_else(|| Path::new("/usr/sbin").join(name));
    assert!(
        path.is_file(),
        "{name} is not installed: run `bash scripts/test.sh` (it installs nginx and haproxy), \
         or set {env} to the binary"
    );
    path
}

pub fn nginx_bin() -> PathBuf {
    tool("nginx", "NGINX")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An nginx in the foreground, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl Nginx {
    /// Starts nginx with the config `conf(port)` written to `dir/nginx.conf`, on a free port;
    /// retries with another port if the chosen one was taken before nginx bound it.
    pub fn start(dir: &Path, conf: impl Fn(u16) -> String) -> Nginx {
        let conf_path = dir.join("nginx.conf");
        let err_log = dir.join("error.log");
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            std::fs::write(&conf_path, conf(port)).unwrap();
            let _ = std::fs::remove_file(&err_log);
            let mut child = Command::new(nginx_bin())
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(&err_log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait().unwrap() {
                    last_err = format!(
                        "nginx exited ({status}): {}",
                        std::fs::read_to_string(&err_log).unwrap_or_default()
                    );
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Nginx {
                        child,
                        addr,
                        dir: dir.to_owned(),
                    };
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            if !last_err.contains("Address already in use") {
                break;
            }
        }
        panic!("nginx did not start: {last_err}");
    }

    /// Processes the master has started and not yet reaped: its worker, plus old workers
    /// still finishing after a reload (0 where /proc does not list children).
    pub fn children(&self) -> usize {
        let pid = self.child.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .map(|s| s.split_whitespace().count())
            .unwrap_or(0)
    }

    /// `-p DIR -c DIR/nginx.conf -e DIR/error.log`, for `nginx -s` and the adjust script.
    pub fn args(&self) -> String {
        let d = self.dir.display();
        format!("-p {d} -c {d}/nginx.conf -e {d}/error.log")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its worker; a SIGKILL would orphan it.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        if wait_bounded(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP/1.1 answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Which gateway answered, from the body of /health: Python `{"ok": true}`, C++
    /// `{"status":"ok",...}`.
    pub fn side(&self) -> &'static str {
        if self.body.contains("\"ok\": true") {
            "python"
        } else if self.body.contains("\"status\":\"ok\"") {
            "cpp"
        } else {
            "unknown"
        }
    }
}

/// A keep-alive HTTP/1.1 client connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    addr: SocketAddr,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            reader: BufReader::new(s),
            addr,
        }
    }

    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.reader.get_mut().write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        for _ in 0..200 {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                headers.push((n.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if let Some(len) = find("content-length") {
            body.resize(len.parse().unwrap(), 0);
            self.reader.read_exact(&mut body).unwrap();
        } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            for _ in 0..10_000 {
                line.clear();
                self.reader.read_line(&mut line).unwrap();
                let n = usize::from_str_radix(line.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// `shadowgate nginx-config ARGS --standalone DIR --listen 127.0.0.1:PORT` as a config text.
fn render_standalone(dir: &Path, port: u16, args: &[&str]) -> String {
    let listen = format!("127.0.0.1:{port}");
    let dir_s = dir.display().to_string();
    let mut all = vec!["nginx-config"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--listen", &listen, "--standalone", &dir_s]);
    let out = run(&all);
    assert_eq!(out.code(), Some(0), "nginx-config failed: {}", out.stderr);
    out.stdout
}

/// The admin address in the mirror's first line (`... (admin http://ADDR) -> DIR`).
fn admin_addr(first_line: &str) -> SocketAddr {
    let after = first_line.split("(admin http://").nth(1).unwrap();
    after[..after.find(')').unwrap()].parse().unwrap()
}

fn summary(admin: SocketAddr) -> serde_json::Value {
    let mut c = Conn::open(admin);
    let r = c.get("/summary", &[]);
    assert_eq!(r.status, 200);
    serde_json::from_str(&r.body).unwrap()
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Opens `/api/stream` on `addr` (HTTP/1.0, so the body is not chunked) and returns how late
/// each of the first `n` live events arrived: arrival time minus the event's own engine
/// timestamp (`ts_ns` in Python frames, `last_update_ns` in C++ market-data frames). Replayed
/// history (stamped before the connection opened) is skipped.
fn live_event_delays(addr: SocketAddr, headers: &[(&str, &str)], n: usize) -> Vec<Duration> {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("GET /api/stream HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let opened = unix_ns();
    s.write_all(req.as_bytes()).unwrap();
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    let mut delays = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while delays.len() < n && Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let arrived = unix_ns();
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
            continue;
        };
        let stamp = v
            .get("ts_ns")
            .or_else(|| v.get("last_update_ns"))
            .and_then(serde_json::Value::as_u64);
        if let Some(ts) = stamp.filter(|ts| *ts >= opened) {
            delays.push(Duration::from_nanos(arrived.saturating_sub(ts)));
        }
    }
    assert_eq!(delays.len(), n, "fewer than {n} live events within 10 s");
    delays
}

#[test]
fn nginx_accepts_every_phase_of_both_variants() {
    let nginx = nginx_bin();
    let tmp = tempdir();
    for weight in ["0", "5", "25", "50", "100"] {
        for extra in [&[][..], &["--header-switch"], &["--no-mirror"]] {
            let dir = tmp.path().join(format!("w{weight}{}", extra.join("")));
            std::fs::create_dir_all(&dir).unwrap();
            let mut args = vec!["--cpp-weight", weight];
            args.extend_from_slice(extra);
            let conf = render_standalone(&dir, 18080, &args);
            let path = dir.join("nginx.conf");
            std::fs::write(&path, &conf).unwrap();
            let out = Command::new(&nginx)
                .arg("-t")
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(&path)
                .arg("-e")
                .arg(dir.join("error.log"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "nginx -t rejected weight {weight} {extra:?}:\n{}\n{conf}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn nginx_config_rejects_out_of_range_weights() {
    for bad in ["101", "-5", "lots"] {
        let out = run(&["nginx-config", "--cpp-weight", bad]);
        assert_eq!(out.code(), Some(2), "weight {bad}: {out:?}");
        assert!(out.stdout.is_empty());
    }
    let out = run(&["nginx-config", "--cpp-weight", "101"]);
    assert!(out.stderr.contains("out of range"), "{}", out.stderr);
    assert!(out.stderr.contains("0 to 100"), "{}", out.stderr);
}

#[test]
fn haproxy_example_config_is_valid() {
    let haproxy = tool("haproxy", "HAPROXY");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/haproxy/veloz.cfg");
    let out = Command::new(haproxy)
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "haproxy -c rejected {}:\n{}{}",
        cfg.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The whole path: nginx (25 % C++) in front of the mirror (python primary, cpp candidate)
/// and the cpp gateway.
#[test]
fn nginx_split_mirrors_streams_sse_unbuffered_and_honours_weights() {
    let tmp = tempdir();
    let python = Server::spawn(&["sim", "--profile", "python", "--listen", "127.0.0.1:0"]);
    let cpp = Server::spawn(&[
        "sim",
        "--profile",
        "cpp",
        "--auth",
        "off",
        "--listen",
        "127.0.0.1:0",
    ]);
    let run_dir = tmp.path().join("mirror-run");
    let mirror = Server::spawn(&[
        "mirror",
        "--primary",
        &python.url(),
        "--candidate",
        &cpp.url(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--out",
        run_dir.to_str().unwrap(),
    ]);
    let admin = admin_addr(&mirror.first_line);
    let ndir = tmp.path().join("nginx");
    std::fs::create_dir_all(&ndir).unwrap();
    let (m, p, c) = (mirror.addr.to_string(), python.url(), cpp.url());
    let nginx = Nginx::start(&ndir, |port| {
        render_standalone(
            &ndir,
            port,
            &[
                "--cpp-weight",
                "25",
                "--header-switch",
                "--mirror",
                &m,
                "--python",
                &p,
                "--cpp",
                &c,
            ],
        )
    });

    // Weights: 1,000 requests on keep-alive connections, 25 % C++ within ±5 %.
    let mut conn = Conn::open(nginx.addr);
    let (mut py_n, mut cpp_n) = (0, 0);
    for i in 0..1000 {
        if i % 100 == 0 {
            conn = Conn::open(nginx.addr);
        }
        let r = conn.get("/health", &[]);
        assert_eq!(r.status, 200, "{r:?}");
        match r.side() {
            "python" => {
                // The Python share came through the mirror, and Python's own Server header
                // is passed on.
                assert_eq!(r.header("x-upstream-addr"), Some(m.as_str()), "{r:?}");
                assert!(r.header("server").unwrap_or("").starts_with("SimpleHTTP"));
                py_n += 1;
            }
            "cpp" => cpp_n += 1,
            _ => panic!("unknown side: {r:?}"),
        }
    }
    eprintln!("split over 1000 requests: python {py_n}, cpp {cpp_n}");
    assert_eq!(py_n + cpp_n, 1000);
    assert!(
        (200..=300).contains(&cpp_n),
        "cpp got {cpp_n} of 1000, want 250 ± 50"
    );

    // The header switch pins either side.
    for (value, want) in [("cpp", "cpp"), ("PYTHON", "python"), ("Cpp", "cpp")] {
        for _ in 0..10 {
            let r = conn.get("/health", &[("X-Gateway-Version", value)]);
            assert_eq!(r.side(), want, "X-Gateway-Version: {value}: {r:?}");
        }
    }

    // SSE through nginx and the mirror (pinned to Python), and straight to C++ through nginx:
    // each live event arrives within 100 ms of the engine stamping it (the whole chain
    // streams: nginx, the mirror's tee, the simulator).
    let via_mirror = live_event_delays(nginx.addr, &[("X-Gateway-Version", "python")], 3);
    let direct_sim = live_event_delays(python.addr, &[], 3);
    let via_cpp = live_event_delays(nginx.addr, &[("X-Gateway-Version", "cpp")], 3);
    eprintln!(
        "SSE live-event delays: nginx+mirror {via_mirror:?}, python sim direct {direct_sim:?}, \
         nginx->cpp {via_cpp:?}"
    );
    for d in via_mirror.iter().chain(&via_cpp) {
        assert!(*d < Duration::from_millis(100), "SSE event {d:?} late");
    }

    // Mirrored: the mirror saw the Python share (and the pinned requests) and compared
    // shadow copies with the C++ gateway.
    let deadline = Instant::now() + WAIT;
    let s = loop {
        let s = summary(admin);
        let compared = s["shadow"]["compared"].as_u64().unwrap_or(0);
        if compared >= 700 || Instant::now() > deadline {
            break s;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let primary = s["primary"]["requests"].as_u64().unwrap();
    assert!(primary >= py_n + 10, "mirror saw {primary} requests: {s}");
    let compared = s["shadow"]["compared"].as_u64().unwrap();
    assert!(compared >= 700, "mirror compared {compared}: {s}");
    drop(nginx);
    let (status, _) = mirror.signal_and_wait("TERM");
    assert!(status.success());
    assert!(run_dir.join("manifest.json").is_file());
}

/// scripts/adjust-traffic-split.sh: renders, tests, reloads; a bad weight or a config nginx
/// rejects leaves the running split alone.
#[test]
fn adjust_script_reloads_and_refuses_a_failed_test() {
    let tmp = tempdir();
    let python = Server::spawn(&["sim", "--profile", "python", "--listen", "127.0.0.1:0"]);
    let cpp = Server::spawn(&[
        "sim",
        "--profile",
        "cpp",
        "--auth",
        "off",
        "--listen",
        "127.0.0.1:0",
    ]);
    let dir = tmp.path().to_owned();
    let confd = dir.join("conf.d");
    std::fs::create_dir_all(&confd).unwrap();
    let split_conf = confd.join("veloz-split.conf");
    // No mirror here: this test is about the script; Python answers the Python share.
    let split_args = format!(
        "--no-mirror --python {} --cpp {} --listen 127.0.0.1:PORT",
        python.url(),
        cpp.url()
    );
    let nginx = Nginx::start(&dir, |port| {
        let args = split_args.replace("PORT", &port.to_string());
        let argv: Vec<&str> = ["nginx-config", "--cpp-weight", "0"]
            .into_iter()
            .chain(args.split(' '))
            .collect();
        let out = run(&argv);
        assert_eq!(out.code(), Some(0), "{}", out.stderr);
        std::fs::write(&split_conf, out.stdout).unwrap();
        format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {d}/cb;\n\
             \x20   proxy_temp_path {d}/px;\n    fastcgi_temp_path {d}/fc;\n\
             \x20   uwsgi_temp_path {d}/uw;\n    scgi_temp_path {d}/sc;\n\
             \x20   include {d}/conf.d/*.conf;\n}}\n",
            d = dir.display()
        )
    });
    let split_args = split_args.replace("PORT", &nginx.addr.port().to_string());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/adjust-traffic-split.sh");
    let adjust = |weight: &str| {
        Command::new("bash")
            .arg(&script)
            .arg(weight)
            .env("NGINX_CONF", &split_conf)
            .env("NGINX", nginx_bin())
            .env("NGINX_ARGS", nginx.args())
            .env("SHADOWGATE", BIN)
            .env("SPLIT_ARGS", &split_args)
            .output()
            .unwrap()
    };
    let sides = |n: usize| {
        let mut conn = Conn::open(nginx.addr);
        (0..n)
            .map(|_| conn.get("/health", &[]).side())
            .collect::<Vec<_>>()
    };
    assert!(
        sides(10).iter().all(|s| *s == "python"),
        "phase 0 is all python"
    );

    let out = adjust("100");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The reload is asynchronous: old workers finish first. Bounded wait for the new split.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sides(10).iter().all(|s| *s == "cpp") {
        assert!(
            Instant::now() < deadline,
            "the split never became 100 % cpp"
        );
        thread::sleep(Duration::from_millis(100));
    }
    // The old worker may still accept a new connection until it has closed its listener: wait
    // until only the new worker is left, so the checks below see the running split only.
    while nginx.children() > 1 {
        assert!(
            Instant::now() < deadline,
            "the old nginx worker never exited"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let at_100 = std::fs::read_to_string(&split_conf).unwrap();

    let out = adjust("150");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 to 100"));
    assert_eq!(std::fs::read_to_string(&split_conf).unwrap(), at_100);

    // A leftover file that clashes with the split makes `nginx -t` fail: the script must put
    // the running split back and not reload.
    std::fs::write(
        confd.join("old-copy.conf"),
        "upstream veloz_split { server 127.0.0.1:9; }\n",
    )
    .unwrap();
    let out = adjust("50");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not reloaded"));
    assert_eq!(std::fs::read_to_string(&split_conf).unwrap(), at_100);
    assert!(sides(10).iter().all(|s| *s == "cpp"), "still 100 % cpp");
    let leftovers: Vec<_> = std::fs::read_dir(&confd)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");
}

/// `failover-drill` with a 2 s fail_timeout: the candidate is killed under load behind the
/// split, nginx routes around it, and traffic comes back after the restart.
#[test]
fn failover_drill_routes_around_a_killed_candidate_and_returns() {
    let nginx = nginx_bin();
    let tmp = tempdir();
    let out_dir = tmp.path().join("drill");
    let out = super::util::run_with_timeout(
        &[
            "failover-drill",
            "--out",
            out_dir.to_str().unwrap(),
            "--nginx",
            nginx.to_str().unwrap(),
            "--cpp-weight",
            "50",
            "--rate",
            "100",
            "--fail-timeout",
            "2s",
            "--warmup",
            "2s",
            "--down-for",
            "3s",
            "--return-within",
            "8s",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("failover.json")).unwrap())
            .unwrap();
    eprintln!("{j:#}");
    let requests = j["requests"].as_u64().unwrap();
    assert!(requests >= 500, "{j}");
    let before = j["cpp_share_before_percent"].as_f64().unwrap();
    assert!(
        (40.0..=60.0).contains(&before),
        "split before the kill: {j}"
    );
    // nginx tried the dead server (max_fails attempts), then stopped sending to it.
    assert!(j["touched_dead_candidate"].as_u64().unwrap() >= 1, "{j}");
    assert!(j["routed_around_after_ms"].is_number(), "{j}");
    assert_eq!(j["returned"], true, "{j}");
    assert!(j["cpp_share_after_return_percent"].as_f64().unwrap() > 0.0);
    // GETs are retried by nginx on the next server: a crash costs clients next to nothing.
    assert!(j["failed"].as_u64().unwrap() * 100 <= requests, "{j}");
    let md = std::fs::read_to_string(out_dir.join("failover.md")).unwrap();
    assert!(md.contains("restart → traffic back on C++"));
    assert!(out_dir.join("mirror/manifest.json").is_file());

    let bad = run(&["failover-drill", "--out", "x", "--cpp-weight", "0"]);
    assert_eq!(bad.code(), Some(2), "{bad:?}");
    assert!(bad.stderr.contains("--cpp-weight 0"), "{}", bad.stderr);
}
