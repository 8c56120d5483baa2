//! Many clients, one simulated dext: connections driven from several threads
//! each, and in the socket mode also from child processes (this test binary
//! run again for an `#[ignore]`d helper test, `dextlink_tests::child`), make
//! synchronous calls and async calls whose completions are interleaved with
//! them.
//!
//! Checked in both simulator modes: in process (`Simulator::open`), and a
//! dext server on a Unix socket (`Simulator::serve_path`, `SocketTransport`),
//! served from a thread of this process (so that the dext's own counters can
//! be checked) and from a server process of its own (`ServerProcess`):
//!
//! - no completion is lost or duplicated: every async call carries a token
//!   unique in the run, its `Pending` resolves with exactly that token, the
//!   dext completes each token once (a set, counted), and the totals of calls
//!   accepted, completions sent and completions received agree;
//! - calls into one user client are serialised (docs/driverkit.md §2.2-11): an
//!   atomic in-flight counter per user client, raised for the whole handler,
//!   never exceeds 1 — checked by the dext and reported back in every reply,
//!   so that a child process checks it too; across user clients overlap is
//!   allowed (the most seen at once is printed);
//! - nothing deadlocks: every completion is waited for with a timeout, the
//!   whole run and every child process with a deadline, and a stall fails with
//!   a message saying how far the run got instead of hanging.
//!
//! Figures (clients, threads, processes, calls, completions, wall time,
//! calls/s) are printed; see them with `--nocapture`.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::io::Read;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use dextlink::server::Arguments;
use dextlink::sim::{OpenOptions, ServerProcess, Simulator, SocketTransport, UserClient};
use dextlink::{IoReturn, Transport};
use dextlink_tests::{Scratch, child};

dextlink::interface!("tests/concurrent.dextlink");

use concurrent::Concurrent;

/// How long one completion may take to arrive before the run fails.
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a whole run (or a child process) may take before it fails.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

// ----- the dext ------------------------------------------------------------------

/// Completions the dext sent, by token: each must be sent exactly once.
#[derive(Debug, Default)]
struct Ledger {
    completed: Mutex<HashSet<u64>>,
    duplicates: AtomicU64,
    deferred: AtomicU64,
}

impl Ledger {
    /// Records that `token` is being completed; a second time is a duplicate.
    fn record(&self, token: u64) {
        if !self.completed.lock().unwrap().insert(token) {
            self.duplicates.fetch_add(1, Ordering::SeqCst);
            eprintln!("dext: token {token:#x} completed twice");
        }
    }
}

/// One user client's counters, kept by the driver for the checks at the end.
#[derive(Debug, Default)]
struct ClientStats {
    /// Calls inside this user client's handlers right now.
    in_flight: AtomicU32,
    /// The most calls that were inside at once: must stay 1.
    peak: AtomicU32,
    calls: AtomicU64,
}

/// State all user clients of the dext share.
#[derive(Debug)]
struct DriverState {
    clients: Mutex<Vec<Arc<ClientStats>>>,
    /// Calls inside any user client's handler right now, and the most at once
    /// (overlap across user clients is allowed).
    inside_all: AtomicU32,
    peak_all: AtomicU32,
    ledger: Arc<Ledger>,
    /// The dext's completion thread: completes deferred `later` calls in
    /// batches, newest first, while other calls run.
    deferred: Mutex<mpsc::Sender<(u64, concurrent::LaterCompleter)>>,
}

