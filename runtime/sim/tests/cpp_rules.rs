//! The simulator's rule tests (the rule→test table of `dextlink::sim`) run
//! against the rules dext compiled from C++ (`tests/rules_dext/`), with the
//! same test bodies and expected results as against its Rust model in
//! `runtime/tests/sim_rules.rs`: in process ([`CppDext`] behind the
//! in-process transport) and out of process (`dextlink-sim serve`, found by
//! name through a private registry).
//!
//! The dext's header comes from `runtime/tests/sim_rules.dextlink` through
//! dextlink-schema's C++ emitter (`dextlink gen --cpp`), its class headers
//! from its `.iig` files through `dextlink iig`, at test time.
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use dextlink::sim::registry::Registry;
use dextlink::sim::{self, OpenOptions, Simulator};
use dextlink::{Error, Transport};
use dextlink_sim::{CppDext, CppService};

dextlink::interface!("../tests/sim_rules.dextlink");

#[path = "../../tests/shared/sim_rules_checks.rs"]
mod checks;

use checks::Client;
use rules::Rules;

const SERVER: &str = env!("CARGO_BIN_EXE_dextlink-sim");
const SERVICE: &str = "RulesDriver";

const PLIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
    <key>IOKitPersonalities</key>
    <dict>
        <key>RulesDriver</key>
        <dict>
            <key>CFBundleIdentifier</key><string>$(PRODUCT_BUNDLE_IDENTIFIER)</string>
            <key>IOClass</key><string>IOUserService</string>
            <key>IOProviderClass</key><string>IOUserResources</string>
            <key>IOUserClass</key><string>RulesDriver</string>
            <key>UserClientProperties</key>
            <dict>
                <key>IOClass</key><string>IOUserUserClient</string>
                <key>IOUserClass</key><string>RulesUserClient</string>
            </dict>
        </dict>
    </dict>
</dict>
</plist>
"#;

/// The rules dext and its plist, built once for this test binary with g++
/// (None: no g++, outside CI).
fn built() -> Option<&'static (PathBuf, PathBuf)> {
    static BUILT: OnceLock<Option<(PathBuf, PathBuf)>> = OnceLock::new();
    BUILT.get_or_init(|| common::compiler_available("g++").then(build)).as_ref()
}

fn build() -> (PathBuf, PathBuf) {
    let out =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cpp-rules-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("the build directory");
    let crate_dir = common::crate_dir();
    let schema_path = crate_dir.join("../tests/sim_rules.dextlink");
    let schema = dextlink_schema::load(&schema_path).unwrap_or_else(|e| panic!("{e}"));
    let options =
        dextlink_schema::emit::cpp::Options { schema_name: "sim_rules.dextlink".to_string() };
    std::fs::write(
        out.join("Rules.h"),
        dextlink_schema::emit::cpp::emit(&schema.interface, &options),
    )
    .expect("write Rules.h");
    let sources = crate_dir.join("tests/rules_dext");
    let mut generated = Vec::new();
    for class in ["RulesDriver.iig", "RulesUserClient.iig"] {
        let path = sources.join(class);
        let text = std::fs::read_to_string(&path).expect("read the .iig");
        let output = dextlink_schema::iig::generate(&path, &text)
            .unwrap_or_else(|e| panic!("dextlink iig {}: {e:?}", path.display()));
        std::fs::write(out.join(&output.header_name), output.header).unwrap();
        std::fs::write(out.join(&output.source_name), output.source).unwrap();
        generated.push(out.join(output.source_name));
    }
    let library = out.join("libRulesDext.so");
    let result = Command::new("g++")
        .args(common::STRICT)
        .args(["-shared", "-fPIC", "-I"])
        .arg(crate_dir.join("driverkit/include"))
        .arg("-I")
        .arg(&out)
        .arg(sources.join("RulesDext.cpp"))
        .args(&generated)
        .arg("-o")
        .arg(&library)
        .output()
        .expect("run g++");
    assert!(
        result.status.success(),
        "g++ could not build the rules dext:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let plist = out.join("Info.plist");
    std::fs::write(&plist, PLIST).expect("write Info.plist");
    (library, plist)
}

/// In-process runs one dext at a time: the process has one class registry
/// and one leak report.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn connect(transport: Arc<dyn Transport>) -> Client {
    Rules::connect(transport).expect("the handshake with the C++ rules dext")
}

