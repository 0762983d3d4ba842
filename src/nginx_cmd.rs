//! `shadowgate nginx-config`: the rollout plan's weighted nginx split, with the mirror in the
//! path, rendered for one C++ weight.
//!
//! Design decisions:
//! - The templates are the files in `scenarios/nginx/` (embedded at build time), so the
//!   documented config and the rendered one cannot drift apart. Rendering is plain
//!   `{{NAME}}` substitution, and a placeholder left over is an error, not output.
//! - The Python share goes through `shadowgate mirror` (primary Python, candidate C++); the C++
//!   share goes to C++ directly (the template's header explains why).
//! - nginx rejects `weight=0`, so C++ at 0 % is rendered `down` and the mirror at 0 %
//!   (C++ at 100 %) is rendered `backup`: Python then only answers when C++ is out, which is
//!   the rollback net the plan wants while Python is still deployed.
//! - Every argument is checked before anything is written, and every problem is reported at
//!   once (exit code 2). Addresses are checked to be plain `host:port`, so nothing a user
//!   types can inject nginx syntax.
//! - `--standalone DIR` wraps the http-context file in a complete `nginx.conf` whose pid,
//!   logs and temp paths all live in DIR and which stays in the foreground: for trying the
//!   split on a laptop, for the integration tests and for `failover-drill`.
//! - `--out FILE` writes to a temporary file beside FILE and renames it over FILE, so nginx
//!   never reads a half-written config.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// The weighted split (`scenarios/nginx/veloz-split.conf`).
pub const SPLIT_TEMPLATE: &str = include_str!("../scenarios/nginx/veloz-split.conf");
/// The split plus the `X-Gateway-Version` switch (`scenarios/nginx/veloz-header-switch.conf`).
pub const HEADER_SWITCH_TEMPLATE: &str =
    include_str!("../scenarios/nginx/veloz-header-switch.conf");

/// Arguments of `shadowgate nginx-config`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
EXAMPLES:
    shadowgate nginx-config --cpp-weight 5 --out /etc/nginx/conf.d/veloz-split.conf
    shadowgate nginx-config --cpp-weight 25 --header-switch --mirror 127.0.0.1:8000
    shadowgate nginx-config --cpp-weight 50 --standalone /tmp/veloz-nginx --listen 127.0.0.1:8088 \\
        --out /tmp/veloz-nginx/nginx.conf && nginx -p /tmp/veloz-nginx -c /tmp/veloz-nginx/nginx.conf

The rollout phases are --cpp-weight 5, 25, 50 and 100 (0 sends nothing to C++). To change the
split on a running nginx: scripts/adjust-traffic-split.sh N (render, nginx -t, reload).")]
pub struct NginxConfigArgs {
    /// Percent of the traffic that C++ serves directly, 0 to 100; the rest goes to Python
    /// through the mirror.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub cpp_weight: i64,

    /// The Python gateway (backup when the mirror and C++ are both out).
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub python: String,

    /// The C++ gateway.
    #[arg(long, default_value = "http://127.0.0.1:8081", value_name = "URL")]
    pub cpp: String,

    /// Where `shadowgate mirror --primary <python> --candidate <cpp>` listens.
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
    pub mirror: String,

    /// Leave the mirror out: the Python share goes to Python directly (to bypass a
    /// misbehaving mirror without changing the split).
    #[arg(long, conflicts_with = "mirror")]
    pub no_mirror: bool,

    /// nginx's `listen` (a port, or host:port).
    #[arg(long, default_value = "80", value_name = "ADDR")]
    pub listen: String,

    /// Render the variant with the X-Gateway-Version header switch (python | cpp).
    #[arg(long)]
    pub header_switch: bool,

    /// Failed attempts within --fail-timeout that take a server out (nginx max_fails).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub max_fails: u32,

    /// How long a failed server is skipped, and the window max_fails counts in.
    #[arg(long, default_value = "30s", value_name = "D", value_parser = humantime::parse_duration)]
    pub fail_timeout: Duration,

    /// Write a complete nginx.conf (foreground, pid/logs/temp files in DIR) instead of the
    /// http-context file for conf.d/.
    #[arg(long, value_name = "DIR")]
    pub standalone: Option<PathBuf>,

    /// Write here (atomically: a temporary file renamed over it) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Validated settings of one rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// 0..=100.
    pub cpp_weight: u32,
    /// `host:port` of each upstream.
    pub python: String,
    pub cpp: String,
    /// `host:port` of the mirror; `None` sends the Python share to Python directly.
    pub mirror: Option<String>,
    pub listen: String,
    pub header_switch: bool,
    pub max_fails: u32,
    pub fail_timeout: Duration,
}

