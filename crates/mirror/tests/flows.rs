//! Order flows through the mirror: id correlation (follow-ups rewritten to the candidate's
//! ids, after the candidate's answer to the submit) and whole-flow comparison, against
//! simulators with injected order-flow divergence.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use http::Method;
use shadowgate_mirror::{IdPair, Mirror, Summary};
use shadowgate_sim::{SimServer, StatsSnapshot};

use crate::util::{HttpClient, client, mirror, request, sim, url};

/// These tests drive hundreds of orders each and count what the flows found: run one at a
/// time, so a busy machine does not turn engine timing into findings.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Flow rules for two gateways speaking the python API.
const PY_FLOW_RULES: &str = r#"
[flows]
quiet_ms = 400
timeout_ms = 8000

[flows.primary]
poll = "/api/order_state?client_order_id={id}"

[flows.candidate]
poll = "/api/order_state?client_order_id={id}"

[[routes]]
template = "/api/order"
methods = ["POST"]
write_policy = "mirror"
flow = "submit"
ids = { primary = "/client_order_id", candidate = "/client_order_id" }

[[routes]]
template = "/api/cancel"
methods = ["POST"]
write_policy = "mirror"
flow = "cancel"
ids = { request = ["body:client_order_id"] }
"#;

/// A python simulator whose engine quotes a constant price (one tick per hour), so two
/// engines fill at the same price unless divergence moves it.
fn py_sim(extra: &str) -> String {
    format!(
        "profile = \"python\"\nseed = 5\ndeterministic = true\n[engine]\ntick = \"1h\"\nfill_delay = \"1s\"\n{extra}"
    )
}

/// Places `n` orders through the mirror (ids `{prefix}{i}`), cancelling every `cancel_every`th
/// right after its answer, with `conc` clients at once.
async fn drive(
    c: &HttpClient,
    base: &str,
    prefix: &str,
    n: usize,
    cancel_every: usize,
    conc: usize,
) -> usize {
    let mut tasks = Vec::new();
    for w in 0..conc {
        let c = c.clone();
        let base = base.to_owned();
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut cancels = 0;
            for i in (w..n).step_by(conc) {
                let id = format!("{prefix}{i}");
                let body = format!(
                    r#"{{"side":"BUY","symbol":"BTCUSDT","qty":0.001,"price":42000,"client_order_id":"{id}"}}"#
                );
                let r = request(&c, Method::POST, &format!("{base}/api/order"), &[("content-type", "application/json")], &body).await;
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                if cancel_every > 0 && i % cancel_every == 0 {
                    let body = format!(r#"{{"client_order_id":"{id}"}}"#);
                    let r = request(&c, Method::POST, &format!("{base}/api/cancel"), &[("content-type", "application/json")], &body).await;
                    assert_eq!(r.status, 200);
                    cancels += 1;
                }
            }
            cancels
        }));
    }
    let mut cancels = 0;
    for t in tasks {
        cancels += t.await.unwrap();
    }
    cancels
}

