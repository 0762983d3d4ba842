//! `shadowgate demo`: the whole pipeline on a machine with nothing else set up.
//!
//! In one process: a `python`-profile simulator (the primary) and a `cpp`-profile simulator
//! (the candidate: the real VeloZ differences plus a few regressions seeded on purpose, from
//! `scenarios/demo-candidate.toml`), each on a thread of its own; the mirror in front of them
//! with the shipped VeloZ rules; CPU and memory sampling of both simulators; a fixed-rate
//! load run through the mirror with the VeloZ mix (reads, order submit + cancel flows, SSE
//! subscribers; `scenarios/demo.load.toml`); then the report, judged against
//! `scenarios/demo-criteria.toml`'s `demo` phase: the plan's phase 2 (order processing) with
//! its latency thresholds widened, because everything shares the same cores here.
//!
//! **Exit codes as a gate gives them:** the seeded regressions make the default demo FAIL
//! (exit 1) on purpose; `--clean` runs an identical candidate with the control rules
//! (`veloz-control.toml`) and a mix without the reads whose answers depend on fill timing
//! (`demo-clean.load.toml`), and passes (exit 0). Ctrl-C stops the load, finishes every run
//! directory, reports what was recorded as a partial run, and exits 130.
//!
//! Everything the demo reads is compiled in (`include_str!`) and written into the run
//! directory (`rules/`, `scenario.load.toml`, `criteria.toml`), so it runs from any directory
//! of a fresh clone and the run says exactly what it used.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use shadowgate_load::{LoadOptions, Overrides, ProgressMode, Scenario, Shard};
use shadowgate_record::RunKind;
use shadowgate_report::Criteria;
use shadowgate_report::model::Report;
use shadowgate_sim::{Differences, Profile, SimConfig, StatsSnapshot};

use crate::pipeline::{self, Composite, EXIT_INTERRUPTED, Interrupt, Progress, SimThread};

/// Rules files, by the name the `include` lines use.
const RULES_COMMON: (&str, &str) = (
    "veloz-common.toml",
    include_str!("../scenarios/veloz-common.toml"),
);
const RULES_VELOZ: (&str, &str) = ("veloz.toml", include_str!("../scenarios/veloz.toml"));
const RULES_CONTROL: (&str, &str) = (
    "veloz-control.toml",
    include_str!("../scenarios/veloz-control.toml"),
);
const LOAD_SEEDED: &str = include_str!("../scenarios/demo.load.toml");
const LOAD_CLEAN: &str = include_str!("../scenarios/demo-clean.load.toml");
const CANDIDATE: &str = include_str!("../scenarios/demo-candidate.toml");
pub(crate) const CRITERIA: &str = include_str!("../scenarios/demo-criteria.toml");
/// The phase of [`CRITERIA`] the demo judges.
const PHASE: &str = "demo";

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
    cargo run --release -- demo                 # seeded regressions: the gate FAILS (exit 1)
    cargo run --release -- demo --clean         # identical candidate: the gate passes (exit 0)
    shadowgate demo --duration 5s --out /tmp/demo

The run directory holds the mirror run (mirror/), the load run through the mirror (load/),
the simulators' CPU and memory (resources/), the rules, scenario and criteria used, and the
report (report.html, report.md, report.json, summary.csv, junit.xml). Re-judge it with
`shadowgate report DIR --criteria DIR/criteria.toml --phase demo`.")]
pub struct DemoArgs {
    /// No seeded regressions: an identical candidate, the control rules and a mix without
    /// fill-timing reads, so the gate passes.
    #[arg(long)]
    pub clean: bool,

    /// Measured load time (after a 2 s warm-up).
    #[arg(long, default_value = "20s", value_name = "D", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Requests per second through the mirror [default: the scenario's, 1000].
    #[arg(long, value_name = "N")]
    pub rate: Option<f64>,

    /// Run directory [default: reports/demo-<UTC time>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Seed for both simulators (prices, injected decisions).
    #[arg(long, default_value_t = 42, value_name = "N")]
    pub seed: u64,
}

/// Everything checked and built before anything starts.
struct Plan {
    out: PathBuf,
    rules: [(&'static str, &'static str); 2],
    scenario: Scenario,
    criteria: Criteria,
    primary: SimConfig,
    candidate: SimConfig,
}

