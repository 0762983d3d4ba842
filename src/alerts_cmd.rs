//! `shadowgate check-alerts FILE --metrics URL | --scrape FILE`: every metric each alerting
//! rule uses must exist on the gateway's `/metrics`, or the alert can never fire. Exit 0 all
//! present, 1 some missing (listed per alert), 2 bad input or an unreachable gateway.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use shadowgate_report::{alerts, prom};

/// A scrape larger than this is refused (real gateways serve tens of KB).
const MAX_SCRAPE: usize = 16 * 1024 * 1024;

/// Arguments of `shadowgate check-alerts`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:\n  \
    shadowgate check-alerts scenarios/prometheus/alerts.yml --metrics http://127.0.0.1:8081/metrics\n  \
    curl -s http://gw:8081/metrics > scrape.txt && shadowgate check-alerts alerts.yml --scrape scrape.txt")]
pub struct CheckAlertsArgs {
    /// Prometheus rules file (groups: - name: ... rules: - alert: ... expr: ...).
    #[arg(value_name = "FILE")]
    pub rules: PathBuf,

    /// The gateway's metrics URL (http only), e.g. http://127.0.0.1:8081/metrics.
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "scrape",
        conflicts_with = "scrape"
    )]
    pub metrics: Option<String>,

    /// A saved scrape (Prometheus text format) instead of a live URL.
    #[arg(long, value_name = "FILE")]
    pub scrape: Option<PathBuf>,

    /// Give up on the URL after this long.
    #[arg(long, value_name = "D", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Runs the command.
pub async fn run(args: CheckAlertsArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.rules)
        .with_context(|| format!("cannot read rules file {}", args.rules.display()))?;
    let rules = alerts::parse_rules(&text, &args.rules.display().to_string())?;
    let (origin, body) = match (&args.metrics, &args.scrape) {
        (_, Some(path)) => (
            path.display().to_string(),
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read scrape file {}", path.display()))?,
        ),
        (Some(url), None) => (url.clone(), fetch(url, args.timeout).await?),
        (None, None) => bail!("give --metrics URL or --scrape FILE"),
    };
    let scrape = prom::parse(&body)
        .map_err(|e| anyhow::anyhow!("{origin}: not Prometheus text format: {e}"))?;
    let checks = alerts::check(&rules, &scrape);
    let mut missing_alerts = 0;
    for c in &checks {
        if c.missing.is_empty() {
            println!("ok       {} ({})", c.alert, c.uses.join(", "));
        } else {
            missing_alerts += 1;
            println!(
                "MISSING  {} (line {}): {}",
                c.alert,
                c.line,
                c.missing.join(", ")
            );
        }
    }
    println!(
        "{} of {} alerts can fire on {origin}{}",
        checks.len() - missing_alerts,
        checks.len(),
        if missing_alerts > 0 {
            "; the others use metrics the gateway does not export (rename them in the rules, \
             or export them from the gateway)"
        } else {
            ""
        }
    );
    Ok(if missing_alerts > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// GETs the scrape (status must be 2xx).
async fn fetch(url: &str, timeout: Duration) -> anyhow::Result<String> {
    let uri: Uri = url.parse().with_context(|| {
        format!("`{url}` is not a URL; write e.g. http://127.0.0.1:8081/metrics")
    })?;
    if uri.scheme_str() != Some("http") {
        bail!("`{url}`: only http:// URLs are supported");
    }
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeout));
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector);
    let request = hyper::Request::get(uri)
        .header(
            hyper::header::USER_AGENT,
            concat!("shadowgate/", env!("CARGO_PKG_VERSION")),
        )
        .header(hyper::header::ACCEPT, "text/plain;version=0.0.4")
        .body(Empty::new())
        .context("could not build the request")?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .with_context(|| format!("{url}: no answer (is the gateway running?)"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_SCRAPE)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("{url}: the body could not be read: {e}"))?
            .to_bytes();
        if !status.is_success() {
            bail!(
                "{url} answered {status}: this gateway serves no metrics there (the python \
                 gateway has no /metrics at all)"
            );
        }
        String::from_utf8(body.to_vec()).with_context(|| format!("{url}: the body is not UTF-8"))
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        anyhow::anyhow!(
            "{url}: no answer within {}",
            humantime::format_duration(timeout)
        )
    })?
}
