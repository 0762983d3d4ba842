//! `shadowgate sim`: run the reference VeloZ gateway.
//!
//! Configuration is built in two steps, before anything is bound: the TOML file (if any) is
//! parsed into the raw configuration, the flags are laid over it (flags win), and the result
//! is validated once, so every problem — from the file or the flags — is reported together
//! (exit code 2). Then the address is bound, exactly one line
//! `shadowgate sim (<profile>) listening on http://<addr>` goes to stdout (port 0 allowed, so
//! scripts read the real port from it), and the simulator serves until SIGINT or SIGTERM,
//! when it shuts down gracefully.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use shadowgate_sim::config::{ConfigIssue, RawDifferences, RawFault, RawSimConfig};
use shadowgate_sim::{ConfigErrors, Profile, SimConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileArg {
    /// The Python gateway (apps/gateway/gateway.py).
    Python,
    /// The C++ gateway (apps/gateway/src).
    Cpp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// Arguments of `shadowgate sim`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
EXAMPLES:
    shadowgate sim --profile python --listen 127.0.0.1:8080
    shadowgate sim --profile cpp --listen 127.0.0.1:0 --seed 7 --latency lognormal:150us,1ms
    shadowgate sim --profile cpp --identical --fault stall:100ms/1s
    shadowgate sim --profile python --config scenarios/sim/faulty.toml --fault reset:0.01@'POST /api/order'

GET /__sim/stats on the simulator returns what it served and injected, as JSON.")]
pub struct SimArgs {
    /// Which gateway to imitate: python or cpp.
    ///
    /// `python` serves the Python gateway's routes, JSON spacing, error codes, headers and
    /// SSE; `cpp` the C++ gateway's (POST /api/orders, {"status":"success","data":…},
    /// sentence errors, /api/health, /metrics, …), with every difference of veloz-api.md §9.
    #[arg(long, value_enum)]
    pub profile: ProfileArg,

    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: String,

    /// Simulator config file (TOML); flags given here override its values.
    ///
    /// Sections: engine, auth, rate_limit, sse, latency, faults, divergence, differences (cpp
    /// only), metrics, server, audit (`log` python, `dir` cpp). See scenarios/sim/*.toml for
    /// annotated examples.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Seed for every injected decision and for the engine's prices.
    ///
    /// Implies --deterministic unless the config file says otherwise: two simulators of the
    /// same profile and seed, sent the same requests, answer the same except for the noise
    /// fields of veloz-api.md §8 (timestamps, generated ids, …).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Put the engine's market ticks on an epoch-aligned grid with seeded prices, so two
    /// simulators quote the same price at the same instant.
    #[arg(long)]
    pub deterministic: bool,

    /// Turn authentication on or off (default: as the real gateway — python off, cpp on).
    ///
    /// With auth on, log in with POST /api/auth/login (admin password: "admin" unless the
    /// config sets auth.admin_password) and send `Authorization: Bearer <token>`.
    #[arg(long, value_enum, value_name = "on|off")]
    pub auth: Option<OnOff>,

    /// Latency added to every route (routes in the config file can have their own).
    ///
    /// SPEC is `fixed:200us`, `uniform:100us..1ms` or `lognormal:150us,1ms` (median, then
    /// 99th percentile). Sub-millisecond delays are kept accurate by spinning for the last
    /// millisecond (set latency.spin = false in the config to use the 1 ms timer instead).
    #[arg(long, value_name = "SPEC")]
    pub latency: Option<String>,

    /// Answer this fraction of requests with a 500 (HTML for python, JSON for cpp).
    #[arg(long, value_name = "F")]
    pub error_rate: Option<f64>,

    /// Inject a fault (repeatable): KIND[:ARGS][@ROUTE].
    ///
    /// KIND is reset (close with a TCP RST), hang (never answer), garbage (send random bytes,
    /// then close), slow-body (send the body in 16-byte chunks, a delay apart),
    /// stall (requests arriving in the first N of every M wait until the window ends) or
    /// error (a 5xx answer). ARGS, comma-separated: a fraction of requests (`0.1`, default
    /// 1), a delay for slow-body (`50ms`), N/M for stall (`100ms/1s`), a status for error
    /// (`503`). ROUTE is a pattern such as `GET /api/market` or `/api/orders*`.
    /// Examples: `hang`, `reset:0.1`, `stall:100ms/1s`, `garbage`, `slow-body:50ms`,
    /// `error:0.01,503@POST /api/order`.
    #[arg(long = "fault", value_name = "SPEC")]
    pub faults: Vec<String>,

    /// cpp only: switch every §9 difference off, so the cpp simulator answers like the
    /// python one (an "identical" pair for tests).
    #[arg(long)]
    pub identical: bool,

    /// python: write the gateway's `[AUDIT]` lines to FILE (appended), or to stderr with `-`.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<String>,

    /// cpp: write the gateway's NDJSON audit files (`audit-YYYY-MM-DD.log`) into DIR
    /// (created if missing).
    #[arg(long, value_name = "DIR")]
    pub audit_dir: Option<String>,
}

impl SimArgs {
    fn profile(&self) -> Profile {
        match self.profile {
            ProfileArg::Python => Profile::Python,
            ProfileArg::Cpp => Profile::Cpp,
        }
    }
}

/// Builds the validated configuration from the file and the flags; `Err` lists every problem.
pub fn build_config(args: &SimArgs) -> Result<SimConfig, ConfigErrors> {
    let (mut raw, origin) = match &args.config {
        None => (RawSimConfig::default(), "command line".to_owned()),
        Some(path) => {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
                origin: origin.clone(),
                issues: vec![ConfigIssue {
                    path: String::new(),
                    message: format!("cannot read the file: {e}"),
                }],
            })?;
            (RawSimConfig::from_toml_str(&text, &origin)?, origin)
        }
    };
    let profile = args.profile();
    let mut cli_issues = Vec::new();
    raw.profile = Some(profile);
    if let Some(seed) = args.seed {
        raw.seed = Some(seed);
    }
    if args.deterministic {
        raw.deterministic = Some(true);
    }
    if let Some(auth) = args.auth {
        raw.auth.enabled = Some(auth == OnOff::On);
    }
    if let Some(spec) = &args.latency {
        raw.latency.default = Some(spec.clone());
    }
    if let Some(rate) = args.error_rate {
        raw.faults.push(RawFault {
            kind: "error".to_owned(),
            fraction: Some(rate),
            ..RawFault::default()
        });
    }
    for (i, spec) in args.faults.iter().enumerate() {
        match RawFault::from_cli_spec(spec) {
            Ok(f) => raw.faults.push(f),
            Err(message) => cli_issues.push(ConfigIssue {
                path: format!("--fault[{i}]"),
                message,
            }),
        }
    }
    if args.identical {
        match profile {
            Profile::Cpp => raw.differences = Some(RawDifferences::all(false)),
            Profile::Python => cli_issues.push(ConfigIssue {
                path: "--identical".to_owned(),
                message: "only applies to --profile cpp".to_owned(),
            }),
        }
    }
    if args.audit_log.is_some() {
        raw.audit.log.clone_from(&args.audit_log);
    }
    if args.audit_dir.is_some() {
        raw.audit.dir.clone_from(&args.audit_dir);
    }
    let validated = raw.validate(&origin);
    match (validated, cli_issues.is_empty()) {
        (Ok(cfg), true) => Ok(cfg),
        (Ok(_), false) => Err(ConfigErrors {
            origin,
            issues: cli_issues,
        }),
        (Err(mut e), _) => {
            e.issues.extend(cli_issues);
            Err(e)
        }
    }
}

