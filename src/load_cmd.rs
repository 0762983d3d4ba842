//! `shadowgate load`: drive one gateway at a fixed arrival rate from a scenario file and write
//! a run directory (latency.hlog, counts.csv, manifest.json, Goose's reports).
//!
//! Parsing is in two steps, as elsewhere: clap reads what was typed, then the scenario file is
//! validated (every problem at once) and the overrides applied, all before any socket is
//! opened. The target is checked with a TCP connect before the run starts, so a wrong port
//! fails in a second with a message rather than after the warm-up. The work is in
//! `shadowgate_load`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use shadowgate_load::{LoadOptions, Overrides, ProgressMode, Scenario, Shard};
use shadowgate_sim::Profile;

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Base URL of the gateway under test, e.g. http://127.0.0.1:8080 (plain HTTP). Optional
    /// with --calibrate: then only the generator's floor is measured.
    #[arg(long, value_name = "URL", required_unless_present = "calibrate")]
    pub target: Option<String>,
    /// The load scenario (scenarios/*.load.toml).
    #[arg(long, value_name = "FILE")]
    pub scenario: PathBuf,
    /// Override the scenario's rate: requests per second, all generators together.
    #[arg(long, value_name = "N")]
    pub rate: Option<f64>,
    /// Override the measured window, e.g. 15s, 1m.
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Override the warm-up (sent at full rate, not measured), e.g. 2s.
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    pub warmup: Option<Duration>,
    /// Override the number of connections (Goose users).
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Which gateway's request variants to send: python (POST /api/order, POST /api/cancel)
    /// or cpp (POST /api/orders, DELETE /api/orders/{id}).
    #[arg(long, value_name = "PROFILE", value_parser = parse_profile)]
    pub profile: Option<Profile>,
    /// Run directory [default: reports/load-<UTC time>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The target's name in the run directory (e.g. primary, candidate).
    #[arg(long, value_name = "NAME", default_value = "target")]
    pub name: String,
    /// First measure the generator's own floor at the same rate against an in-process null
    /// server; the figures go into the manifest (`calibration`) and the summary.
    #[arg(long)]
    pub calibrate: bool,
    /// Generator I of N: send rate/N with ids in namespace I (e.g. 0/4).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Send no credentials, whatever the scenario's [auth] says.
    #[arg(long)]
    pub no_auth: bool,
    /// Progress display: auto (a bar on a terminal, a line every few seconds otherwise),
    /// bar, plain or off.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse_progress)]
    pub progress: ProgressMode,
    /// Do not write Goose's goose-report.{html,md,json}.
    #[arg(long)]
    pub no_goose_reports: bool,
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::parse(s).ok_or_else(|| format!("`{s}`: use python or cpp"))
}

fn parse_progress(s: &str) -> Result<ProgressMode, String> {
    match s {
        "auto" => Ok(ProgressMode::Auto),
        "bar" => Ok(ProgressMode::Bar),
        "plain" => Ok(ProgressMode::Plain),
        "off" => Ok(ProgressMode::Off),
        _ => Err(format!("`{s}`: use auto, bar, plain or off")),
    }
}

/// Validates everything the user gave, before any I/O on the network.
fn options(args: LoadArgs) -> anyhow::Result<LoadOptions> {
    let shard = match &args.shard {
        Some(spec) => Shard::parse(spec)?,
        None => Shard::SINGLE,
    };
    let mut scenario = Scenario::from_file(&args.scenario)?;
    scenario.apply(&Overrides {
        rate: args.rate,
        duration: args.duration,
        connections: args.connections,
        warmup: args.warmup,
    })?;
    // The profile choice is checked now, not after the calibration.
    scenario.plan(args.profile)?;
    let out_dir = match args.out {
        Some(dir) => dir,
        None => shadowgate_load::default_run_dir(
            std::path::Path::new("reports"),
            SystemTime::now(),
            shard,
        ),
    };
    Ok(LoadOptions {
        target: args.target,
        target_name: args.name,
        scenario,
        profile: args.profile,
        shard,
        out_dir,
        calibrate: args.calibrate,
        no_auth: args.no_auth,
        progress: args.progress,
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        goose_reports: !args.no_goose_reports,
        run_token: None,
    })
}

pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let opts = options(args)?;
    let dir = opts.out_dir.clone();
    let summary = shadowgate_load::run(opts)
        .await
        .with_context(|| format!("load run into {}", dir.display()))?;
    print!("{}", summary.render());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        a: LoadArgs,
    }

    fn scenario_path() -> String {
        format!("{}/scenarios/smoke.load.toml", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn overrides_and_defaults_become_options() {
        let t = T::try_parse_from([
            "t",
            "--target",
            "http://127.0.0.1:1",
            "--scenario",
            &scenario_path(),
            "--rate",
            "2000",
            "--duration",
            "3s",
            "--shard",
            "1/2",
            "--profile",
            "cpp",
        ])
        .unwrap();
        let o = options(t.a).unwrap();
        assert_eq!(o.scenario.rate, 2000.0);
        assert_eq!(o.scenario.duration, Duration::from_secs(3));
        assert_eq!(o.shard, Shard { index: 1, count: 2 });
        assert!(o.out_dir.starts_with("reports"));
        assert!(o.out_dir.to_string_lossy().ends_with("-shard1of2"));
        assert_eq!(o.profile, Some(Profile::Cpp));
    }

    #[test]
    fn bad_input_is_refused_before_any_io() {
        assert!(
            T::try_parse_from(["t", "--scenario", "x.toml"]).is_err(),
            "no target"
        );
        assert!(T::try_parse_from(["t", "--calibrate", "--scenario", &scenario_path()]).is_ok());
        let t = T::try_parse_from([
            "t",
            "--target",
            "http://h:1",
            "--scenario",
            &scenario_path(),
            "--rate",
            "0",
        ])
        .unwrap();
        let err = options(t.a).unwrap_err();
        assert!(format!("{err:#}").contains("--rate"), "{err:#}");
        let t =
            T::try_parse_from(["t", "--target", "http://h:1", "--scenario", "nope.toml"]).unwrap();
        assert!(format!("{:#}", options(t.a).unwrap_err()).contains("nope.toml"));
        assert!(
            T::try_parse_from(["t", "--calibrate", "--scenario", "s", "--profile", "go"]).is_err()
        );
    }
}