impl DriverState {
    fn new() -> DriverState {
        let ledger = Arc::new(Ledger::default());
        let (deferred, queue) = mpsc::channel::<(u64, concurrent::LaterCompleter)>();
        let on_thread = Arc::clone(&ledger);
        thread::Builder::new()
            .name("dext completions".to_string())
            .spawn(move || {
                // Ends when the driver (the only sender) is dropped.
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    batch.extend(queue.try_iter().take(31));
                    for (token, completer) in batch.into_iter().rev() {
                        on_thread.record(token);
                        on_thread.deferred.fetch_add(1, Ordering::SeqCst);
                        completer.complete(token);
                    }
                }
            })
            .expect("completion thread");
        DriverState {
            clients: Mutex::new(Vec::new()),
            inside_all: AtomicU32::new(0),
            peak_all: AtomicU32::new(0),
            ledger,
            deferred: Mutex::new(deferred),
        }
    }

    /// The dext's view at the end of a run.
    fn summary(&self) -> DextSummary {
        let clients = self.clients.lock().unwrap();
        DextSummary {
            user_clients: clients.len(),
            calls: clients.iter().map(|c| c.calls.load(Ordering::SeqCst)).sum(),
            peak_per_client: clients.iter().map(|c| c.peak.load(Ordering::SeqCst)).max(),
            peak_across: self.peak_all.load(Ordering::SeqCst),
            completed: self.ledger.completed.lock().unwrap().len() as u64,
            deferred: self.ledger.deferred.load(Ordering::SeqCst),
            duplicates: self.ledger.duplicates.load(Ordering::SeqCst),
        }
    }
}

#[derive(Debug)]
struct DextSummary {
    user_clients: usize,
    calls: u64,
    peak_per_client: Option<u32>,
    peak_across: u32,
    completed: u64,
    deferred: u64,
    duplicates: u64,
}

/// One user client.
#[derive(Debug)]
struct Client {
    stats: Arc<ClientStats>,
    driver: Arc<DriverState>,
}

impl Client {
    /// Enters a handler: returns how many calls are inside this user client now.
    fn enter(&self) -> u32 {
        let inside = self.stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.stats.peak.fetch_max(inside, Ordering::SeqCst);
        self.stats.calls.fetch_add(1, Ordering::SeqCst);
        let all = self.driver.inside_all.fetch_add(1, Ordering::SeqCst) + 1;
        self.driver.peak_all.fetch_max(all, Ordering::SeqCst);
        inside
    }

    fn leave(&self) {
        self.driver.inside_all.fetch_sub(1, Ordering::SeqCst);
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl UserClient for Client {
    fn external_method(&mut self, selector: u64, arguments: &mut Arguments<'_>) -> IoReturn {
        concurrent::dispatch(self, selector, arguments)
    }
}

impl concurrent::Handler for Client {
    fn touch(&mut self, token: u64, spin: u32) -> Result<concurrent::TouchOutput, IoReturn> {
        let inside = self.enter();
        for _ in 0..spin {
            std::hint::spin_loop();
        }
        // Give a second call every chance to come in now.
        thread::yield_now();
        self.leave();
        Ok(concurrent::TouchOutput { echo: token, inside })
    }

    fn later(
        &mut self,
        token: u64,
        defer: bool,
        completion: concurrent::LaterCompleter,
    ) -> Result<u32, IoReturn> {
        let inside = self.enter();
        if defer {
            self.driver
                .deferred
                .lock()
                .unwrap()
                .send((token, completion))
                .expect("completion thread");
        } else {
            // Completed before the call itself returns: the client must still
            // get both the reply and the completion.
            self.driver.ledger.record(token);
            completion.complete(token);
        }
        thread::yield_now();
        self.leave();
        Ok(inside)
    }
}

#[derive(Debug)]
struct Dext(Arc<DriverState>);

impl dextlink::sim::Driver for Dext {
    type UserClient = Client;

    fn new_user_client(&self, _kind: u32) -> Result<Client, IoReturn> {
        let stats = Arc::new(ClientStats::default());
        self.0.clients.lock().unwrap().push(Arc::clone(&stats));
        Ok(Client { stats, driver: Arc::clone(&self.0) })
    }
}

fn simulator() -> Simulator<Dext> {
    Simulator::new(concurrent::SERVICE, Dext(Arc::new(DriverState::new())))
}

// ----- the clients ---------------------------------------------------------------

type App = Concurrent<Arc<dyn Transport>>;

/// What one group of client threads does.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Connections (user clients) to open.
    connections: u64,
    /// Threads calling through each connection at once.
    threads: u64,
    /// Calls each thread makes.
    calls: u64,
    /// Async calls a thread keeps outstanding before it waits for the oldest.
    window: usize,
    /// Keeps tokens unique across processes: 0 for this process, 1.. for children.
    origin: u64,
}

/// Token of call `seq` of `thread` on `connection`: unique in the run.
fn token(origin: u64, connection: u64, thread: u64, seq: u64) -> u64 {
    assert!(origin < 1 << 16 && connection < 1 << 12 && thread < 1 << 12 && seq < 1 << 24);
    origin << 48 | connection << 36 | thread << 24 | seq
}

/// Counts, shared by the client threads, for the totals and for the message of
/// a run that stalls.
#[derive(Debug, Default)]
struct Progress {
    sync_calls: AtomicU64,
    async_calls: AtomicU64,
    completions: AtomicU64,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sync calls, {} async calls, {} completions received",
            self.sync_calls.load(Ordering::SeqCst),
            self.async_calls.load(Ordering::SeqCst),
            self.completions.load(Ordering::SeqCst)
        )
    }
}

