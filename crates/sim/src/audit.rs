//! Audit logs in each gateway's format (veloz-api.md §6), so audit-log consistency between
//! the two gateways can be tested.
//!
//! - **python**: `YYYY-MM-DD HH:MM:SS [AUDIT] <msg>` lines, to stderr (`audit.log = "-"`) or
//!   appended to a file. Data actions carry a JSON message in Python's `json.dumps` spacing
//!   (`{"action": "place_order", "user": …, "auth_method": …, "ip": …, <details>}`); logins,
//!   auth failures and rate-limit hits are free text (`login_success user=admin ip=…`).
//! - **cpp**: NDJSON lines `{"timestamp","type","action","user_id","ip_address","details"}`
//!   in `<audit.dir>/audit-YYYY-MM-DD[-N].log`, a new file each UTC day and whenever the
//!   current one passes `audit.max_file_bytes` (the C++ logger rotates at 100 MB). The
//!   directory is created at start; like the C++ gateway, the simulator does not start when
//!   it cannot be. `details` values are strings, as the C++ logger's map is.
//!
//! Off unless configured: [`App::audit`] is then one branch on a `None`, and the details of
//! an entry are borrowed, so a call site costs nothing measurable. When on, each line is one
//! `write` on a file opened for appending, under a short lock (a simulator-sized volume; a
//! killed simulator leaves whole lines).
//!
//! Times are UTC (the real Python gateway logs local time; the simulator runs where the
//! tests run, and UTC keeps the two profiles' files comparable).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::access::Principal;
use crate::app::App;
use crate::config::Profile;
use crate::handlers::Req;
use crate::util::iso8601;

/// The C++ logger's size limit per file.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;

/// The `[audit]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// python: a file to append to, or `-` for stderr.
    pub log: Option<String>,
    /// cpp: the directory of the daily files.
    pub dir: Option<String>,
    /// cpp: start a new file beyond this size.
    pub max_file_bytes: Option<u64>,
}

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuditSink {
    /// No audit log.
    #[default]
    Off,
    /// python: standard error.
    Stderr,
    /// python: one file, appended to.
    File(PathBuf),
    /// cpp: daily files in this directory.
    Dir(PathBuf),
}

/// The validated audit settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Where lines go.
    pub sink: AuditSink,
    /// cpp: rotation size.
    pub max_file_bytes: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            sink: AuditSink::Off,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

impl RawAudit {
    /// Checks the table for a profile; problems are (key, message).
    pub fn validate(&self, profile: Profile) -> Result<AuditConfig, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let sink = match (profile, self.log.as_deref(), self.dir.as_deref()) {
            (_, None, None) => AuditSink::Off,
            (Profile::Python, Some("-"), None) => AuditSink::Stderr,
            (Profile::Python, Some(f), None) if !f.is_empty() => AuditSink::File(f.into()),
            (Profile::Cpp, None, Some(d)) if !d.is_empty() => AuditSink::Dir(d.into()),
            (Profile::Python, _, Some(_)) => {
                problems.push((
                    "audit.dir".into(),
                    "the python gateway writes one log: set audit.log (a file, or - for stderr)"
                        .into(),
                ));
                AuditSink::Off
            }
            (Profile::Cpp, Some(_), _) => {
                problems.push((
                    "audit.log".into(),
                    "the cpp gateway writes daily files: set audit.dir instead".into(),
                ));
                AuditSink::Off
            }
            (_, Some(_), _) => {
                problems.push(("audit.log".into(), "is empty".into()));
                AuditSink::Off
            }
            (_, None, Some(_)) => {
                problems.push(("audit.dir".into(), "is empty".into()));
                AuditSink::Off
            }
        };
        let max_file_bytes = self.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES);
        if max_file_bytes == 0 {
            problems.push(("audit.max_file_bytes".into(), "must be at least 1".into()));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(AuditConfig {
            sink,
            max_file_bytes,
        })
    }
}

/// What was done (each gateway has its own name for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    PlaceOrder,
    CancelOrder,
    BulkCancel,
    GetOrder,
    ListOrders,
    ListOrdersState,
    Account,
    Positions,
    KeyCreate,
    KeyList,
    KeyRevoke,
    LoginSuccess,
    LoginFailed,
    AuthFailed,
    RateLimited,
}

