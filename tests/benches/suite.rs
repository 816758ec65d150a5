//! The benchmark suite (issue 17): paddock against runc on the same busybox bundles, side by
//! side in one run, alternating, after a warm-up; medians, extremes and the 99th percentile.
//!
//! Run: `cargo bench -p paddock-tests --bench suite` (as root, with runc installed; build the
//! workspace first with `cargo build --release`: the bench drives target/release's binaries).
//! It prints one table and, last, `run ratio paddock/runc = X`.
//!
//! What it measures, each paddock way beside runc's:
//! - run: `/bin/true` end to end: `ctl run --rm --bundle B id`, the same over a held
//!   connection of the wire client library (create, start, wait, delete), the same through the
//!   embedded API (an in-process actors `Supervisor`: no socket, no ctl), `runc run --bundle B
//!   id`, and the floor `unshare -mpfiun --mount-proc true`;
//! - cycle: create → start → delete --force of a `sleep`, each of those ways;
//! - burst: BURST containers started (`run -d`) by CLIENTS threads each running the CLI, then
//!   deleted by them: wall time and containers/s;
//! - control plane: `state` latency over a held connection, through the embedded API, as a
//!   `ctl state` process and as a `runc state` process, idle and during the burst (sampled
//!   every few milliseconds, so the sampling itself does not slow the burst much);
//! - density: DENSITY idle `sleep` containers: paddockd's RSS, and the PSS per container of
//!   the processes paddock keeps on the host for it (gofer and sandbox), against what runc
//!   keeps (no process: the container's own process is all that is left of a detached run).
//!
//! Sizes come from the environment, for a quick run: `ROUNDS` (default 50), `WARMUP` (3),
//! `BURST` (100), `CLIENTS` (8), `DENSITY` (50), `STATE_CALLS` (2000), `STATE_DIR` (where
//! both state roots go; /dev/shm, a tmpfs like a host's /run), and `POOL_SIZE` (paddockd's
//! and the embedded supervisor's helper pool; default paddockd's, 2). For example:
//! `ROUNDS=5 BURST=16 DENSITY=5 STATE_CALLS=200 cargo bench -p paddock-tests --bench suite`.
//!
//! Every container is made with a unique id under the bench's own state roots (temporary
//! directories) and deleted even when a step fails: paddock's by [`Paddock`]'s drop, runc's
//! by [`Runc`]'s, the embedded supervisor's when its thread stops.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harness::bench::{alternate, ms, runc, smaps_kib, status_kib, time, us, Summary};
use harness::{bin_dir, processes_mentioning, unique, Bundle, Paddock};
use wire::api::Create;
use wire::client::Client;
use wire::{ApiError, SpecJson};

/// paddockd's default `pool_size` (`supervisor::config::DEFAULT_POOL_SIZE`), which the
/// embedded supervisor gets too when `POOL_SIZE` is unset.
const PADDOCKD_POOL_SIZE: usize = 2;

/// How big a run is; each from the environment variable of its name in capitals.
struct Sizes {
    rounds: usize,
    warmup: usize,
    burst: usize,
    clients: usize,
    density: usize,
    state_calls: usize,
    /// Where both runtimes' state roots go: `STATE_DIR`, by default /dev/shm, a tmpfs as a
    /// host's /run is (where /run/paddock and /run/runc are). On a disk, paddock's fsyncs of
    /// its metadata cost what the disk's flushes cost; runc writes its state without fsync.
    state_dir: PathBuf,
    /// `POOL_SIZE`: paddockd's (and the embedded supervisor's) `pool_size`; unset, paddockd's
    /// default ([`PADDOCKD_POOL_SIZE`]) for both.
    pool_size: Option<usize>,
}

