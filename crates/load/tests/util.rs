//! Helpers for the integration tests: a serial lock, a runtime, simulators, options.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use shadowgate_load::{LoadOptions, ProgressMode, Scenario, Shard};
use shadowgate_sim::{SimConfig, SimServer, StatsSnapshot};

/// Load runs measure time and Goose keeps some process-wide state: one run at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f` on a fresh 2-worker runtime (as the binary does), one test at a time.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let _guard: MutexGuard<'_, ()> = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(f)
}

/// A simulator on 127.0.0.1:0, on its own thread and single-worker runtime (as a separate
/// gateway process would be), so its work does not run on the generator's runtime workers.
pub struct TestSim {
    server: Option<Arc<SimServer>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl TestSim {
    pub fn local_addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().local_addr()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.server.as_ref().unwrap().stats()
    }
}

impl Drop for TestSim {
    fn drop(&mut self) {
        drop(self.server.take());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(join) = self.join.take() {
            let _ = join.join();
        }
    }
}

/// Starts a simulator from a TOML config.
pub async fn sim(toml: &str) -> TestSim {
    let cfg = SimConfig::from_toml_str(toml, "test sim").unwrap();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let join = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server = Arc::new(shadowgate_sim::start(cfg, listener).await.unwrap());
            let _ = ready_tx.send(Arc::clone(&server));
            let _ = stop_rx.await;
        });
    });
    let server = ready_rx.await.unwrap();
    TestSim {
        server: Some(server),
        stop: Some(stop_tx),
        join: Some(join),
    }
}

pub fn scenario(text: &str) -> Scenario {
    Scenario::from_toml_str(text, "test.load.toml").unwrap()
}

/// Options for a run against `target` into `dir`, no progress output, no calibration.
pub fn opts(target: Option<String>, scenario: Scenario, dir: &Path) -> LoadOptions {
    LoadOptions {
        target,
        target_name: "candidate".to_owned(),
        scenario,
        profile: None,
        shard: Shard::SINGLE,
        out_dir: dir.to_path_buf(),
        calibrate: false,
        no_auth: false,
        progress: ProgressMode::Off,
        tool_version: "test".to_owned(),
        goose_reports: false,
        run_token: None,
    }
}

pub fn url(sim: &TestSim) -> String {
    format!("http://{}", sim.local_addr())
}

/// Runs `scenario_text` against `sim` into a fresh temporary directory (kept alive by the
/// returned guard), and returns the summary with its rendering.
pub async fn run_scenario(
    sim: &TestSim,
    scenario_text: &str,
) -> (tempfile::TempDir, shadowgate_load::LoadSummary, String) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let summary = shadowgate_load::run(opts(Some(url(sim)), scenario(scenario_text), &out))
        .await
        .unwrap();
    let report = summary.render();
    (tmp, summary, report)
}
