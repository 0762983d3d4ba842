//! `shadowgate validate`: the rollout plan's pre-phase validation in one command.
//!
//! 1. health-check both gateways (`shadowgate health`'s check; either down: exit 2 before
//!    anything is written);
//! 2. load each gateway in turn with the same scenario, rate and mix (`load-primary/`,
//!    `load-candidate/`), sampling each one's CPU and memory while it is loaded
//!    (`resources-primary/`, `resources-candidate/`) when a PID or a /metrics URL is given;
//! 3. mirror step: an in-process mirror on 127.0.0.1:0 in front of both, loaded with the same
//!    scenario in the primary's dialect (`mirror-load/`, not part of the verdict), diffing
//!    every answer (`mirror/`);
//! 4. with `--primary-audit`/`--candidate-audit`: the two gateways' audit logs, only the
//!    entries written during the mirror step (each log's size is marked when the step
//!    starts), compared as `shadowgate audit-diff` does with the mirror's id map (`audit/`),
//!    which phase 3's "audit logs consistent" criterion judges;
//! 5. the report against phase N, every format into the run directory, with candidate and
//!    primary side by side.
//!
//! Design decisions:
//! - **The gate judges the direct load runs.** The mirror step's own timings (the primary
//!   behind one more hop, the candidate's shadow copies) would blur the figures of step 2 if
//!   merged under the same target names, so the run directory lists the mirror runs as
//!   `compare_only`: their discrepancies and coverage count, their latency and counts do not.
//!   `shadowgate report DIR` re-makes the verdict the same way.
//! - **Interrupts leave a readable run.** Ctrl-C (or SIGTERM) ends the step in progress
//!   cleanly (the load run stops between two requests, the mirror finishes its files), skips
//!   the rest, marks the run `partial` in `manifest.json`, reports what was recorded with a
//!   PARTIAL warning, says so, and exits 130.
//! - **Any two HTTP gateways.** Only URLs are needed; `--rules` and `--scenario` make it
//!   speak another API (the defaults are the VeloZ ones, compiled in).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use shadowgate_load::{LoadOptions, Overrides, ProgressMode, Scenario, Shard};
use shadowgate_record::{Manifest, RunKind};
use shadowgate_report::Criteria;
use shadowgate_sim::Profile;

use crate::audit_cmd::{self, AuditJob, FormatArg, LogMark};
use crate::health::{self, Probe, Verdict};
use crate::pipeline::{self, Composite, EXIT_INTERRUPTED, Interrupt, Progress, Sampling};
use crate::sample_cmd::Source;

const DEFAULT_SCENARIO: &str = include_str!("../scenarios/demo.load.toml");
const RULES_VELOZ: &str = include_str!("../scenarios/veloz.toml");
const RULES_COMMON: &str = include_str!("../scenarios/veloz-common.toml");

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
    shadowgate validate --phase 1 --primary http://127.0.0.1:8080 --candidate http://127.0.0.1:8081 \\
        --candidate-pid $(pgrep -f veloz_gateway) --out reports/phase1
    shadowgate validate --phase 3 --primary http://py:8080 --candidate http://cpp:8081 \\
        --scenario scenarios/phase3-10k.load.toml --candidate-metrics http://cpp:8081/metrics \\
        --primary-audit /var/log/veloz/gateway-audit.log --candidate-audit /var/log/veloz/audit

Run directory: load-primary/, load-candidate/ (one load run each), resources-primary/,
resources-candidate/ (when a PID or /metrics URL is given), mirror/ and mirror-load/ (the
mirror step), audit/ (with --primary-audit and --candidate-audit: the audit-log entries of
the mirror step compared), rules/ (the default rules, when --rules is not given),
manifest.json (which sub-runs the verdict uses; `partial` when interrupted) and the report
files. Re-judge it with `shadowgate report DIR --phase N`.

Without the audit logs, phase 3's \"audit logs consistent\" criterion has no data (and
fails): give --primary-audit and --candidate-audit, or run `shadowgate audit-diff` and pass
its directory to `shadowgate report` with this one.")]
pub struct ValidateArgs {
    /// Rollout phase whose criteria judge the run (1-5 or overall).
    #[arg(long, value_name = "N")]
    pub phase: String,

    /// The gateway in service (e.g. the python gateway, http://127.0.0.1:8080).
    #[arg(long, value_name = "URL")]
    pub primary: String,

    /// The gateway to validate (e.g. the C++ gateway, http://127.0.0.1:8081).
    #[arg(long, value_name = "URL")]
    pub candidate: String,

