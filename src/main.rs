//! `shadowgate`: shadow-traffic comparison, load generation and phase gates for migrating an
//! HTTP gateway (first user: the VeloZ trading gateway, python → C++).
//!
//! This binary is deliberately thin: it parses arguments with clap, sets up logging and the
//! runtime, and hands typed arguments to one module per command; the work lives in the
//! `shadowgate-*` crates. Conventions every command follows:
//! - `main` is `run(parse())`; `run` returns `anyhow::Result<ExitCode>`. An `Err` is bad input
//!   (or something that could not start), printed once as `error: {:#}` with exit code 2.
//!   A command's own verdict (healthy/unhealthy, pass/fail) is an `Ok` exit code.
//! - Logs go to stderr through `tracing` (`RUST_LOG`, default `warn`), so stdout stays the
//!   command's output (and the first stdout line of a server is its bound address).
//! - One tokio multi-thread runtime with 2 worker threads, built explicitly: the target
//!   machines have few cores and the load generator and gateways under test need them more.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod alerts_cmd;
mod audit_cmd;
mod demo;
mod failover_cmd;
mod health;
mod load_cmd;
mod mirror_cmd;
mod nginx_cmd;
mod pipeline;
mod replay_cmd;
mod report_cmd;
mod sample_cmd;
mod signals;
mod sim_cmd;
mod validate;
mod watch_cmd;

/// Shadow-traffic comparison and load-test harness for migrating an HTTP gateway
/// (VeloZ: python on :8080 → C++ on :8081).
#[derive(Debug, Parser)]
#[command(
    name = "shadowgate",
    version,
    propagate_version = true,
    after_help = "Exit codes: 0 success, 1 the check failed (e.g. unhealthy), 2 bad input.\n\
                  Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the reference VeloZ gateway (python or cpp profile) on ADDR.
    ///
    /// Serves the VeloZ HTTP API the way the chosen gateway does, on top of a simulated
    /// engine, with optional injected faults and divergences. Prints the bound address as
    /// its first line on stdout, then serves until SIGTERM or Ctrl-C.
    Sim(sim_cmd::SimArgs),

    /// The rollout plan's health check: GET URL/health on either gateway.
    ///
    /// Healthy means a 2xx answer whose JSON body is {"ok":true} (python gateway) or
    /// {"status":"ok"} (C++ gateway); the output says which shape it saw and prints the body.
    Health(health::HealthArgs),

    /// The whole pipeline on two simulated gateways, in one command, in under a minute.
    ///
    /// A python-profile primary and a cpp-profile candidate (the real VeloZ differences plus
    /// seeded regressions), the mirror with the VeloZ rules, CPU/memory sampling, a load run
    /// through the mirror (reads, order flows, SSE), then the report: verdict table,
    /// discrepancy groups and report.html. The seeded regressions make it FAIL on purpose;
    /// --clean passes.
    Demo(demo::DemoArgs),

    /// Pre-phase validation: load each gateway in turn, mirror-diff them, report against phase N.
    ///
    /// Health-checks both gateways, loads each with the same scenario (sampling its CPU and
    /// memory when --*-pid or --*-metrics is given), runs an in-process mirror in front of both
    /// under the same load, and judges everything against the phase's criteria, every report
    /// format into --out, candidate and primary side by side. Ctrl-C leaves a partial run that
    /// `shadowgate report` reads.
    Validate(validate::ValidateArgs),

    /// Load one gateway at a fixed arrival rate from a scenario file.
    ///
    /// An open-model load test: a pacer fixes every request's intended send time, Goose
    /// users send them on keep-alive connections, and latency is recorded from the intended
    /// send time (corrected for coordinated omission) and from the actual send time, into a
    /// run directory (latency.hlog, counts.csv, manifest.json, Goose's reports). Runs that the
    /// generator itself could not hold are marked generator-limited.
    Load(load_cmd::LoadArgs),

    /// The shadow proxy: serve clients from the primary, mirror to the candidate, diff.
    ///
    /// Clients get the primary's answer as soon as it comes; each request the rules allow
    /// (by default GET/HEAD/OPTIONS) is then copied to the candidate within a bounded budget
    /// (concurrency, timeout, circuit breaker), the two answers are compared, and latency,
    /// counts, coverage and redacted discrepancies are recorded into a run directory.
    /// Prints the bound address as its first line on stdout; stops cleanly on SIGTERM or
    /// Ctrl-C.
    Mirror(mirror_cmd::MirrorArgs),

    /// Merge run directories, check a rollout phase's criteria, render the verdict.
    ///
    /// Histograms and counts of every RUN_DIR add up exactly (several load generators or
    /// proxies make one verdict). Prints a table (criterion, threshold, measured, result) and
    /// writes report.md, report.json, summary.csv, junit.xml and report.html (and .hgrm
    /// percentile files on request) into --out, by default the first run directory.
    Report(report_cmd::ReportArgs),

    /// Check that every metric an alert rule uses exists on the gateway's /metrics.
    ///
    /// Reads a Prometheus rules file, lists the metrics each alerting rule's expression
    /// selects, and looks for them in a live scrape (--metrics URL) or a saved one
    /// (--scrape FILE). An alert whose metrics are missing can never fire.
    CheckAlerts(alerts_cmd::CheckAlertsArgs),

    /// Record a gateway's CPU % and resident memory every second into a run directory.
    ///
    /// From /proc/PID, or from the gateway's Prometheus /metrics
    /// (process_cpu_seconds_total, process_resident_memory_bytes). Writes resources.csv,
    /// which `shadowgate report` uses for the CPU, memory and leak-slope criteria.
    Sample(sample_cmd::SampleArgs),

    /// Evaluate the rollback decision matrix live against a gateway's /metrics and /health.
    ///
    /// Scrapes every --interval, computes error rate, P99, CPU, memory growth and auth
    /// failures over a sliding window, prints each rule's state changes (ok, pending,
    /// FIRING), and runs --on-rollback once when a rollback rule has held for its duration.
    Watch(watch_cmd::WatchArgs),

    /// Render the rollout plan's weighted nginx split, with the mirror in the path.
    ///
    /// The Python share goes through `shadowgate mirror` (primary Python, candidate C++), the
    /// C++ share to C++ directly; weights 100-N : N, SSE unbuffered, keep-alive upstreams,
    /// optionally the X-Gateway-Version header switch. Prints the config or writes --out.
    NginxConfig(nginx_cmd::NginxConfigArgs),

    /// Failover drill: kill the C++ gateway under steady load behind the nginx split.
    ///
    /// Starts both simulated gateways, the mirror and nginx (the split nginx-config renders),
    /// sends GETs at a fixed rate, kills the C++ side, brings it back, and records how many
    /// client requests failed, how long nginx took to route around it and when traffic came
    /// back, as failover.json and failover.md in --out.
    FailoverDrill(failover_cmd::FailoverArgs),

    /// Audit-log consistency: match the two gateways' audit logs entry by entry.
    ///
    /// Parses the python gateway's `[AUDIT]` lines and the C++ gateway's NDJSON files, maps
    /// their actions (place_order = ORDER_SUBMIT, …), matches entries by order id through the
    /// id map the mirror learned in the same run, and writes missing, extra and mismatched
    /// entries into a run directory that `shadowgate report` reads.
    AuditDiff(audit_cmd::AuditDiffArgs),

    /// Replay a capture (`mirror --capture`) into two gateways and diff them as the mirror does.
    ///
    /// Starts the mirror in-process with the given primary, candidate and rules, sends the
    /// captured requests through it (per captured connection in order; at the recorded pace,
    /// as fast as possible, or at a fixed rate), and writes a run directory of kind replay:
    /// id correlation, order flows and comparisons are exactly the mirror's.
    Replay(replay_cmd::ReplayArgs),
}

