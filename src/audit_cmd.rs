//! `shadowgate audit-diff`: audit-log consistency between the two gateways.
//!
//! The file work is here; parsing and matching are `shadowgate_diff::audit` (pure). Steps:
//! 1. read the rules file's `[audit]` table (every problem at once, naming the file; a file
//!    without the table, or no `--rules`, means the built-in VeloZ mapping), the id map
//!    (`--ids`, a file or a run directory holding `ids.ndjson`), and both logs — a file, or
//!    a C++ audit directory whose `audit-*.log` files are read in date and rotation order;
//! 2. detect each log's format (or take `--primary-format`/`--candidate-format`);
//! 3. match, and write a run directory (`manifest.json` of kind `audit-diff`, one
//!    `discrepancies.ndjson` line per finding with route `audit:<ACTION>`, and one
//!    `not-compared` line per unreadable log line), so `shadowgate report DIR` shows them;
//! 4. print a per-action table.
//!
//! Unreadable log lines are reported with `file:line` and counted, never fatal: a log is
//! evidence, and one bad line must not hide the rest. Bad input (a missing file, a rules
//! problem, a malformed id map) exits 2 with the file (and line) named.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use shadowgate_diff::audit::{
    AuditFormat, AuditReport, AuditRules, FindingKind, IdMap, ParsedLog, RawAuditRules,
    compare_logs, detect_format,
};
use shadowgate_record::{
    Class, Discrepancy, DiscrepancyKind, DiscrepancyWriter, Manifest, RunKind, RunWriter,
};

/// Unreadable lines written to the run directory one by one; the rest are counted.
const MAX_BAD_LINES_WRITTEN: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Decide from the first line (a directory is cpp).
    Auto,
    /// `YYYY-MM-DD HH:MM:SS [AUDIT] <msg>` lines.
    Python,
    /// NDJSON objects.
    Cpp,
}

/// Arguments of `shadowgate audit-diff`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
EXAMPLES:
    shadowgate audit-diff py-audit.log /var/log/veloz/audit --rules scenarios/audit.toml \\
        --ids reports/mirror-1 --out reports/audit-1
    shadowgate audit-diff primary.log candidate-dir --out reports/audit-2

Entries are matched by order id; the candidate's ids are translated through the id map the
mirror learned in the same run (--ids RUN_DIR), ids it does not know are used as they are.
Findings go to DIR/discrepancies.ndjson with kinds audit-missing, audit-extra and
audit-mismatch and route audit:<ACTION>; `shadowgate report DIR` renders them.")]
pub struct AuditDiffArgs {
    /// The primary's audit log: a file (python lines or NDJSON) or a directory of
    /// `audit-*.log` files.
    #[arg(value_name = "PRIMARY_LOG")]
    pub primary: PathBuf,

    /// The candidate's audit log: a file or a directory of `audit-*.log` files.
    #[arg(value_name = "CANDIDATE_LOG")]
    pub candidate: PathBuf,

    /// Rules file with an `[audit]` table (action mapping, id fields, compared fields).
    /// Without it, or without the table, the built-in VeloZ mapping applies.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,

    /// The run's learned id map: `ids.ndjson`, or the run directory holding it.
    #[arg(long, value_name = "FILE|RUN_DIR")]
    pub ids: Option<PathBuf>,

    /// Run directory to write (must not hold a run yet).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Format of PRIMARY_LOG.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub primary_format: FormatArg,

    /// Format of CANDIDATE_LOG.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub candidate_format: FormatArg,
}