/// Runs `plan` with connections made by `open`; panics on any wrong answer.
fn run_clients(plan: Plan, open: &(dyn Fn() -> App + Sync), progress: &Progress) {
    let apps: Vec<App> = (0..plan.connections).map(|_| open()).collect();
    thread::scope(|scope| {
        for (connection, app) in apps.iter().enumerate() {
            for thread in 0..plan.threads {
                let connection = connection as u64;
                scope.spawn(move || client_thread(plan, app, connection, thread, progress));
            }
        }
    });
}

/// One thread's calls through `app`: sync and async calls interleaved, with up
/// to `plan.window` completions outstanding.
fn client_thread(plan: Plan, app: &App, connection: u64, thread: u64, progress: &Progress) {
    let mut outstanding = VecDeque::new();
    let wait_oldest = |outstanding: &mut VecDeque<(u64, dextlink::Pending<u64>)>| {
        let (token, mut pending) = outstanding.pop_front().expect("an outstanding call");
        match pending.wait_timeout(COMPLETION_TIMEOUT) {
            Ok(got) => assert_eq!(got, token, "the completion of {token:#x} carried {got:#x}"),
            Err(error) => panic!(
                "the completion of {token:#x} (connection {connection}, thread {thread}) did not \
                 arrive: {error}; {progress}"
            ),
        }
        progress.completions.fetch_add(1, Ordering::SeqCst);
    };
    for seq in 0..plan.calls {
        let token = token(plan.origin, connection, thread, seq);
        if seq % 2 == 0 {
            let spin = (seq % 8) as u32 * 200;
            let out = app.touch(token, spin).unwrap_or_else(|e| panic!("touch {token:#x}: {e}"));
            assert_eq!(out.echo, token, "touch {token:#x} came back as {:#x}", out.echo);
            assert_eq!(
                out.inside, 1,
                "touch {token:#x}: {} calls inside one user client",
                out.inside
            );
            progress.sync_calls.fetch_add(1, Ordering::SeqCst);
        } else {
            let defer = seq % 3 != 0;
            let (inside, pending) =
                app.later(token, defer).unwrap_or_else(|e| panic!("later {token:#x}: {e}"));
            assert_eq!(inside, 1, "later {token:#x}: {inside} calls inside one user client");
            progress.async_calls.fetch_add(1, Ordering::SeqCst);
            outstanding.push_back((token, pending));
            if outstanding.len() > plan.window {
                wait_oldest(&mut outstanding);
            }
        }
    }
    while !outstanding.is_empty() {
        wait_oldest(&mut outstanding);
    }
}

/// Runs `f` on a thread of its own and waits at most `limit` for it, failing
/// with `what` and the progress so far instead of hanging.
fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    progress: &Arc<Progress>,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(std::panic::catch_unwind(AssertUnwindSafe(f)));
    });
    match result.recv_timeout(limit) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what}: not finished after {limit:?} (a deadlock?): {progress}"),
    }
}

