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
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let rules = shadowgate_mirror::parse_rules(PY_FLOW_RULES, "flows.toml").unwrap();
    let m = mirror(
        &url(primary.local_addr()),
        &url(candidate.local_addr()),
        &out,
        rules,
        |_| {},
    )
    .await;
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
    assert_eq!(pairs.len(), n);
    primary.shutdown().await;
    candidate.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_profiles_show_no_flow_discrepancy() {
    let _serial = SERIAL.lock().await;
    let primary = sim(&py_sim("")).await;
    let candidate = sim(&py_sim("")).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let rules = shadowgate_mirror::parse_rules(PY_FLOW_RULES, "flows.toml").unwrap();
    let m = mirror(
        &url(primary.local_addr()),
        &url(candidate.local_addr()),
        &out,
        rules,
        |_| {},
    )
    .await;
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
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let rules = shadowgate_mirror::load_rules(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/veloz.toml"),
    )
    .unwrap();
    let m = mirror(
        &url(primary.local_addr()),
        &url(candidate.local_addr()),
        &out,
        rules,
        |_| {},
    )
    .await;
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
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // A flow whose fill event never comes is compared at its timeout (8 s: a busy machine
    // can hold the candidate's stream back for seconds, and a late fill is not a missing one).
    let text = format!("{PY_FLOW_RULES}\n{STREAM_RULES}");
    let rules = shadowgate_mirror::parse_rules(&text, "flows.toml").unwrap();
    let m = mirror(
        &url(primary.local_addr()),
        &url(candidate.local_addr()),
        &out,
        rules,
        |_| {},
    )
    .await;
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
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let rules = shadowgate_mirror::load_rules(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/veloz-cpp.toml"),
    )
    .unwrap();
    let m = mirror(
        &url(primary.local_addr()),
        &url(candidate.local_addr()),
        &out,
        rules,
        |_| {},
    )
    .await;
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