/// Checks every argument and reports every problem at once.
pub fn validate(args: &NginxConfigArgs) -> anyhow::Result<Split> {
    let mut problems = Vec::new();
    let cpp_weight = match u32::try_from(args.cpp_weight) {
        Ok(w) if w <= 100 => w,
        _ => {
            problems.push(format!(
                "--cpp-weight {} is out of range: give a percentage from 0 to 100 (the rollout \
                 phases are 5, 25, 50 and 100)",
                args.cpp_weight
            ));
            0
        }
    };
    let mut addr = |flag: &str, text: &str| match upstream_addr(text) {
        Ok(a) => a,
        Err(e) => {
            problems.push(format!("--{flag} {text:?}: {e}"));
            String::new()
        }
    };
    let python = addr("python", &args.python);
    let cpp = addr("cpp", &args.cpp);
    let mirror = (!args.no_mirror).then(|| addr("mirror", &args.mirror));
    let listen = match listen_addr(&args.listen) {
        Ok(l) => l,
        Err(e) => {
            problems.push(format!("--listen {:?}: {e}", args.listen));
            String::new()
        }
    };
    if args.max_fails > 1000 {
        problems.push(format!(
            "--max-fails {} is implausible: give 0 (never mark a server failed) to 1000",
            args.max_fails
        ));
    }
    if args.fail_timeout < Duration::from_millis(1) {
        problems.push("--fail-timeout must be at least 1ms (e.g. 30s)".to_owned());
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n  "));
    }
    Ok(Split {
        cpp_weight,
        python,
        cpp,
        mirror,
        listen,
        header_switch: args.header_switch,
        max_fails: args.max_fails,
        fail_timeout: args.fail_timeout,
    })
}

/// `http://host:port`, `host:port` → `host:port`. No https (the template proxies plain
/// HTTP), no path, and only characters that cannot break out of an nginx `server` line.
pub fn upstream_addr(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.starts_with("https://") {
        return Err(
            "https upstreams are not supported by this template; give http://host:port \
                    (terminate TLS at nginx)"
                .to_owned(),
        );
    }
    let t = t.strip_prefix("http://").unwrap_or(t);
    let t = t.strip_suffix('/').unwrap_or(t);
    if t.contains('/') {
        return Err("give host:port only, without a path".to_owned());
    }
    host_port(t)
}

/// A listen value: a port, or host:port.
fn listen_addr(text: &str) -> Result<String, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return match t.parse::<u16>() {
            Ok(p) if p > 0 => Ok(t.to_owned()),
            _ => Err("port must be 1 to 65535".to_owned()),
        };
    }
    host_port(t)
}

