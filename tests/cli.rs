//! The command line itself: help texts and usage errors (`demo` has its own tests in
//! demo_cli.rs).

use crate::util::run;

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
