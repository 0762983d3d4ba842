//! A run directory as a whole: [`RunWriter`] for producers, [`Run`] and [`merge`] for readers.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::counts::{COUNTS_COLUMNS, Counts, CountsRow};
use crate::discrepancy::{Discrepancy, DiscrepancyWriter};
use crate::hlog::{self, IntervalHistogram, SeriesData};
use crate::linefile::{lock, read_csv, read_ndjson};
use crate::manifest::{FORMAT_VERSION, Manifest};
use crate::recorder::{DEFAULT_INTERVAL, LatencyRecorder};
use crate::resources::{self, ResourceSample, ResourceWriter};
use crate::series::{RouteKey, SeriesKey};
use crate::timefmt;
use crate::{COUNTS_FILE, DISCREPANCIES_FILE, MANIFEST_FILE, RESOURCES_FILE, RecordError};

/// Writes one run directory: the manifest at creation, the data files on demand, `ended_at` at
/// the end.
///
/// The data writers are created on first use and shared: asking twice for
/// [`latency`](Self::latency) returns handles to the same recorder, so several producers in one
/// process (load generator and sampler in `validate`) can write one directory.
#[derive(Debug)]
pub struct RunWriter {
    dir: PathBuf,
    interval: Duration,
    manifest: Mutex<Manifest>,
    latency: Mutex<Option<LatencyRecorder>>,
    discrepancies: Mutex<Option<DiscrepancyWriter>>,
    resources: Mutex<Option<ResourceWriter>>,
}

impl RunWriter {
    /// Creates `dir` (and parents) and writes `manifest.json` (with `ended_at` cleared). Refuses
    /// a directory that already holds a run.
    pub fn create(
        dir: impl Into<PathBuf>,
        mut manifest: Manifest,
    ) -> Result<RunWriter, RecordError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| RecordError::io(&dir, "creating directory", e))?;
        if dir.join(MANIFEST_FILE).exists() {
            return Err(RecordError::RunExists { dir });
        }
        manifest.ended_at = None;
        manifest.started_at = timefmt::truncate_to_millis(manifest.started_at);
        manifest.write(&dir)?;
        Ok(RunWriter {
            dir,
            interval: DEFAULT_INTERVAL,
            manifest: Mutex::new(manifest),
            latency: Mutex::new(None),
            discrepancies: Mutex::new(None),
            resources: Mutex::new(None),
        })
    }

    /// Sets the recording interval (default 1 s) used when the latency recorder is created.
    pub fn with_interval(mut self, interval: Duration) -> RunWriter {
        self.interval = interval;
        self
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A copy of the manifest as last written.
    pub fn manifest(&self) -> Manifest {
        lock(&self.manifest).clone()
    }

    /// Changes the manifest (e.g. `extra` facts learnt during the run) and rewrites it
    /// atomically.
    pub fn update_manifest(&self, f: impl FnOnce(&mut Manifest)) -> Result<(), RecordError> {
        let mut m = lock(&self.manifest);
        f(&mut m);
        m.write(&self.dir)
    }

    /// The latency/counts recorder of this run (created on first call, with interval offsets
    /// measured from the manifest's `started_at`).
    pub fn latency(&self) -> Result<LatencyRecorder, RecordError> {
        let mut slot = lock(&self.latency);
        if let Some(r) = &*slot {
            return Ok(r.clone());
        }
        let start = lock(&self.manifest).started_at;
        let r = LatencyRecorder::create(&self.dir, start, self.interval)?;
        *slot = Some(r.clone());
        Ok(r)
    }

    /// The discrepancy writer of this run (created on first call).
    pub fn discrepancies(&self) -> Result<DiscrepancyWriter, RecordError> {
        let mut slot = lock(&self.discrepancies);
        if let Some(w) = &*slot {
            return Ok(w.clone());
        }
        let w = DiscrepancyWriter::create(&self.dir)?;
        *slot = Some(w.clone());
        Ok(w)
    }

    /// The resource-sample writer of this run (created on first call).
    pub fn resources(&self) -> Result<ResourceWriter, RecordError> {
        let mut slot = lock(&self.resources);
        if let Some(w) = &*slot {
            return Ok(w.clone());
        }
        let w = ResourceWriter::create(&self.dir)?;
        *slot = Some(w.clone());
        Ok(w)
    }

    /// Ends the run: finishes the latency recorder (drop local shards first), flushes the other
    /// writers, and writes `ended_at` (now) into the manifest. Returns the final manifest.
    /// Calling it again only returns the manifest.
    pub fn finish(&self) -> Result<Manifest, RecordError> {
        if let Some(r) = &*lock(&self.latency) {
            r.finish()?;
        }
        if let Some(w) = &*lock(&self.discrepancies) {
            w.flush()?;
        }
        if let Some(w) = &*lock(&self.resources) {
            w.flush()?;
        }
        let mut m = lock(&self.manifest);
        if m.ended_at.is_none() {
            m.ended_at = Some(timefmt::truncate_to_millis(SystemTime::now()).max(m.started_at));
            m.write(&self.dir)?;
        }
        Ok(m.clone())
    }
}