fn plan(args: &DemoArgs) -> anyhow::Result<Plan> {
    let (load, origin) = if args.clean {
        (LOAD_CLEAN, "scenarios/demo-clean.load.toml")
    } else {
        (LOAD_SEEDED, "scenarios/demo.load.toml")
    };
    let mut scenario = Scenario::from_toml_str(load, origin)?;
    scenario.apply(&Overrides {
        rate: args.rate,
        duration: Some(args.duration),
        connections: None,
        warmup: None,
    })?;
    scenario.plan(Some(Profile::Python))?;
    let criteria = Criteria::parse(CRITERIA, "scenarios/demo-criteria.toml")?;

    let mut primary = SimConfig::default_for(Profile::Python);
    let mut candidate = if args.clean {
        let mut c = SimConfig::default_for(Profile::Cpp);
        c.differences = Differences::all(false);
        c
    } else {
        SimConfig::from_toml_str(CANDIDATE, "scenarios/demo-candidate.toml")?
    };
    for c in [&mut primary, &mut candidate] {
        c.seed = Some(args.seed);
        c.deterministic = true;
        c.auth.enabled = false;
        // Rate limiting follows auth when a config is validated; auth is switched off here,
        // after validation, so the limiter is too (the demo's clients are one address).
        c.rate_limit.enabled = false;
        c.shutdown_grace = Duration::from_secs(1);
        // Cancels follow 50 ms after their submit. With the sims' default 300 ms fill delay,
        // a candidate running late on this shared box (its events were measured up to ~1 s
        // behind) filled orders before their cancel copy reached it: a cancel-fill race, real
        // for a mirror but noise for a demo. 2 s keeps the race out without hiding anything.
        c.engine.fill_delay = Duration::from_secs(2);
    }
    Ok(Plan {
        out: args
            .out
            .clone()
            .unwrap_or_else(|| pipeline::default_dir("demo")),
        rules: if args.clean {
            [RULES_CONTROL, RULES_COMMON]
        } else {
            [RULES_VELOZ, RULES_COMMON]
        },
        scenario,
        criteria,
        primary,
        candidate,
    })
}

