//! The test dext hosted as a DriverKit service from its Info.plist: in
//! process ([`CppDext`] behind the simulator's in-process transport) and out
//! of process (`dextlink-sim serve`, found by its IOUserClass name through
//! a private registry). The same checks run against both transports; the
//! server's error paths are checked through its exit status and message.
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dextlink::server::{Arguments, AsyncCompletion, StructureInput};
use dextlink::sim::registry::Registry;
use dextlink::sim::{self, Driver, OpenOptions, Simulator, UserClient as _};
use dextlink::{Call, CallError, Completed, Error, IoReturn, Pending, StructOutput, Transport};
use dextlink_sim::CppDext;

const SERVER: &str = env!("CARGO_BIN_EXE_dextlink-sim");

/// The test dext's personality, as a dext's Info.plist has it (with an
/// unexpanded build variable, which is kept as written); `extra` is put
/// into the personality as more keys.
fn plist_text(extra: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
    <key>CFBundleIdentifier</key><string>$(PRODUCT_BUNDLE_IDENTIFIER)</string>
    <key>IOKitPersonalities</key>
    <dict>
        <key>TestDriver</key>
        <dict>
            <key>CFBundleIdentifier</key><string>$(PRODUCT_BUNDLE_IDENTIFIER)</string>
            <key>IOClass</key><string>IOUserService</string>
            <key>IOProviderClass</key><string>IOUserResources</string>
            <key>IOResourceMatch</key><string>IOKit</string>
            <key>IOUserClass</key><string>TestDriver</string>
            <key>IOUserServerName</key><string>com.example.dextlink.TestDriver</string>
            <key>Tags</key><array><string>a</string><integer>1</integer></array>
            {extra}
            <key>UserClientProperties</key>
            <dict>
                <key>IOClass</key><string>IOUserUserClient</string>
                <key>IOUserClass</key><string>TestUserClient</string>
            </dict>
        </dict>
    </dict>
</dict>
</plist>
"#
    )
}

/// A scratch directory, removed when the test ends, even by a failure.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("dextlink-hosted-").tempdir().expect("a scratch directory")
}

fn write_plist(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the plist");
    path
}

/// The test dext built once with g++ for this test binary (None: no g++,
/// outside CI).
fn dext() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            common::compiler_available("g++").then(|| common::build_dext("g++", &[], "hosted-dext"))
        })
        .as_deref()
}

/// The plist every in-process test uses: one file for the binary, so that
/// the process's one class registry sees one dext.
fn plist() -> &'static Path {
    static PLIST: OnceLock<PathBuf> = OnceLock::new();
    PLIST.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("hosted-{}.plist", std::process::id()));
        std::fs::write(&path, plist_text("")).expect("write the plist");
        path
    })
}

fn call_scalars(
    transport: &dyn Transport,
    selector: u32,
    input: &[u64],
    outputs: usize,
) -> Result<Vec<u64>, CallError> {
    let mut scalar_output = vec![0; outputs];
    let reply = transport.call(Call {
        selector,
        scalar_input: input,
        struct_input: &[],
        scalar_output: &mut scalar_output,
        struct_output: StructOutput::None,
        completion: None,
    })?;
    scalar_output.truncate(reply.scalar_output_count);
    Ok(scalar_output)
}

fn struct_echo(transport: &dyn Transport, input: &[u8]) -> Result<Vec<u8>, CallError> {
    let mut output = Vec::new();
    transport.call(Call {
        selector: 9,
        scalar_input: &[],
        struct_input: input,
        scalar_output: &mut [],
        struct_output: StructOutput::Variable(&mut output),
        completion: None,
    })?;
    Ok(output)
}

fn decode(completed: Completed) -> Result<Vec<u64>, Error> {
    Ok(completed.values().to_vec())
}