    /// Load scenario for all three load steps [default: the VeloZ demo mix,
    /// scenarios/demo.load.toml, compiled in].
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,

    /// Criteria file [default: the built-in scenarios/phases.toml].
    #[arg(long, value_name = "FILE")]
    pub criteria: Option<PathBuf>,

    /// Diff rules for the mirror step [default: the VeloZ rules, scenarios/veloz.toml,
    /// compiled in].
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,

    /// Sample the primary's CPU and memory from /proc/PID while it is loaded.
    #[arg(long, value_name = "PID", conflicts_with = "primary_metrics")]
    pub primary_pid: Option<i32>,

    /// Sample the primary's CPU and memory from its Prometheus /metrics.
    #[arg(long, value_name = "URL")]
    pub primary_metrics: Option<String>,

    /// Sample the candidate's CPU and memory from /proc/PID while it is loaded.
    #[arg(long, value_name = "PID", conflicts_with = "candidate_metrics")]
    pub candidate_pid: Option<i32>,

    /// Sample the candidate's CPU and memory from its Prometheus /metrics.
    #[arg(long, value_name = "URL")]
    pub candidate_metrics: Option<String>,

    /// The primary's API dialect for the scenario's profile variants (python or cpp).
    #[arg(long, value_name = "PROFILE", default_value = "python", value_parser = parse_profile)]
    pub primary_profile: Profile,

    /// The candidate's API dialect (python or cpp).
    #[arg(long, value_name = "PROFILE", default_value = "cpp", value_parser = parse_profile)]
    pub candidate_profile: Profile,

    /// Override the scenario's rate (requests per second) for every load step.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,

    /// Override the scenario's measured duration for every load step (e.g. 30s).
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Override the scenario's warm-up for every load step (e.g. 2s).
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    pub warmup: Option<Duration>,

    /// Send no credentials, whatever the scenario's [auth] says.
    #[arg(long)]
    pub no_auth: bool,

    /// Run directory [default: reports/validate-<UTC time>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// The primary's audit log (a file of `[AUDIT]` lines, or a directory of
    /// `audit-*.log` NDJSON files), as `shadowgate audit-diff` takes it. With
    /// --candidate-audit: the entries both gateways log during the mirror step are compared
    /// (DIR/audit/), which phase 3's "audit logs consistent" criterion judges.
    #[arg(long, value_name = "PATH")]
    pub primary_audit: Option<PathBuf>,

    /// The candidate's audit log (file or directory); see --primary-audit.
    #[arg(long, value_name = "PATH")]
    pub candidate_audit: Option<PathBuf>,

    /// Rules file with an `[audit]` table for the audit comparison [default: the built-in
    /// VeloZ mapping, as scenarios/audit.toml].
    #[arg(long, value_name = "FILE")]
    pub audit_rules: Option<PathBuf>,
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::parse(s).ok_or_else(|| format!("`{s}`: use python or cpp"))
}

fn sample_source(
    pid: Option<i32>,
    metrics: &Option<String>,
    flag: &str,
) -> anyhow::Result<Option<Source>> {
    match (pid, metrics) {
        (Some(pid), _) => {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                bail!("--{flag}-pid {pid}: no such process; pass the PID of the running gateway");
            }
            Ok(Some(Source::Pid(pid)))
        }
        (None, Some(url)) => {
            let uri: hyper::Uri = url.parse().with_context(|| {
                format!("--{flag}-metrics `{url}` is not a URL; e.g. http://127.0.0.1:8081/metrics")
            })?;
            if uri.scheme_str() != Some("http") {
                bail!("--{flag}-metrics `{url}`: only http:// URLs are supported");
            }
            Ok(Some(Source::Metrics(uri)))
        }
        (None, None) => Ok(None),
    }
}

/// What was typed, checked before any connection is made.
struct Plan {
    phase: String,
    criteria: Criteria,
    scenario: Scenario,
    rules: Rules,
    sources: [Option<Source>; 2],
    audit: Option<AuditPlan>,
    out: PathBuf,
}

/// The audit logs to compare after the mirror step.
#[derive(Debug)]
struct AuditPlan {
    primary: PathBuf,
    candidate: PathBuf,
    rules: Option<PathBuf>,
}

