//! The simulator held to DriverKit's rules (docs/driverkit.md §2–§5) in both of
//! its modes: in process (the user client on a thread of its own) and out of
//! process (a dext server on a Unix socket, in this process or a child one).
//! The table of rules and tests is in the docs of `dextlink::sim`.
//!
//! Three `#[test]`s here are helpers the others run as child processes (a
//! dext server to kill, a client that dies, a write that must fault). They
//! are `#[ignore]`d, and run on their own they fail: see `dextlink_tests::child`.

use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use dextlink::server::{Arguments, StructureInput};
use dextlink::sim::{
    ClientMemory, OpenOptions, ServerProcess, SharedMemory, Simulator, SocketTransport, UserClient,
};
use dextlink::{Error, IoReturn, Transport};
use dextlink_tests::{Scratch, child};

dextlink::interface!("tests/sim_rules.dextlink");

// The rule tests' bodies, shared with the C++ rules dext's tests in dextlink-sim.
#[path = "shared/sim_rules_checks.rs"]
mod checks;

use rules::{Pair, Rules};

// ----- the dext ----------------------------------------------------------------

/// The dext: state all its user clients share.
#[derive(Debug)]
struct RulesDriver {
    /// Calls inside `occupy` right now, across all user clients.
    inside: AtomicU32,
    /// The most calls that have been inside `occupy` at once.
    peak: AtomicU32,
    /// Held `later` completions, of every client.
    held: Mutex<Vec<(u64, rules::LaterCompleter)>>,
    status: Arc<SharedMemory>,
    ring: Arc<SharedMemory>,
}

impl RulesDriver {
    fn new() -> RulesDriver {
        RulesDriver {
            inside: AtomicU32::new(0),
            peak: AtomicU32::new(0),
            held: Mutex::new(Vec::new()),
            status: Arc::new(SharedMemory::new(4096).expect("status page")),
            ring: Arc::new(SharedMemory::new(65536).expect("ring")),
        }
    }
}

/// One user client: the generated `dispatch` over a handler.
#[derive(Debug)]
struct RulesClient {
    driver: Arc<RulesDriver>,
    /// How the last structure input arrived (§3.2-5).
    last_input_was_descriptor: bool,
}

impl UserClient for RulesClient {
    fn external_method(&mut self, selector: u64, arguments: &mut Arguments<'_>) -> IoReturn {
        self.last_input_was_descriptor =
            matches!(arguments.structure_input, StructureInput::Descriptor(_));
        rules::dispatch(self, selector, arguments)
    }

    fn copy_client_memory(&mut self, memory_type: u64) -> Result<ClientMemory, IoReturn> {
        // The same descriptor for a type, every time (§5.1).
        match memory_type {
            1 => Ok(ClientMemory { memory: Arc::clone(&self.driver.status), read_only: true }),
            2 => Ok(ClientMemory { memory: Arc::clone(&self.driver.ring), read_only: false }),
            _ => Err(IoReturn::BAD_ARGUMENT),
        }
    }
}

impl rules::Handler for RulesClient {
    fn add(&mut self, a: u64, b: u64) -> Result<u64, IoReturn> {
        a.checked_add(b).ok_or(IoReturn::OVERRUN)
    }

    fn swap(&mut self, pair: &Pair) -> Result<Pair, IoReturn> {
        Ok(Pair { a: pair.b, b: pair.a })
    }

    fn sum(&mut self, data: &[u8]) -> Result<rules::SumOutput, IoReturn> {
        let sum = data.iter().map(|&b| u64::from(b)).sum();
        Ok(rules::SumOutput { sum, descriptor: self.last_input_was_descriptor })
    }

    fn later(&mut self, tag: u64, completion: rules::LaterCompleter) -> Result<(), IoReturn> {
        self.driver.held.lock().unwrap().push((tag, completion));
        Ok(())
    }

    fn release(&mut self) -> Result<u32, IoReturn> {
        let held = std::mem::take(&mut *self.driver.held.lock().unwrap());
        let count = held.len() as u32;
        for (tag, completion) in held.into_iter().rev() {
            completion.complete(tag);
        }
        Ok(count)
    }