/// What every transport to the hosted dext must give, as the Rust model
/// gives it: the call shapes, the dispatch checks, memory shared both ways
/// and read-only exactly where the dext said, async completions.
fn checks(transport: &dyn Transport) {
    // Scalars in and out.
    assert_eq!(call_scalars(transport, 0, &[41], 1).unwrap(), vec![42]);
    // The dispatch table's counts are enforced (docs/driverkit.md §2.2-2..5, 8).
    assert_eq!(
        call_scalars(transport, 0, &[41, 1], 1).unwrap_err(),
        CallError::Status(IoReturn::BAD_ARGUMENT)
    );
    assert_eq!(
        call_scalars(transport, 0, &[41], 2).unwrap_err(),
        CallError::Status(IoReturn::BAD_ARGUMENT)
    );
    // A selector past the table is refused (§2.2-10; the dext's own code).
    assert_eq!(
        call_scalars(transport, 99, &[], 0).unwrap_err(),
        CallError::Status(IoReturn::BAD_ARGUMENT)
    );
    // Structures: inline up to 4096 bytes, a descriptor above (§3.2-5), a
    // variable output returned whole (§3.3-3).
    let small: Vec<u8> = (0..100u8).collect();
    assert_eq!(struct_echo(transport, &small).unwrap(), small);
    let large: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(struct_echo(transport, &large).unwrap(), large);
    // Memory type 0 is the dext's own buffer: writes go both ways (§5.1-3).
    let region = transport.map_memory(0).expect("map memory type 0");
    assert!(!region.is_read_only());
    assert_eq!(region.len(), 8192);
    call_scalars(transport, 7, &[20, 0x77], 0).unwrap();
    // SAFETY: the region maps 8192 bytes and lives until the end of this
    // block; the dext wrote byte 20 before the call returned.
    assert_eq!(unsafe { region.address().as_ptr().add(20).read_volatile() }, 0x77);
    // SAFETY: as above; byte 30 is inside the read-write mapping.
    unsafe { region.address().as_ptr().add(30).write_volatile(0x3c) };
    assert_eq!(call_scalars(transport, 8, &[30], 1).unwrap(), vec![0x3c]);
    // Mapping the type again gives the same range (§5.1-3, §5.3).
    let again = transport.map_memory(0).expect("map memory type 0 again");
    assert_eq!(again.address(), region.address());
    drop((again, region));
    // Type 1 is read-only exactly because the dext set kIOUserClientMemoryReadOnly.
    let read_only = transport.map_memory(1).expect("map memory type 1");
    assert!(read_only.is_read_only());
    drop(read_only);
    assert!(transport.map_memory(7).is_err(), "an unknown memory type must fail");
    // An async call completes through the action the dext retained (§4.1-2).
    let (mut pending, slot) = Pending::new("ticks", decode);
    transport
        .call(Call {
            selector: 2,
            scalar_input: &[2],
            struct_input: &[],
            scalar_output: &mut [],
            struct_output: StructOutput::None,
            completion: Some(slot),
        })
        .expect("start ticks");
    assert_eq!(pending.wait_timeout(Duration::from_secs(10)).unwrap(), vec![1, 2]);
}

#[test]
fn the_hosted_dext_behaves_in_process() {
    let Some(library) = dext() else { return };
    let dext = CppDext::load(library, plist()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dext.registered(), vec!["TestDriver".to_string()]);
    let service = dext.service("TestDriver").unwrap_or_else(|e| panic!("{e}"));
    let simulator = Simulator::new("TestDriver", service);
    let client = simulator.open().expect("open TestDriver");
    checks(&client);
    // A second connection is a second user client, side by side.
    let other = simulator.open().expect("open TestDriver again");
    assert_eq!(call_scalars(&other, 0, &[1], 1).unwrap(), vec![2]);
}

#[test]
fn a_retained_action_completes_any_number_of_times() {
    let Some(library) = dext() else { return };
    let dext = CppDext::load(library, plist()).unwrap_or_else(|e| panic!("{e}"));
    let service = dext.service("TestDriver").unwrap_or_else(|e| panic!("{e}"));
    let mut client = service.new_user_client(0).expect("NewUserClient");
    let completions = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&completions);
    let mut scalar_output = [0u64; 16];
    let mut arguments = Arguments {
        completion: Some(AsyncCompletion::new(move |status, values| {
            seen.lock().unwrap().push((status, values.to_vec()))
        })),
        scalar_input: &[3],
        structure_input: StructureInput::None,
        scalar_output: &mut scalar_output,
        scalar_output_count: 0,
        structure_output: None,
        structure_output_descriptor: None,
        structure_output_maximum_size: 0,
    };
    assert_eq!(client.external_method(2, &mut arguments), IoReturn::SUCCESS);
    let deadline = Instant::now() + Duration::from_secs(10);
    while completions.lock().unwrap().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let completions = completions.lock().unwrap().clone();
    assert_eq!(
        completions,
        vec![
            (IoReturn::SUCCESS, vec![1, 3]),
            (IoReturn::SUCCESS, vec![2, 3]),
            (IoReturn::SUCCESS, vec![3, 3])
        ]
    );
    client.stop();
}

#[test]
fn a_service_that_never_registered_is_not_found() {
    let Some(library) = dext() else { return };
    let dir = scratch();
    let plist =
        write_plist(dir.path(), "Hidden.plist", &plist_text("<key>TestSkipRegister</key><true/>"));
    let dext = CppDext::load(library, &plist).unwrap_or_else(|e| panic!("{e}"));
    assert!(dext.registered().is_empty());
    let message = dext.service("TestDriver").unwrap_err().to_string();
    assert!(
        message.contains("\"TestDriver\" not found") && message.contains("RegisterService"),
        "{message}"
    );
    let message = dext.service("Nope").unwrap_err().to_string();
    assert!(message.contains("no service \"Nope\""), "{message}");
}