fn audit_plan(args: &ValidateArgs) -> anyhow::Result<Option<AuditPlan>> {
    let (primary, candidate) = match (&args.primary_audit, &args.candidate_audit) {
        (Some(p), Some(c)) => (p.clone(), c.clone()),
        (None, None) => {
            if let Some(r) = &args.audit_rules {
                bail!(
                    "--audit-rules {}: give the audit logs too (--primary-audit PATH \
                     --candidate-audit PATH)",
                    r.display()
                );
            }
            return Ok(None);
        }
        (Some(_), None) => bail!(
            "--primary-audit needs --candidate-audit: the audit comparison reads both \
             gateways' logs (e.g. --candidate-audit /var/log/veloz/audit)"
        ),
        (None, Some(_)) => bail!(
            "--candidate-audit needs --primary-audit: the audit comparison reads both \
             gateways' logs (e.g. --primary-audit gateway-audit.log)"
        ),
    };
    for (flag, path) in [("primary", &primary), ("candidate", &candidate)] {
        std::fs::metadata(path).with_context(|| {
            format!(
                "--{flag}-audit {}: cannot read it (a log file, or a directory of \
                 audit-*.log files)",
                path.display()
            )
        })?;
    }
    if let Some(r) = &args.audit_rules {
        audit_cmd::check_rules(r).context("--audit-rules")?;
    }
    Ok(Some(AuditPlan {
        primary,
        candidate,
        rules: args.audit_rules.clone(),
    }))
}

/// The mirror step's rules: a file, or the compiled-in VeloZ rules (written into the run).
#[derive(Debug)]
enum Rules {
    File(PathBuf),
    Builtin,
}

fn plan(args: &ValidateArgs) -> anyhow::Result<Plan> {
    let criteria = match &args.criteria {
        Some(path) => Criteria::load(path)?,
        None => Criteria::builtin(),
    };
    if criteria.phase(&args.phase).is_none() {
        bail!(
            "--phase {}: the criteria file has no such phase (phases: 1-5 and overall in \
             scenarios/phases.toml)",
            args.phase
        );
    }
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::from_file(path)?,
        None => Scenario::from_toml_str(DEFAULT_SCENARIO, "scenarios/demo.load.toml")?,
    };
    scenario.apply(&Overrides {
        rate: args.rate,
        duration: args.duration,
        connections: None,
        warmup: args.warmup,
    })?;
    // Both dialects are checked now, not after the first load step.
    scenario.plan(Some(args.primary_profile))?;
    scenario.plan(Some(args.candidate_profile))?;
    let rules = match &args.rules {
        Some(path) => {
            shadowgate_mirror::load_rules(path)?;
            Rules::File(path.clone())
        }
        None => Rules::Builtin,
    };
    let sources = [
        sample_source(args.primary_pid, &args.primary_metrics, "primary")?,
        sample_source(args.candidate_pid, &args.candidate_metrics, "candidate")?,
    ];
    let audit = audit_plan(args)?;
    Ok(Plan {
        phase: args.phase.clone(),
        criteria,
        scenario,
        rules,
        sources,
        audit,
        out: args
            .out
            .clone()
            .unwrap_or_else(|| pipeline::default_dir("validate")),
    })
}

async fn check_health(name: &str, url: &str) -> anyhow::Result<String> {
    let uri = health::health_uri(url).with_context(|| format!("--{name}"))?;
    match health::probe(&uri, Duration::from_secs(5)).await {
        Probe::Answer { status, body } => match health::classify(status, &body) {
            Verdict::Healthy(_) => Ok(format!("{name} healthy ({uri} answered {status})")),
            Verdict::Unhealthy(why) => Err(anyhow!("{name} {url} is not healthy: {why}")),
        },
        Probe::Failed(why) => Err(anyhow!("{name} {url} is not healthy: {why}")),
    }
}

/// A base URL as the load generator and the mirror take it (`http://host:port`).
fn base_url(url: &str) -> String {
    let t = url.trim().trim_end_matches('/');
    let t = t.strip_suffix("/health").unwrap_or(t);
    if t.contains("://") {
        t.to_owned()
    } else {
        format!("http://{t}")
    }
}