fn main() -> ExitCode {
    init_tracing();
    match run(parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn parse() -> Cli {
    // clap prints help/version to stdout with exit 0, and usage errors to stderr with exit 2.
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Exit codes of each command, shown at the end of its `--help`.
const EXIT_CODES: &[(&str, &str)] = &[
    (
        "sim",
        "Exit codes: 0 stopped cleanly by SIGTERM or SIGINT (Ctrl-C); 2 bad arguments or \
         config file, or the address could not be bound.",
    ),
    (
        "health",
        "Exit codes: 0 healthy; 1 unhealthy (non-2xx, unexpected body, ok:false, timeout, \
         connection refused — the reason is printed); 2 bad input (unparsable URL, https).",
    ),
    (
        "demo",
        "Exit codes: 0 the gate passed (--clean); 1 the gate failed — expected without --clean, \
         the seeded regressions make it fail on purpose; 130 interrupted (Ctrl-C/SIGTERM): the \
         run directory holds a partial run, reported as such; 2 the demo could not start.",
    ),
    (
        "validate",
        "Exit codes: 0 every criterion of the phase passed; 1 a criterion failed (or had no \
         data, or the generator was the limit); 2 bad input, a gateway failed its health check \
         (nothing is written), or a step could not run (the partial run is kept); 130 \
         interrupted (Ctrl-C/SIGTERM): the run directory is marked partial and reported.",
    ),
    (
        "load",
        "Exit codes: 0 the run completed (errors and a generator-limited run are reported in \
         the summary and the manifest); 2 bad input (scenario errors, bad URL, unreachable \
         target) or the run could not start.",
    ),
    (
        "mirror",
        "Exit codes: 0 stopped cleanly by SIGTERM or SIGINT (Ctrl-C), run directory finished; \
         2 bad input (rules file, URL, settings — every problem listed), the address could not \
         be bound, or the run directory could not be created or finished.",
    ),
    (
        "report",
        "Exit codes: 0 every criterion passed; 1 a criterion failed, had no data, or was \
         generator-limited; 2 bad input (a run directory, the criteria file or an argument; \
         the message names the file and what is wrong).",
    ),
    (
        "check-alerts",
        "Exit codes: 0 every alert's metrics exist; 1 some alert uses a metric the gateway does \
         not export (listed per alert); 2 bad input (rules file, scrape) or the gateway could \
         not be scraped.",
    ),
    (
        "sample",
        "Exit codes: 0 sampling ended (--duration passed, SIGINT/SIGTERM, or the process \
         exited) and the run directory is finished; 2 bad input (no such process, bad URL, \
         the run directory exists or cannot be written).",
    ),
    (
        "watch",
        "Exit codes: 0 stopped (--duration or SIGINT/SIGTERM) with no rollback rule fired; \
         1 a rollback rule fired (--on-rollback ran once); 2 bad input (rollback file, URL).",
    ),
    (
        "nginx-config",
        "Exit codes: 0 the config was printed or written; 2 bad input (weight outside 0..=100, \
         an address that is not host:port — every problem listed) or --out could not be written.",
    ),
    (
        "failover-drill",
        "Exit codes: 0 the drill ran and traffic came back to the candidate; 1 it ran, but \
         traffic did not come back within --return-within or more requests failed than \
         --max-failed; 2 bad input, or nginx or the gateways could not start.",
    ),
    (
        "audit-diff",
        "Exit codes: 0 the audit logs are consistent; 1 entries are missing, extra or differ \
         (listed in the run directory); 2 bad input (a log, the rules file or the id map cannot \
         be read; the message names the file and line).",
    ),
    (
        "replay",
        "Exit codes: 0 the capture was replayed (differences are in the run directory; gate on \
         them with `shadowgate report`); 2 bad input (the capture, rules, URLs, settings) or the \
         run directory could not be created or finished.",
    ),
];

/// The clap command with each subcommand's exit codes appended to its help. Done here rather
/// than in attributes so that a command module's own `after_long_help` (examples) is kept:
/// the exit codes go first, its text follows.
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for &(name, codes) in EXIT_CODES {
        cmd = cmd.mut_subcommand(name, |sub| {
            let long = sub.get_after_long_help().map(|h| format!("{codes}\n\n{h}"));
            let sub = sub.after_help(codes);
            match long {
                Some(long) => sub.after_long_help(long),
                None => sub,
            }
        });
    }
    cmd
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("could not start the async runtime: {e}"))?;
    runtime.block_on(async move {
        match cli.command {
            Command::Sim(args) => sim_cmd::run(args).await,
            Command::Health(args) => health::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Validate(args) => validate::run(args).await,
            Command::Load(args) => load_cmd::run(args).await,
            Command::Mirror(args) => mirror_cmd::run(args).await,
            Command::Report(args) => report_cmd::run(args).await,
            Command::CheckAlerts(args) => alerts_cmd::run(args).await,
            Command::Sample(args) => sample_cmd::run(args).await,
            Command::Watch(args) => watch_cmd::run(args).await,
            Command::NginxConfig(args) => nginx_cmd::run(args).await,
            Command::FailoverDrill(args) => failover_cmd::run(args).await,
            Command::AuditDiff(args) => audit_cmd::run(args).await,
            Command::Replay(args) => replay_cmd::run(args).await,
        }
    })
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    // An unparsable RUST_LOG falls back to the default rather than failing the command.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    // `try_init`: a second subscriber (never expected) is not worth a panic.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        command().debug_assert();
        let cmd = command();
        let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
        let with_codes: Vec<&str> = EXIT_CODES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, with_codes, "every command has its exit codes listed");
    }

    #[test]
    fn every_command_help_names_its_exit_codes() {
        let mut cmd = command();
        for sub in cmd.get_subcommands_mut() {
            let long = sub.render_long_help().to_string();
            assert!(
                long.contains("Exit codes"),
                "{} --help lacks exit codes",
                sub.get_name()
            );
            let short = sub.render_help().to_string();
            assert!(
                short.contains("Exit codes"),
                "{} -h lacks exit codes",
                sub.get_name()
            );
        }
    }

    #[test]
    fn health_timeout_parses_humantime() {
        let cli = Cli::try_parse_from(["shadowgate", "health", "http://h:1", "--timeout", "250ms"])
            .unwrap();
        match cli.command {
            Command::Health(a) => assert_eq!(a.timeout, std::time::Duration::from_millis(250)),
            c => panic!("{c:?}"),
        }
        assert!(Cli::try_parse_from(["shadowgate", "health", "h", "--timeout", "soon"]).is_err());
    }
}
