//! `manifest.json`: what ran, when, against what, on which host.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::timefmt;
use crate::{MANIFEST_FILE, RecordError};

/// The manifest format written by this crate. Readers warn about manifests from a newer format.
pub const FORMAT_VERSION: u32 = 1;

/// Which command produced a run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// The shadow proxy (`shadowgate mirror`).
    Mirror,
    /// A load run (`shadowgate load`).
    Load,
    /// Pre-phase validation (`shadowgate validate`).
    Validate,
    /// The self-contained demo (`shadowgate demo`).
    Demo,
    /// Offline diff of recorded traffic (`shadowgate replay`).
    Replay,
    /// Resource sampling only (`shadowgate sample`).
    Sample,
    /// Audit-log consistency (`shadowgate audit-diff`).
    #[serde(rename = "audit-diff")]
    AuditDiff,
}

impl RunKind {
    /// The lowercase name used in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Mirror => "mirror",
            RunKind::Load => "load",
            RunKind::Validate => "validate",
            RunKind::Demo => "demo",
            RunKind::Replay => "replay",
            RunKind::Sample => "sample",
            RunKind::AuditDiff => "audit-diff",
        }
    }
}

/// The machine a run was recorded on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name (`unknown` if it could not be read).
    pub hostname: String,
    /// Operating system (`linux`, `macos`, ...).
    pub os: String,
    /// CPU architecture (`x86_64`, `aarch64`, ...).
    pub arch: String,
    /// CPUs available to the process.
    pub cpus: usize,
    /// Kernel release (`/proc/sys/kernel/osrelease`), when available.
    #[serde(default)]
    pub kernel: Option<String>,
}

impl HostInfo {
    /// Describes the current machine. Never fails: unknown parts are `unknown`/`None`.
    pub fn current() -> HostInfo {
        let hostname = read_trimmed("/proc/sys/kernel/hostname")
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "unknown".to_owned());
        HostInfo {
            hostname,
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        }
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    let s = fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version ([`FORMAT_VERSION`]).
    #[serde(default = "default_format")]
    pub format: u32,
    /// Version of the tool that wrote the run (the producer passes its own).
    pub tool_version: String,
    /// Which command wrote the run.
    pub kind: RunKind,
    /// When the run started (RFC 3339). Interval offsets in `latency.hlog` and `counts.csv` are
    /// relative to this instant.
    #[serde(with = "timefmt::rfc3339")]
    pub started_at: SystemTime,
    /// When the run ended; `null` while running, or if the process was killed.
    #[serde(with = "timefmt::rfc3339_opt", default)]
    pub ended_at: Option<SystemTime>,
    /// Target name → base URL (e.g. `primary` → `http://127.0.0.1:8080`).
    #[serde(default)]
    pub targets: BTreeMap<String, String>,
    /// Scenario file or name, if any.
    #[serde(default)]
    pub scenario: Option<String>,
    /// Rollout phase, if any.
    #[serde(default)]
    pub phase: Option<String>,
    /// The machine the run was recorded on.
    pub host: HostInfo,
    /// Producer-specific facts (achieved rate, `generator_limited`, calibration, ...).
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn default_format() -> u32 {
    FORMAT_VERSION
}

impl Manifest {
    /// A manifest for a run starting now, on this host. `tool_version` is the producer's own
    /// version (e.g. `env!("CARGO_PKG_VERSION")` of the binary): this crate cannot know it.
    ///
    /// The start time is truncated to whole milliseconds; see the crate docs.
    pub fn new(kind: RunKind, tool_version: impl Into<String>) -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            tool_version: tool_version.into(),
            kind,
            started_at: timefmt::truncate_to_millis(SystemTime::now()),
            ended_at: None,
            targets: BTreeMap::new(),
            scenario: None,
            phase: None,
            host: HostInfo::current(),
            extra: serde_json::Map::new(),
        }
    }

    /// Writes `dir/manifest.json` atomically: a temporary file in the same directory, synced,
    /// then renamed over the old one, so a reader never sees half a manifest.
    pub fn write(&self, dir: &Path) -> Result<(), RecordError> {
        let path = dir.join(MANIFEST_FILE);
        let tmp = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| RecordError::Encode {
            path: path.clone(),
            action: "serializing manifest",
            reason: e.to_string(),
        })?;
        text.push(b'\n');
        let mut f = fs::File::create(&tmp).map_err(|e| RecordError::io(&tmp, "creating", e))?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(|e| RecordError::io(&tmp, "writing", e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| RecordError::io(&path, "replacing", e))
    }

    /// Reads `dir/manifest.json`. A missing file is [`RecordError::MissingManifest`].
    pub fn read(dir: &Path) -> Result<Manifest, RecordError> {
        let path = dir.join(MANIFEST_FILE);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RecordError::MissingManifest {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(RecordError::io(&path, "reading", e)),
        };
        serde_json::from_slice(&text).map_err(|e| {
            RecordError::corrupt(
                &path,
                e.line().max(1),
                format!("{e} — the manifest was edited or written by another tool"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn sample() -> Manifest {
        let mut m = Manifest::new(RunKind::Load, "0.1.0");
        m.started_at = UNIX_EPOCH + Duration::from_millis(1_764_408_000_123);
        m.ended_at = Some(m.started_at + Duration::from_secs(60));
        m.targets
            .insert("candidate".into(), "http://127.0.0.1:8081".into());
        m.scenario = Some("scenarios/orders.load.toml".into());
        m.phase = Some("2".into());
        m.extra.insert("achieved_rate".into(), 9_998.5.into());
        m.extra.insert("generator_limited".into(), false.into());
        m
    }

    #[test]
    fn round_trip_and_field_names() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        m.write(dir.path()).unwrap();
        assert!(!dir.path().join("manifest.json.tmp").exists());
        let text = fs::read_to_string(dir.path().join(MANIFEST_FILE)).unwrap();
        assert!(text.contains(r#""kind": "load""#), "{text}");
        assert!(
            text.contains(r#""started_at": "2025-11-29T09:20:00.123Z""#),
            "{text}"
        );
        assert_eq!(Manifest::read(dir.path()).unwrap(), m);
    }

    #[test]
    fn new_fills_host_and_truncates_start() {
        let m = Manifest::new(RunKind::Mirror, "9.9.9");
        assert_eq!(m.tool_version, "9.9.9");
        assert_eq!(m.started_at, timefmt::truncate_to_millis(m.started_at));
        assert!(m.host.cpus >= 1);
        assert_eq!(m.host.os, std::env::consts::OS);
    }

    #[test]
    fn missing_and_corrupt_manifest() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Manifest::read(dir.path()),
            Err(RecordError::MissingManifest { .. })
        ));
        fs::write(
            dir.path().join(MANIFEST_FILE),
            "{\n \"kind\": \"load\",\n oops\n}",
        )
        .unwrap();
        match Manifest::read(dir.path()) {
            Err(RecordError::Corrupt { line, .. }) => assert_eq!(line, 3),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn unknown_kind_is_rejected_with_the_allowed_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = serde_json::to_value(sample()).unwrap();
        v["kind"] = "bench".into();
        fs::write(dir.path().join(MANIFEST_FILE), v.to_string()).unwrap();
        let e = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("unknown variant `bench`"), "{e}");
    }
}