/// The figures of a run, printed.
fn report(mode: &str, totals: &Totals, dext: &DextSummary, elapsed: Duration) {
    let calls = totals.sync_calls + totals.async_calls;
    println!(
        "concurrent-clients [{mode}]: {} user clients ({} threads, {} processes); {calls} calls \
         ({} sync, {} async); {} completions received, {} sent by the dext ({} deferred); \
         {:.3} s, {:.0} calls/s; most calls inside one user client at once: {}, across user \
         clients: {}",
        dext.user_clients,
        totals.threads,
        totals.processes,
        totals.sync_calls,
        totals.async_calls,
        totals.completions,
        dext.completed,
        dext.deferred,
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
        dext.peak_per_client.unwrap_or(0),
        dext.peak_across,
    );
}

#[derive(Debug, Default)]
struct Totals {
    threads: u64,
    processes: u64,
    sync_calls: u64,
    async_calls: u64,
    completions: u64,
}

impl Totals {
    fn add(&mut self, plan: &Plan, progress: &Progress) {
        self.threads += plan.connections * plan.threads;
        self.sync_calls += progress.sync_calls.load(Ordering::SeqCst);
        self.async_calls += progress.async_calls.load(Ordering::SeqCst);
        self.completions += progress.completions.load(Ordering::SeqCst);
    }
}

/// Calls `plan` makes in all, and with `children` child processes running `CHILD_PLAN`.
fn planned_calls(plan: &Plan, children: u64) -> u64 {
    plan.connections * plan.threads * plan.calls
        + children * CHILD_PLAN.connections * CHILD_PLAN.threads * CHILD_PLAN.calls
}

/// The checks every run ends with: the client side's counts against the
/// plan's and the dext's.
fn check(mode: &str, totals: &Totals, dext: &DextSummary, connections: u64, planned: u64) {
    assert_eq!(totals.sync_calls + totals.async_calls, planned, "{mode}: calls made");
    assert_eq!(dext.user_clients as u64, connections, "{mode}: user clients opened");
    assert_eq!(dext.duplicates, 0, "{mode}: the dext completed a token twice");
    assert_eq!(dext.peak_per_client, Some(1), "{mode}: calls overlapped inside one user client");
    assert_eq!(
        dext.calls,
        totals.sync_calls + totals.async_calls,
        "{mode}: calls the dext handled vs calls the clients made"
    );
    assert_eq!(dext.completed, totals.async_calls, "{mode}: completions sent vs async calls");
    assert_eq!(
        totals.completions, totals.async_calls,
        "{mode}: completions received vs async calls"
    );
}

fn connect(transport: Arc<dyn Transport>) -> App {
    Concurrent::connect(transport).unwrap_or_else(|e| panic!("connect: {e}"))
}

// ----- in process ----------------------------------------------------------------

#[test]
fn many_threads_and_connections_in_process() {
    const MODE: &str = "in process";
    let plan = Plan { connections: 8, threads: 3, calls: 400, window: 8, origin: 0 };
    let simulator = simulator();
    let progress = Arc::new(Progress::default());
    let start = Instant::now();
    {
        let simulator = simulator.clone();
        let progress = Arc::clone(&progress);
        bounded(MODE, RUN_DEADLINE, &Arc::clone(&progress), move || {
            let open = || connect(Arc::new(simulator.open().expect("open")) as Arc<dyn Transport>);
            run_clients(plan, &open, &progress);
        });
    }
    let elapsed = start.elapsed();
    let mut totals = Totals::default();
    totals.add(&plan, &progress);
    let dext = simulator.driver().0.summary();
    report(MODE, &totals, &dext, elapsed);
    check(MODE, &totals, &dext, plan.connections, planned_calls(&plan, 0));
}

// ----- a dext server on a socket, clients in this process and in children --------

const CHILD_ENV: &str = "DEXTLINK_TEST_CONCURRENT_CHILD";
const ORIGIN_ENV: &str = "DEXTLINK_TEST_CONCURRENT_ORIGIN";