impl Sizes {
    fn from_env() -> Self {
        let get = |name: &str, default: usize| -> usize {
            match std::env::var(name) {
                Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v}: not a count")),
                Err(_) => default,
            }
        };
        Self {
            rounds: get("ROUNDS", 50).max(1),
            warmup: get("WARMUP", 3),
            burst: get("BURST", 100).max(1),
            clients: get("CLIENTS", 8).max(1),
            density: get("DENSITY", 50).max(1),
            state_calls: get("STATE_CALLS", 2000).max(1),
            state_dir: std::env::var_os("STATE_DIR").map_or_else(|| PathBuf::from("/dev/shm"), PathBuf::from),
            pool_size: std::env::var("POOL_SIZE")
                .ok()
                .map(|v| v.parse().unwrap_or_else(|_| panic!("POOL_SIZE={v}: not a count"))),
        }
    }
}

/// runc with a state root of its own; every container in it is deleted on drop.
struct Runc {
    bin: &'static str,
    root: tempfile::TempDir,
}

impl Runc {
    fn new(parent: &Path) -> Self {
        let root = tempfile::Builder::new().prefix("pdk-bench-runc-").tempdir_in(parent).expect("runc root");
        Self { bin: runc(), root }
    }

    /// `runc --root <root>`, ready for more arguments.
    fn cmd(&self) -> Command {
        let mut c = Command::new(self.bin);
        c.arg("--root").arg(self.root.path());
        c
    }

    fn ids(&self) -> Vec<String> {
        let out = self.cmd().args(["list", "-q"]).stdin(Stdio::null()).stderr(Stdio::null()).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()).unwrap_or_default()
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        for id in self.ids() {
            let _ = self.cmd().args(["delete", "--force", &id]).stdin(Stdio::null()).output();
        }
    }
}

/// What the embedded supervisor's thread is asked to do; each answers with its timings.
enum Job {
    /// create, start, wait, delete of the `/bin/true` bundle.
    Run(String),
    /// create, start, delete --force of the `sleep` bundle.
    Cycle(String),
    /// create and start the `sleep` bundle (untimed).
    Launch(String),
    /// `calls` state requests of `id`, each timed.
    State { id: String, calls: usize },
}

type Reply = std::sync::mpsc::Sender<Result<Vec<Duration>, ApiError>>;

/// An actors `Supervisor` in this process, on an actix system of its own thread: the
/// embedded API, no socket and no ctl in between. Its containers are deleted when it stops.
struct Embedded {
    jobs: Option<tokio::sync::mpsc::UnboundedSender<(Job, Reply)>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _root: tempfile::TempDir,
}