/// Everything in one run directory (or several, merged).
#[derive(Debug, Clone)]
pub struct Run {
    /// The directory (for a merge: the first one).
    pub dir: PathBuf,
    /// Every directory this was read from.
    pub sources: Vec<PathBuf>,
    /// The manifest. Interval offsets below are relative to its `started_at`.
    pub manifest: Manifest,
    /// Latency per series: total and per-interval histograms.
    pub latency: BTreeMap<SeriesKey, SeriesData>,
    /// `counts.csv` rows, in file order (by interval start for files this crate writes).
    pub counts: Vec<CountsRow>,
    /// `discrepancies.ndjson`, in file order.
    pub discrepancies: Vec<Discrepancy>,
    /// `resources.csv`, in file order.
    pub resources: Vec<ResourceSample>,
    /// Things a report should mention: skipped torn lines, an unfinished run, merge conflicts.
    pub warnings: Vec<String>,
}

impl Run {
    /// Reads a run directory. `manifest.json` is required; each data file is optional (absent =
    /// empty). A torn last line is skipped with a warning; any other bad line is an error naming
    /// the file and line.
    pub fn open(dir: impl AsRef<Path>) -> Result<Run, RecordError> {
        let dir = dir.as_ref();
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(RecordError::io(
                    dir,
                    "opening run directory",
                    std::io::Error::other("not a directory"),
                ));
            }
            Err(e) => return Err(RecordError::io(dir, "opening run directory", e)),
        }
        let manifest = Manifest::read(dir)?;
        let mut warnings = Vec::new();
        let mut warn = |msg: String| {
            tracing::warn!(dir = %dir.display(), "{msg}");
            warnings.push(msg);
        };
        if manifest.format > FORMAT_VERSION {
            warn(format!(
                "{}: manifest format {} is newer than this shadowgate reads ({FORMAT_VERSION}); \
                 some data may be ignored",
                dir.join(MANIFEST_FILE).display(),
                manifest.format
            ));
        }
        if manifest.ended_at.is_none() {
            warn(format!(
                "{}: the run has no end time: it was killed or is still running, so its last \
                 interval may be missing",
                dir.display()
            ));
        }
        let latency = hlog::read(dir, manifest.started_at, &mut warnings)?;
        let counts = read_csv(
            &dir.join(COUNTS_FILE),
            &COUNTS_COLUMNS,
            CountsRow::check,
            &mut warnings,
        )?;
        let discrepancies = read_ndjson(&dir.join(DISCREPANCIES_FILE), &mut warnings)?;
        let resources = resources::read(&dir.join(RESOURCES_FILE), &mut warnings)?;
        Ok(Run {
            dir: dir.to_path_buf(),
            sources: vec![dir.to_path_buf()],
            manifest,
            latency,
            counts,
            discrepancies,
            resources,
            warnings,
        })
    }

    /// Wall-clock time of an interval offset.
    pub fn time_at(&self, offset: Duration) -> SystemTime {
        self.manifest.started_at + offset
    }

    /// Counts per target/route over the whole run.
    pub fn counts_by_route(&self) -> BTreeMap<RouteKey, Counts> {
        let mut out: BTreeMap<RouteKey, Counts> = BTreeMap::new();
        for row in &self.counts {
            out.entry(row.route_key()).or_default().add(&row.counts());
        }
        out
    }

    /// Counts per target over the whole run.
    pub fn counts_by_target(&self) -> BTreeMap<String, Counts> {
        let mut out: BTreeMap<String, Counts> = BTreeMap::new();
        for row in &self.counts {
            out.entry(row.target.clone())
                .or_default()
                .add(&row.counts());
        }
        out
    }

    /// `ended_at - started_at`, if the run ended.
    pub fn duration(&self) -> Option<Duration> {
        let end = self.manifest.ended_at?;
        end.duration_since(self.manifest.started_at).ok()
    }
}

