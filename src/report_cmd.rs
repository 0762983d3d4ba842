//! `shadowgate report RUN_DIR...`: merge run directories, check a phase's criteria, print the
//! verdict table and write the chosen formats. Exit 0 all criteria pass, 1 a criterion failed
//! (or had no data, or the generator was the limit), 2 bad input.
//!
//! A `demo` or `validate` directory holds sub-runs (its manifest lists them in `extra.runs`,
//! and the mirror runs whose latency must not be merged with the direct load runs in
//! `extra.compare_only`); given such a directory, the report opens those sub-runs the way
//! the command that wrote it did ([`open_measurements`]), so its verdict can be re-made. A
//! run the command marked `partial` (interrupted) is reported with a warning saying so. The
//! `compare_only` runs keep their side series (SSE event lag), which only the mirror measures.
//! A `demo`/`validate` manifest that lists no sub-runs is read as a plain run directory.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use shadowgate_report::measure::is_request_measure;
use shadowgate_report::render::{self, Format};
use shadowgate_report::{Criteria, Measurements, Options, Report, evaluate};

/// Arguments of `shadowgate report`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:\n  \
    shadowgate report reports/phase3-cpp --phase 3\n  \
    shadowgate report reports/gen-0 reports/gen-1 --phase overall --format term,junit --out ci/\n  \
    shadowgate report reports/run --criteria my-gates.toml --phase 2 --candidate cpp --primary py\n\n\
    Criteria are scenarios/phases.toml's (built in) unless --criteria names another file. \
    A criterion whose data is missing (no samples, no resources.csv, no comparison run) is \
    reported as \"no data\" and fails, unless the criteria file says missing = \"skip\".")]
pub struct ReportArgs {
    /// Run directories to merge into one verdict (several load generators or proxies).
    #[arg(value_name = "RUN_DIR", required = true)]
    pub runs: Vec<PathBuf>,

    /// Phase to judge: 1-5 or overall. Default: the phase in the first run's manifest, else
    /// overall.
    #[arg(long, value_name = "N|overall")]
    pub phase: Option<String>,

    /// Criteria file (default: the built-in scenarios/phases.toml).
    #[arg(long, value_name = "FILE")]
    pub criteria: Option<PathBuf>,

    /// Output formats, comma-separated: term, md, json, csv, junit, html, hgrm.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "term,md,json,csv,junit,html"
    )]
    pub format: Vec<Format>,

    /// Directory for the report files (default: the first run directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// The data's name for the target criteria call `candidate` (e.g. the `--name` of a
    /// load run). Default: `candidate`, or the only target when there is just one.
    #[arg(long, value_name = "NAME")]
    pub candidate: Option<String>,

    /// The data's name for the target criteria call `primary`.
    #[arg(long, value_name = "NAME")]
    pub primary: Option<String>,

    /// Significance level for "candidate is slower" (default: the criteria file's, 0.05).
    #[arg(long, value_name = "P", value_parser = parse_alpha)]
    pub alpha: Option<f64>,
}

fn parse_alpha(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(a) if a > 0.0 && a < 1.0 => Ok(a),
        _ => Err(format!(
            "`{s}` is not a probability between 0 and 1 (e.g. 0.05)"
        )),
    }
}

/// Runs the command.
pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    // Everything that can be wrong with the input is checked before anything is written.
    let criteria = match &args.criteria {
        Some(path) => Criteria::load(path)?,
        None => Criteria::builtin(),
    };
    let (mut m, notes, composite_phase) = open_measurements(&args.runs)?;
    let phase = args
        .phase
        .clone()
        .or(composite_phase)
        .or_else(|| m.run.manifest.phase.clone())
        .unwrap_or_else(|| "overall".to_owned());
    set_aliases(&mut m, &args);
    let opts = Options {
        phase,
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        alpha: args.alpha,
    };
    let mut report = evaluate(&criteria, &m, &opts)?;
    report.warnings.extend(notes);
    let out = args.out.clone().unwrap_or_else(|| args.runs[0].clone());
    let written = write_formats(&report, &m, &args.format, &out)?;
    if !args.format.contains(&Format::Term) {
        println!("{}", verdict_summary(&report));
    }
    if !written.is_empty() {
        let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        eprintln!("wrote {}", names.join(", "));
    }
    Ok(ExitCode::from(report.exit_code()))
}

/// Sub-runs of a `demo`/`validate` directory, from its manifest.
#[derive(Debug, Default)]
struct Composite {
    runs: Vec<PathBuf>,
    compare_only: Vec<PathBuf>,
    partial: Option<String>,
    phase: Option<String>,
}