/// Writes `text` to `dir/name`.
fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let interrupt = Interrupt::install()?;
    let plan = plan(&args)?;
    let out = plan.out.clone();
    let mut run = Composite::create(&out, RunKind::Demo, PHASE)?;
    let rules_dir = out.join("rules");
    let mut rules_path = None;
    for (name, text) in plan.rules {
        let p = write(&rules_dir, name, text)?;
        rules_path.get_or_insert(p);
    }
    let rules_path = rules_path.unwrap_or_else(|| rules_dir.join(plan.rules[0].0));
    let load_text = if args.clean { LOAD_CLEAN } else { LOAD_SEEDED };
    write(&out, "scenario.load.toml", load_text)?;
    write(&out, "criteria.toml", CRITERIA)?;
    if !args.clean {
        write(&out, "candidate-sim.toml", CANDIDATE)?;
    }

    let variant = if args.clean {
        "clean: identical candidate, control rules"
    } else {
        "seeded: the C++ differences plus regressions injected on purpose"
    };
    println!("shadowgate demo ({variant}) -> {}", out.display());
    let mut progress = Progress::new(5);
    let s = &plan.scenario;
    {
        let m = run.manifest_mut();
        m.scenario = Some(s.origin.clone());
        m.extra.insert("clean".into(), args.clean.into());
        m.extra.insert("seed".into(), args.seed.into());
    }

    // 1. The two gateways.
    progress.step(
        "starting the simulated gateways (python primary, cpp candidate)",
        None,
    );
    let primary = SimThread::start("primary", plan.primary).await?;
    let candidate = SimThread::start("candidate", plan.candidate).await?;
    println!("      primary   {} (python profile)", primary.url());
    println!(
        "      candidate {} (cpp profile{})",
        candidate.url(),
        if args.clean {
            ", every difference off"
        } else {
            ", with seeded regressions"
        }
    );
    {
        let m = run.manifest_mut();
        m.targets.insert("primary".into(), primary.url());
        m.targets.insert("candidate".into(), candidate.url());
    }

    // 2. Sampling and the mirror.
    progress.step("starting resource sampling and the mirror", None);
    let sampling = pipeline::Sampling::start(
        &run.sub("resources"),
        vec![
            ("primary".to_owned(), primary.url(), primary.source()),
            ("candidate".to_owned(), candidate.url(), candidate.source()),
        ],
        Some(s.origin.clone()),
        Duration::from_millis(500),
    )?;
    run.add_run("resources")?;
    let mirror = pipeline::start_mirror(
        primary.url(),
        candidate.url(),
        run.sub("mirror"),
        &rules_path,
    )
    .await?;
    run.add_run("mirror")?;
    println!(
        "      mirror    http://{}  rules {}",
        mirror.local_addr(),
        rules_path.display()
    );

    // 3. Load through the mirror.
    let expect = s.ramp + s.warmup + s.duration + Duration::from_secs(2);
    progress.step(
        &format!(
            "load through the mirror: {} req/s for {} (+{} warm-up), {} connections, {} SSE subscribers",
            s.rate,
            humantime::format_duration(s.duration),
            humantime::format_duration(s.warmup),
            s.connections,
            s.sse.as_ref().map_or(0, |x| x.subscribers)
        ),
        Some(expect),
    );
    let load = if interrupt.reason().is_none() {
        let opts = LoadOptions {
            target: Some(format!("http://{}", mirror.local_addr())),
            target_name: "client".to_owned(),
            scenario: plan.scenario.clone(),
            profile: Some(Profile::Python),
            shard: Shard::SINGLE,
            out_dir: run.sub("load"),
            calibrate: false,
            no_auth: true,
            progress: ProgressMode::Off,
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            goose_reports: false,
            run_token: None,
        };
        let r = pipeline::run_load(opts, &interrupt).await;
        if run
            .sub("load")
            .join(shadowgate_record::MANIFEST_FILE)
            .exists()
        {
            run.add_run("load")?;
        }
        Some(r)
    } else {
        None
    };

    // 4. Stop everything; each run directory is finished.
    progress.step("stopping the mirror, the samplers and the gateways", None);
    let summary = mirror.shutdown().await;
    let samples = sampling.stop().await;
    let _ = primary.stop().await;
    let injected = candidate.stop().await;
    let interrupted = interrupt.reason();
    run.finish(interrupted)?;
    let load = match load {
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            eprintln!("warning: {e:#}");
            None
        }
        None => None,
    };
    let summary = summary.context("finishing the mirror run")?;
    samples.context("finishing the resource samples")?;

    // 5. The verdict.
    progress.step(
        &format!("report: phase `{PHASE}` of scenarios/demo-criteria.toml"),
        None,
    );
    progress.clear();
    println!();
    if let Some(l) = &load {
        println!(
            "load: {} requests at {:.0} req/s achieved ({} flows, {} SSE events){}",
            l.requests,
            l.achieved_rate,
            l.flows.started,
            l.sse.as_ref().map_or(0, |x| x.events),
            match l.generator_limited_reasons.first() {
                Some(why) if l.generator_limited => format!(" — generator-limited: {why}"),
                _ => String::new(),
            }
        );
    }
    println!(
        "mirror: {} requests, {} compared (coverage {}), {} regression / {} noise comparisons",
        summary.primary.requests,
        summary.shadow.compared,
        summary
            .coverage
            .map_or_else(|| "n/a".to_owned(), |c| format!("{:.1}%", c * 100.0)),
        summary.comparisons.regression,
        summary.comparisons.noise
    );
    if let Some(stats) = &injected
        && !args.clean
    {
        println!("seeded in the candidate: {}", seeded(stats));
    }
    println!();
    let mut warnings = vec![
        "demo thresholds: latency is judged with widened limits (scenarios/demo-criteria.toml) \
         because the gateways, the mirror and the load generator share this machine's cores; \
         run `shadowgate validate` for the plan's own thresholds"
            .to_owned(),
    ];
    if let Some(why) = interrupted {
        warnings.push(format!("PARTIAL RUN: the demo was {why}"));
    }
    let report = pipeline::report(&out, &plan.criteria, PHASE, warnings)?;
    if let Some(stats) = &injected
        && !args.clean
    {
        println!();
        print!("{}", seeded_vs_found(stats, &report));
    }
    println!();
    println!("report: {}", out.join("report.html").display());
    println!("        (also report.md, report.json, summary.csv, junit.xml in the same directory)");
    if let Some(why) = interrupted {
        println!(
            "PARTIAL: the demo was {why}; {} holds what was recorded until then (exit {EXIT_INTERRUPTED})",
            out.display()
        );
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    let code = report.exit_code();
    if args.clean {
        println!(
            "demo --clean: identical gateways, control rules — exit {code} ({})",
            if code == 0 {
                "the gate passes"
            } else {
                "see the report"
            }
        );
    } else {
        println!(
            "This FAIL is on purpose: the candidate carries the real C++ differences and the seeded\n\
             regressions above, and a gate must stop them (exit {code}). `shadowgate demo --clean`\n\
             runs an identical candidate and passes (exit 0)."
        );
    }
    println!("took {:.1}s", progress.elapsed().as_secs_f64());
    Ok(ExitCode::from(code))
}