/// What each child process runs.
const CHILD_PLAN: Plan = Plan { connections: 2, threads: 2, calls: 300, window: 8, origin: 0 };
const CHILDREN: u64 = 3;

/// A socket path in a fresh directory, removed with the `Scratch` (passed or failed).
fn socket_path() -> (PathBuf, Scratch) {
    let dir = Scratch::new("concurrent");
    (dir.join("dext.sock"), dir)
}

fn open_socket(path: &Path) -> App {
    let transport = SocketTransport::connect(path, &OpenOptions::default())
        .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
    connect(Arc::new(transport))
}

const CLIENT_HELPER: &str = "concurrent_child_client_when_asked";

/// Child-process helper of the two socket tests: runs `CHILD_PLAN` against
/// the server at `$DEXTLINK_TEST_CONCURRENT_CHILD` and prints its counts.
#[test]
#[ignore = "a child-process helper of the socket tests in this file"]
fn concurrent_child_client_when_asked() {
    child::enter(CLIENT_HELPER);
    let path = std::env::var_os(CHILD_ENV).expect("DEXTLINK_TEST_CONCURRENT_CHILD: the socket");
    let origin: u64 = std::env::var(ORIGIN_ENV).expect("origin").parse().expect("origin number");
    let plan = Plan { origin, ..CHILD_PLAN };
    let path = PathBuf::from(path);
    let progress = Arc::new(Progress::default());
    {
        let progress = Arc::clone(&progress);
        bounded("child client", RUN_DEADLINE, &Arc::clone(&progress), move || {
            run_clients(plan, &|| open_socket(&path), &progress);
        });
    }
    println!(
        "concurrent-child origin={origin} sync={} async={} completions={}",
        progress.sync_calls.load(Ordering::SeqCst),
        progress.async_calls.load(Ordering::SeqCst),
        progress.completions.load(Ordering::SeqCst)
    );
}

/// A child process's counts, from its line of output.
fn parse_child(stdout: &str) -> Option<(u64, u64, u64)> {
    let line = stdout.lines().find(|l| l.starts_with("concurrent-child "))?;
    let field = |name: &str| -> Option<u64> {
        line.split_whitespace().find_map(|f| f.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    Some((field("sync")?, field("async")?, field("completions")?))
}

/// Child client processes running `CHILD_PLAN` against the server at `path`.
struct Children(
    Vec<(u64, std::process::Child, thread::JoinHandle<String>, thread::JoinHandle<String>)>,
);

impl Children {
    fn spawn(path: &Path, count: u64) -> Children {
        let children = (1..=count)
            .map(|origin| {
                let mut child = child::command(CLIENT_HELPER)
                    .env(CHILD_ENV, path)
                    .env(ORIGIN_ENV, origin.to_string())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn a child client");
                // Read its output as it comes, so that a full pipe never stalls it.
                let read = |mut pipe: Box<dyn Read + Send>| {
                    thread::spawn(move || {
                        let mut text = String::new();
                        let _ = pipe.read_to_string(&mut text);
                        text
                    })
                };
                let stdout = read(Box::new(child.stdout.take().unwrap()));
                let stderr = read(Box::new(child.stderr.take().unwrap()));
                (origin, child, stdout, stderr)
            })
            .collect();
        Children(children)
    }

    /// Waits for every child (killing one that outlives `deadline`) and adds
    /// its counts to `totals`.
    fn finish(self, mode: &str, deadline: Instant, totals: &mut Totals) {
        for (origin, mut child, stdout, stderr) in self.0 {
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{mode}: child client {origin} did not finish in time (a deadlock?)");
                }
                thread::sleep(Duration::from_millis(5));
            };
            let stdout = stdout.join().unwrap();
            let stderr = stderr.join().unwrap();
            let counts = parse_child(&stdout).filter(|_| status.success());
            let Some((sync_calls, async_calls, completions)) = counts else {
                panic!("{mode}: child client {origin} failed ({status}):\n{stdout}\n{stderr}");
            };
            totals.threads += CHILD_PLAN.connections * CHILD_PLAN.threads;
            totals.processes += 1;
            totals.sync_calls += sync_calls;
            totals.async_calls += async_calls;
            totals.completions += completions;
        }
    }
}