    fn occupy(&mut self, millis: u32, quorum: u32) -> Result<u32, IoReturn> {
        let driver = &self.driver;
        let now = driver.inside.fetch_add(1, Ordering::SeqCst) + 1;
        driver.peak.fetch_max(now, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_millis(u64::from(millis));
        while driver.peak.load(Ordering::SeqCst) < quorum && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        driver.inside.fetch_sub(1, Ordering::SeqCst);
        Ok(driver.peak.load(Ordering::SeqCst))
    }

    fn overflow(&mut self, completion: rules::OverflowCompleter) -> Result<(), IoReturn> {
        // Seventeen values: the iig stub drops the whole completion (§4.1-3).
        completion.raw().complete(IoReturn::SUCCESS, &[7; 17]);
        Ok(())
    }

    fn peek(&mut self, offset: u32) -> Result<u8, IoReturn> {
        let byte = self.driver.ring.read(offset as usize, 1).ok_or(IoReturn::BAD_ARGUMENT)?;
        Ok(byte[0])
    }

    fn set_status(&mut self, value: u8) -> Result<(), IoReturn> {
        self.driver.status.write(0, &[value]);
        Ok(())
    }
}

/// The dext's `IOService`: a user client per open, all sharing one driver.
#[derive(Debug)]
struct RulesDext(Arc<RulesDriver>);

impl dextlink::sim::Driver for RulesDext {
    type UserClient = RulesClient;

    fn new_user_client(&self, _kind: u32) -> Result<RulesClient, IoReturn> {
        Ok(RulesClient { driver: Arc::clone(&self.0), last_input_was_descriptor: false })
    }
}

fn simulator() -> Simulator<RulesDext> {
    Simulator::new(rules::SERVICE, RulesDext(Arc::new(RulesDriver::new())))
}

// ----- the two modes -----------------------------------------------------------

type Client = Rules<Arc<dyn Transport>>;

#[derive(Debug, Clone, Copy)]
enum Mode {
    InProcess,
    /// A dext server on a Unix socket, served from a thread of this process.
    Socket,
}

/// A running dext in one mode; `open` connects a new client to it.
struct Dext {
    simulator: Simulator<RulesDext>,
    /// The socket, in a directory removed with the `Dext` (passed or failed).
    socket: Option<(PathBuf, Scratch)>,
}

/// A socket path `{name}.sock` in a fresh directory (short: socket paths
/// are limited to about 100 bytes).
fn scratch_socket(name: &str) -> (PathBuf, Scratch) {
    let dir = Scratch::new("rules");
    (dir.join(format!("{name}.sock")), dir)
}

fn start(mode: Mode, simulator: Simulator<RulesDext>, name: &str) -> Dext {
    let socket = match mode {
        Mode::InProcess => None,
        Mode::Socket => {
            let (path, dir) = scratch_socket(name);
            let listener = UnixListener::bind(&path).unwrap();
            let server = simulator.clone();
            // Serves until the test process ends (its socket file goes with
            // the directory).
            thread::spawn(move || server.serve(listener));
            Some((path, dir))
        }
    };
    Dext { simulator, socket }
}

impl Dext {
    fn transport(&self, options: &OpenOptions) -> Result<Arc<dyn Transport>, Error> {
        Ok(match &self.socket {
            None => Arc::new(self.simulator.open_with(options)?),
            Some((path, _)) => Arc::new(SocketTransport::connect(path, options)?),
        })
    }