/// Waits (bounded) until every tracked flow has been compared, then stops the mirror.
async fn finish(m: Mirror, expect_flows: u64) -> Summary {
    for _ in 0..600 {
        let s = m.summary();
        let f = s.flows.as_ref().unwrap();
        if f.compared >= expect_flows && f.open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    m.shutdown().await.unwrap()
}

async fn sim_stats(c: &HttpClient, s: &SimServer) -> StatsSnapshot {
    let r = crate::util::get(c, &format!("{}/__sim/stats", url(s.local_addr()))).await;
    serde_json::from_slice(&r.body).unwrap()
}

fn lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("discrepancies.ndjson"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A mirror from `primary` to `candidate` under `rules`, recording into a temporary run
/// directory (the guard keeps it alive; the path is the run directory).
async fn through_mirror(
    primary: &SimServer,
    candidate: &SimServer,
    rules: shadowgate_diff::RuleSet,
) -> (tempfile::TempDir, std::path::PathBuf, Mirror) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let m = mirror(
        &url(primary.local_addr()),
        &url(candidate.local_addr()),
        &out,
        rules,
        |_| {},
    )
    .await;
    (dir, out, m)
}

/// A rules file shipped in `scenarios/`.
fn shipped(name: &str) -> shadowgate_diff::RuleSet {
    shadowgate_mirror::load_rules(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scenarios")
            .join(name),
    )
    .unwrap()
}

fn flow_kinds(s: &Summary) -> BTreeMap<String, u64> {
    s.flows.as_ref().unwrap().by_kind.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_divergence_is_found_with_the_injected_counts() {
    let _serial = SERIAL.lock().await;
    let primary = sim(&py_sim("")).await;
    let candidate = sim(&py_sim(
        "[engine.divergence]\nreject_fraction = 0.02\nfill_price_fraction = 0.01\nfill_price_offset = 0.001\n",
    ))
    .await;
    let rules = shadowgate_mirror::parse_rules(PY_FLOW_RULES, "flows.toml").unwrap();
    let (_dir, out, m) = through_mirror(&primary, &candidate, rules).await;
    let c = client();
    let n = 1000;
    let cancels = drive(&c, &url(m.local_addr()), "a-", n, 10, 16).await;
    let s = finish(m, n as u64).await;
    let f = s.flows.as_ref().unwrap();
    let injected = sim_stats(&c, &candidate).await.divergence;
    let kinds = flow_kinds(&s);
    eprintln!(
        "{n} orders, {cancels} cancels: flows {f:?}; injected rejected {}, fill price {}",
        injected.rejected_orders, injected.fill_price_changed
    );
    assert_eq!(f.tracked, n as u64);
    assert_eq!(f.compared, n as u64);
    assert!(
        injected.rejected_orders > 0 && injected.fill_price_changed > 0,
        "{injected:?}"
    );
    assert_eq!(
        kinds.get("state-mismatch").copied().unwrap_or(0),
        injected.rejected_orders
    );
    assert_eq!(
        kinds.get("fill-mismatch").copied().unwrap_or(0),
        injected.fill_price_changed
    );
    assert_eq!(kinds.len(), 2, "no other kind: {kinds:?}");
    assert_eq!(f.ids.rewritten, cancels as u64);
    assert_eq!(f.ids.unmapped + f.ids.timed_out, 0);
    // Each line names the flow and both ids; the groups are per kind and steps.
    let flow_lines: Vec<_> = lines(&out)
        .into_iter()
        .filter(|l| l["kind"] == "state-mismatch" || l["kind"] == "fill-mismatch")
        .collect();
    assert_eq!(
        flow_lines.len() as u64,
        injected.rejected_orders + injected.fill_price_changed
    );
    for l in &flow_lines {
        let id = l["flow_id"].as_str().unwrap();
        assert!(l["detail"].as_str().unwrap().contains(id), "{l}");
        assert_eq!(l["class"], "regression");
    }
    let reject = flow_lines
        .iter()
        .find(|l| l["kind"] == "state-mismatch")
        .unwrap();
    assert_eq!(reject["candidate"]["final/status"], "REJECTED", "{reject}");
    // The id map was written to the run directory.
    let ids = std::fs::read_to_string(out.join(shadowgate_mirror::IDS_FILE)).unwrap();
    let pairs: Vec<IdPair> = ids
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(pairs.iter().filter(|p| p.kind == "order").count(), n);
    // Venue ids are paired from the polled states, for every order both venues took.
    let venue = pairs.iter().filter(|p| p.kind == "venue").count() as u64;
    assert_eq!(venue, n as u64 - injected.rejected_orders);
    assert!(pairs.iter().all(|p| p.kind == "order" || p.kind == "venue"));
    primary.shutdown().await;
    candidate.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_profiles_show_no_flow_discrepancy() {
    let _serial = SERIAL.lock().await;
    let primary = sim(&py_sim("")).await;
    let candidate = sim(&py_sim("")).await;
    let rules = shadowgate_mirror::parse_rules(PY_FLOW_RULES, "flows.toml").unwrap();
    let (_dir, out, m) = through_mirror(&primary, &candidate, rules).await;
    let c = client();
    let n = 600;
    let cancels = drive(&c, &url(m.local_addr()), "b-", n, 3, 16).await;
    let s = finish(m, n as u64).await;
    let f = s.flows.as_ref().unwrap();
    eprintln!("{n} orders, {cancels} cancels: {f:?}");
    assert_eq!(f.compared, n as u64);
    assert_eq!(f.matched, n as u64, "{:?}", f.groups);
    assert!(flow_kinds(&s).is_empty());
    assert_eq!(f.ids.rewritten, cancels as u64);
    assert!(cancels >= 150);
    assert!(
        lines(&out).iter().all(|l| l["flow_id"].is_null()),
        "no flow line"
    );
    primary.shutdown().await;
    candidate.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_to_cpp_cancels_generated_ids_with_the_candidates_ids() {
    let _serial = SERIAL.lock().await;
    let primary = sim("profile = \"python\"\nseed = 9\n[engine]\ntick = \"1h\"\n").await;
    let candidate =
        sim("profile = \"cpp\"\nseed = 9\n[engine]\ntick = \"1h\"\n[auth]\nenabled = false\n")
            .await;
    let rules = shipped("veloz.toml");
    let (_dir, out, m) = through_mirror(&primary, &candidate, rules).await;
    let c = client();
    let base = url(m.local_addr());
    let n = 30;
    let mut generated = Vec::new();
    for i in 0..n {
        // No client id: each gateway generates its own (python's is per millisecond).
        tokio::time::sleep(Duration::from_millis(3)).await;
        let r = request(
            &c,
            Method::POST,
            &format!("{base}/api/order"),
            &[("content-type", "application/json")],
            r#"{"side":"BUY","symbol":"BTCUSDT","qty":0.001,"price":42000}"#,
        )
        .await;
        assert_eq!(r.status, 200);
        let id = r.json()["client_order_id"].as_str().unwrap().to_owned();
        if i % 2 == 0 {
            let r = request(
                &c,
                Method::POST,
                &format!("{base}/api/cancel"),
                &[("content-type", "application/json")],
                &format!(r#"{{"client_order_id":"{id}","symbol":"BTCUSDT"}}"#),
            )
            .await;
            assert_eq!(r.status, 200);
            generated.push(id);
        }
    }
    let s = finish(m, n).await;
    let f = s.flows.as_ref().unwrap();
    eprintln!("flows {f:?}");
    assert_eq!(f.compared, n);
    assert!(
        flow_kinds(&s).is_empty(),
        "no flow regression: {:?}",
        f.groups
    );
    assert_eq!(f.ids.rewritten, generated.len() as u64);
    // The candidate cancelled its own orders: look them up there by the candidate's ids.
    let pairs: Vec<IdPair> = std::fs::read_to_string(out.join(shadowgate_mirror::IDS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cand = url(candidate.local_addr());
    for id in &generated {
        let pair = pairs
            .iter()
            .find(|p| p.kind == "order" && &p.primary == id)
            .unwrap();
        assert!(pair.candidate.starts_with("veloz_"), "{pair:?}");
        let r = crate::util::get(&c, &format!("{cand}/api/orders/{}", pair.candidate)).await;
        assert_eq!(r.json()["data"]["status"], "CANCELLED", "{pair:?}");
    }
    assert_eq!(
        candidate.stats().requests_on("POST /api/cancel"),
        generated.len() as u64
    );
    // The known answer differences are reported as groups, each signature once.
    let groups = &s.groups;
    let mut sigs: Vec<&str> = groups.iter().map(|g| g.signature.as_str()).collect();
    sigs.sort_unstable();
    sigs.dedup();
    assert_eq!(sigs.len(), groups.len());
    // The one regression: C++'s cancel answer does not say which order (§1.2), once per
    // cancel, in one group. The generated ids themselves are noise (§8).
    let regressions: Vec<_> = groups.iter().filter(|g| g.class == "regression").collect();
    assert_eq!(regressions.len(), 1, "{regressions:?}");
    let g = regressions[0];
    assert_eq!(
        (
            g.route.as_str(),
            g.kind.as_str(),
            g.pattern.as_str(),
            g.count
        ),
        (
            "/api/cancel",
            "missing",
            "/client_order_id",
            generated.len() as u64
        )
    );
    let ids = groups
        .iter()
        .find(|g| g.route == "/api/order" && g.pattern == "/client_order_id")
        .unwrap();
    assert_eq!((ids.class.as_str(), ids.count), ("noise", n));
    primary.shutdown().await;
    candidate.shutdown().await;
}

/// Stream rules added to [`PY_FLOW_RULES`], so the mirror watches both order event streams
/// while a client is subscribed through it.
const STREAM_RULES: &str = r#"
[[streams]]
route = "/api/stream"
window_ms = 500
late_ms = 1000

[[streams.events]]
type = "order"
primary = ["order_update", "order_state", "fill"]
candidate = ["order_update", "order_state", "fill"]
key = ["/type", "/client_order_id", "/status"]
"#;

/// Subscribes to the stream through the mirror until `stop` fires (bounded to 60 s).
async fn subscribe(
    c: HttpClient,
    base: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> usize {
    use http_body_util::{BodyExt, Full};
    let req = http::Request::get(format!("{base}/api/stream"))
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), c.request(req))
        .await
        .unwrap()
        .unwrap();
    let mut body = resp.into_body();
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return n,
            _ = tokio::time::sleep_until(deadline) => return n,
            f = body.frame() => match f {
                Some(Ok(f)) => n += f.into_data().map_or(0, |d| d.len()),
                _ => return n,
            },
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_fill_events_are_missing_on_candidate_exactly() {
    let _serial = SERIAL.lock().await;
    let primary = sim(&py_sim("")).await;
    let candidate = sim(&py_sim(
        "[engine.divergence]\nreject_fraction = 0.02\nfill_price_fraction = 0.01\n[divergence]\ndropped_sse_fraction = 0.05\ndropped_sse_kinds = [\"fill\"]\n",
    ))
    .await;
    // A flow whose fill event never comes is compared at its timeout (8 s: a busy machine
    // can hold the candidate's stream back for seconds, and a late fill is not a missing one).
    let text = format!("{PY_FLOW_RULES}\n{STREAM_RULES}");
    let rules = shadowgate_mirror::parse_rules(&text, "flows.toml").unwrap();
    let (_dir, out, m) = through_mirror(&primary, &candidate, rules).await;
    let c = client();
    let base = url(m.local_addr());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(subscribe(c.clone(), base.clone(), stop_rx));
    // The candidate's shared subscription is up once the client's stream is.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = 300;
    let cancels = drive(&c, &base, "d-", n, 10, 4).await;
    let s = finish(m, n as u64).await;
    let _ = stop_tx.send(true);
    let _ = reader.await;
    let f = s.flows.as_ref().unwrap();
    let injected = sim_stats(&c, &candidate).await.divergence;
    let kinds = flow_kinds(&s);
    eprintln!(
        "{n} orders, {cancels} cancels: {kinds:?}; injected rejected {}, fill price {}, dropped fill events {}",
        injected.rejected_orders, injected.fill_price_changed, injected.dropped_sse_events
    );
    assert_eq!(f.compared, n as u64);
    assert!(injected.dropped_sse_events > 0, "{injected:?}");
    let missing: Vec<_> = lines(&out)
        .into_iter()
        .filter(|l| l["kind"] == "missing-on-candidate")
        .map(|l| format!("{} {} {}", l["flow_id"], l["path"], l["detail"]))
        .collect();
    assert_eq!(
        kinds.get("missing-on-candidate").copied().unwrap_or(0),
        injected.dropped_sse_events,
        "{missing:#?}"
    );
    assert_eq!(
        kinds.get("state-mismatch").copied().unwrap_or(0),
        injected.rejected_orders
    );
    assert_eq!(
        kinds.get("fill-mismatch").copied().unwrap_or(0),
        injected.fill_price_changed
    );
    let missing: Vec<_> = lines(&out)
        .into_iter()
        .filter(|l| l["kind"] == "missing-on-candidate")
        .collect();
    assert!(
        missing.iter().all(|l| l["path"] == "/fills/0"),
        "{missing:?}"
    );
    primary.shutdown().await;
    candidate.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpp_to_cpp_rewrites_path_ids_and_shows_no_flow_regression() {
    let _serial = SERIAL.lock().await;
    let cpp = "profile = \"cpp\"\nseed = 3\n[engine]\ntick = \"1h\"\n[auth]\nenabled = false\n";
    let primary = sim(cpp).await;
    let candidate = sim(cpp).await;
    let rules = shipped("veloz-cpp.toml");
    let (_dir, _out, m) = through_mirror(&primary, &candidate, rules).await;
    let c = client();
    let base = url(m.local_addr());
    let n = 20;
    let mut cancelled = 0;
    for i in 0..n {
        // Generated ids (`veloz_<ns>_<n>`) differ per gateway.
        let r = request(
            &c,
            Method::POST,
            &format!("{base}/api/orders"),
            &[("content-type", "application/json")],
            r#"{"side":"buy","symbol":"BTCUSDT","qty":0.001,"price":42000}"#,
        )
        .await;
        assert_eq!(r.status, 200);
        let id = r.json()["data"]["client_order_id"]
            .as_str()
            .unwrap()
            .to_owned();
        if i % 2 == 0 {
            let r = request(
                &c,
                Method::DELETE,
                &format!("{base}/api/orders/{id}"),
                &[],
                "",
            )
            .await;
            assert_eq!(r.status, 200);
            cancelled += 1;
        }
    }
    let s = finish(m, n).await;
    let f = s.flows.as_ref().unwrap();
    assert_eq!(f.compared, n);
    assert!(flow_kinds(&s).is_empty(), "{:?}", f.groups);
    assert_eq!(f.ids.rewritten, cancelled);
    assert_eq!(
        candidate.stats().requests_on("DELETE /api/orders/{id}"),
        cancelled
    );
    primary.shutdown().await;
    candidate.shutdown().await;
}

/// One JWT secret and admin password on both simulators, rate limits off (the orders and
/// the polls of one user would otherwise run its bucket dry: a 429 is not what this tests).
const AUTH_ON: &str = "[auth]\nenabled = true\njwt_secret = \"shadowgate-flow-test-secret-0123456789abcdef\"\n\
                       admin_password = \"pw\"\n[rate_limit]\nenabled = false\n";

/// Every file of a run directory that contains `secret`.
fn files_containing(dir: &Path, secret: &str) -> Vec<String> {
    crate::util::files(dir)
        .into_iter()
        .filter(|p| {
            let b = std::fs::read(p).unwrap();
            b.windows(secret.len()).any(|w| w == secret.as_bytes())
        })
        .map(|p| p.display().to_string())
        .collect()
}

/// Auth on both gateways: the state polls carry the Bearer token each order was submitted
/// with, so every flow is completed by polling (no refused poll), and the token is written
/// nowhere in the run directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_carry_the_submitters_token_when_auth_is_on() {
    let _serial = SERIAL.lock().await;
    let engine = "[engine]\ntick = \"1h\"\nfill_delay = \"2s\"\n";
    let primary = sim(&format!(
        "profile = \"python\"\nseed = 4\n{engine}{AUTH_ON}"
    ))
    .await;
    // The C++ permission model gives a JWT user no scoped permission (§2), so a Bearer token
    // places no order there at all; the candidate checks the token as Python does.
    let candidate = sim(&format!(
        "profile = \"cpp\"\nseed = 4\n{engine}[differences]\nauth = false\n{AUTH_ON}"
    ))
    .await;
    let c = client();
    let (p_url, c_url) = (url(primary.local_addr()), url(candidate.local_addr()));
    // Bare polls would be refused on both sides.
    assert_eq!(
        crate::util::get(&c, &format!("{p_url}/api/order_state?client_order_id=x"))
            .await
            .status,
        401
    );
    assert_eq!(
        crate::util::get(&c, &format!("{c_url}/api/orders/x"))
            .await
            .status,
        401
    );
    let login = request(
        &c,
        Method::POST,
        &format!("{p_url}/api/auth/login"),
        &[("content-type", "application/json")],
        r#"{"user_id":"admin","password":"pw"}"#,
    )
    .await;
    assert_eq!(login.status, 200);
    let token = login.json()["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let m = mirror(&p_url, &c_url, &out, shipped("veloz.toml"), |_| {}).await;
    let base = url(m.local_addr());
    let n = 24u64;
    let headers = [
        ("content-type", "application/json"),
        ("authorization", bearer.as_str()),
    ];
    for i in 0..n {
        let r = request(
            &c,
            Method::POST,
            &format!("{base}/api/order"),
            &headers,
            &format!(
                r#"{{"side":"BUY","symbol":"BTCUSDT","qty":0.001,"price":42000,"client_order_id":"auth-{i}"}}"#
            ),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        if i % 3 == 0 {
            let r = request(
                &c,
                Method::POST,
                &format!("{base}/api/cancel"),
                &headers,
                &format!(r#"{{"client_order_id":"auth-{i}"}}"#),
            )
            .await;
            assert_eq!(r.status, 200);
        }
    }
    let s = finish(m, n).await;
    let f = s.flows.as_ref().unwrap();
    eprintln!("flows {f:?}");
    assert_eq!((f.tracked, f.compared, f.submit_failed), (n, n, 0));
    assert!(flow_kinds(&s).is_empty(), "{:?}", f.groups);
    assert_eq!(f.completed_by_poll, n, "every flow completed by its polls");
    assert_eq!((f.poll_unauthorized, f.poll_unauthorized_flows), (0, 0));
    assert!(f.primary_polls >= n && f.candidate_polls >= n, "{f:?}");
    // The cancels reached the candidate (authenticated, with its ids).
    assert_eq!(candidate.stats().requests_on("POST /api/cancel"), n / 3);
    // The token is in memory only: no file of the run holds it or its signature.
    let signature = token.rsplit('.').next().unwrap();
    assert!(files_containing(&out, &token).is_empty());
    assert!(files_containing(&out, signature).is_empty());
    assert!(!crate::util::files(&out).is_empty());
    primary.shutdown().await;
    candidate.shutdown().await;
}

/// What a test order server saw of the polls.
#[derive(Default)]
struct Seen {
    /// Order id → the credential headers its submit carried.
    creds: std::collections::HashMap<String, Vec<(String, String)>>,
    /// Polls whose credentials were not exactly the submit's.
    mismatched: u64,
}

type Shared = std::sync::Arc<std::sync::Mutex<Seen>>;

fn creds_of(h: &http::HeaderMap) -> Vec<(String, String)> {
    ["authorization", "x-api-key", "cookie"]
        .iter()
        .flat_map(|n| {
            h.get_all(*n)
                .iter()
                .map(|v| ((*n).to_owned(), v.to_str().unwrap().to_owned()))
        })
        .collect()
}

/// A gateway that accepts an order with any credentials and answers its state poll only
/// with the same credentials (401 otherwise). The candidate refuses (403) every poll of
/// `deny-` orders, as a gateway whose permissions differ would.
async fn order_server(
    req: http::Request<hyper::body::Incoming>,
    candidate: bool,
    seen: Shared,
) -> http::Response<crate::util::TestBody> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let creds = creds_of(&parts.headers);
    let reply = |status: u16, v: serde_json::Value| {
        let mut r = http::Response::new(crate::util::TestBody::text(v.to_string()));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        r.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        r
    };
    match parts.uri.path() {
        "/api/order" => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let id = v["client_order_id"].as_str().unwrap().to_owned();
            seen.lock().unwrap().creds.insert(id.clone(), creds);
            reply(200, serde_json::json!({ "client_order_id": id }))
        }
        "/api/order_state" => {
            let id = parts
                .uri
                .query()
                .and_then(|q| q.strip_prefix("client_order_id="))
                .unwrap_or("")
                .to_owned();
            let mut s = seen.lock().unwrap();
            if s.creds.get(&id) != Some(&creds) || creds.is_empty() {
                s.mismatched += 1;
                return reply(401, serde_json::json!({"error": "invalid_token"}));
            }
            if candidate && id.starts_with("deny-") {
                return reply(403, serde_json::json!({"error": "forbidden"}));
            }
            reply(
                200,
                serde_json::json!({"client_order_id": id, "status": "FILLED", "executed_qty": 1.0, "avg_price": 10.0}),
            )
        }
        _ => reply(404, serde_json::json!({"error": "not_found"})),
    }
}

/// Each order's polls carry exactly the credentials of its own submit (Bearer, API key or
/// cookie, per order); a poll still refused is counted and its flow reported as not
/// completed (ignored), never as a regression.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_poll_carries_its_orders_credentials_and_refusals_are_counted() {
    let _serial = SERIAL.lock().await;
    let (ps, cs): (Shared, Shared) = (Default::default(), Default::default());
    let (p_addr, p_task) = {
        let s = Shared::clone(&ps);
        crate::util::serve(move |r| order_server(r, false, Shared::clone(&s))).await
    };
    let (c_addr, c_task) = {
        let s = Shared::clone(&cs);
        crate::util::serve(move |r| order_server(r, true, Shared::clone(&s))).await
    };
    let rules = shadowgate_mirror::parse_rules(
        r#"
[flows]
quiet_ms = 150
timeout_ms = 2500
[flows.primary]
poll = "/api/order_state?client_order_id={id}"
[flows.candidate]
poll = "/api/order_state?client_order_id={id}"

[[routes]]
template = "/api/order"
methods = ["POST"]
write_policy = "mirror"
flow = "submit"
ids = { primary = "/client_order_id", candidate = "/client_order_id" }
"#,
        "flows.toml",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let m = mirror(&url(p_addr), &url(c_addr), &out, rules, |_| {}).await;
    let c = client();
    let base = url(m.local_addr());
    let n = 30u64;
    let mut denied = 0u64;
    let mut secrets = Vec::new();
    for i in 0..n {
        let id = if i % 5 == 4 {
            denied += 1;
            format!("deny-{i}")
        } else {
            format!("ok-{i}")
        };
        let (name, value) = match i % 3 {
            0 => ("authorization", format!("Bearer SEEDED-tok-{i}-a9f3")),
            1 => ("x-api-key", format!("veloz_SEEDED-key-{i}-77c1")),
            _ => ("cookie", format!("sid=SEEDED-cookie-{i}-e02b")),
        };
        let r = request(
            &c,
            Method::POST,
            &format!("{base}/api/order"),
            &[("content-type", "application/json"), (name, &value)],
            &format!(r#"{{"client_order_id":"{id}"}}"#),
        )
        .await;
        assert_eq!(r.status, 200);
        secrets.push(value);
    }
    let ok = n - denied;
    let s = finish(m, ok).await;
    let f = s.flows.as_ref().unwrap();
    eprintln!("flows {f:?}");
    assert_eq!((f.compared, f.matched, f.completed_by_poll), (ok, ok, ok));
    // One refused poll per denied order: that side is not polled again.
    assert_eq!(
        (f.poll_unauthorized, f.poll_unauthorized_flows),
        (denied, denied)
    );
    assert!(flow_kinds(&s).is_empty(), "no regression: {:?}", f.groups);
    assert_eq!(f.open, 0);
    for (who, seen) in [("primary", &ps), ("candidate", &cs)] {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.creds.len() as u64, n, "{who}");
        assert_eq!(
            seen.mismatched, 0,
            "{who}: a poll without its order's credentials"
        );
    }
    let not_completed: Vec<_> = lines(&out)
        .into_iter()
        .filter(|l| l["flow_id"].is_string())
        .collect();
    assert_eq!(not_completed.len() as u64, denied);
    for l in &not_completed {
        assert_eq!(
            (&l["kind"], &l["class"]),
            (&"not-compared".into(), &"ignored".into()),
            "{l}"
        );
        assert!(l["flow_id"].as_str().unwrap().starts_with("deny-"), "{l}");
    }
    for secret in &secrets {
        let bare = secret
            .trim_start_matches("Bearer ")
            .trim_start_matches("sid=");
        assert!(files_containing(&out, bare).is_empty(), "{bare}");
    }
    p_task.abort();
    c_task.abort();
}

/// C++ bulk cancel (shipped cpp rules): every id of `{"order_ids":[...]}` reaches the
/// candidate as the candidate's id, and every order's flow is followed to its cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpp_bulk_cancel_rewrites_every_id() {
    let _serial = SERIAL.lock().await;
    // Fills long after the test: every order ends cancelled on both sides.
    let cpp = "profile = \"cpp\"\nseed = 3\n[engine]\ntick = \"1h\"\nfill_delay = \"60s\"\n[auth]\nenabled = false\n";
    let primary = sim(cpp).await;
    let candidate = sim(cpp).await;
    let rules = shipped("veloz-cpp.toml");
    let (_dir, out, m) = through_mirror(&primary, &candidate, rules).await;
    let c = client();
    let base = url(m.local_addr());
    let n = 9u64;
    let mut ids = Vec::new();
    let mut bulks = 0u64;
    for i in 0..n {
        // Generated ids (`veloz_<ns>_<n>`) differ per gateway.
        let r = request(
            &c,
            Method::POST,
            &format!("{base}/api/orders"),
            &[("content-type", "application/json")],
            r#"{"side":"buy","symbol":"BTCUSDT","qty":0.001,"price":42000}"#,
        )
        .await;
        assert_eq!(r.status, 200);
        ids.push(
            r.json()["data"]["client_order_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        // Three orders a cancel, sent right after the third's answer (the candidate's
        // answer may still be on its way: the cancel waits for it).
        if i % 3 == 2 {
            let body = serde_json::json!({ "order_ids": ids[ids.len() - 3..] }).to_string();
            let r = request(
                &c,
                Method::POST,
                &format!("{base}/api/cancel"),
                &[("content-type", "application/json")],
                &body,
            )
            .await;
            assert_eq!(r.status, 200);
            assert_eq!(r.json()["data"]["cancelled_count"], 3);
            bulks += 1;
        }
    }
    let s = finish(m, n).await;
    let f = s.flows.as_ref().unwrap();
    eprintln!("flows {f:?}");
    assert_eq!(f.compared, n);
    assert!(flow_kinds(&s).is_empty(), "{:?}", f.groups);
    assert_eq!(f.ids.rewritten, n);
    assert_eq!(f.ids.unmapped + f.ids.timed_out, 0);
    assert_eq!(candidate.stats().requests_on("POST /api/cancel"), bulks);
    // Every order is cancelled on the candidate under the candidate's own id.
    let pairs: Vec<IdPair> = std::fs::read_to_string(out.join(shadowgate_mirror::IDS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cand = url(candidate.local_addr());
    for id in &ids {
        let pair = pairs
            .iter()
            .find(|p| p.kind == "order" && &p.primary == id)
            .unwrap();
        assert_ne!(&pair.candidate, id);
        let r = crate::util::get(&c, &format!("{cand}/api/orders/{}", pair.candidate)).await;
        assert_eq!(r.json()["data"]["status"], "CANCELLED", "{pair:?}");
    }
    primary.shutdown().await;
    candidate.shutdown().await;
}

/// One run of submit → cancel 50 ms later through the mirror, with a client subscribed to
/// the stream (so both sides' order events are watched), the primary's engine filling after
/// `primary_fill` and the candidate's after `candidate_fill`.
async fn cancel_fill_race_run(
    primary_fill: &str,
    candidate_fill: &str,
    prefix: &str,
    n: usize,
) -> (Summary, Vec<serde_json::Value>) {
    let engine = |fill: &str| {
        format!(
            "profile = \"python\"\nseed = 5\ndeterministic = true\n[engine]\ntick = \"1h\"\nfill_delay = \"{fill}\"\n"
        )
    };
    let primary = sim(&engine(primary_fill)).await;
    let candidate = sim(&engine(candidate_fill)).await;
    let text = format!("{PY_FLOW_RULES}\n{STREAM_RULES}");
    let rules = shadowgate_mirror::parse_rules(&text, "flows.toml").unwrap();
    let (_dir, out, m) = through_mirror(&primary, &candidate, rules).await;
    let c = client();
    let base = url(m.local_addr());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(subscribe(c.clone(), base.clone(), stop_rx));
    // The candidate's shared subscription is up once the client's stream is.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (c, base, prefix) = (c.clone(), base.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(4) {
                let id = format!("{prefix}{i}");
                let body = format!(
                    r#"{{"side":"BUY","symbol":"BTCUSDT","qty":0.001,"price":42000,"client_order_id":"{id}"}}"#
                );
                let r = request(&c, Method::POST, &format!("{base}/api/order"), &[("content-type", "application/json")], &body).await;
                assert_eq!(r.status, 200);
                tokio::time::sleep(Duration::from_millis(50)).await;
                let body = format!(r#"{{"client_order_id":"{id}"}}"#);
                let r = request(&c, Method::POST, &format!("{base}/api/cancel"), &[("content-type", "application/json")], &body).await;
                assert_eq!(r.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = finish(m, n as u64).await;
    let _ = stop_tx.send(true);
    let _ = reader.await;
    primary.shutdown().await;
    candidate.shutdown().await;
    (s, lines(&out))
}

/// The cancel reaches each engine at another time (the candidate's copy leaves only after
/// the primary answered): an engine that fills first ends FILLED, the other CANCELLED, with
/// both gateways right. Forced both ways (one engine fills after 20 ms, the other after 5 s;
/// cancels 50 ms after the submit): every flow is noise with the race's label, counted as
/// a race, and none is a flow regression or a match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_fill_races_are_noise_both_ways() {
    let _serial = SERIAL.lock().await;
    let n = 40usize;
    for (primary_fill, candidate_fill, prefix, label) in [
        (
            "5s",
            "20ms",
            "race-c-",
            "cancel-fill race: the cancel reached the candidate after its fill",
        ),
        (
            "20ms",
            "5s",
            "race-p-",
            "cancel-fill race: the cancel reached the primary after its fill",
        ),
    ] {
        let (s, lines) = cancel_fill_race_run(primary_fill, candidate_fill, prefix, n).await;
        let f = s.flows.as_ref().unwrap();
        eprintln!("{prefix}: flows {f:?}");
        let n = n as u64;
        assert_eq!(f.compared, n, "{f:?}");
        assert_eq!(
            (f.noise, f.cancel_fill_races, f.differing, f.matched),
            (n, n, 0, 0),
            "{:?}",
            f.groups
        );
        assert!(
            flow_kinds(&s).is_empty(),
            "no flow regression: {:?}",
            f.groups
        );
        assert_eq!(f.groups.len(), 1, "{:?}", f.groups);
        let g = &f.groups[0];
        assert_eq!(
            (g.kind.as_str(), g.steps.as_str(), g.class.as_str()),
            ("state-mismatch", "final", "noise")
        );
        assert_eq!((g.label.as_deref(), g.count), (Some(label), n));
        // Flow lines (the event streams' lines are the stream comparison's).
        let flow_lines: Vec<_> = lines
            .iter()
            .filter(|l| l["flow_id"].is_string() && l["route"] != "/api/stream")
            .collect();
        assert_eq!(flow_lines.len() as u64, n, "{flow_lines:?}");
        for l in &flow_lines {
            assert_eq!(
                (&l["kind"], &l["class"], &l["label"]),
                (
                    &"state-mismatch".into(),
                    &"noise".into(),
                    &serde_json::Value::from(label)
                ),
                "{l}"
            );
            assert!(l["detail"].as_str().unwrap().contains(label), "{l}");
        }
        eprintln!("{prefix}: {}", flow_lines[0]["detail"]);
        assert!(s.lines.noise >= n, "{:?}", s.lines);
    }
}