/// `dextlink-sim serve` on a private registry, killed on drop; its stderr
/// goes to a file in the registry's scratch directory.
struct Served {
    child: Child,
    registry: tempfile::TempDir,
}

impl Served {
    fn start(library: &Path, plist: &Path) -> Served {
        Served::start_with(library, plist, &[])
    }

    fn start_with(library: &Path, plist: &Path, env: &[(&str, &std::ffi::OsStr)]) -> Served {
        let registry = scratch();
        let stderr = std::fs::File::create(registry.path().join("stderr")).expect("stderr file");
        let mut command = Command::new(SERVER);
        command
            .args(["serve", "--exit-with-parent", "--dext"])
            .arg(library)
            .arg("--plist")
            .arg(plist)
            .env(sim::registry::REGISTRY_ENV, registry.path().join("registry"))
            .env_remove(sim::SOCKET_ENV)
            .stdout(Stdio::null())
            .stderr(stderr);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start dextlink-sim serve");
        let served = Served { child, registry };
        served.wait_listed();
        served
    }

    /// SIGTERM, then its exit code and everything it wrote to stderr.
    fn terminate(mut self) -> (Option<i32>, String) {
        // SAFETY: kill takes a pid and a signal number; the child is ours
        // and not yet reaped, so the pid names it.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.exit()
    }

    /// Waits for it to exit: its exit code and stderr.
    fn exit(&mut self) -> (Option<i32>, String) {
        let status = self.child.wait().expect("wait for dextlink-sim serve");
        let stderr =
            std::fs::read_to_string(self.registry.path().join("stderr")).unwrap_or_default();
        (status.code(), stderr)
    }

    fn registry(&self) -> Registry {
        Registry::at(self.registry.path().join("registry"))
    }

