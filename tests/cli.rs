//! The command line itself: help texts, usage errors, and the interim demo.

use crate::util::{run, run_with_timeout};
use std::time::Duration;

const COMMANDS: [&str; 3] = ["sim", "health", "demo"];

#[test]
fn every_command_help_states_its_exit_codes() {
    for cmd in COMMANDS {
        let out = run(&[cmd, "--help"]);
        assert_eq!(out.code(), Some(0), "{cmd} --help: {out:?}");
        assert!(
            out.stdout.contains("Exit codes"),
            "{cmd} --help:\n{}",
            out.stdout
        );
        assert!(out.stdout.contains("0 "), "{cmd} --help:\n{}", out.stdout);
        assert!(out.stdout.contains("2 "), "{cmd} --help:\n{}", out.stdout);
    }
    let out = run(&["--help"]);
    assert_eq!(out.code(), Some(0));
    for cmd in COMMANDS {
        assert!(
            out.stdout.contains(cmd),
            "top-level help lists {cmd}:\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("Exit codes"), "{}", out.stdout);
}

#[test]
fn health_help_names_both_shapes() {
    let out = run(&["health", "--help"]);
    assert!(out.stdout.contains(r#"{"ok":true}"#), "{}", out.stdout);
    assert!(out.stdout.contains(r#"{"status":"ok"}"#), "{}", out.stdout);
    assert!(out.stdout.contains("--timeout"), "{}", out.stdout);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--no-such-flag"][..],
        &["health", "http://127.0.0.1:1", "--bogus"],
        &["sim", "--bogus"],
        &["demo", "--bogus"],
        &["no-such-command"],
        &["health"],
        &[],
    ] {
        let out = run(args);
        assert_eq!(out.code(), Some(2), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?} explains itself on stderr");
    }
}

#[test]
fn version_prints_the_package_version() {
    let out = run(&["--version"]);
    assert_eq!(out.code(), Some(0));
    assert!(
        out.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        out.stdout
    );
}

#[test]
fn interim_demo_runs_both_profiles_and_says_it_is_interim() {
    let out = run_with_timeout(&["demo"], Duration::from_secs(60));
    assert_eq!(out.code(), Some(0), "{out:?}");
    let text = out.stdout.to_lowercase();
    assert!(text.contains("python"), "{}", out.stdout);
    assert!(text.contains("cpp"), "{}", out.stdout);
    assert!(text.contains("interim"), "{}", out.stdout);
    for route in [
        "/health",
        "/api/market",
        "/api/account",
        "/api/order",
        "/api/orders",
    ] {
        assert!(
            out.stdout.contains(route),
            "demo shows {route}:\n{}",
            out.stdout
        );
    }
    for coming in ["mirror", "load", "report"] {
        assert!(
            text.contains(coming),
            "demo says what is coming ({coming}):\n{}",
            out.stdout
        );
    }
}