fn composite(dir: &Path) -> Option<Composite> {
    let manifest = shadowgate_record::Manifest::read(dir).ok()?;
    if !matches!(
        manifest.kind,
        shadowgate_record::RunKind::Demo | shadowgate_record::RunKind::Validate
    ) {
        return None;
    }
    // Only a manifest that lists sub-runs is a composite; a `demo`/`validate` kind without
    // the lists (data written into the directory itself) is read as the plain run it is.
    if !manifest.extra.contains_key("runs") && !manifest.extra.contains_key("compare_only") {
        return None;
    }
    let list = |key: &str| -> Vec<PathBuf> {
        manifest
            .extra
            .get(key)
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(serde_json::Value::as_str)
                    .map(|name| dir.join(name))
                    .filter(|p| p.join(shadowgate_record::MANIFEST_FILE).exists())
                    .collect()
            })
            .unwrap_or_default()
    };
    let partial = manifest
        .extra
        .get("partial")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
        .then(|| {
            let why = manifest
                .extra
                .get("interrupted")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("stopped early");
            format!(
                "PARTIAL RUN: {} was {why}; only what was recorded until then is reported",
                dir.display()
            )
        });
    Some(Composite {
        runs: list("runs"),
        compare_only: list("compare_only"),
        partial,
        phase: manifest.phase.clone(),
    })
}

/// Opens run directories for a verdict. Plain run directories are merged as they are; a
/// `demo`/`validate` directory is replaced by its sub-runs, and its `compare_only` runs (the
/// mirror step of `validate`) contribute their discrepancies and coverage but not their
/// latency and counts, which would otherwise add the shadow timings to the direct load
/// runs of the same target names. Returns the measurements, the warnings to add and the
/// phase the first `demo`/`validate` directory was recorded for.
pub(crate) fn open_measurements(
    dirs: &[PathBuf],
) -> anyhow::Result<(Measurements, Vec<String>, Option<String>)> {
    let mut runs = Vec::new();
    let mut notes = Vec::new();
    let mut phase = None;
    for dir in dirs {
        match composite(dir) {
            Some(c) => {
                if c.runs.is_empty() && c.compare_only.is_empty() {
                    anyhow::bail!(
                        "{}: this run recorded nothing yet (no sub-run has a manifest.json)",
                        dir.display()
                    );
                }
                notes.extend(c.partial);
                if phase.is_none() {
                    phase = c.phase;
                }
                for sub in &c.runs {
                    runs.push(shadowgate_record::Run::open(sub)?);
                }
                for sub in &c.compare_only {
                    runs.push(compare_only(shadowgate_record::Run::open(sub)?));
                }
            }
            None => runs.push(shadowgate_record::Run::open(dir)?),
        }
    }
    Ok((Measurements::from_runs(runs)?, notes, phase))
}

/// A `compare_only` sub-run as the verdict takes it: its request latency and counts go (the
/// primary behind one more hop and the shadow copies are no figures of either gateway), its
/// other series stay — the SSE event lag (`;lag`) is a comparison the mirror alone measures.
fn compare_only(mut run: shadowgate_record::Run) -> shadowgate_record::Run {
    run.latency
        .retain(|key, _| !is_request_measure(&key.measure));
    run.counts.clear();
    run
}

/// `--candidate`/`--primary`, or the only target standing in for `candidate`.
fn set_aliases(m: &mut Measurements, args: &ReportArgs) {
    if let Some(c) = &args.candidate {
        m.aliases.insert("candidate".into(), c.clone());
    }
    if let Some(p) = &args.primary {
        m.aliases.insert("primary".into(), p.clone());
    }
    let targets = m.targets();
    if args.candidate.is_none()
        && !targets.contains("candidate")
        && targets.len() == 1
        && let Some(only) = targets.first()
    {
        m.aliases.insert("candidate".into(), only.clone());
    }
}

fn verdict_summary(r: &Report) -> String {
    let mut out = Vec::new();
    // The last line of the terminal table is the verdict.
    if render::term::render(r, &mut out).is_ok() {
        let text = String::from_utf8_lossy(&out);
        if let Some(last) = text.lines().last() {
            return last.to_owned();
        }
    }
    format!("{:?}", r.verdict)
}