fn host_port(t: &str) -> Result<String, String> {
    let Some((host, port)) = t.rsplit_once(':') else {
        return Err("expected host:port (e.g. 127.0.0.1:8080)".to_owned());
    };
    match port.parse::<u16>() {
        // nginx cannot listen on or connect to port 0.
        Ok(p) if p > 0 => {}
        _ => return Err(format!("port {port:?} must be 1 to 65535")),
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_');
    if bare.is_empty() || !bare.chars().all(ok_char) {
        return Err(format!("{host:?} is not a host name or IP address"));
    }
    if bare.contains(':') && !host.starts_with('[') {
        return Err("write IPv6 addresses in brackets, e.g. [::1]:8080".to_owned());
    }
    Ok(t.to_owned())
}

/// nginx time syntax: whole seconds as `Ns`, otherwise milliseconds.
pub fn nginx_time(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Renders the http-context config of `split`.
pub fn render(split: &Split) -> anyhow::Result<String> {
    let failure = format!(
        "max_fails={} fail_timeout={}",
        split.max_fails,
        nginx_time(split.fail_timeout)
    );
    let python_weight = 100 - split.cpp_weight.min(100);
    let (mirror_params, cpp_params) = match split.cpp_weight {
        // Weight 0 is a syntax error in nginx: a server with no share is `down` or `backup`.
        0 => (format!("weight=100 {failure}"), "down".to_owned()),
        100 => (format!("backup {failure}"), format!("weight=100 {failure}")),
        w => (
            format!("weight={python_weight} {failure}"),
            format!("weight={w} {failure}"),
        ),
    };
    let first = split.mirror.as_deref().unwrap_or(&split.python);
    let template = if split.header_switch {
        HEADER_SWITCH_TEMPLATE
    } else {
        SPLIT_TEMPLATE
    };
    let values: [(&str, String); 13] = [
        ("MIRROR", first.to_owned()),
        ("MIRROR_PARAMS", mirror_params),
        ("CPP", split.cpp.clone()),
        ("CPP_PARAMS", cpp_params),
        ("PYTHON", split.python.clone()),
        ("LISTEN", split.listen.clone()),
        ("PYTHON_WEIGHT", python_weight.to_string()),
        ("CPP_WEIGHT", split.cpp_weight.to_string()),
        ("MAX_FAILS", split.max_fails.to_string()),
        ("FAIL_TIMEOUT", nginx_time(split.fail_timeout)),
        ("CONNECT_TIMEOUT", "2s".to_owned()),
        ("READ_TIMEOUT", "60s".to_owned()),
        ("SSE_READ_TIMEOUT", "1h".to_owned()),
    ];
    let mut out = fill(template, &values)?;
    if split.mirror.is_none() {
        out.insert_str(
            0,
            "# Rendered with --no-mirror: the Python share goes to Python directly, unshadowed.\n",
        );
    }
    Ok(out)
}

/// Replaces every `{{NAME}}`; a placeholder with no value is an error naming it.
fn fill(template: &str, values: &[(&str, String)]) -> anyhow::Result<String> {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    // Bounded by the template's length: every turn consumes at least one `{{`.
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("template has an unclosed `{{{{` placeholder");
        };
        let name = &after[..end];
        let Some((_, value)) = values.iter().find(|(n, _)| *n == name) else {
            bail!("template placeholder {{{{{name}}}}} has no value");
        };
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A complete nginx.conf around `http_conf`: foreground, one worker, and every file nginx
/// writes (pid, error log, temp dirs) inside `dir`.
pub fn standalone(http_conf: &str, dir: &Path) -> String {
    let q = |name: &str| quote(&dir.join(name));
    let mut out = String::with_capacity(http_conf.len() + 1024);
    // `write!` into a String cannot fail.
    let _ = write!(
        out,
        "# A complete nginx.conf for a local trial or a test, rendered by\n\
         # `shadowgate nginx-config --standalone`: it stays in the foreground and keeps its pid,\n\
         # logs and temp files in one directory. Run it with\n\
         #   nginx -p {dir} -c {dir}/nginx.conf -e {err}\n\
         daemon off;\n\
         worker_processes 1;\n\
         pid {pid};\n\
         error_log {err} warn;\n\
         events {{\n    worker_connections 1024;\n}}\n\
         http {{\n    access_log off;\n\
         \x20   client_body_temp_path {cb};\n\
         \x20   proxy_temp_path {px};\n\
         \x20   fastcgi_temp_path {fc};\n\
         \x20   uwsgi_temp_path {uw};\n\
         \x20   scgi_temp_path {sc};\n\n",
        dir = dir.display(),
        pid = q("nginx.pid"),
        err = q("error.log"),
        cb = q("client_body_temp"),
        px = q("proxy_temp"),
        fc = q("fastcgi_temp"),
        uw = q("uwsgi_temp"),
        sc = q("scgi_temp"),
    );
    for line in http_conf.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("}\n");
    out
}

/// A path as an nginx string literal.
fn quote(p: &Path) -> String {
    let s = p.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("--out {} names no file", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

pub async fn run(args: NginxConfigArgs) -> anyhow::Result<ExitCode> {
    let split = validate(&args)?;
    let mut text = render(&split)?;
    if let Some(dir) = &args.standalone {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create --standalone {}", dir.display()))?;
        let dir = std::path::absolute(dir)
            .with_context(|| format!("cannot resolve --standalone {}", dir.display()))?;
        text = standalone(&text, &dir);
    }
    match &args.out {
        Some(path) => {
            write_atomically(path, &text)?;
            let via = if split.mirror.is_some() {
                "through the mirror"
            } else {
                "directly"
            };
            eprintln!(
                "wrote {} ({} % Python {via}, {} % C++)",
                path.display(),
                100 - split.cpp_weight,
                split.cpp_weight
            );
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .context("cannot write to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(weight: i64) -> NginxConfigArgs {
        NginxConfigArgs {
            cpp_weight: weight,
            python: "http://127.0.0.1:8080".into(),
            cpp: "http://127.0.0.1:8081".into(),
            mirror: "127.0.0.1:8000".into(),
            no_mirror: false,
            listen: "80".into(),
            header_switch: false,
            max_fails: 3,
            fail_timeout: Duration::from_secs(30),
            standalone: None,
            out: None,
        }
    }

    fn server_lines(conf: &str) -> Vec<String> {
        conf.lines()
            .map(str::trim)
            .filter(|l| l.starts_with("server ") && l.ends_with(';'))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn phases_render_weights_and_never_weight_zero() {
        for w in [0, 5, 25, 50, 100] {
            let split = validate(&args(w)).unwrap();
            for header_switch in [false, true] {
                let conf = render(&Split {
                    header_switch,
                    ..split.clone()
                })
                .unwrap();
                assert!(!conf.contains("{{"), "placeholder left at {w}");
                let zero = server_lines(&conf)
                    .into_iter()
                    .any(|l| l.contains("weight=0 ") || l.contains("weight=0;"));
                assert!(!zero, "weight=0 at {w}");
            }
        }
        let conf = render(&validate(&args(25)).unwrap()).unwrap();
        assert_eq!(
            server_lines(&conf),
            [
                "server 127.0.0.1:8000 weight=75 max_fails=3 fail_timeout=30s;",
                "server 127.0.0.1:8081 weight=25 max_fails=3 fail_timeout=30s;",
                "server 127.0.0.1:8080 backup;",
            ]
        );
        let zero = render(&validate(&args(0)).unwrap()).unwrap();
        assert!(zero.contains("server 127.0.0.1:8081 down;"));
        let all = render(&validate(&args(100)).unwrap()).unwrap();
        assert!(all.contains("server 127.0.0.1:8000 backup max_fails=3 fail_timeout=30s;"));
        assert!(all.contains("server 127.0.0.1:8081 weight=100 max_fails=3"));
    }

    #[test]
    fn header_switch_maps_both_values() {
        let mut a = args(5);
        a.header_switch = true;
        let conf = render(&validate(&a).unwrap()).unwrap();
        assert!(conf.contains("map $http_x_gateway_version $veloz_upstream"));
        assert!(conf.contains("\"~*^python$\"   veloz_python;"));
        assert!(conf.contains("\"~*^cpp$\"      veloz_cpp;"));
        assert!(conf.contains("proxy_pass http://$veloz_upstream;"));
    }

    #[test]
    fn sse_location_is_unbuffered() {
        let conf = render(&validate(&args(50)).unwrap()).unwrap();
        let sse = conf.split("location = /api/stream").nth(1).unwrap();
        let sse = &sse[..sse.find('}').unwrap()];
        for want in [
            "proxy_buffering off;",
            "proxy_cache off;",
            "proxy_read_timeout 1h;",
        ] {
            assert!(sse.contains(want), "{want} missing in {sse}");
        }
    }

    #[test]
    fn every_bad_argument_is_reported_at_once() {
        let mut a = args(101);
        a.cpp = "https://cpp:8081".into();
        a.mirror = "127.0.0.1:0".into();
        a.listen = "bad host;:80".into();
        let err = validate(&a).unwrap_err().to_string();
        for want in ["--cpp-weight 101", "--cpp", "--mirror", "--listen"] {
            assert!(err.contains(want), "{want} not in {err}");
        }
        assert!(validate(&args(-1)).is_err());
    }

    #[test]
    fn addresses_cannot_inject_config() {
        assert_eq!(
            upstream_addr("http://10.0.0.2:8081/").unwrap(),
            "10.0.0.2:8081"
        );
        assert_eq!(upstream_addr("[::1]:8080").unwrap(), "[::1]:8080");
        assert_eq!(
            upstream_addr("py.internal:8080").unwrap(),
            "py.internal:8080"
        );
        for bad in [
            "127.0.0.1:8080; evil",
            "h:8080/path",
            "h",
            "h:99999",
            "{x}:1",
            "::1:80",
        ] {
            assert!(upstream_addr(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(listen_addr("8080").unwrap(), "8080");
        assert!(listen_addr("0").is_err());
    }

    #[test]
    fn no_mirror_sends_python_share_directly() {
        let mut a = args(25);
        a.no_mirror = true;
        let conf = render(&validate(&a).unwrap()).unwrap();
        assert!(conf.starts_with("# Rendered with --no-mirror"));
        assert!(conf.contains("server 127.0.0.1:8080 weight=75"));
        assert!(!conf.contains("8000"));
    }

    #[test]
    fn times_and_standalone_paths() {
        assert_eq!(nginx_time(Duration::from_secs(30)), "30s");
        assert_eq!(nginx_time(Duration::from_millis(1500)), "1500ms");
        let conf = standalone("upstream x {\n}\n", Path::new("/srv/my \"dir\""));
        assert!(conf.contains("pid \"/srv/my \\\"dir\\\"/nginx.pid\";"));
        assert!(conf.contains("daemon off;"));
        assert!(conf.contains("\n    upstream x {\n    }\n}\n"));
    }

    #[test]
    fn fill_rejects_unknown_and_unclosed_placeholders() {
        assert!(fill("a {{X}} b", &[]).is_err());
        assert!(fill("a {{X b", &[("X", "1".into())]).is_err());
        assert_eq!(fill("a {{X}} b", &[("X", "1".into())]).unwrap(), "a 1 b");
    }
}