impl Embedded {
    fn start(parent: &Path, run_bundle: &Path, sleep_bundle: &Path, pool_size: usize) -> Self {
        let root = tempfile::Builder::new().prefix("pdk-bench-embedded-").tempdir_in(parent).expect("embedded root");
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<(Job, Reply)>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), ApiError>>();
        let state_root = root.path().to_path_buf();
        let (run_bundle, sleep_bundle) = (run_bundle.to_path_buf(), sleep_bundle.to_path_buf());
        let thread = std::thread::spawn(move || {
            actix::System::new().block_on(async move {
                let mut config = actors::SupervisorConfig::new(state_root);
                config.helper_dir = Some(bin_dir());
                config.pool_size = pool_size;
                let supervisor = match actors::Supervisor::start(config) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.context("the embedded supervisor did not start")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                while let Some((job, reply)) = queue.recv().await {
                    let answer = match job {
                        Job::Run(id) => embedded::run(&supervisor, &id, &run_bundle).await.map(|d| vec![d]),
                        Job::Cycle(id) => embedded::cycle(&supervisor, &id, &sleep_bundle).await.map(|d| vec![d]),
                        Job::Launch(id) => embedded::launch(&supervisor, &id, &sleep_bundle).await.map(|()| vec![]),
                        Job::State { id, calls } => embedded::state(&supervisor, &id, calls).await,
                    };
                    let _ = reply.send(answer);
                }
                embedded::delete_all(&supervisor).await;
                let _ = supervisor.send(actors::supervisor::ClosePool).await;
            });
        });
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("the embedded supervisor's thread ended before it started"),
        }
        Self { jobs: Some(jobs), thread: Some(thread), _root: root }
    }

    /// Has the supervisor's thread do `job`; panics (the guards clean up) if it fails.
    fn ask(&self, job: Job) -> Vec<Duration> {
        let (tx, rx) = std::sync::mpsc::channel();
        let jobs = self.jobs.as_ref().expect("the embedded supervisor runs");
        jobs.send((job, tx)).expect("the embedded supervisor's thread is gone");
        match rx.recv() {
            Ok(Ok(timings)) => timings,
            Ok(Err(e)) => panic!("embedded API: {e}"),
            Err(_) => panic!("the embedded supervisor's thread is gone"),
        }
    }

    fn one(&self, job: Job) -> Duration {
        self.ask(job).first().copied().expect("a timing")
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop, which then deletes every container.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The embedded API's operations, as a Rust program embedding paddock would call them.
mod embedded {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use actix::Addr;
    use actors::{Api, Supervisor};
    use wire::api::{Create, Delete, GetState, List, Start, Wait};
    use wire::ApiError;

    async fn ask<T>(supervisor: &Addr<Supervisor>, request: T) -> Result<T::Reply, ApiError>
    where
        T: wire::api::ApiCall + Send + 'static,
        T::Reply: Send + 'static,
        Supervisor: actix::Handler<Api<T>>,
    {
        match supervisor.send(Api(request)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(ApiError::internal(format!("the supervisor is gone: {e}"))),
        }
    }

    fn create(id: &str, bundle: &Path) -> Result<Create, ApiError> {
        let config = bundle.join("config.json");
        let json = std::fs::read_to_string(&config).map_err(|e| ApiError::io(config.display(), e))?;
        Ok(Create {
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            spec: wire::SpecJson::from_json(json),
            stdio: wire::Stdio::default(),
            restore: None,
        })
    }

    /// Deletes `id` whatever its status, after a step failed.
    async fn cleanup<T>(supervisor: &Addr<Supervisor>, id: &str, result: Result<T, ApiError>) -> Result<T, ApiError> {
        if result.is_err() {
            let _ = ask(supervisor, Delete { id: id.to_string(), force: true }).await;
        }
        result
    }

    pub async fn run(supervisor: &Addr<Supervisor>, id: &str, bundle: &Path) -> Result<Duration, ApiError> {
        let request = create(id, bundle)?;
        let start = Instant::now();
        let result = async {
            ask(supervisor, request).await?;
            ask(supervisor, Start { id: id.to_string() }).await?;
            ask(supervisor, Wait { id: id.to_string(), kill_on_hangup: false }).await?;
            ask(supervisor, Delete { id: id.to_string(), force: false }).await?;
            Ok(start.elapsed())
        }
        .await;
        cleanup(supervisor, id, result).await
    }

    pub async fn cycle(supervisor: &Addr<Supervisor>, id: &str, bundle: &Path) -> Result<Duration, ApiError> {
        let request = create(id, bundle)?;
        let start = Instant::now();
        let result = async {
            ask(supervisor, request).await?;
            ask(supervisor, Start { id: id.to_string() }).await?;
            ask(supervisor, Delete { id: id.to_string(), force: true }).await?;
            Ok(start.elapsed())
        }
        .await;
        cleanup(supervisor, id, result).await
    }

    pub async fn launch(supervisor: &Addr<Supervisor>, id: &str, bundle: &Path) -> Result<(), ApiError> {
        let request = create(id, bundle)?;
        let result = async {
            ask(supervisor, request).await?;
            ask(supervisor, Start { id: id.to_string() }).await.map(drop)
        }
        .await;
        cleanup(supervisor, id, result).await
    }

    pub async fn state(supervisor: &Addr<Supervisor>, id: &str, calls: usize) -> Result<Vec<Duration>, ApiError> {
        let mut timings = Vec::with_capacity(calls);
        for _ in 0..calls {
            let start = Instant::now();
            ask(supervisor, GetState { id: id.to_string() }).await?;
            timings.push(start.elapsed());
        }
        Ok(timings)
    }

    pub async fn delete_all(supervisor: &Addr<Supervisor>) {
        if let Ok(all) = ask(supervisor, List).await {
            for c in all {
                let _ = ask(supervisor, Delete { id: c.id, force: true }).await;
            }
        }
    }
}

/// A create request for the wire client: the bundle's config.json as it is, stdio /dev/null.
fn wire_create(id: &str, bundle: &Path) -> Create {
    let json = std::fs::read_to_string(bundle.join("config.json")).expect("config.json");
    Create {
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        spec: SpecJson::from_json(json),
        stdio: wire::Stdio::default(),
        restore: None,
    }
}

/// The wire client's run: create, start, wait, delete over the held connection. Returns the
/// time of each of the four calls.
fn client_run(client: &mut Client, id: &str, bundle: &Path) -> [Duration; 4] {
    let request = wire_create(id, bundle);
    let mut lap = Lap::new();
    client.create(request).unwrap_or_else(|e| panic!("wire create {id}: {e}"));
    let create = lap.next();
    client.start(id).unwrap_or_else(|e| panic!("wire start {id}: {e}"));
    let start = lap.next();
    client.wait(id).unwrap_or_else(|e| panic!("wire wait {id}: {e}"));
    let wait = lap.next();
    client.delete(id, false).unwrap_or_else(|e| panic!("wire delete {id}: {e}"));
    [create, start, wait, lap.next()]
}

/// Consecutive intervals of one stopwatch.
struct Lap(Instant);

impl Lap {
    fn new() -> Self {
        Self(Instant::now())
    }

    /// The time since the previous lap (or the start).
    fn next(&mut self) -> Duration {
        let now = Instant::now();
        let lap = now - self.0;
        self.0 = now;
        lap
    }
}

/// The wire client's cycle: create, start, delete --force over the held connection.
fn client_cycle(client: &mut Client, id: &str, bundle: &Path) -> Duration {
    let request = wire_create(id, bundle);
    let start = Instant::now();
    client.create(request).unwrap_or_else(|e| panic!("wire create {id}: {e}"));
    client.start(id).unwrap_or_else(|e| panic!("wire start {id}: {e}"));
    client.delete(id, true).unwrap_or_else(|e| panic!("wire delete {id}: {e}"));
    start.elapsed()
}

/// One row of the table.
struct Row {
    measure: String,
    runtime: &'static str,
    cells: [String; 5],
    ratio: String,
}

/// The rows printed at the end, in the order they were measured.
#[derive(Default)]
struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// A row of latencies; `reference` is runc's median for the ratio column.
    fn timings(&mut self, measure: &str, runtime: &'static str, s: Option<Summary>, reference: Option<Summary>) {
        let Some(s) = s else {
            let cells = ["0".into(), "-".into(), "-".into(), "-".into(), "-".into()];
            self.rows.push(Row { measure: measure.into(), runtime, cells, ratio: "-".into() });
            return;
        };
        let fmt = |d: Duration| {
            if d < Duration::from_millis(1) {
                format!("{:.0} µs", us(d))
            } else {
                format!("{:.2} ms", ms(d))
            }
        };
        let ratio = reference.map_or("-".into(), |r| ratio(s.median.as_secs_f64(), r.median.as_secs_f64()));
        let cells = [s.n.to_string(), fmt(s.median), fmt(s.min), fmt(s.max), fmt(s.p99)];
        self.rows.push(Row { measure: measure.into(), runtime, cells, ratio });
    }

    /// A row of one figure (in the median column).
    fn figure(&mut self, measure: &str, runtime: &'static str, n: usize, value: String, ratio: String) {
        let cells = [n.to_string(), value, "-".into(), "-".into(), "-".into()];
        self.rows.push(Row { measure: measure.into(), runtime, cells, ratio });
    }

    fn print(&self) {
        println!("| measure | runtime | n | median | min | max | p99 | paddock/runc |");
        println!("|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let [n, median, min, max, p99] = &r.cells;
            println!("| {} | {} | {n} | {median} | {min} | {max} | {p99} | {} |", r.measure, r.runtime, r.ratio);
        }
    }
}