/// Merges runs (several load generators, several proxies) as if one had recorded everything:
///
/// - latency: totals add per series; intervals are re-based on the earliest start, and intervals
///   of one series with the same absolute start and length add;
/// - counts add per target/route and absolute interval;
/// - discrepancies and resources are concatenated and sorted by time;
/// - manifest: earliest start, latest end, union of targets, kind/host/scenario/phase from the
///   first run, and `extra` holding each run's `extra` under its directory name.
pub fn merge(runs: &[Run]) -> Result<Run, RecordError> {
    let first = runs.first().ok_or(RecordError::NothingToMerge)?;
    if runs.len() == 1 {
        return Ok(first.clone());
    }
    let start = runs
        .iter()
        .map(|r| r.manifest.started_at)
        .min()
        .unwrap_or(first.manifest.started_at);
    let mut warnings: Vec<String> = runs.iter().flat_map(|r| r.warnings.clone()).collect();
    let manifest = merge_manifests(runs, start, &mut warnings);

    // Offset (relative to the merged start) of an offset in `run`.
    let rebase = |run: &Run, offset: Duration| {
        (run.manifest.started_at + offset)
            .duration_since(start)
            .unwrap_or(Duration::ZERO)
    };

    let mut latency: BTreeMap<SeriesKey, SeriesData> = BTreeMap::new();
    for run in runs {
        for (key, data) in &run.latency {
            let merged = match latency.entry(key.clone()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(SeriesData {
                    total: hlog::total_histogram().map_err(|reason| RecordError::Encode {
                        path: run.dir.clone(),
                        action: "creating a histogram",
                        reason,
                    })?,
                    intervals: Vec::new(),
                }),
            };
            merged
                .total
                .add(&data.total)
                .map_err(|e| RecordError::Encode {
                    path: run.dir.clone(),
                    action: "adding histograms",
                    reason: e.to_string(),
                })?;
            for iv in &data.intervals {
                let mut iv = iv.clone();
                iv.start = rebase(run, iv.start);
                merged.intervals.push(iv);
            }
        }
    }
    for data in latency.values_mut() {
        data.intervals = combine_intervals(std::mem::take(&mut data.intervals))?;
    }

    let mut counts: BTreeMap<(u64, RouteKey, u64), Counts> = BTreeMap::new();
    for run in runs {
        for row in &run.counts {
            let key = (
                timefmt::millis_u64(rebase(run, row.start())),
                row.route_key(),
                timefmt::millis_u64(row.length()),
            );
            counts.entry(key).or_default().add(&row.counts());
        }
    }
    let counts = counts
        .into_iter()
        .map(|((start_ms, route, len_ms), c)| {
            CountsRow::new(
                Duration::from_millis(start_ms),
                Duration::from_millis(len_ms),
                &route,
                &c,
            )
        })
        .collect();

    let mut discrepancies: Vec<Discrepancy> =
        runs.iter().flat_map(|r| r.discrepancies.clone()).collect();
    discrepancies.sort_by_key(|d| d.ts);
    let mut resources: Vec<ResourceSample> =
        runs.iter().flat_map(|r| r.resources.clone()).collect();
    resources.sort_by_key(|s| s.unix_ms);

    Ok(Run {
        dir: first.dir.clone(),
        sources: runs.iter().flat_map(|r| r.sources.clone()).collect(),
        manifest,
        latency,
        counts,
        discrepancies,
        resources,
        warnings,
    })
}