    fn open(&self) -> Client {
        Rules::connect(self.transport(&OpenOptions::default()).unwrap()).unwrap()
    }
}

impl checks::Dext for Dext {
    fn open(&self) -> Client {
        Dext::open(self)
    }
}

/// Runs `test` against a fresh dext in each mode.
fn each_mode(name: &str, test: impl Fn(Mode, Dext)) {
    for mode in [Mode::InProcess, Mode::Socket] {
        test(mode, start(mode, simulator(), &format!("{name}-{mode:?}")));
    }
}

// ----- calls -------------------------------------------------------------------

#[test]
fn typed_calls_round_trip_in_both_modes() {
    each_mode("roundtrip", |mode, dext| {
        checks::typed_calls_round_trip(&format!("{mode:?}"), &dext)
    });
}

/// §3.2-5: up to 4096 bytes arrive inline, more through a descriptor.
#[test]
fn large_input_arrives_as_a_descriptor() {
    each_mode("descriptor", |mode, dext| {
        checks::large_input_arrives_as_a_descriptor(&format!("{mode:?}"), &dext)
    });
}

/// §2.2-2, §2.2-8: a call of the wrong shape is refused before the handler
/// with kIOReturnBadArgument (an assumption: the kernel twin's code).
#[test]
fn count_and_size_checks_refuse_wrong_shapes_in_both_modes() {
    each_mode("checks", |mode, dext| {
        checks::count_and_size_checks_refuse_wrong_shapes(&format!("{mode:?}"), &dext)
    });
}

// ----- async completions -------------------------------------------------------

/// §4: completions may arrive in any order; each reaches its own call.
#[test]
fn completions_arrive_in_any_order() {
    each_mode("order", |mode, dext| {
        checks::completions_arrive_in_any_order(&format!("{mode:?}"), &dext)
    });
}

/// §4.1-3: more than 16 values and the completion never arrives; the client
/// times out with an error that names the method.
#[test]
fn seventeen_completion_values_never_arrive() {
    each_mode("overflow", |mode, dext| {
        checks::seventeen_completion_values_never_arrive(&format!("{mode:?}"), &dext)
    });
}

/// §4.3-5: a client that went away ends its outstanding calls with
/// `Disconnected`; completions sent to it later are no-ops, and the dext and
/// its other clients carry on.
#[test]
fn completion_after_close_is_a_no_op() {
    each_mode("closed", |mode, dext| {
        checks::completion_after_close_is_a_no_op(&format!("{mode:?}"), &dext)
    });
}

// ----- concurrency (§2.2-11) ---------------------------------------------------

/// Calls into one user client run one at a time, whatever threads make them.
#[test]
fn calls_into_one_user_client_are_serialised() {
    each_mode("serialised", |mode, dext| {
        checks::calls_into_one_user_client_are_serialised(&format!("{mode:?}"), &dext)
    });
}

/// Several clients of one dext run side by side, each on its own queue.
#[test]
fn clients_of_one_dext_run_side_by_side() {
    each_mode("side-by-side", |mode, dext| {
        checks::clients_of_one_dext_run_side_by_side(&format!("{mode:?}"), &dext)
    });
}

// ----- memory (§5) -------------------------------------------------------------

/// One set of pages: what either side writes, the other reads; a type
/// mapped twice is the same mapping; an unknown type fails cleanly.
#[test]
fn memory_is_shared_both_ways() {
    each_mode("memory", |mode, dext| {
        checks::memory_is_shared_both_ways(&format!("{mode:?}"), &dext)
    });
}

/// §5.1: a read-only type is mapped read-only: writing it faults. The write
/// runs in a child process, which must die of SIGSEGV (or SIGBUS).
#[test]
fn writing_read_only_memory_faults() {
    for mode in ["InProcess", "Socket"] {
        // The child dies without cleaning up: its temporary files go in a
        // directory of ours.
        let tmp = Scratch::new("rules-tmp");
        let output = child::command(FAULT_HELPER)
            .env(FAULT_CHILD, mode)
            .env("TMPDIR", tmp.path())
            .output()
            .unwrap();
        let signal = output.status.signal();
        assert!(
            matches!(signal, Some(11) | Some(7)),
            "{mode}: the child should have faulted, got {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("about to write"), "{mode}");
    }
}

const FAULT_HELPER: &str = "write_read_only_memory_when_asked";
/// The mode the fault child runs the dext in: `InProcess` or `Socket`.
const FAULT_CHILD: &str = "DEXTLINK_TEST_FAULT_CHILD";

/// Child-process helper of `writing_read_only_memory_faults`.
#[test]
#[ignore = "a child-process helper of writing_read_only_memory_faults"]
fn write_read_only_memory_when_asked() {
    child::enter(FAULT_HELPER);
    let mode = match std::env::var(FAULT_CHILD).as_deref() {
        Ok("Socket") => Mode::Socket,
        Ok("InProcess") => Mode::InProcess,
        other => panic!("{FAULT_CHILD} must be InProcess or Socket, not {other:?}"),
    };
    let dext = start(mode, simulator(), "fault");
    let client = dext.open();
    let status = client.status().unwrap();
    let address = status.as_slice().as_ptr().cast_mut();
    println!("about to write");
    // SAFETY: none — this write is meant to fault: the page is mapped
    // PROT_READ, and the parent test checks that the process dies of it.
    unsafe { address.write_volatile(1) };
    println!("the write did not fault");
}

// ----- processes ----------------------------------------------------------------

const SERVER_HELPER: &str = "serve_rules_dext_when_asked";

/// Child-process helper: serves the rules dext where `ServerProcess` says.
#[test]
#[ignore = "a child-process helper of the tests that kill or outlive a dext server"]
fn serve_rules_dext_when_asked() {
    child::enter(SERVER_HELPER);
    let path = dextlink::sim::socket_path_from_env().expect("socket path");
    simulator().serve_path(&path).unwrap();
}

fn server_process() -> ServerProcess {
    ServerProcess::spawn(child::command(SERVER_HELPER)).unwrap()
}

fn connect_to(server: &ServerProcess) -> Client {
    let transport = SocketTransport::connect(server.socket_path(), &OpenOptions::default());
    Rules::connect(Arc::new(transport.unwrap()) as Arc<dyn Transport>).unwrap()
}

/// Killing the server mid-call gives a clean `Disconnected`, never a hang:
/// for the call in flight, for outstanding completions, for later calls.
#[test]
fn killing_the_server_disconnects_its_clients() {
    let mut server = server_process();
    let client = Arc::new(connect_to(&server));
    assert_eq!(client.add(2, 3).unwrap(), 5);
    let mut pending = client.later(9).unwrap();
    let in_flight = {
        let client = Arc::clone(&client);
        // Waits inside the dext for a quorum that never comes.
        thread::spawn(move || client.occupy(5000, 2))
    };
    thread::sleep(Duration::from_millis(100));
    server.kill().unwrap();
    assert_eq!(in_flight.join().unwrap(), Err(Error::Disconnected));
    assert_eq!(pending.wait_timeout(Duration::from_secs(5)), Err(Error::Disconnected));
    assert_eq!(client.add(1, 1), Err(Error::Disconnected));
}

const CLIENT_HELPER: &str = "occupy_the_dext_when_asked";
/// The socket of the server the client child calls.
const CLIENT_CHILD: &str = "DEXTLINK_TEST_CLIENT_CHILD";

/// Child-process helper: a client that calls into the dext and never returns.
#[test]
#[ignore = "a child-process helper of a_client_that_dies_does_not_take_the_server_down"]
fn occupy_the_dext_when_asked() {
    child::enter(CLIENT_HELPER);
    let path = std::env::var_os(CLIENT_CHILD).expect("DEXTLINK_TEST_CLIENT_CHILD: the socket");
    let transport = SocketTransport::connect(path.as_ref(), &OpenOptions::default()).unwrap();
    let client: Client = Rules::connect(Arc::new(transport) as Arc<dyn Transport>).unwrap();
    let _pending = client.later(1).unwrap();
    println!("connected");
    let _ = client.occupy(5000, 8);
}

/// A client that dies (SIGKILL, mid-call, with a completion outstanding)
/// does not take the server down.
#[test]
fn a_client_that_dies_does_not_take_the_server_down() {
    let server = server_process();
    let mut child = child::command(CLIENT_HELPER)
        .env(CLIENT_CHILD, server.socket_path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The test harness prints its own lines first.
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let connected = std::io::BufRead::lines(stdout).map_while(Result::ok).any(|l| l == "connected");
    assert!(connected, "the child client never connected");
    child.kill().unwrap();
    child.wait().unwrap();
    let client = connect_to(&server);
    assert_eq!(client.add(20, 22).unwrap(), 42);
    // The dead client's held completion goes nowhere; ours arrives.
    let mine = client.later(3).unwrap();
    assert_eq!(client.release().unwrap(), 2);
    assert_eq!(mine.wait().unwrap(), 3);
}

// ----- open ---------------------------------------------------------------------

/// The userclient-access entitlement gate: an app without it is refused
/// with kIOReturnNotPermitted and a message that says what is missing.
#[test]
fn open_without_entitlement_is_refused() {
    for mode in [Mode::InProcess, Mode::Socket] {
        let dext = start(mode, simulator().require_entitlement(true), &format!("gate-{mode:?}"));
        let unentitled = OpenOptions { entitled: false, ..OpenOptions::default() };
        let err = dext.transport(&unentitled).map(drop).unwrap_err();
        assert_eq!(err.io_return(), Some(IoReturn::NOT_PERMITTED), "{mode:?}: {err}");
        assert!(err.to_string().contains("userclient-access"), "{mode:?}: {err}");
        // An entitled app gets in.
        assert_eq!(dext.open().add(1, 2).unwrap(), 3, "{mode:?}");
    }
}

/// Nobody listening: a clear error naming where it looked.
#[test]
fn connecting_to_no_server_names_the_socket() {
    let (path, _dir) = scratch_socket("nobody");
    let err = SocketTransport::connect(&path, &OpenOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("nobody.sock"), "{err}");
}