/// `p / r`, with enough digits to tell a microsecond from a millisecond.
fn ratio(p: f64, r: f64) -> String {
    let q = p / r;
    if q < 0.1 {
        format!("{q:.4}")
    } else {
        format!("{q:.2}")
    }
}

/// Samples `probe` every `every` until `stop`, timing each call.
fn sample_until(stop: &AtomicBool, every: Duration, mut probe: impl FnMut() -> Duration) -> Vec<Duration> {
    let mut timings = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        timings.push(probe());
        std::thread::sleep(every);
    }
    timings
}

/// `clients` threads take the ids in turn and run `command(id)` for each; returns the wall
/// time until the last one has finished.
fn burst(ids: &[String], clients: usize, command: &(dyn Fn(&str) -> Command + Sync)) -> Duration {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                time(&mut command(id));
            });
        }
    });
    start.elapsed()
}

/// The processes paddock keeps on the host for container `id` (its gofer, its sandbox and the
/// sandbox's PID-namespace init), found by the command line paddockd gives them.
fn helper_pids(id: &str) -> Vec<i32> {
    processes_mentioning(&format!("--id {id} --control-fd"))
}

fn main() {
    let sizes = Sizes::from_env();
    let runc = Runc::new(&sizes.state_dir);
    let paddock = Paddock::new_in(&sizes.state_dir);
    let true_bundle = Bundle::busybox(&["/bin/true"]);
    let sleep_bundle = Bundle::busybox(&["sleep", "3600"]);
    let (tb, sb): (PathBuf, PathBuf) = (true_bundle.path().into(), sleep_bundle.path().into());
    let (tbs, sbs) = (true_bundle.path_str(), sleep_bundle.path_str());
    match sizes.pool_size {
        Some(n) => drop(paddock.start_daemon_with_config(&format!("pool_size = {n}\n"))),
        // Starts paddockd (ctl starts it on first use).
        None => drop(paddock.ctl_ok(&["list"])),
    }
    let mut client = Client::connect(&paddock.root().join("paddockd.sock")).expect("connecting to paddockd");
    let embedded = Embedded::start(&sizes.state_dir, &tb, &sb, sizes.pool_size.unwrap_or(PADDOCKD_POOL_SIZE));
    let mut table = Table::default();

    let runc_run = |id: &str| -> Duration {
        let d = time(runc.cmd().args(["run", "--bundle", &tbs, id]));
        // `runc run` removes the container once it has exited; a leftover would be a bug, but
        // must not survive the bench.
        let _ = runc.cmd().args(["delete", "--force", id]).stdin(Stdio::null()).stderr(Stdio::null()).output();
        d
    };
    let runc_cycle = |id: &str| -> Duration {
        time(runc.cmd().args(["create", "--bundle", &sbs, id]))
            + time(runc.cmd().args(["start", id]))
            + time(runc.cmd().args(["delete", "--force", id]))
    };
    let ctl_cycle = |id: &str| -> Duration {
        time(paddock.command().args(["create", "--bundle", &sbs, id]))
            + time(paddock.command().args(["start", id]))
            + time(paddock.command().args(["delete", "--force", id]))
    };

    // Warm-up: every way once or more, to fill the page cache and start what starts lazily.
    for _ in 0..sizes.warmup {
        time(paddock.command().args(["run", "--rm", "--bundle", &tbs, &unique("warm")]));
        client_run(&mut client, &unique("warm"), &tb);
        embedded.one(Job::Run(unique("warm")));
        runc_run(&unique("warm"));
        ctl_cycle(&unique("warm"));
        client_cycle(&mut client, &unique("warm"), &sb);
        embedded.one(Job::Cycle(unique("warm")));
        runc_cycle(&unique("warm"));
    }

    // run: /bin/true end to end.
    let (mut r_ctl, mut r_client, mut r_emb, mut r_runc, mut r_floor) = (vec![], vec![], vec![], vec![], vec![]);
    let mut phases: [Vec<Duration>; 4] = Default::default();
    for round in 0..sizes.rounds {
        alternate(
            round,
            &mut [
                &mut || r_ctl.push(time(paddock.command().args(["run", "--rm", "--bundle", &tbs, &unique("run")]))),
                &mut || {
                    let laps = client_run(&mut client, &unique("run"), &tb);
                    r_client.push(laps.iter().sum());
                    for (phase, lap) in phases.iter_mut().zip(laps) {
                        phase.push(lap);
                    }
                },
                &mut || r_emb.push(embedded.one(Job::Run(unique("run")))),
                &mut || r_runc.push(runc_run(&unique("run"))),
                &mut || r_floor.push(time(Command::new("unshare").args(["-mpfiun", "--mount-proc", "true"]))),
            ],
        );
    }
    let runc_run_summary = Summary::of(r_runc);
    let ctl_run_summary = Summary::of(r_ctl);
    let run_measure = "run `/bin/true` (end to end)";
    table.timings(run_measure, "runc `run`", runc_run_summary, runc_run_summary);
    table.timings(run_measure, "paddock `ctl run --rm`", ctl_run_summary, runc_run_summary);
    table.timings(run_measure, "paddock wire client", Summary::of(r_client), runc_run_summary);
    table.timings(run_measure, "paddock embedded API", Summary::of(r_emb), runc_run_summary);
    table.timings(run_measure, "floor `unshare -mpfiun true`", Summary::of(r_floor), runc_run_summary);
    for (call, timings) in ["create", "start", "wait", "delete"].into_iter().zip(phases) {
        table.timings(&format!("run, its `{call}` call alone"), "paddock wire client", Summary::of(timings), None);
    }

    // cycle: create → start → delete --force of a sleep.
    let (mut c_ctl, mut c_client, mut c_emb, mut c_runc) = (vec![], vec![], vec![], vec![]);
    for round in 0..sizes.rounds {
        alternate(
            round,
            &mut [
                &mut || c_ctl.push(ctl_cycle(&unique("cyc"))),
                &mut || c_client.push(client_cycle(&mut client, &unique("cyc"), &sb)),
                &mut || c_emb.push(embedded.one(Job::Cycle(unique("cyc")))),
                &mut || c_runc.push(runc_cycle(&unique("cyc"))),
            ],
        );
    }
    let runc_cycle_summary = Summary::of(c_runc);
    let cycle_measure = "cycle create→start→delete -f `sleep`";
    table.timings(cycle_measure, "runc (3 processes)", runc_cycle_summary, runc_cycle_summary);
    table.timings(cycle_measure, "paddock ctl (3 processes)", Summary::of(c_ctl), runc_cycle_summary);
    table.timings(cycle_measure, "paddock wire client", Summary::of(c_client), runc_cycle_summary);
    table.timings(cycle_measure, "paddock embedded API", Summary::of(c_emb), runc_cycle_summary);

    // Control plane, idle: one running container each to ask about.
    let (p_target, r_target, e_target) = (unique("target"), unique("target"), unique("target"));
    paddock.ctl_detached(&["run", "-d", "--bundle", &sbs, &p_target]);
    time(runc.cmd().args(["run", "-d", "--bundle", &sbs, &r_target]));
    embedded.ask(Job::Launch(e_target.clone()));
    let held_state = |client: &mut Client| -> Duration {
        let start = Instant::now();
        client.state(&p_target).unwrap_or_else(|e| panic!("wire state: {e}"));
        start.elapsed()
    };
    let held_idle: Vec<Duration> = (0..sizes.state_calls).map(|_| held_state(&mut client)).collect();
    let emb_idle = embedded.ask(Job::State { id: e_target.clone(), calls: sizes.state_calls });
    let (mut ctl_idle, mut runc_idle) = (vec![], vec![]);
    for round in 0..sizes.rounds {
        alternate(
            round,
            &mut [&mut || ctl_idle.push(time(paddock.command().args(["state", &p_target]))), &mut || {
                runc_idle.push(time(runc.cmd().args(["state", &r_target])))
            }],
        );
    }

    // burst: BURST containers started by CLIENTS concurrent CLI clients, then deleted, while
    // the state of the target container is sampled.
    let stop = AtomicBool::new(false);
    let every = Duration::from_millis(5);
    let r_ids: Vec<String> = (0..sizes.burst).map(|_| unique("rb")).collect();
    let p_ids: Vec<String> = (0..sizes.burst).map(|_| unique("pb")).collect();
    let (runc_up, runc_down, runc_busy) = std::thread::scope(|s| {
        let sampler = s.spawn(|| sample_until(&stop, every, || time(runc.cmd().args(["state", &r_target]))));
        let up = burst(&r_ids, sizes.clients, &|id| {
            let mut c = runc.cmd();
            c.args(["run", "-d", "--bundle", &sbs, id]);
            c
        });
        let down = burst(&r_ids, sizes.clients, &|id| {
            let mut c = runc.cmd();
            c.args(["delete", "--force", id]);
            c
        });
        stop.store(true, Ordering::Relaxed);
        (up, down, sampler.join().expect("runc sampler"))
    });
    stop.store(false, Ordering::Relaxed);
    let socket = paddock.root().join("paddockd.sock");
    let (pad_up, pad_down, held_busy, ctl_busy) = std::thread::scope(|s| {
        let held = s.spawn(|| {
            let mut client = Client::connect(&socket).expect("connecting to paddockd");
            sample_until(&stop, Duration::from_millis(1), || held_state(&mut client))
        });
        let cli = s.spawn(|| sample_until(&stop, every, || time(paddock.command().args(["state", &p_target]))));
        let up = burst(&p_ids, sizes.clients, &|id| {
            let mut c = paddock.command();
            c.args(["run", "-d", "--bundle", &sbs, id]);
            c
        });
        let down = burst(&p_ids, sizes.clients, &|id| {
            let mut c = paddock.command();
            c.args(["delete", "--force", id]);
            c
        });
        stop.store(true, Ordering::Relaxed);
        (up, down, held.join().expect("held-connection sampler"), cli.join().expect("ctl sampler"))
    });
    let per_s = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    let burst_measure = format!("burst: {} `run -d` by {} CLI clients, wall", sizes.burst, sizes.clients);
    let rate_measure = format!("burst: {} `run -d` by {} CLI clients, containers/s", sizes.burst, sizes.clients);
    let delete_measure = format!("burst: {} `delete --force` by {} CLI clients, wall", sizes.burst, sizes.clients);
    table.figure(&burst_measure, "runc", sizes.burst, format!("{:.0} ms", ms(runc_up)), "1.00".into());
    table.figure(
        &burst_measure,
        "paddock",
        sizes.burst,
        format!("{:.0} ms", ms(pad_up)),
        ratio(ms(pad_up), ms(runc_up)),
    );
    let (rr, pr) = (per_s(sizes.burst, runc_up), per_s(sizes.burst, pad_up));
    table.figure(&rate_measure, "runc", sizes.burst, format!("{rr:.1}/s"), "1.00".into());
    table.figure(&rate_measure, "paddock", sizes.burst, format!("{pr:.1}/s"), ratio(pr, rr));
    table.figure(&delete_measure, "runc", sizes.burst, format!("{:.0} ms", ms(runc_down)), "1.00".into());
    table.figure(
        &delete_measure,
        "paddock",
        sizes.burst,
        format!("{:.0} ms", ms(pad_down)),
        ratio(ms(pad_down), ms(runc_down)),
    );

    let runc_idle = Summary::of(runc_idle);
    let runc_busy = Summary::of(runc_busy);
    table.timings("`state`, idle", "runc `state` process", runc_idle, runc_idle);
    table.timings("`state`, idle", "paddock `ctl state` process", Summary::of(ctl_idle), runc_idle);
    table.timings("`state`, idle", "paddock held connection", Summary::of(held_idle), runc_idle);
    table.timings("`state`, idle", "paddock embedded API", Summary::of(emb_idle), runc_idle);
    table.timings("`state`, during the burst", "runc `state` process", runc_busy, runc_busy);
    table.timings("`state`, during the burst", "paddock `ctl state` process", Summary::of(ctl_busy), runc_busy);
    table.timings("`state`, during the burst", "paddock held connection", Summary::of(held_busy), runc_busy);

    // density: DENSITY idle sleeps each.
    let daemon = paddock.daemon_pid().expect("paddockd's pid");
    let rss_before = status_kib(daemon, "VmRSS").unwrap_or(0);
    let d_ids: Vec<String> = (0..sizes.density).map(|_| unique("dens")).collect();
    for id in &d_ids {
        paddock.ctl_detached(&["run", "-d", "--bundle", &sbs, id]);
    }
    let rss_with = status_kib(daemon, "VmRSS").unwrap_or(0);
    let (mut helpers, mut pss) = (0usize, 0u64);
    for id in &d_ids {
        for pid in helper_pids(id) {
            helpers += 1;
            pss += smaps_kib(pid, "Pss").unwrap_or(0);
        }
    }
    let r_ids: Vec<String> = (0..sizes.density).map(|_| unique("rdens")).collect();
    // runc's container processes are reparented away from runc; what else would stay on the
    // host per container is a runc process of this bench's root (none is expected: runc has
    // no shim of its own, a containerd or CRI-O would add theirs).
    let runc_root = runc.root.path().display().to_string();
    for id in &r_ids {
        time(runc.cmd().args(["run", "-d", "--bundle", &sbs, id]));
    }
    let runc_procs = processes_mentioning(&runc_root).len();
    let per = |kib: u64| format!("{:.2} MiB", kib as f64 / 1024.0 / sizes.density as f64);
    let density = sizes.density;
    table.figure(
        &format!("density: host processes per idle container ({density})"),
        "runc",
        density,
        format!("{:.1}", runc_procs as f64 / density as f64),
        "-".into(),
    );
    table.figure(
        &format!("density: host processes per idle container ({density})"),
        "paddock (sandbox + gofer)",
        density,
        format!("{:.1}", helpers as f64 / density as f64),
        "-".into(),
    );
    table.figure(
        &format!("density: host-side PSS per idle container ({density})"),
        "runc (no process left)",
        density,
        per(0),
        "-".into(),
    );
    table.figure(
        &format!("density: host-side PSS per idle container ({density})"),
        "paddock (sandbox + gofer)",
        density,
        per(pss),
        "-".into(),
    );
    table.figure(
        "density: paddockd RSS, before → with the idle set (after the burst)",
        "paddock",
        density,
        format!("{:.1} → {:.1} MiB", rss_before as f64 / 1024.0, rss_with as f64 / 1024.0),
        "-".into(),
    );
    for id in &r_ids {
        let _ = runc.cmd().args(["delete", "--force", id]).stdin(Stdio::null()).output();
    }
    for id in &d_ids {
        let _ = paddock.ctl(&["delete", "--force", id]);
    }

    println!(
        "rounds {}, warm-up {}, burst {} by {} clients, density {}, state calls {}, state roots in {}",
        sizes.rounds,
        sizes.warmup,
        sizes.burst,
        sizes.clients,
        sizes.density,
        sizes.state_calls,
        sizes.state_dir.display()
    );
    println!("paddock/runc: ratio of the medians (of the rates for containers/s); the same runtime's rows alternate");
    table.print();
    drop(embedded);
    let (p, r) = (ctl_run_summary.expect("run timings"), runc_run_summary.expect("run timings"));
    println!("run ratio paddock/runc = {:.2}", p.median.as_secs_f64() / r.median.as_secs_f64());
}