/// Runs the simulator until SIGINT or SIGTERM.
pub async fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let config = match build_config(&args) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("error: {errors}");
            return Ok(ExitCode::from(2));
        }
    };
    let profile = config.profile;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let sim = shadowgate_sim::start(config, listener)
        .await
        .context("cannot start the simulator")?;
    // Before the address is printed: a signal right after it must stop us cleanly.
    let mut shutdown = crate::signals::Shutdown::install()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "shadowgate sim ({profile}) listening on http://{}",
            sim.local_addr()
        )
        .and_then(|()| out.flush())
        .context("cannot write to stdout")?;
    }
    shutdown.recv().await;
    tracing::info!("signal received, shutting down");
    sim.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: SimArgs,
    }

    fn args(argv: &[&str]) -> SimArgs {
        let mut full = vec!["sim"];
        full.extend_from_slice(argv);
        Wrap::try_parse_from(full).unwrap().args
    }

    #[test]
    fn flags_build_a_config() {
        let cfg = build_config(&args(&[
            "--profile",
            "cpp",
            "--seed",
            "7",
            "--auth",
            "off",
            "--latency",
            "fixed:200us",
            "--error-rate",
            "0.01",
            "--fault",
            "stall:100ms/1s",
            "--fault",
            "reset:0.1@POST /api/order",
            "--identical",
        ]))
        .unwrap();
        assert_eq!(cfg.profile, Profile::Cpp);
        assert_eq!(cfg.seed, Some(7));
        assert!(cfg.deterministic);
        assert!(!cfg.auth.enabled);
        assert_eq!(cfg.faults.len(), 3);
        assert_eq!(cfg.differences, shadowgate_sim::Differences::all(false));
    }

    #[test]
    fn every_bad_flag_is_reported() {
        let err = build_config(&args(&[
            "--profile",
            "python",
            "--error-rate",
            "2",
            "--fault",
            "hang:later",
            "--latency",
            "fixed:soon",
            "--identical",
        ]))
        .unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "latency.default",
                "faults[0].fraction",
                "--fault[0]",
                "--identical"
            ],
            "{err}"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.toml");
        std::fs::write(&path, "profile = \"cpp\"\n[auth]\nenabled = true\n").unwrap();
        let p = path.to_str().unwrap();
        let cfg =
            build_config(&args(&["--profile", "cpp", "--config", p, "--auth", "off"])).unwrap();
        assert!(!cfg.auth.enabled);
        let missing = dir.path().join("nope.toml");
        let err = build_config(&args(&[
            "--profile",
            "cpp",
            "--config",
            missing.to_str().unwrap(),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("cannot read the file"), "{err}");
    }
}
