//! `shadowgate health`: against both simulated gateway profiles (in-process), a closed port,
//! servers answering 500 or the wrong JSON, and bad URLs.

use crate::util::{canned_server, closed_port, run};

#[test]
fn python_profile_is_healthy_and_the_shape_is_named() {
    let sim = crate::util::InProcessSim::start("python");
    let out = run(&["health", &sim.url()]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.starts_with("healthy: "), "{}", out.stdout);
    assert!(
        out.stdout.contains(r#"python-style {"ok":true}"#),
        "{}",
        out.stdout
    );
    // The body itself is printed too.
    assert!(
        out.stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("\"ok\"")),
        "{}",
        out.stdout
    );
}

#[test]
fn cpp_profile_is_healthy_and_the_shape_is_named() {
    let sim = crate::util::InProcessSim::start("cpp");
    // A URL that already ends in /health is accepted as is.
    let out = run(&[
        "health",
        &format!("{}/health", sim.url()),
        "--timeout",
        "10s",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.contains(r#"cpp-style {"status":"ok"}"#),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("timestamp"), "{}", out.stdout);
}

#[test]
fn json_output_is_one_object() {
    let sim = crate::util::InProcessSim::start("cpp");
    let out = run(&["health", &sim.url(), "--json"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["healthy"], true);
    assert_eq!(v["shape"], "cpp");
    assert_eq!(v["status"], 200);
    assert_eq!(v["body"]["status"], "ok");
    assert!(v["url"].as_str().unwrap().ends_with("/health"));
}

#[test]
fn closed_port_is_unhealthy_with_a_reason() {
    let addr = closed_port();
    let out = run(&["health", &format!("http://{addr}")]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("unhealthy"), "{}", out.stdout);
    assert!(out.stdout.contains("connection refused"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&addr.to_string()),
        "names the address: {}",
        out.stdout
    );
}

#[test]
fn server_error_is_unhealthy() {
    let addr = canned_server(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
         Content-Length: 11\r\nConnection: close\r\n\r\n{\"ok\":true}",
        1,
    );
    let out = run(&["health", &format!("http://{addr}")]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("HTTP 500"), "{}", out.stdout);
}

#[test]
fn wrong_json_is_unhealthy() {
    let addr = canned_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
         Content-Length: 15\r\nConnection: close\r\n\r\n{\"alive\":\"yes\"}",
        1,
    );
    let out = run(&["health", &addr.to_string()]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("neither"), "{}", out.stdout);
    assert!(
        out.stdout.contains("alive"),
        "echoes the body: {}",
        out.stdout
    );
}

#[test]
fn ok_false_is_unhealthy() {
    let addr = canned_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
         Content-Length: 12\r\nConnection: close\r\n\r\n{\"ok\":false}",
        1,
    );
    let out = run(&["health", &format!("http://{addr}"), "--json"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["healthy"], false);
    assert!(v["reason"].as_str().unwrap().contains("ok\":false"), "{v}");
}

#[test]
fn silent_server_times_out_as_unhealthy() {
    // Accepts connections (kernel backlog) but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let out = run(&["health", &format!("http://{addr}"), "--timeout", "300ms"]);
    drop(listener);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stdout.contains("no answer within 300ms"),
        "{}",
        out.stdout
    );
}

#[test]
fn bad_urls_are_bad_input() {
    for (url, needle) in [
        ("https://127.0.0.1:8443", "https is not supported"),
        ("ftp://127.0.0.1:21", "unsupported scheme"),
        ("http://", "http://HOST:PORT"),
        ("", "empty URL"),
    ] {
        let out = run(&["health", url]);
        assert_eq!(out.code(), Some(2), "{url:?}: {out:?}");
        assert!(out.stderr.starts_with("error: "), "{url:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{url:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{url:?}: {}", out.stdout);
    }
    let out = run(&["health", "http://127.0.0.1:1", "--timeout", "soon"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
}