/// Sorts intervals by start and adds those with the same start and length.
fn combine_intervals(
    mut intervals: Vec<IntervalHistogram>,
) -> Result<Vec<IntervalHistogram>, RecordError> {
    intervals.sort_by_key(|iv| (iv.start, iv.length));
    let mut out: Vec<IntervalHistogram> = Vec::with_capacity(intervals.len());
    for iv in intervals {
        match out.last_mut() {
            Some(prev) if prev.start == iv.start && prev.length == iv.length => {
                let mut h = prev.histogram()?;
                h.add(iv.histogram()?).map_err(|e| RecordError::Encode {
                    path: PathBuf::from(crate::LATENCY_FILE),
                    action: "adding interval histograms",
                    reason: e.to_string(),
                })?;
                *prev = IntervalHistogram::new(prev.start, prev.length, &h)?;
            }
            _ => out.push(iv),
        }
    }
    Ok(out)
}

fn merge_manifests(runs: &[Run], start: SystemTime, warnings: &mut Vec<String>) -> Manifest {
    let first = &runs[0].manifest;
    let mut m = first.clone();
    m.started_at = start;
    m.ended_at = runs.iter().filter_map(|r| r.manifest.ended_at).max();
    m.extra = serde_json::Map::new();
    for run in runs {
        for (name, url) in &run.manifest.targets {
            match m.targets.get(name) {
                Some(existing) if existing != url => warnings.push(format!(
                    "target {name:?} is {existing} in {} but {url} in {}; keeping the first",
                    runs[0].dir.display(),
                    run.dir.display()
                )),
                Some(_) => {}
                None => {
                    m.targets.insert(name.clone(), url.clone());
                }
            }
        }
        // A mirror's "scenario" is its rules file and a load run's its load scenario: only
        // runs of one kind are expected to share it (shards of one load test, say).
        let scenario_differs =
            run.manifest.kind == first.kind && run.manifest.scenario != first.scenario;
        if run.manifest.phase != first.phase || scenario_differs {
            let show = |o: &Option<String>| o.as_deref().unwrap_or("none").to_owned();
            warnings.push(format!(
                "{} was recorded with scenario {}, phase {}; {} with scenario {}, phase {}",
                runs[0].dir.display(),
                show(&first.scenario),
                show(&first.phase),
                run.dir.display(),
                show(&run.manifest.scenario),
                show(&run.manifest.phase)
            ));
        }
        let base = run.dir.file_name().map_or_else(
            || run.dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut name = base.clone();
        let mut n = 2;
        while m.extra.contains_key(&name) {
            name = format!("{base}#{n}");
            n += 1;
        }
        m.extra
            .insert(name, serde_json::Value::Object(run.manifest.extra.clone()));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::RunKind;

    #[test]
    fn run_writer_refuses_an_existing_run_and_finishes_once() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("r1");
        let w = RunWriter::create(&run_dir, Manifest::new(RunKind::Sample, "0.1.0")).unwrap();
        assert!(matches!(
            RunWriter::create(&run_dir, Manifest::new(RunKind::Sample, "0.1.0")),
            Err(RecordError::RunExists { .. })
        ));
        w.update_manifest(|m| {
            m.extra.insert("pid".into(), 42.into());
        })
        .unwrap();
        let m1 = w.finish().unwrap();
        let m2 = w.finish().unwrap();
        assert!(m1.ended_at.is_some());
        assert_eq!(m1, m2);
        let run = Run::open(&run_dir).unwrap();
        assert_eq!(run.manifest, m1);
        assert!(run.warnings.is_empty(), "{:?}", run.warnings);
        assert!(run.latency.is_empty() && run.counts.is_empty());
    }

    #[test]
    fn open_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = Run::open(dir.path().join("missing")).unwrap_err();
        assert!(matches!(e, RecordError::Io { .. }), "{e}");
        let e = Run::open(dir.path()).unwrap_err();
        assert!(matches!(e, RecordError::MissingManifest { .. }), "{e}");
    }

    #[test]
    fn unfinished_run_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let _w = RunWriter::create(dir.path(), Manifest::new(RunKind::Load, "0.1.0")).unwrap();
        let run = Run::open(dir.path()).unwrap();
        assert_eq!(run.warnings.len(), 1);
        assert!(
            run.warnings[0].contains("no end time"),
            "{:?}",
            run.warnings
        );
    }

    #[test]
    fn merge_of_nothing_is_an_error() {
        assert!(matches!(merge(&[]), Err(RecordError::NothingToMerge)));
    }
}