impl Action {
    fn python(self) -> &'static str {
        match self {
            Action::PlaceOrder => "place_order",
            Action::CancelOrder | Action::BulkCancel => "cancel_order",
            Action::GetOrder => "get_order_state",
            Action::ListOrders => "list_orders",
            Action::ListOrdersState => "list_orders_state",
            Action::Account => "get_account",
            Action::Positions => "get_positions",
            Action::KeyCreate => "create_api_key",
            Action::KeyList => "list_api_keys",
            Action::KeyRevoke => "revoke_api_key",
            Action::LoginSuccess => "login_success",
            Action::LoginFailed => "login_failed",
            Action::AuthFailed => "auth_failed",
            Action::RateLimited => "rate_limited",
        }
    }

    /// (type, action) of the C++ logger.
    fn cpp(self) -> (&'static str, &'static str) {
        match self {
            Action::PlaceOrder => ("order", "ORDER_SUBMIT"),
            Action::CancelOrder => ("order", "ORDER_CANCEL"),
            Action::BulkCancel => ("order", "ORDER_BULK_CANCEL"),
            Action::GetOrder => ("access", "ORDER_QUERY"),
            Action::ListOrders | Action::ListOrdersState => ("access", "ORDERS_LIST"),
            Action::Account => ("access", "ACCOUNT_QUERY"),
            Action::Positions => ("access", "POSITIONS_QUERY"),
            Action::KeyCreate => ("apikey", "api_key_created"),
            Action::KeyList => ("apikey", "api_keys_listed"),
            Action::KeyRevoke => ("apikey", "api_key_revoked"),
            Action::LoginSuccess => ("auth", "login_success"),
            Action::LoginFailed => ("auth", "login_failed"),
            Action::AuthFailed => ("auth", "auth_failed"),
            Action::RateLimited => ("access", "rate_limit_exceeded"),
        }
    }

    /// Python logs these as free text.
    fn python_free_text(self) -> bool {
        matches!(
            self,
            Action::LoginSuccess | Action::LoginFailed | Action::AuthFailed | Action::RateLimited
        )
    }

    /// The C++ auth handlers do not know the client address.
    fn cpp_unknown_ip(self) -> bool {
        matches!(self, Action::LoginSuccess | Action::LoginFailed)
    }
}

/// A detail value: Python keeps numbers as numbers; the C++ map holds strings.
#[derive(Debug, Clone, Copy)]
pub(crate) enum D<'a> {
    S(&'a str),
    N(f64),
}

/// An open audit log.
#[derive(Debug)]
pub(crate) struct AuditLog {
    profile: Profile,
    sink: Mutex<Sink>,
}