/// Prints the terminal table and writes the file formats; returns the files written.
pub(crate) fn write_formats(
    r: &Report,
    m: &Measurements,
    formats: &[Format],
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut formats = formats.to_vec();
    formats.sort();
    formats.dedup();
    let mut written = Vec::new();
    for f in formats {
        let Some(name) = f.file_name() else {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            render::term::render(r, &mut lock).context("writing to stdout")?;
            lock.flush().context("writing to stdout")?;
            continue;
        };
        fs::create_dir_all(out)
            .with_context(|| format!("cannot create the output directory {}", out.display()))?;
        let path = out.join(name);
        match f {
            Format::Hgrm => {
                fs::create_dir_all(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                for (file, h) in render::hgrm::series(m) {
                    let p = path.join(file);
                    write_file(&p, |w| render::hgrm::render(&h, w).map_err(Into::into))?;
                }
            }
            Format::Markdown => write_file(&path, |w| Ok(render::markdown::render(r, w)?))?,
            Format::Json => write_file(&path, |w| Ok(render::json::render(r, w)?))?,
            Format::Csv => write_file(&path, |w| Ok(render::csv::render(r, w)?))?,
            Format::Junit => write_file(&path, |w| Ok(render::junit::render(r, w)?))?,
            Format::Html => write_file(&path, |w| Ok(render::html::render(r, m, w)?))?,
            Format::Term => {}
        }
        written.push(path);
    }
    Ok(written)
}

fn write_file(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file =
        fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::new(file);
    f(&mut w).with_context(|| format!("cannot write {}", path.display()))?;
    w.flush()
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use shadowgate_record::{LatencyRecorder, Manifest, Measure, Outcome, RunKind, SeriesKey};

    use super::*;

    /// A run of `kind` in `dir`: 50 request samples (with counts) and 20 SSE lag samples of
    /// the candidate; `extra` goes into the manifest as it is.
    fn write_run(dir: &Path, kind: RunKind, extra: serde_json::Value) {
        fs::create_dir_all(dir).unwrap();
        let t0 = SystemTime::now() - Duration::from_secs(10);
        let mut m = Manifest::new(kind, "0.1.0-test");
        m.started_at = t0;
        m.ended_at = Some(t0 + Duration::from_secs(2));
        m.targets
            .insert("candidate".into(), "http://127.0.0.1:8081".into());
        if let serde_json::Value::Object(map) = extra {
            m.extra.extend(map);
        }
        m.write(dir).unwrap();
        let rec = LatencyRecorder::create(dir, t0, Duration::from_secs(1)).unwrap();
        let key = |route: &str, measure| SeriesKey::new("candidate", "GET", route, measure);
        let req = rec
            .series(key("/api/market", Measure::Response).unwrap())
            .unwrap();
        let lag = rec
            .series(key("/api/stream", Measure::Other("lag".into())).unwrap())
            .unwrap();
        let mut local = rec.local();
        for i in 0..50_u64 {
            local.record(req, 100_000 + i);
            local.count(req, Outcome::Status2xx);
        }
        for ms in 1..=20_u64 {
            local.record(lag, ms * 1_000_000);
        }
        local.flush();
        rec.write_interval_at(Duration::from_secs(1)).unwrap();
        drop(local);
        rec.finish().unwrap();
    }

    fn lag() -> Measure {
        Measure::Other("lag".into())
    }

    #[test]
    fn a_compare_only_run_keeps_its_lag_series_but_not_its_request_latency_or_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("v");
        fs::create_dir_all(&dir).unwrap();
        let mut top = Manifest::new(RunKind::Validate, "0.1.0-test");
        top.extra
            .insert("runs".into(), serde_json::json!(Vec::<String>::new()));
        top.extra
            .insert("compare_only".into(), serde_json::json!(["mirror"]));
        top.write(&dir).unwrap();
        write_run(&dir.join("mirror"), RunKind::Mirror, serde_json::json!({}));

        let (m, _, _) = open_measurements(std::slice::from_ref(&dir)).unwrap();
        let lag_h = m
            .latency("candidate", None, &lag())
            .expect("the lag series");
        assert_eq!(lag_h.len(), 20);
        assert!(m.latency("candidate", None, &Measure::Response).is_none());
        assert!(m.run.counts.is_empty());
        assert!(
            m.run
                .latency
                .keys()
                .all(|k| !is_request_measure(&k.measure))
        );
    }

    #[test]
    fn a_validate_manifest_without_sub_run_lists_is_read_as_a_plain_run() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plain");
        write_run(&dir, RunKind::Validate, serde_json::json!({"note": "x"}));
        assert!(composite(&dir).is_none());
        let (m, notes, phase) = open_measurements(std::slice::from_ref(&dir)).unwrap();
        assert!(notes.is_empty() && phase.is_none());
        let h = m.latency("candidate", None, &Measure::Response).unwrap();
        assert_eq!(h.len(), 50);
        assert_eq!(m.latency("candidate", None, &lag()).unwrap().len(), 20);
        assert!(!m.run.counts.is_empty());

        // With the lists (empty: nothing recorded yet) it is a composite, and says so.
        let dir = tmp.path().join("empty");
        write_run(
            &dir,
            RunKind::Demo,
            serde_json::json!({"runs": [], "compare_only": []}),
        );
        assert!(composite(&dir).is_some());
        let e = open_measurements(std::slice::from_ref(&dir)).unwrap_err();
        assert!(format!("{e:#}").contains("recorded nothing yet"), "{e:#}");
    }
}