/// The C++ dext in this process, a fresh service per test.
struct InProcess {
    simulator: Simulator<CppService>,
    _dext: CppDext,
}

impl checks::Dext for InProcess {
    fn open(&self) -> Client {
        connect(Arc::new(self.simulator.open().expect("open RulesDriver")))
    }
}

/// `dextlink-sim serve` of the C++ dext, a fresh process per test, on a
/// private registry; killed on drop.
struct Served {
    child: Child,
    registry: tempfile::TempDir,
}

impl Served {
    fn start(library: &Path, plist: &Path) -> Served {
        let registry = tempfile::Builder::new().prefix("dextlink-cpp-rules-").tempdir().unwrap();
        let child = Command::new(SERVER)
            .args(["serve", "--exit-with-parent", "--dext"])
            .arg(library)
            .arg("--plist")
            .arg(plist)
            .env(sim::registry::REGISTRY_ENV, registry.path())
            .env_remove(sim::SOCKET_ENV)
            .stdout(Stdio::null())
            .spawn()
            .expect("start dextlink-sim serve");
        let served = Served { child, registry };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !served.registry().find(SERVICE).is_ok_and(|found| !found.is_empty()) {
            assert!(Instant::now() < deadline, "dextlink-sim serve did not list {SERVICE}");
            std::thread::sleep(Duration::from_millis(10));
        }
        served
    }

    fn registry(&self) -> Registry {
        Registry::at(self.registry.path())
    }

    fn transport(&self) -> Result<Arc<dyn Transport>, Error> {
        Ok(Arc::new(self.registry().open(SERVICE, &OpenOptions::default())?))
    }
}