fn load_rules(path: Option<&Path>) -> anyhow::Result<AuditRules> {
    let Some(path) = path else {
        return Ok(AuditRules::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the rules file {}", path.display()))?;
    // Only the `[audit]` table is read; the rest of the file is the mirror's business.
    let doc: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    let raw: RawAuditRules = match doc.get("audit") {
        None => RawAuditRules::default(),
        Some(table) => table.clone().try_into().map_err(|e: toml::de::Error| {
            anyhow::anyhow!("{}: [audit]: {}", path.display(), e.to_string().trim_end())
        })?,
    };
    raw.validate().map_err(|problems| {
        anyhow::anyhow!(
            "{}: {} problem(s) in [audit]:\n  {}",
            path.display(),
            problems.len(),
            problems.join("\n  ")
        )
    })
}

fn load_ids(path: Option<&Path>) -> anyhow::Result<(IdMap, Option<String>)> {
    let Some(path) = path else {
        return Ok((IdMap::default(), None));
    };
    let file = if path.is_dir() {
        path.join("ids.ndjson")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read the id map {}", file.display()))?;
    let (map, torn) = IdMap::parse_ndjson(&text)
        .map_err(|e| anyhow::anyhow!("{}:{}: {}", file.display(), e.line, e.reason))?;
    if let Some(t) = torn {
        eprintln!(
            "warning: {}:{}: torn last line skipped ({})",
            file.display(),
            t.line,
            t.reason
        );
    }
    Ok((map, Some(file.display().to_string())))
}

/// `audit-YYYY-MM-DD[-N].log` → sort key (date, N).
fn rotation_key(name: &str) -> Option<(String, u64)> {
    let stem = name.strip_prefix("audit-")?.strip_suffix(".log")?;
    let date = stem.get(..10)?;
    let n = match stem.get(10..)? {
        "" => 0,
        rest => rest.strip_prefix('-')?.parse().ok()?,
    };
    Some((date.to_owned(), n))
}

/// Where each file of an audit log ended at some moment (bytes), so that only what was
/// written afterwards is read: `validate` marks both logs before its mirror step and compares
/// only that step's entries (the direct load steps before it reach one gateway each, and
/// would all be missing or extra). Files that did not exist at the mark are read whole.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogMark {
    ends: BTreeMap<PathBuf, u64>,
}

impl LogMark {
    /// The current size of `path` (a file) or of each `audit-*.log` file in it (a directory).
    /// A log that does not exist yet marks nothing (everything in it is new).
    pub fn now(path: &Path) -> LogMark {
        let mut ends = BTreeMap::new();
        let files: Vec<PathBuf> = if path.is_dir() {
            std::fs::read_dir(path)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter(|e| rotation_key(&e.file_name().to_string_lossy()).is_some())
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default()
        } else {
            vec![path.to_path_buf()]
        };
        for f in files {
            if let Ok(meta) = std::fs::metadata(&f) {
                ends.insert(f, meta.len());
            }
        }
        LogMark { ends }
    }

    /// The part of `bytes` (the file `path` now) written after the mark, from a line start,
    /// and how many lines came before it.
    fn tail<'a>(&self, path: &Path, bytes: &'a [u8]) -> (&'a [u8], usize) {
        let Some(&end) = self.ends.get(path) else {
            return (bytes, 0);
        };
        let mut start = usize::try_from(end).unwrap_or(usize::MAX).min(bytes.len());
        // A mark inside a line (a write in progress) starts at the next line.
        if start > 0 && bytes[start - 1] != b'\n' {
            start = bytes[start..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(bytes.len(), |i| start + i + 1);
        }
        let before = bytes[..start].iter().filter(|b| **b == b'\n').count();
        (&bytes[start..], before)
    }
}

/// The files of one side, in order, with their text (after `mark`, when given).
fn read_side(path: &Path, mark: Option<&LogMark>) -> anyhow::Result<Vec<(String, String)>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the audit log {}", path.display()))?;
    let read = |p: &Path| -> anyhow::Result<(String, String)> {
        let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        let (text, before) = match mark {
            Some(m) => m.tail(p, &bytes),
            None => (&bytes[..], 0),
        };
        // Line numbers in messages count from the mark: say where that is.
        let name = if before > 0 {
            format!("{} (after line {before})", p.display())
        } else {
            p.display().to_string()
        };
        Ok((name, String::from_utf8_lossy(text).into_owned()))
    };
    if !meta.is_dir() {
        return Ok(vec![read(path)?]);
    }
    let mut files = Vec::new();
    let entries = std::fs::read_dir(path)
        .with_context(|| format!("cannot list the audit directory {}", path.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", path.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(key) = rotation_key(&name) {
            files.push((key, entry.path()));
        }
    }
    if files.is_empty() {
        // Marked before any file was written, and still none: nothing was logged.
        if mark.is_some() {
            return Ok(Vec::new());
        }
        bail!(
            "{}: no audit-YYYY-MM-DD[-N].log files in this directory",
            path.display()
        );
    }
    files.sort();
    files.iter().map(|(_, p)| read(p)).collect()
}

fn parse_side(
    path: &Path,
    arg: FormatArg,
    flag: &str,
    mark: Option<&LogMark>,
) -> anyhow::Result<(ParsedLog, AuditFormat)> {
    let files = read_side(path, mark)?;
    let format = match arg {
        FormatArg::Python => AuditFormat::Python,
        FormatArg::Cpp => AuditFormat::Cpp,
        FormatArg::Auto if path.is_dir() => AuditFormat::Cpp,
        FormatArg::Auto => {
            let detected = files.iter().find_map(|(_, text)| detect_format(text));
            match detected {
                Some(f) => f,
                // Nothing at all was logged: an empty log of either format.
                None if files.iter().all(|(_, t)| t.trim().is_empty()) => AuditFormat::Python,
                None => bail!(
                    "{}:1: neither a `YYYY-MM-DD HH:MM:SS [AUDIT]` line nor a JSON object; \
                     is this an audit log? (give {flag} python|cpp to force a format)",
                    path.display()
                ),
            }
        }
    };
    let mut log = ParsedLog::default();
    for (name, text) in &files {
        log.add(name, text, format);
    }
    Ok((log, format))
}

/// One comparison's inputs: the command's arguments, or `validate`'s audit step.
#[derive(Debug, Clone)]
pub struct AuditJob {
    /// The primary's log (file or directory).
    pub primary: PathBuf,
    /// The candidate's log (file or directory).
    pub candidate: PathBuf,
    pub primary_format: FormatArg,
    pub candidate_format: FormatArg,
    /// Rules file with an `[audit]` table (`None`: the built-in VeloZ mapping).
    pub rules: Option<PathBuf>,
    /// `ids.ndjson` or the run directory holding it.
    pub ids: Option<PathBuf>,
    /// Read only what was written after these marks (primary, candidate).
    pub marks: Option<(LogMark, LogMark)>,
}

/// Checks the rules file (for `validate`, before anything runs).
pub fn check_rules(path: &Path) -> anyhow::Result<()> {
    load_rules(Some(path)).map(|_| ())
}

/// A finished comparison.
#[derive(Debug)]
pub struct AuditOutcome {
    pub report: AuditReport,
    /// Entries read on each side (primary, candidate).
    pub entries: (usize, usize),
}

impl AuditOutcome {
    pub fn is_consistent(&self) -> bool {
        self.report.is_consistent()
    }
}

/// Reads and compares both logs, writes the run directory `out` with `manifest` (kind
/// `audit-diff`; its `extra.audit` is filled in here), prints the warnings and the per-action
/// table. Everything is read and checked before `out` is created.
pub fn compare_into(
    job: &AuditJob,
    out: &Path,
    manifest: Manifest,
) -> anyhow::Result<AuditOutcome> {
    let rules = load_rules(job.rules.as_deref())?;
    let (ids, ids_file) = load_ids(job.ids.as_deref())?;
    let (pm, cm) = match &job.marks {
        Some((p, c)) => (Some(p), Some(c)),
        None => (None, None),
    };
    let (primary, pf) = parse_side(&job.primary, job.primary_format, "--primary-format", pm)?;
    let (candidate, cf) = parse_side(
        &job.candidate,
        job.candidate_format,
        "--candidate-format",
        cm,
    )?;
    let report = compare_logs(&rules, &primary, &candidate, &ids);

    let run = RunWriter::create(out, manifest)
        .with_context(|| format!("cannot create the run directory {}", out.display()))?;
    let writer = run.discrepancies()?;
    write_findings(&writer, &report)?;
    let bad_written = write_bad_lines(&writer, &[&primary, &candidate])?;
    writer.flush()?;
    let mut primary_json = side_json(&primary, pf);
    let mut candidate_json = side_json(&candidate, cf);
    for (j, path) in [
        (&mut primary_json, &job.primary),
        (&mut candidate_json, &job.candidate),
    ] {
        j["log"] = path.display().to_string().into();
        j["from_mark"] = job.marks.is_some().into();
    }
    let extra = serde_json::json!({
        "consistent": report.is_consistent(),
        "rules": job.rules.as_ref().map(|p| p.display().to_string()),
        "primary": primary_json,
        "candidate": candidate_json,
        "ids": {
            "file": ids_file,
            "pairs": ids.len(),
            "unmapped_candidate_ids": report.unmapped_ids,
        },
        "actions": report.actions.iter().map(|(k, c)| (k.clone(), serde_json::json!({
            "primary": c.primary, "candidate": c.candidate, "matched": c.matched,
            "missing": c.missing, "extra": c.extra, "mismatched": c.mismatched,
        }))).collect::<serde_json::Map<_, _>>(),
        "unmapped_actions": {
            "primary": report.unmapped_primary,
            "candidate": report.unmapped_candidate,
        },
        "bad_lines_written": bad_written,
    });
    run.update_manifest(|m| {
        m.extra.insert("audit".into(), extra);
    })?;
    run.finish()?;

    for (side, log) in [("primary", &primary), ("candidate", &candidate)] {
        for bad in log.unparseable.iter().take(20) {
            eprintln!("warning: {side}: unreadable audit line {bad}");
        }
        if log.unparseable.len() > 20 {
            eprintln!(
                "warning: {side}: {} more unreadable lines (all in {})",
                log.unparseable.len() - 20,
                out.join("discrepancies.ndjson").display()
            );
        }
        for t in &log.torn {
            eprintln!("warning: {side}: torn last line {t}");
        }
    }
    print_summary(&report, &primary, &candidate, out)?;
    Ok(AuditOutcome {
        report,
        entries: (primary.entries.len(), candidate.entries.len()),
    })
}

/// Runs the command; exit 0 consistent, 1 findings.
pub async fn run(args: AuditDiffArgs) -> anyhow::Result<ExitCode> {
    let job = AuditJob {
        primary: args.primary.clone(),
        candidate: args.candidate.clone(),
        primary_format: args.primary_format,
        candidate_format: args.candidate_format,
        rules: args.rules.clone(),
        ids: args.ids.clone(),
        marks: None,
    };
    let mut manifest = Manifest::new(RunKind::AuditDiff, env!("CARGO_PKG_VERSION"));
    manifest
        .targets
        .insert("primary".into(), args.primary.display().to_string());
    manifest
        .targets
        .insert("candidate".into(), args.candidate.display().to_string());
    manifest.scenario = args.rules.as_ref().map(|p| p.display().to_string());
    let outcome = compare_into(&job, &args.out, manifest)?;
    Ok(if outcome.is_consistent() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn side_json(log: &ParsedLog, format: AuditFormat) -> serde_json::Value {
    serde_json::json!({
        "format": format.as_str(),
        "entries": log.entries.len(),
        "skipped": log.skipped,
        "unparseable": log.unparseable.len(),
        "torn": log.torn.len(),
    })
}

fn write_findings(writer: &DiscrepancyWriter, report: &AuditReport) -> anyhow::Result<()> {
    let now = SystemTime::now();
    for f in &report.findings {
        let kind = match f.kind {
            FindingKind::Missing => DiscrepancyKind::AuditMissing,
            FindingKind::Extra => DiscrepancyKind::AuditExtra,
            FindingKind::Mismatch => DiscrepancyKind::AuditMismatch,
        };
        let mut detail = Vec::new();
        if let Some(p) = &f.primary_at {
            detail.push(format!("primary {p}"));
        }
        if let Some(c) = &f.candidate_at {
            detail.push(format!("candidate {c}"));
        }
        if let Some(id) = &f.candidate_order_id {
            detail.push(format!("candidate order id {id}"));
        }
        writer.write(&Discrepancy {
            ts: now,
            method: "AUDIT".into(),
            route: format!("audit:{}", f.action),
            flow_id: f.order_id.clone(),
            kind,
            path: f.path.clone(),
            primary: f.primary.clone(),
            candidate: f.candidate.clone(),
            signature: format!("{:016x}", f.signature),
            class: Class::Regression,
            label: None,
            detail: Some(detail.join(", ")),
        })?;
    }
    Ok(())
}

fn write_bad_lines(writer: &DiscrepancyWriter, logs: &[&ParsedLog]) -> anyhow::Result<usize> {
    let now = SystemTime::now();
    let mut written = 0;
    for (log, side) in logs.iter().zip(["primary", "candidate"]) {
        for bad in log.unparseable.iter().chain(&log.torn) {
            if written == MAX_BAD_LINES_WRITTEN {
                return Ok(written);
            }
            writer.write(&Discrepancy {
                ts: now,
                method: "AUDIT".into(),
                route: "audit:unreadable".into(),
                flow_id: None,
                kind: DiscrepancyKind::NotCompared,
                path: String::new(),
                primary: serde_json::Value::Null,
                candidate: serde_json::Value::Null,
                signature: String::new(),
                class: Class::Ignored,
                label: None,
                detail: Some(format!("{side} audit line {bad}")),
            })?;
            written += 1;
        }
    }
    Ok(written)
}

fn print_summary(
    report: &AuditReport,
    primary: &ParsedLog,
    candidate: &ParsedLog,
    out: &Path,
) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "{:<16} {:>8} {:>9} {:>8} {:>8} {:>6} {:>10}",
        "action", "primary", "candidate", "matched", "missing", "extra", "mismatched"
    )?;
    for (name, c) in &report.actions {
        writeln!(
            o,
            "{:<16} {:>8} {:>9} {:>8} {:>8} {:>6} {:>10}",
            name, c.primary, c.candidate, c.matched, c.missing, c.extra, c.mismatched
        )?;
    }
    let t = report.totals();
    writeln!(
        o,
        "{:<16} {:>8} {:>9} {:>8} {:>8} {:>6} {:>10}",
        "total", t.primary, t.candidate, t.matched, t.missing, t.extra, t.mismatched
    )?;
    for (side, map) in [
        ("primary", &report.unmapped_primary),
        ("candidate", &report.unmapped_candidate),
    ] {
        if !map.is_empty() {
            let list: Vec<String> = map.iter().map(|(a, n)| format!("{a} ({n})")).collect();
            writeln!(
                o,
                "not mapped on the {side} (counted, not compared): {}",
                list.join(", ")
            )?;
        }
    }
    let bad = primary.unparseable.len() + candidate.unparseable.len();
    if bad > 0 {
        writeln!(o, "unreadable lines: {bad} (see warnings)")?;
    }
    if report.is_consistent() {
        writeln!(o, "audit logs consistent -> {}", out.display())?;
    } else {
        writeln!(
            o,
            "audit logs INCONSISTENT: {} finding(s) ({} missing, {} extra, {} mismatched entries) -> {}",
            report.findings.len(),
            t.missing,
            t.extra,
            t.mismatched,
            out.display()
        )?;
    }
    o.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_order() {
        let mut names = [
            "audit-2026-11-29-10.log",
            "audit-2026-11-29.log",
            "audit-2026-11-28.log",
            "audit-2026-11-29-2.log",
        ]
        .map(|n| rotation_key(n).unwrap());
        names.sort();
        let ns: Vec<u64> = names.iter().map(|(_, n)| *n).collect();
        assert_eq!(ns, vec![0, 0, 2, 10]);
        assert_eq!(names[0].0, "2026-11-28");
        assert!(rotation_key("audit-2026-11-29.txt").is_none());
        assert!(rotation_key("audit-2026-11-29-x.log").is_none());
        assert!(rotation_key("other.log").is_none());
    }

    #[test]
    fn a_mark_reads_only_whole_lines_written_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.log");
        std::fs::write(&f, "one\ntwo\n").unwrap();
        let mark = LogMark::now(&f);
        let bytes = b"one\ntwo\nthree\nfour\n";
        assert_eq!(mark.tail(&f, bytes), (&b"three\nfour\n"[..], 2));
        // A mark inside a line starts at the next one.
        let mid = LogMark {
            ends: BTreeMap::from([(f.clone(), 5)]),
        };
        assert_eq!(mid.tail(&f, bytes), (&b"three\nfour\n"[..], 2));
        // A file the mark does not know (rotated in later) is read whole.
        let other = dir.path().join("b.log");
        assert_eq!(mark.tail(&other, bytes), (&bytes[..], 0));
        // A file shorter than its mark (truncated) yields nothing, not a panic.
        assert_eq!(mark.tail(&f, b"x\n").0, b"");

        // A directory marks each audit file; one created afterwards is read whole.
        let audit = dir.path().join("audit");
        std::fs::create_dir(&audit).unwrap();
        let empty = LogMark::now(&audit);
        assert_eq!(read_side(&audit, Some(&empty)).unwrap(), Vec::new());
        assert!(
            read_side(&audit, None).is_err(),
            "no files, no mark: bad input"
        );
        let day = audit.join("audit-2026-11-29.log");
        std::fs::write(&day, "{\"a\":1}\n").unwrap();
        let mark = LogMark::now(&audit);
        std::fs::write(&day, "{\"a\":1}\n{\"a\":2}\n").unwrap();
        std::fs::write(audit.join("audit-2026-11-30.log"), "{\"a\":3}\n").unwrap();
        let files = read_side(&audit, Some(&mark)).unwrap();
        let texts: Vec<&str> = files.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["{\"a\":2}\n", "{\"a\":3}\n"]);
        assert!(files[0].0.ends_with("(after line 1)"), "{}", files[0].0);
    }

    #[test]
    fn the_shipped_audit_rules_are_the_built_in_defaults() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/audit.toml");
        assert_eq!(load_rules(Some(&p)).unwrap(), AuditRules::default());
    }

    #[test]
    fn rules_table_is_optional_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml");
        std::fs::write(
            &p,
            "include = [\"x.toml\"]\n[[routes]]\ntemplate = \"/a\"\n",
        )
        .unwrap();
        assert_eq!(load_rules(Some(&p)).unwrap(), AuditRules::default());
        std::fs::write(&p, "[audit]\ntolerance = -1\nbogus = 1\n").unwrap();
        let e = format!("{:#}", load_rules(Some(&p)).unwrap_err());
        assert!(e.contains("r.toml") && e.contains("bogus"), "{e}");
        std::fs::write(&p, "[audit]\ntolerance = -1.0\n").unwrap();
        let e = format!("{:#}", load_rules(Some(&p)).unwrap_err());
        assert!(e.contains("audit.tolerance"), "{e}");
    }
}