pub async fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let interrupt = Interrupt::install()?;
    let plan = plan(&args)?;
    let primary = base_url(&args.primary);
    let candidate = base_url(&args.candidate);
    let mut progress = Progress::new(if plan.audit.is_some() { 6 } else { 5 });
    let s = &plan.scenario;
    let load_time = s.ramp + s.warmup + s.duration + Duration::from_secs(2);

    // 1. Health, before anything is written.
    progress.step("health check of both gateways", None);
    let (p, c) = tokio::join!(
        check_health("primary", &args.primary),
        check_health("candidate", &args.candidate)
    );
    match (p, c) {
        (Ok(p), Ok(c)) => println!("      {p}\n      {c}"),
        (p, c) => {
            progress.clear();
            for e in [p.err(), c.err()].into_iter().flatten() {
                eprintln!("error: {e:#}");
            }
            eprintln!(
                "validate stopped before loading anything: start the gateway(s) or fix the URL(s)."
            );
            return Ok(ExitCode::from(2));
        }
    }
    let out = plan.out.clone();
    let mut run = Composite::create(&out, RunKind::Validate, &plan.phase)?;
    {
        let m = run.manifest_mut();
        m.targets.insert("primary".into(), primary.clone());
        m.targets.insert("candidate".into(), candidate.clone());
        m.scenario = Some(s.origin.clone());
    }
    println!("      run directory {}", out.display());

    // 2. Each gateway in turn, same scenario.
    let sides = [
        ("primary", &primary, args.primary_profile, &plan.sources[0]),
        (
            "candidate",
            &candidate,
            args.candidate_profile,
            &plan.sources[1],
        ),
    ];
    let mut failure: Option<anyhow::Error> = None;
    for (name, url, profile, source) in sides {
        progress.step(
            &format!(
                "load {name} {url}: {} req/s for {} ({} dialect){}",
                s.rate,
                humantime::format_duration(s.duration),
                profile,
                if source.is_some() {
                    ", sampling its CPU and memory"
                } else {
                    ""
                }
            ),
            Some(load_time),
        );
        if interrupt.reason().is_some() {
            break;
        }
        let sampling = match source {
            Some(src) => {
                let dir = format!("resources-{name}");
                let sm = Sampling::start(
                    &run.sub(&dir),
                    vec![(name.to_owned(), url.to_owned(), src.clone())],
                    Some(s.origin.clone()),
                    Duration::from_secs(1),
                )?;
                run.add_run(&dir)?;
                Some(sm)
            }
            None => None,
        };
        let dir = format!("load-{name}");
        let result = pipeline::run_load(
            load_options(
                &plan.scenario,
                url,
                name,
                profile,
                run.sub(&dir),
                args.no_auth,
            ),
            &interrupt,
        )
        .await;
        if run
            .sub(&dir)
            .join(shadowgate_record::MANIFEST_FILE)
            .exists()
        {
            run.add_run(&dir)?;
        }
        if let Some(sm) = sampling {
            let n = sm.stop().await?;
            println!("      {n} resource samples of {name}");
        }
        match result {
            Ok(summary) => println!(
                "      {name}: {} requests, {:.0} req/s achieved, {} errors{}",
                summary.requests,
                summary.achieved_rate,
                summary.errors,
                if summary.generator_limited {
                    " (generator-limited)"
                } else {
                    ""
                }
            ),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }

    // 3. The mirror step.
    progress.step(
        &format!(
            "mirror step: load through an in-process mirror into both ({} dialect)",
            args.primary_profile
        ),
        Some(load_time),
    );
    // Where the audit logs end now: the mirror step's entries are what comes after (the
    // direct load steps reached one gateway each, so their entries have no counterpart).
    let marks = plan
        .audit
        .as_ref()
        .map(|a| (LogMark::now(&a.primary), LogMark::now(&a.candidate)));
    if interrupt.reason().is_none()
        && failure.is_none()
        && let Err(e) = mirror_step(&args, &plan, &mut run, &primary, &candidate, &interrupt).await
    {
        failure = Some(e);
    }

    // 4. The audit logs of the mirror step.
    if let (Some(audit), Some(marks)) = (&plan.audit, marks) {
        progress.step(
            &format!(
                "audit logs of the mirror step: {} vs {}",
                audit.primary.display(),
                audit.candidate.display()
            ),
            None,
        );
        if interrupt.reason().is_none()
            && failure.is_none()
            && let Err(e) = audit_step(audit, marks, &mut run, &primary, &candidate, s)
        {
            failure = Some(e);
        }
    }

    // 5. The verdict over whatever exists.
    let interrupted = interrupt.reason();
    run.finish(interrupted.or(failure.as_ref().map(|_| "stopped by an error")))?;
    progress.step(&format!("report against phase {}", plan.phase), None);
    progress.clear();
    println!();
    let mut warnings = Vec::new();
    if let Some(why) = interrupted {
        warnings.push(format!("PARTIAL RUN: validate was {why}"));
    }
    if let Some(e) = &failure {
        warnings.push(format!("PARTIAL RUN: a step failed: {e:#}"));
    }
    let report = pipeline::report(&out, &plan.criteria, &plan.phase, warnings);
    println!();
    match &report {
        Ok(_) => println!(
            "report: {} (report.md, report.json, summary.csv, junit.xml beside it)",
            out.join("report.html").display()
        ),
        Err(e) => eprintln!("no report: {e:#}"),
    }
    if let Some(why) = interrupted {
        println!(
            "PARTIAL: validate was {why}; {} holds what was recorded until then (exit {EXIT_INTERRUPTED})",
            out.display()
        );
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    if let Some(e) = failure {
        return Err(e.context(format!(
            "validate stopped; the partial run is in {}",
            out.display()
        )));
    }
    let report = report?;
    println!("took {:.1}s", progress.elapsed().as_secs_f64());
    Ok(ExitCode::from(report.exit_code()))
}

fn load_options(
    scenario: &Scenario,
    url: &str,
    name: &str,
    profile: Profile,
    out_dir: PathBuf,
    no_auth: bool,
) -> LoadOptions {
    LoadOptions {
        target: Some(url.to_owned()),
        target_name: name.to_owned(),
        scenario: scenario.clone(),
        profile: Some(profile),
        shard: Shard::SINGLE,
        out_dir,
        calibrate: false,
        no_auth,
        progress: ProgressMode::Off,
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        goose_reports: false,
        run_token: None,
    }
}

/// Compares the entries both gateways logged since `marks` into `audit/`, translating the
/// candidate's order ids through the mirror step's id map.
fn audit_step(
    audit: &AuditPlan,
    marks: (LogMark, LogMark),
    run: &mut Composite,
    primary: &str,
    candidate: &str,
    scenario: &Scenario,
) -> anyhow::Result<()> {
    let ids = run.sub("mirror").join(shadowgate_mirror::IDS_FILE);
    let job = AuditJob {
        primary: audit.primary.clone(),
        candidate: audit.candidate.clone(),
        primary_format: FormatArg::Auto,
        candidate_format: FormatArg::Auto,
        rules: audit.rules.clone(),
        ids: ids.exists().then_some(ids),
        marks: Some(marks),
    };
    // Named and labelled as the load runs beside it, so the merged report has one target
    // per gateway and one scenario; the log paths are in `extra.audit`.
    let mut manifest = Manifest::new(RunKind::AuditDiff, env!("CARGO_PKG_VERSION"));
    manifest
        .targets
        .insert("primary".into(), primary.to_owned());
    manifest
        .targets
        .insert("candidate".into(), candidate.to_owned());
    manifest.scenario = Some(scenario.origin.clone());
    let outcome = audit_cmd::compare_into(&job, &run.sub("audit"), manifest)
        .context("comparing the audit logs")?;
    run.add_compare_only("audit")?;
    println!(
        "      audit: {} primary / {} candidate entries of the mirror step, {}",
        outcome.entries.0,
        outcome.entries.1,
        if outcome.is_consistent() {
            "consistent".to_owned()
        } else {
            format!("{} finding(s)", outcome.report.findings.len())
        }
    );
    Ok(())
}

async fn mirror_step(
    args: &ValidateArgs,
    plan: &Plan,
    run: &mut Composite,
    primary: &str,
    candidate: &str,
    interrupt: &Interrupt,
) -> anyhow::Result<()> {
    let rules_path = match &plan.rules {
        Rules::File(p) => p.clone(),
        Rules::Builtin => {
            let dir = run.sub("rules");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (name, text) in [
                ("veloz.toml", RULES_VELOZ),
                ("veloz-common.toml", RULES_COMMON),
            ] {
                std::fs::write(dir.join(name), text)
                    .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
            }
            dir.join("veloz.toml")
        }
    };
    let mirror = pipeline::start_mirror(
        primary.to_owned(),
        candidate.to_owned(),
        run.sub("mirror"),
        &rules_path,
    )
    .await?;
    run.add_compare_only("mirror")?;
    println!(
        "      mirror http://{} rules {}",
        mirror.local_addr(),
        rules_path.display()
    );
    let result = pipeline::run_load(
        load_options(
            &plan.scenario,
            &format!("http://{}", mirror.local_addr()),
            "client",
            args.primary_profile,
            run.sub("mirror-load"),
            args.no_auth,
        ),
        interrupt,
    )
    .await;
    // Not part of the verdict: what the client saw through the mirror is the primary behind
    // one more hop, not a figure of either gateway. Kept for reading (`manifest.extra`).
    run.manifest_mut()
        .extra
        .insert("mirror_load".into(), "mirror-load".into());
    let summary = mirror
        .shutdown()
        .await
        .context("finishing the mirror run")?;
    println!(
        "      mirror: {} requests, {} compared (coverage {}), {} regression / {} noise comparisons",
        summary.primary.requests,
        summary.shadow.compared,
        summary
            .coverage
            .map_or_else(|| "n/a".to_owned(), |c| format!("{:.1}%", c * 100.0)),
        summary.comparisons.regression,
        summary.comparisons.noise
    );
    result.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        a: ValidateArgs,
    }

    fn parse(extra: &[&str]) -> Result<ValidateArgs, clap::Error> {
        let mut v = vec![
            "t",
            "--phase",
            "1",
            "--primary",
            "http://127.0.0.1:1",
            "--candidate",
            "127.0.0.1:2/health",
        ];
        v.extend_from_slice(extra);
        T::try_parse_from(v).map(|t| t.a)
    }

    #[test]
    fn defaults_are_valid_and_checked_before_any_io() {
        let a = parse(&["--rate", "300", "--duration", "2s"]).unwrap();
        let p = plan(&a).unwrap();
        assert_eq!(p.scenario.rate, 300.0);
        assert!(p.out.starts_with("reports"));
        assert!(matches!(p.rules, Rules::Builtin));
        assert_eq!(base_url(&a.candidate), "http://127.0.0.1:2");
        assert_eq!(base_url("http://h:1/"), "http://h:1");
    }

    #[test]
    fn bad_input_names_the_flag() {
        let a = parse(&["--criteria", "nope.toml"]).unwrap();
        assert!(format!("{:#}", plan(&a).err().unwrap()).contains("nope.toml"));
        let mut a = parse(&[]).unwrap();
        a.phase = "9".into();
        assert!(format!("{:#}", plan(&a).err().unwrap()).contains("--phase 9"));
        let a = parse(&["--candidate-pid", "2147483647"]).unwrap();
        assert!(format!("{:#}", plan(&a).err().unwrap()).contains("--candidate-pid"));
        let a = parse(&["--primary-metrics", "ftp://x/metrics"]).unwrap();
        assert!(format!("{:#}", plan(&a).err().unwrap()).contains("http://"));
        assert!(parse(&["--primary-pid", "1", "--primary-metrics", "http://h/m"]).is_err());
        assert!(parse(&["--candidate-profile", "go"]).is_err());
    }

    #[test]
    fn audit_logs_come_in_pairs_and_are_checked_before_any_io() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("py.log");
        std::fs::write(&log, "").unwrap();
        let l = log.to_str().unwrap();
        let d = tmp.path().to_str().unwrap();
        assert!(plan(&parse(&[]).unwrap()).unwrap().audit.is_none());
        let p = plan(&parse(&["--primary-audit", l, "--candidate-audit", d]).unwrap()).unwrap();
        let a = p.audit.unwrap();
        assert_eq!((a.primary.as_path(), a.rules), (log.as_path(), None));
        for (args, needle) in [
            (
                vec!["--primary-audit", l],
                "--primary-audit needs --candidate-audit",
            ),
            (
                vec!["--candidate-audit", d],
                "--candidate-audit needs --primary-audit",
            ),
            (vec!["--audit-rules", l], "--audit-rules"),
            (
                vec!["--primary-audit", "nope.log", "--candidate-audit", d],
                "--primary-audit nope.log",
            ),
        ] {
            let e = format!("{:#}", plan(&parse(&args).unwrap()).err().unwrap());
            assert!(e.contains(needle), "{e}");
        }
        let rules = tmp.path().join("r.toml");
        std::fs::write(&rules, "[audit]\nbogus = 1\n").unwrap();
        let r = rules.to_str().unwrap();
        let args = [
            "--primary-audit",
            l,
            "--candidate-audit",
            d,
            "--audit-rules",
            r,
        ];
        let e = format!("{:#}", plan(&parse(&args).unwrap()).err().unwrap());
        assert!(e.contains("--audit-rules") && e.contains("bogus"), "{e}");
    }

    #[test]
    fn the_builtin_rules_load_with_their_include() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("veloz.toml"), RULES_VELOZ).unwrap();
        std::fs::write(tmp.path().join("veloz-common.toml"), RULES_COMMON).unwrap();
        shadowgate_mirror::load_rules(tmp.path().join("veloz.toml")).unwrap();
    }
}