impl checks::Dext for Served {
    fn open(&self) -> Client {
        connect(self.transport().expect("open RulesDriver by name"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `check` against a fresh C++ dext in process, then served.
fn each_mode(check: fn(&str, &dyn checks::Dext)) {
    let Some((library, plist)) = built() else { return };
    {
        let _serial = serial();
        let dext = CppDext::load(library, plist).unwrap_or_else(|e| panic!("{e}"));
        let service = dext.service(SERVICE).unwrap_or_else(|e| panic!("{e}"));
        let in_process = InProcess { simulator: Simulator::new(SERVICE, service), _dext: dext };
        check("C++ in process", &in_process);
    }
    check("C++ served", &Served::start(library, plist));
}

#[test]
fn typed_calls_round_trip() {
    each_mode(checks::typed_calls_round_trip);
}

#[test]
fn large_input_arrives_as_a_descriptor() {
    each_mode(checks::large_input_arrives_as_a_descriptor);
}

#[test]
fn count_and_size_checks_refuse_wrong_shapes() {
    each_mode(checks::count_and_size_checks_refuse_wrong_shapes);
}

#[test]
fn completions_arrive_in_any_order() {
    each_mode(checks::completions_arrive_in_any_order);
}

#[test]
fn seventeen_completion_values_never_arrive() {
    each_mode(checks::seventeen_completion_values_never_arrive);
}

#[test]
fn completion_after_close_is_a_no_op() {
    each_mode(checks::completion_after_close_is_a_no_op);
}

#[test]
fn calls_into_one_user_client_are_serialised() {
    each_mode(checks::calls_into_one_user_client_are_serialised);
}

#[test]
fn clients_of_one_dext_run_side_by_side() {
    each_mode(checks::clients_of_one_dext_run_side_by_side);
}

#[test]
fn memory_is_shared_both_ways() {
    each_mode(checks::memory_is_shared_both_ways);
}

/// A server killed mid-call disconnects its clients, never a hang.
#[test]
fn killing_the_server_disconnects_its_clients() {
    let Some((library, plist)) = built() else { return };
    let mut served = Served::start(library, plist);
    let client = Arc::new(checks::Dext::open(&served));
    assert_eq!(client.add(2, 3).unwrap(), 5);
    let mut pending = client.later(9).unwrap();
    let in_flight = {
        let client = Arc::clone(&client);
        std::thread::spawn(move || client.occupy(5000, 2))
    };
    std::thread::sleep(Duration::from_millis(100));
    served.child.kill().unwrap();
    served.child.wait().unwrap();
    assert_eq!(in_flight.join().unwrap(), Err(Error::Disconnected));
    assert_eq!(pending.wait_timeout(Duration::from_secs(5)), Err(Error::Disconnected));
    assert_eq!(client.add(1, 1), Err(Error::Disconnected));
}

const FAULT_CHILD: &str = "DEXTLINK_TEST_CPP_FAULT_CHILD";

/// §5.1, §9-6: the C++ dext's read-only type is mapped read-only in the
/// client exactly because it set kIOUserClientMemoryReadOnly: a write there
/// faults. The write runs in a child process, which must die of SIGSEGV (or
/// SIGBUS), in both modes.
#[test]
fn writing_read_only_memory_faults() {
    use std::os::unix::process::ExitStatusExt;
    if built().is_none() {
        return;
    }
    for mode in ["in-process", "served"] {
        // The child dies of the fault, so it cannot remove what it made in
        // the temporary directory (its server's registry): give it one of
        // this process's, removed when the test ends.
        let tmp = tempfile::Builder::new().prefix("dextlink-cpp-rules-fault-").tempdir().unwrap();
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "write_read_only_memory_child", "--nocapture"])
            .env(FAULT_CHILD, mode)
            .env("TMPDIR", tmp.path())
            .output()
            .unwrap();
        assert!(
            matches!(output.status.signal(), Some(libc::SIGSEGV) | Some(libc::SIGBUS)),
            "{mode}: the child should have faulted, got {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("about to write"), "{mode}");
    }
}

/// Child-process helper of `writing_read_only_memory_faults`; fails when run
/// without it.
#[test]
#[ignore = "a child process of writing_read_only_memory_faults"]
fn write_read_only_memory_child() {
    let mode = std::env::var(FAULT_CHILD)
        .expect("a child-process helper: run writing_read_only_memory_faults instead");
    let (library, plist) = built().expect("the rules dext");
    let dext: Box<dyn checks::Dext> = if mode == "served" {
        Box::new(Served::start(library, plist))
    } else {
        let dext = CppDext::load(library, plist).unwrap_or_else(|e| panic!("{e}"));
        let service = dext.service(SERVICE).unwrap_or_else(|e| panic!("{e}"));
        Box::new(InProcess { simulator: Simulator::new(SERVICE, service), _dext: dext })
    };
    let client = dext.open();
    let status = client.status().unwrap();
    // The writable type is writable: this write must not fault.
    client.ring().unwrap().as_mut_slice()[0] = 1;
    let address = status.as_slice().as_ptr().cast_mut();
    println!("about to write");
    // SAFETY: none — this write is meant to fault: the page is mapped
    // PROT_READ, and the parent test checks that the process dies of it.
    unsafe { address.write_volatile(1) };
    println!("the write did not fault");
}

const CLIENT_CHILD: &str = "DEXTLINK_TEST_CPP_CLIENT_CHILD";

/// A client that dies (SIGKILL, mid-call, with a completion outstanding)
/// does not take the C++ dext's server down.
#[test]
fn a_client_that_dies_does_not_take_the_server_down() {
    let Some((library, plist)) = built() else { return };
    let served = Served::start(library, plist);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "occupy_the_dext_child", "--nocapture"])
        .env(CLIENT_CHILD, served.registry.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The test harness prints its own lines first.
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let connected = std::io::BufRead::lines(stdout).map_while(Result::ok).any(|l| l == "connected");
    assert!(connected, "the child client never connected");
    child.kill().unwrap();
    child.wait().unwrap();
    let client = checks::Dext::open(&served);
    assert_eq!(client.add(20, 22).unwrap(), 42);
    // The dead client's held completion goes nowhere; ours arrives.
    let mine = client.later(3).unwrap();
    assert_eq!(client.release().unwrap(), 2);
    assert_eq!(mine.wait().unwrap(), 3);
}

/// Child-process helper of `a_client_that_dies_does_not_take_the_server_down`:
/// a client that calls into the dext and never returns; fails when run
/// without it.
#[test]
#[ignore = "a child process of a_client_that_dies_does_not_take_the_server_down"]
fn occupy_the_dext_child() {
    let registry = std::env::var_os(CLIENT_CHILD)
        .expect("a child-process helper: run a_client_that_dies_does_not_take_the_server_down");
    let transport = Registry::at(PathBuf::from(registry))
        .open(SERVICE, &OpenOptions::default())
        .expect("open RulesDriver by name");
    let client = connect(Arc::new(transport));
    let _pending = client.later(1).unwrap();
    println!("connected");
    let _ = client.occupy(5000, 8);
}
