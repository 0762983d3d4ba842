//! `shadowgate sim` as a process: prints its address, serves, stops cleanly on signals,
//! and rejects bad configuration with exit code 2.

use crate::util::{Server, http, run, tempdir};

#[test]
fn cpp_sim_prints_its_address_answers_health_and_stops_on_sigterm() {
    let sim = Server::spawn(&["sim", "--profile", "cpp", "--listen", "127.0.0.1:0"]);
    assert!(sim.first_line.contains("cpp"), "{}", sim.first_line);
    assert_ne!(sim.addr.port(), 0, "the real port is printed, not 0");
    let (status, body) = http(sim.addr, "GET", "/health", None);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok", "{body}");
    // The cpp default is auth on, like the real gateway: /api needs credentials.
    let (status, _) = http(sim.addr, "GET", "/api/account", None);
    assert_eq!(status, 401);
    let (exit, stderr) = sim.signal_and_wait("TERM");
    assert_eq!(exit.code(), Some(0), "stderr:\n{stderr}");
}

#[test]
fn python_sim_stops_on_sigint() {
    let sim = Server::spawn(&["sim", "--profile", "python", "--listen", "127.0.0.1:0"]);
    assert!(sim.first_line.contains("python"), "{}", sim.first_line);
    let (status, body) = http(sim.addr, "GET", "/health", None);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["ok"],
        true
    );
    let (exit, stderr) = sim.signal_and_wait("INT");
    assert_eq!(exit.code(), Some(0), "stderr:\n{stderr}");
}

#[test]
fn health_command_accepts_a_spawned_sim() {
    let sim = Server::spawn(&["sim", "--profile", "python", "--listen", "127.0.0.1:0"]);
    let out = run(&["health", &sim.url()]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.contains("python-style"), "{}", out.stdout);
}

#[test]
fn bad_config_file_exits_2_naming_the_file() {
    let dir = tempdir();
    let path = dir.path().join("broken-sim.toml");
    std::fs::write(&path, "[engine]\nno_such_key = 1\n").unwrap();
    let out = run(&[
        "sim",
        "--profile",
        "cpp",
        "--listen",
        "127.0.0.1:0",
        "--config",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("broken-sim.toml"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "nothing is served: {}", out.stdout);

    let missing = dir.path().join("missing.toml");
    let out = run(&[
        "sim",
        "--profile",
        "cpp",
        "--config",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("missing.toml"), "{}", out.stderr);
}

#[test]
fn bad_flags_and_busy_port_exit_2() {
    let out = run(&["sim", "--profile", "python", "--fault", "explode:0.5"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    let out = run(&["sim", "--profile", "perl"]);
    assert_eq!(out.code(), Some(2), "{out:?}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = run(&["sim", "--profile", "python", "--listen", &addr]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains(&addr),
        "names the address: {}",
        out.stderr
    );
}