/// One line of what the candidate injected, from its own counters.
fn seeded(s: &StatsSnapshot) -> String {
    format!(
        "{} changed market symbols, {} rejected orders, {} fills at a moved price, {} HTTP 503s, {} dropped stream events",
        s.divergence.changed_field,
        s.divergence.rejected_orders,
        s.divergence.fill_price_changed,
        s.fault("error_5xx"),
        s.divergence.dropped_sse_events
    )
}

/// What the candidate injected next to what the report found, one line per seeded class,
/// so the demo shows that the report catches each one (and how exactly).
fn seeded_vs_found(s: &StatsSnapshot, report: &Report) -> String {
    use shadowgate_record::Class;
    use shadowgate_report::model::SectionKind;
    let sum = |f: &dyn Fn(&shadowgate_report::model::Group) -> bool| -> u64 {
        report
            .discrepancies
            .groups
            .iter()
            .filter(|g| g.class == Class::Regression && f(g))
            .map(|g| g.count)
            .sum()
    };
    let errors = report
        .targets
        .iter()
        .find(|t| t.name == "candidate")
        .map_or(0, |t| t.errors);
    let prices = sum(&|g| {
        g.section == SectionKind::Exchange
            && g.route.starts_with("/api/market")
            && g.kind == "value"
            && g.path.contains("symbol")
    });
    let rejected = sum(&|g| {
        g.section == SectionKind::Flow
            && g.kind == "state-mismatch"
            && g.steps.iter().any(|st| st == "ack")
    });
    let fills = sum(&|g| g.section == SectionKind::Flow && g.kind == "fill-mismatch");
    let dropped =
        sum(&|g| g.section == SectionKind::Stream && g.kind == "sse-missing" && g.path == "fill");
    let rows = [
        (
            "HTTP 503 answers",
            s.fault("error_5xx"),
            errors,
            "candidate errors (error rate)",
        ),
        (
            "changed market symbols",
            s.divergence.changed_field,
            prices,
            "value regressions on GET /api/market",
        ),
        (
            "rejected orders",
            s.divergence.rejected_orders,
            rejected,
            "order flows: state-mismatch at the ack",
        ),
        (
            "fills at a moved price",
            s.divergence.fill_price_changed,
            fills,
            "order flows: fill-mismatch",
        ),
        (
            "dropped fill events",
            s.divergence.dropped_sse_events,
            dropped,
            "event streams: sse-missing fill events",
        ),
    ];
    let mut out = String::from("seeded in the candidate -> found in the report\n");
    for (what, seeded, found, where_) in rows {
        out.push_str(&format!(
            "  {what:<24} {seeded:>6} -> {found:<6} {where_}\n"
        ));
    }
    out.push_str(
        "  (streams also miss the fills of orders the candidate rejected; a flow with an \
         earlier difference is not compared fill by fill)\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(clean: bool) -> DemoArgs {
        DemoArgs {
            clean,
            duration: Duration::from_secs(5),
            rate: Some(500.0),
            out: Some(PathBuf::from("unused")),
            seed: 1,
        }
    }

    #[test]
    fn embedded_files_are_valid_in_both_variants() {
        for clean in [false, true] {
            let p = plan(&args(clean)).unwrap();
            assert_eq!(p.scenario.rate, 500.0);
            assert_eq!(p.scenario.duration, Duration::from_secs(5));
            assert!(p.criteria.phase(PHASE).is_some());
            assert_eq!(p.candidate.profile, Profile::Cpp);
            assert!(!p.candidate.auth.enabled && !p.primary.auth.enabled);
            assert!(!p.candidate.rate_limit.enabled && !p.primary.rate_limit.enabled);
            // The rules load with their includes, as the demo writes them out.
            let tmp = tempfile::tempdir().unwrap();
            for (name, text) in p.rules {
                write(tmp.path(), name, text).unwrap();
            }
            shadowgate_mirror::load_rules(tmp.path().join(p.rules[0].0)).unwrap();
        }
    }

    #[test]
    fn seeded_candidate_injects_and_clean_one_does_not() {
        let seeded = plan(&args(false)).unwrap().candidate;
        assert!(seeded.engine.divergence.reject_fraction > 0.0);
        assert!(!seeded.divergence.changed_fields.is_empty());
        assert!(!seeded.faults.is_empty());
        let clean = plan(&args(true)).unwrap().candidate;
        assert!(clean.faults.is_empty() && clean.divergence.changed_fields.is_empty());
        assert_eq!(clean.engine.divergence.reject_fraction, 0.0);
        assert_eq!(clean.differences, Differences::all(false));
    }
}