    fn wait_listed(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.registry().find("TestDriver").is_ok_and(|found| !found.is_empty()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("dextlink-sim serve did not list TestDriver within 20 s");
    }

    fn open(&self) -> sim::SocketTransport {
        // Connect only once the socket accepts: the entry may precede the listen.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.registry().open("TestDriver", &OpenOptions::default()) {
                Ok(transport) => return transport,
                Err(error) if Instant::now() >= deadline => panic!("open TestDriver: {error}"),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_hosted_dext_behaves_through_the_server_found_by_name() {
    let Some(library) = dext() else { return };
    let dir = scratch();
    let plist = write_plist(dir.path(), "Info.plist", &plist_text(""));
    let served = Served::start(library, &plist);
    let client = served.open();
    checks(&client);
}

#[test]
fn a_crash_in_the_dext_disconnects_its_clients_and_a_restart_serves_again() {
    let Some(library) = dext() else { return };
    let dir = scratch();
    let plist = write_plist(dir.path(), "Info.plist", &plist_text(""));
    let served = Served::start(library, &plist);
    let crashing = served.open();
    let bystander = served.open();
    assert_eq!(call_scalars(&bystander, 0, &[1], 1).unwrap(), vec![2]);
    let error = call_scalars(&crashing, 14, &[], 0).unwrap_err();
    assert_eq!(error, CallError::Transport(Error::Disconnected));
    assert_eq!(
        call_scalars(&bystander, 0, &[1], 1).unwrap_err(),
        CallError::Transport(Error::Disconnected)
    );
    drop(served);
    let restarted = Served::start(library, &plist);
    assert_eq!(call_scalars(&restarted.open(), 0, &[5], 1).unwrap(), vec![6]);
}

#[test]
fn the_server_stops_the_dext_on_sigterm_and_reports_its_leaks() {
    let Some(library) = dext() else { return };
    let dir = scratch();
    let plist = write_plist(dir.path(), "Info.plist", &plist_text(""));
    let clean = Served::start(library, &plist);
    checks(&clean.open());
    let (code, stderr) = clean.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("leaked"), "a clean run leaks nothing:\n{stderr}");

    let leaky = Served::start(library, &plist);
    call_scalars(&leaky.open(), 10, &[], 0).expect("plant a leak");
    let (code, stderr) = leaky.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("the dext leaked")
            && stderr.contains("OSString: 1 live object")
            && stderr.contains("IOMalloc: 1 block (24 bytes) not freed"),
        "{stderr}"
    );
}

#[test]
fn the_served_dext_under_sanitizers_reports_nothing_and_a_planted_bug_names_its_line() {
    if !common::compiler_available("clang++") || !common::compiler_available("clang") {
        return;
    }
    let library = common::build_dext(
        "clang++",
        &[
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer",
            "-g",
        ],
        "hosted-dext-asan",
    );
    let runtime = dextlink_tests::clang_asan_runtime();
    let env: [(&str, &std::ffi::OsStr); 3] = [
        ("LD_PRELOAD", runtime.as_os_str()),
        ("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0".as_ref()),
        ("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1".as_ref()),
    ];
    let dir = scratch();
    let plist = write_plist(dir.path(), "Info.plist", &plist_text(""));

    let clean = Served::start_with(&library, &plist, &env);
    checks(&clean.open());
    let (code, stderr) = clean.terminate();
    assert!(
        code == Some(0)
            && !stderr.contains("Sanitizer")
            && !stderr.contains("runtime error")
            && !stderr.contains("leaked"),
        "the clean run must report nothing (exit {code:?}):\n{stderr}"
    );

    let mut bad = Served::start_with(&library, &plist, &env);
    let error = call_scalars(&bad.open(), 11, &[], 1).unwrap_err();
    assert_eq!(error, CallError::Transport(Error::Disconnected));
    let (code, stderr) = bad.exit();
    assert_ne!(code, Some(0), "a use after free must end the server:\n{stderr}");
    let names_line = stderr
        .split("TestUserClient.cpp:")
        .skip(1)
        .any(|rest| rest.chars().next().is_some_and(|c| c.is_ascii_digit()));
    assert!(
        stderr.contains("heap-use-after-free") && names_line,
        "the report must name the bug and its source line:\n{stderr}"
    );
}

/// Runs `dextlink-sim serve` on bad input: its exit status and stderr.
fn serve_fails(library: &Path, plist: &Path) -> (i32, String) {
    let registry = scratch();
    let output = Command::new(SERVER)
        .args(["serve", "--dext"])
        .arg(library)
        .arg("--plist")
        .arg(plist)
        .env(sim::registry::REGISTRY_ENV, registry.path())
        .env_remove(sim::SOCKET_ENV)
        .output()
        .expect("run dextlink-sim serve");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn bad_input_is_refused_naming_the_file() {
    let Some(library) = dext() else { return };
    let dir = scratch();
    let good = write_plist(dir.path(), "Info.plist", &plist_text(""));

    let (code, message) = serve_fails(&good, &good);
    assert_eq!(code, 3, "{message}");
    assert!(message.contains("Info.plist is not a shared library"), "{message}");

    let garbage = write_plist(dir.path(), "Garbage.plist", "<plist><dict><key>x</key></plist>");
    let (code, message) = serve_fails(library, &garbage);
    assert_eq!(code, 3, "{message}");
    assert!(message.contains("Garbage.plist: not a property list"), "{message}");

    let empty = write_plist(
        dir.path(),
        "Empty.plist",
        "<plist><dict><key>CFBundleName</key><string>x</string></dict></plist>",
    );
    let (code, message) = serve_fails(library, &empty);
    assert_eq!(code, 3, "{message}");
    assert!(message.contains("Empty.plist: no IOKitPersonalities"), "{message}");

    let unknown = write_plist(
        dir.path(),
        "Unknown.plist",
        &plist_text("").replace(">TestDriver</string>", ">NoSuchDriver</string>"),
    );
    let (code, message) = serve_fails(library, &unknown);
    assert_eq!(code, 3, "{message}");
    assert!(
        message.contains("Unknown.plist: personality \"TestDriver\": IOUserClass \"NoSuchDriver\" is not a class that")
            && message.contains("hosted-dext"),
        "{message}"
    );

    let usb = write_plist(
        dir.path(),
        "Usb.plist",
        &plist_text("").replace(">IOUserResources<", ">IOUSBHostInterface<"),
    );
    let (code, message) = serve_fails(library, &usb);
    assert_eq!(code, 3, "{message}");
    assert!(message.contains("not supported by the simulator yet"), "{message}");

    // kIOReturnNoDevice (0xe00002c0) from Start.
    let failing = write_plist(
        dir.path(),
        "Failing.plist",
        &plist_text("<key>TestStartFails</key><integer>3758097088</integer>"),
    );
    let (code, message) = serve_fails(library, &failing);
    assert_eq!(code, 1, "{message}");
    assert!(
        message.contains("Failing.plist: personality \"TestDriver\": TestDriver::Start failed")
            && message.contains("e00002c0"),
        "{message}"
    );
}

#[test]
fn the_server_prints_what_a_dext_compiles_and_links_with() {
    let output = Command::new(SERVER).arg("--print-cflags").output().unwrap();
    assert!(output.status.success());
    let cflags = String::from_utf8(output.stdout).unwrap();
    let include = common::crate_dir().join("driverkit/include");
    assert_eq!(cflags.trim(), format!("-I{} -std=c++17 -fPIC", include.display()));
    let output = Command::new(SERVER).arg("--print-libs").output().unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap().trim(), "-shared -fPIC");
    let output = Command::new(SERVER).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}