/// Client threads of this process and `CHILDREN` child processes against the
/// server at `path`, all at once.
fn run_socket_clients(mode: &str, path: &Path, plan: Plan) -> (Totals, Duration) {
    let start = Instant::now();
    let children = Children::spawn(path, CHILDREN);
    let progress = Arc::new(Progress::default());
    {
        let progress = Arc::clone(&progress);
        let path = path.to_path_buf();
        bounded(mode, RUN_DEADLINE, &Arc::clone(&progress), move || {
            run_clients(plan, &|| open_socket(&path), &progress);
        });
    }
    let mut totals = Totals::default();
    totals.add(&plan, &progress);
    children.finish(mode, start + RUN_DEADLINE, &mut totals);
    (totals, start.elapsed())
}

/// The dext served with `Simulator::serve` from a thread of this process;
/// clients in this process and in child processes.
#[test]
fn many_clients_and_processes_over_a_socket() {
    const MODE: &str = "socket";
    let plan = Plan { connections: 4, threads: 3, calls: 300, window: 8, origin: 0 };
    let simulator = simulator();
    let (path, _dir) = socket_path();
    {
        let server = simulator.clone();
        // Serves until the test process ends; unlisted in the registry of
        // running simulators (`serve_path` would list it, and the entry
        // would outlive this process), since clients connect by path here.
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        thread::spawn(move || server.serve(listener));
    }
    let listening = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&path).is_err() {
        assert!(Instant::now() < listening, "the server did not listen on {}", path.display());
        thread::sleep(Duration::from_millis(5));
    }

    let (totals, elapsed) = run_socket_clients(MODE, &path, plan);
    let dext = simulator.driver().0.summary();
    report(MODE, &totals, &dext, elapsed);
    let connections = plan.connections + CHILDREN * CHILD_PLAN.connections;
    check(MODE, &totals, &dext, connections, planned_calls(&plan, CHILDREN));
}

const SERVER_HELPER: &str = "concurrent_dext_server_when_asked";

/// Child-process helper of `many_clients_against_a_dext_server_process`:
/// serves the dext where `ServerProcess` says.
#[test]
#[ignore = "a child-process helper of many_clients_against_a_dext_server_process"]
fn concurrent_dext_server_when_asked() {
    child::enter(SERVER_HELPER);
    let path = dextlink::sim::socket_path_from_env().expect("socket path");
    simulator().serve_path(&path).unwrap();
}

/// The dext in a server process of its own (as `dextlink sim` runs it);
/// clients in this process and in child processes. The dext's counters are
/// out of reach here: serialisation is checked from every reply's `inside`,
/// and completions on the client side.
#[test]
fn many_clients_against_a_dext_server_process() {
    const MODE: &str = "server process";
    let plan = Plan { connections: 4, threads: 3, calls: 300, window: 8, origin: 0 };
    let server =
        ServerProcess::spawn(child::command(SERVER_HELPER)).expect("start the dext server process");

    let (totals, elapsed) = run_socket_clients(MODE, server.socket_path(), plan);
    let calls = totals.sync_calls + totals.async_calls;
    println!(
        "concurrent-clients [{MODE}]: {} user clients ({} threads, {} processes, dext in process {}); \
         {calls} calls ({} sync, {} async); {} completions received; {:.3} s, {:.0} calls/s",
        plan.connections + CHILDREN * CHILD_PLAN.connections,
        totals.threads,
        totals.processes,
        server.id(),
        totals.sync_calls,
        totals.async_calls,
        totals.completions,
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
    );
    assert_eq!(calls, planned_calls(&plan, CHILDREN), "{MODE}: calls made");
    assert_eq!(
        totals.completions, totals.async_calls,
        "{MODE}: completions received vs async calls"
    );
}