#[derive(Debug)]
enum Sink {
    Stderr,
    File(File),
    Dir {
        dir: PathBuf,
        max: u64,
        /// Day of the open file (days since the epoch), its rotation index and size.
        day: u64,
        index: u32,
        size: u64,
        file: Option<File>,
    },
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl AuditLog {
    /// Opens the configured log (`None` when off). The cpp directory is created here.
    pub(crate) fn open(
        cfg: &AuditConfig,
        profile: Profile,
    ) -> Result<Option<AuditLog>, (PathBuf, io::Error)> {
        let sink = match &cfg.sink {
            AuditSink::Off => return Ok(None),
            AuditSink::Stderr => Sink::Stderr,
            AuditSink::File(p) => Sink::File(open_append(p).map_err(|e| (p.clone(), e))?),
            AuditSink::Dir(d) => {
                fs::create_dir_all(d).map_err(|e| (d.clone(), e))?;
                Sink::Dir {
                    dir: d.clone(),
                    max: cfg.max_file_bytes,
                    day: u64::MAX,
                    index: 0,
                    size: 0,
                    file: None,
                }
            }
        };
        Ok(Some(AuditLog {
            profile,
            sink: Mutex::new(sink),
        }))
    }

    /// Formats and writes one entry. Write errors are logged at debug and otherwise ignored:
    /// an audit sink that fills up must not fail the request (the real gateways behave so).
    pub(crate) fn write(
        &self,
        action: Action,
        user: &str,
        auth_method: &str,
        ip: Option<IpAddr>,
        details: &[(&str, D<'_>)],
    ) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let line = match self.profile {
            Profile::Python => python_line(now.as_secs(), action, user, auth_method, ip, details),
            Profile::Cpp => cpp_line(now.as_millis() as u64, action, user, ip, details),
        };
        let mut sink = match self.sink.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = sink.append(now.as_secs() / 86_400, line.as_bytes()) {
            tracing::debug!(error = %e, "audit line not written");
        }
    }
}

impl Sink {
    fn append(&mut self, today: u64, line: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stderr => io::stderr().lock().write_all(line),
            Sink::File(f) => f.write_all(line),
            Sink::Dir {
                dir,
                max,
                day,
                index,
                size,
                file,
            } => {
                if *day != today {
                    *day = today;
                    *index = 0;
                    *file = None;
                }
                loop {
                    if file.is_none() {
                        let date = &iso8601(today * 86_400)[..10];
                        let name = if *index == 0 {
                            format!("audit-{date}.log")
                        } else {
                            format!("audit-{date}-{index}.log")
                        };
                        let f = open_append(&dir.join(name))?;
                        *size = f.metadata().map_or(0, |m| m.len());
                        *file = Some(f);
                    }
                    // A full file (from this run or an earlier one): the next index.
                    if *size > 0 && *size + line.len() as u64 > *max {
                        *index += 1;
                        *file = None;
                        continue;
                    }
                    break;
                }
                *size += line.len() as u64;
                match file {
                    Some(f) => f.write_all(line),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Python `json.dumps` of a string (ASCII-escaped as Python does by default).
fn py_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python `repr(float)`-like text: integral values keep `.0`.
fn py_float(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

fn python_line(
    secs: u64,
    action: Action,
    user: &str,
    auth_method: &str,
    ip: Option<IpAddr>,
    details: &[(&str, D<'_>)],
) -> String {
    let ts = iso8601(secs);
    let mut out = String::with_capacity(160);
    out.push_str(&ts[..10]);
    out.push(' ');
    out.push_str(&ts[11..19]);
    out.push_str(" [AUDIT] ");
    let ip_text = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    if action.python_free_text() {
        out.push_str(action.python());
        out.push_str(" user=");
        out.push_str(user);
        out.push_str(" ip=");
        out.push_str(&ip_text);
        for (k, v) in details {
            out.push(' ');
            out.push_str(k);
            out.push('=');
            match v {
                D::S(s) => out.push_str(s),
                D::N(n) => out.push_str(&py_float(*n)),
            }
        }
    } else {
        out.push_str("{\"action\": ");
        py_json_str(&mut out, action.python());
        for (k, v) in [
            ("user", user),
            ("auth_method", auth_method),
            ("ip", &ip_text),
        ] {
            out.push_str(", ");
            py_json_str(&mut out, k);
            out.push_str(": ");
            py_json_str(&mut out, v);
        }
        for (k, v) in details {
            out.push_str(", ");
            py_json_str(&mut out, k);
            out.push_str(": ");
            match v {
                D::S(s) => py_json_str(&mut out, s),
                D::N(n) => out.push_str(&py_float(*n)),
            }
        }
        out.push('}');
    }
    out.push('\n');
    out
}

fn cpp_line(
    millis: u64,
    action: Action,
    user: &str,
    ip: Option<IpAddr>,
    details: &[(&str, D<'_>)],
) -> String {
    let ts = iso8601(millis / 1000);
    let (kind, name) = action.cpp();
    let ip = match ip {
        Some(ip) if !action.cpp_unknown_ip() => ip.to_string(),
        _ => "unknown".to_owned(),
    };
    // Written field by field to keep the C++ logger's order (a JSON map would sort them).
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let mut line = format!(
        "{{\"timestamp\":\"{}.{:03}Z\",\"type\":{},\"action\":{},\"user_id\":{},\"ip_address\":{}",
        &ts[..19],
        millis % 1000,
        q(kind),
        q(name),
        q(user),
        q(&ip)
    );
    if !details.is_empty() {
        line.push_str(",\"details\":{");
        for (i, (k, v)) in details.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            let text = match v {
                D::S(s) => (*s).to_owned(),
                // KJ prints doubles in their shortest form.
                D::N(n) => format!("{n}"),
            };
            line.push_str(&q(k));
            line.push(':');
            line.push_str(&q(&text));
        }
        line.push('}');
    }
    line.push_str("}\n");
    line
}

/// `jwt`, `api_key`, `disabled` (auth off) or `none` (a public route).
fn auth_method(app: &App, who: &Principal) -> &'static str {
    if !app.cfg.auth.enabled {
        "disabled"
    } else if who.key_id.is_some() {
        "api_key"
    } else if who.authenticated {
        "jwt"
    } else {
        "none"
    }
}

impl App {
    /// Writes an audit entry for a handled request, when the audit log is on.
    pub(crate) fn audit(&self, r: &Req<'_>, action: Action, details: &[(&str, D<'_>)]) {
        if let Some(log) = &self.audit {
            log.write(
                action,
                &r.principal.user_id,
                auth_method(self, r.principal),
                Some(r.peer.ip()),
                details,
            );
        }
    }

    /// Writes an entry for something that happened before a handler (auth failure, rate
    /// limit) or in the auth handlers, where only the user and the address are known.
    pub(crate) fn audit_event(
        &self,
        action: Action,
        user: &str,
        ip: Option<IpAddr>,
        details: &[(&str, D<'_>)],
    ) {
        if let Some(log) = &self.audit {
            let method = if self.cfg.auth.enabled {
                "none"
            } else {
                "disabled"
            };
            log.write(action, user, method, ip, details);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_764_417_600; // 2025-11-29T12:00:00Z

    #[test]
    fn python_lines_look_like_the_gateway() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let line = python_line(
            T,
            Action::PlaceOrder,
            "admin",
            "disabled",
            Some(ip),
            &[
                ("client_order_id", D::S("o\"1")),
                ("qty", D::N(1.0)),
                ("price", D::N(0.5)),
            ],
        );
        assert_eq!(
            line,
            "2025-11-29 12:00:00 [AUDIT] {\"action\": \"place_order\", \"user\": \"admin\", \"auth_method\": \"disabled\", \"ip\": \"127.0.0.1\", \"client_order_id\": \"o\\\"1\", \"qty\": 1.0, \"price\": 0.5}\n"
        );
        let line = python_line(
            T,
            Action::LoginFailed,
            "bob",
            "none",
            Some(ip),
            &[("reason", D::S("invalid_credentials"))],
        );
        assert_eq!(
            line,
            "2025-11-29 12:00:00 [AUDIT] login_failed user=bob ip=127.0.0.1 reason=invalid_credentials\n"
        );
    }

    #[test]
    fn cpp_lines_are_ndjson_with_string_details() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let line = cpp_line(
            T * 1000 + 42,
            Action::BulkCancel,
            "anonymous",
            Some(ip),
            &[("order_ids", D::S("a,b")), ("count", D::N(2.0))],
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["timestamp"], "2025-11-29T12:00:00.042Z");
        assert_eq!(v["type"], "order");
        assert_eq!(v["action"], "ORDER_BULK_CANCEL");
        assert_eq!(v["ip_address"], "127.0.0.1");
        assert_eq!(v["details"]["count"], "2");
        let line = cpp_line(T * 1000, Action::LoginSuccess, "x", Some(ip), &[]);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ip_address"], "unknown");
        assert!(v.get("details").is_none());
    }

    #[test]
    fn cpp_files_rotate_by_size_and_day() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig {
            sink: AuditSink::Dir(dir.path().join("audit")),
            max_file_bytes: 100,
        };
        let log = AuditLog::open(&cfg, Profile::Cpp).unwrap().unwrap();
        let mut sink = log.sink.lock().unwrap();
        let day = T / 86_400;
        for _ in 0..3 {
            sink.append(day, &[b'x'; 60]).unwrap();
        }
        sink.append(day + 1, b"y\n").unwrap();
        drop(sink);
        let mut names: Vec<String> = fs::read_dir(dir.path().join("audit"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "audit-2025-11-29-1.log",
                "audit-2025-11-29-2.log",
                "audit-2025-11-29.log",
                "audit-2025-11-30.log"
            ]
        );
    }

    #[test]
    fn validation_per_profile() {
        let raw = RawAudit {
            log: Some("-".into()),
            ..RawAudit::default()
        };
        assert_eq!(
            raw.validate(Profile::Python).unwrap().sink,
            AuditSink::Stderr
        );
        assert_eq!(raw.validate(Profile::Cpp).unwrap_err()[0].0, "audit.log");
        let raw = RawAudit {
            dir: Some("d".into()),
            max_file_bytes: Some(0),
            ..RawAudit::default()
        };
        assert_eq!(raw.validate(Profile::Python).unwrap_err().len(), 2);
        assert_eq!(raw.validate(Profile::Cpp).unwrap_err().len(), 1);
        assert_eq!(
            RawAudit::default().validate(Profile::Cpp).unwrap(),
            AuditConfig::default()
        );
    }
}
