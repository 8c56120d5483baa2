//! Builds the test dext (`tests/dext/`) as a shared library with a given
//! compiler, and the checks every build must pass. Each compiler's build
//! runs in a test binary of its own, because one process has one class
//! registry: two builds of the same classes cannot be loaded side by side.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use dextlink::IoReturn;
use dextlink_sim::driverkit::{self, Call, Dictionary, Library, LogType, Service, UserClient};

pub const STRICT: &[&str] = &["-std=c++17", "-Wall", "-Wextra", "-Werror"];

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `compiler` runs here: the workspace's rule for a missing tool
/// (`dextlink_tests::tools`: a note, and a failure under `CI=true`).
#[track_caller]
pub fn compiler_available(compiler: &str) -> bool {
    dextlink_tests::tools::require(compiler, "building a test dext")
}

/// Compiles the test dext with `compiler` and `extra` flags into `name`.so
/// in this test's scratch directory, failing with the compiler's output.
pub fn build_dext(compiler: &str, extra: &[&str], name: &str) -> PathBuf {
    let sources =
        ["TestDriver.cpp", "TestDriver.iig.cpp", "TestUserClient.cpp", "TestUserClient.iig.cpp"];
    build_library(compiler, extra, name, "tests/dext", &sources)
}

/// Compiles `sources` (in `dir`, relative to the crate) against the
/// runtime's headers into a shared library `name`.so in this test's scratch
/// directory, failing with the compiler's output.
pub fn build_library(
    compiler: &str,
    extra: &[&str],
    name: &str,
    dir: &str,
    sources: &[&str],
) -> PathBuf {
    let out =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}.so", std::process::id()));
    let dext = crate_dir().join(dir);
    let result = Command::new(compiler)
        .args(STRICT)
        .args(["-shared", "-fPIC"])
        .args(extra)
        .arg("-I")
        .arg(crate_dir().join("driverkit/include"))
        .args(sources.iter().map(|s| dext.join(s)))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        result.status.success(),
        "{compiler} {extra:?} could not build {dir}:\n{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

/// Tests in one binary share the runtime (its leak report, its log sink):
/// each holds this while it runs.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn load_once(build: impl FnOnce() -> PathBuf) -> &'static Library {
    static LIBRARY: OnceLock<Library> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let path = build();
        Library::load(&path).unwrap_or_else(|e| panic!("{e}"))
    })
}

pub fn personality() -> Dictionary {
    Dictionary::personality("TestDriver", Some("TestUserClient")).expect("personality")
}

/// A started TestDriver with one user client; `finish` stops and releases
/// them and checks that nothing is left alive.
pub struct Session {
    pub service: Service,
    pub client: UserClient,
}

impl Session {
    pub fn open() -> Session {
        let service = Service::start(&personality()).expect("start TestDriver");
        let client = service.new_user_client(0).expect("NewUserClient");
        Session { service, client }
    }

    pub fn call(&self, selector: u64, scalars: &[u64], outputs: u32) -> Result<Vec<u64>, IoReturn> {
        let call = Call {
            selector,
            scalar_input: scalars,
            scalar_output_count: outputs,
            ..Call::default()
        };
        self.client.call(&call).map(|reply| reply.scalar_output)
    }

    pub fn finish(self) {
        self.client.stop().expect("stop the user client");
        self.service.stop().expect("stop the service");
        drop(self);
        assert_no_leaks();
    }
}

/// Objects are freed on the queue threads' last release too: give those a
/// moment, then the report must be empty.
pub fn assert_no_leaks() {
    let mut report = driverkit::leak_report();
    for _ in 0..200 {
        if report.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
        report = driverkit::leak_report();
    }
    panic!("leaked:\n{report}");
}

// ---- the checks, run for every build

pub fn lifecycle() {
    let _serial = serial();
    let hidden = personality();
    hidden.set_bool("TestSkipRegister", true).unwrap();
    let unregistered =
        Service::start(&hidden).expect("start a TestDriver that skips RegisterService");
    assert!(
        !unregistered.is_registered(),
        "a service that never called RegisterService must not be findable"
    );
    unregistered.stop().unwrap();
    drop((unregistered, hidden));

    let session = Session::open();
    assert_eq!(session.service.class_name(), "TestDriver");
    assert!(session.service.is_registered());
    assert_eq!(session.service.provider_class_name().as_deref(), Some("IOService"));
    assert_eq!(session.client.class_name(), "TestUserClient");
    assert!(session.client.is_kind_of("IOUserClient") && session.client.is_kind_of("IOService"));
    assert!(!session.client.is_kind_of("TestDriver"));
    assert!(
        session.client.provider_is_service(),
        "Create(this, …) makes the service the user client's provider"
    );
    session.finish();
}

pub fn unknown_classes_are_refused() {
    let _serial = serial();
    let missing = Dictionary::personality("NoSuchDriver", None).unwrap();
    assert_eq!(Service::start(&missing).err(), Some(IoReturn::NOT_FOUND));
    let wrong_client = Dictionary::personality("TestDriver", Some("NoSuchUserClient")).unwrap();
    let service = Service::start(&wrong_client).unwrap();
    assert_eq!(service.new_user_client(0).err(), Some(IoReturn::NOT_FOUND));
    service.stop().unwrap();
    let user_client_as_service = Dictionary::personality("TestUserClient", None).unwrap();
    assert_eq!(Service::start(&user_client_as_service).err(), Some(IoReturn::BAD_ARGUMENT));
    let no_class = Dictionary::new();
    assert_eq!(Service::start(&no_class).err(), Some(IoReturn::BAD_ARGUMENT));
    drop((service, missing, wrong_client, user_client_as_service, no_class));
    assert_no_leaks();
}

pub fn external_method_follows_the_rust_rules() {
    let _serial = serial();
    let session = Session::open();
    assert_eq!(session.call(0, &[41], 1), Ok(vec![42]));
    // Each check of the entry {Echo, 0, 1, 0, 1, 0}, through the Rust rules.
    assert_eq!(
        session.call(0, &[1, 2], 1),
        Err(IoReturn::BAD_ARGUMENT),
        "two scalars in, one expected"
    );
    assert_eq!(
        session.call(0, &[1], 2),
        Err(IoReturn::BAD_ARGUMENT),
        "two scalars out, one expected"
    );
    let with_struct = Call {
        selector: 0,
        scalar_input: &[1],
        structure_input: b"x",
        scalar_output_count: 1,
        ..Call::default()
    };
    assert_eq!(session.client.call(&with_struct).err(), Some(IoReturn::BAD_ARGUMENT));
    let not_async =
        Call { selector: 0, scalar_input: &[1], scalar_output_count: 1, ..Call::default() };
    assert_eq!(
        session.client.call_async(&not_async, |_, _| {}).err(),
        Some(IoReturn::BAD_ARGUMENT)
    );
    // A NULL function behind passing checks.
    assert_eq!(session.call(1, &[], 0), Err(IoReturn::NO_COMPLETION));
    // The dext's own bounds check.
    assert_eq!(session.call(99, &[], 0), Err(IoReturn::BAD_ARGUMENT));
    // An async entry without a completion.
    assert_eq!(session.call(2, &[3], 0), Err(IoReturn::BAD_ARGUMENT));
    // The iig stub's limit: 17 scalars are an overrun, before the dext sees them.
    assert_eq!(session.call(0, &[0; 17], 1), Err(IoReturn::OVERRUN));
    session.finish();
}

pub fn structures_inline_and_by_descriptor() {
    let _serial = serial();
    let session = Session::open();
    for length in [1usize, 4096, 4097, 10000] {
        let input: Vec<u8> = (0..length).map(|i| (i * 7 + length) as u8).collect();
        let capacity = if length > 4096 { length as u64 } else { 4096 };
        let call = Call {
            selector: 9,
            structure_input: &input,
            structure_output_capacity: capacity,
            ..Call::default()
        };
        let reply = session.client.call(&call).unwrap_or_else(|e| panic!("{length} bytes: {e:?}"));
        assert_eq!(reply.structure_output, input, "{length} bytes came back changed");
    }
    // The variable-output call takes any OSData the dext returns (docs/driverkit.md §3.3-3).
    let input = vec![0x5au8; 5000];
    let call = Call {
        selector: 9,
        structure_input: &input,
        structure_output_capacity: 0xffff_ffff,
        ..Call::default()
    };
    assert_eq!(session.client.call(&call).expect("variable output").structure_output, input);
    // An inline OSData longer than the capacity offered is an error (§3.3-1).
    let call = Call {
        selector: 9,
        structure_input: &input[..100],
        structure_output_capacity: 10,
        ..Call::default()
    };
    assert_eq!(session.client.call(&call).err(), Some(IoReturn::BAD_ARGUMENT));
    session.finish();
}

pub fn retained_action_completes_many_times_from_a_timer() {
    let _serial = serial();
    let session = Session::open();
    let (sender, receiver) = std::sync::mpsc::channel();
    let sender = Mutex::new(sender);
    let call = Call { selector: 2, scalar_input: &[5], ..Call::default() };
    session
        .client
        .call_async(&call, move |status, values| {
            let _ = sender.lock().unwrap().send((status, values.to_vec()));
        })
        .expect("ticks");
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(
            receiver.recv_timeout(Duration::from_secs(10)).expect("a completion from the timer"),
        );
    }
    let expected: Vec<_> = (1..=5).map(|i| (IoReturn::SUCCESS, vec![i, 5])).collect();
    assert_eq!(got, expected);
    assert!(receiver.recv_timeout(Duration::from_millis(50)).is_err(), "no sixth completion");
    session.finish();
}

pub fn collections_and_casts() {
    let _serial = serial();
    let session = Session::open();
    let passed = session.call(3, &[], 1).unwrap()[0];
    assert_eq!(passed, (1 << 18) - 1, "checks that failed: {:#020b}", !passed & ((1 << 18) - 1));
    session.finish();
}

pub fn serial_queue_order() {
    let _serial = serial();
    let session = Session::open();
    assert_eq!(session.call(5, &[], 8), Ok((1..=8).collect::<Vec<u64>>()));
    session.finish();
}

pub fn a_cancelled_action_runs_its_handler_after_the_queued_work() {
    let _serial = serial();
    let session = Session::open();
    assert_eq!(session.call(12, &[], 1), Ok(vec![1]), "IsCancelled right after Cancel");
    // Selector 13 runs on the same serial queue, after the handler Cancel queued.
    assert_eq!(session.call(13, &[], 1), Ok(vec![1]), "the cancel handler ran");
    session.finish();
}

pub fn os_log_formats_reach_the_sink() {
    let _serial = serial();
    let lines: Arc<Mutex<Vec<(LogType, String)>>> = Arc::default();
    let sink = Arc::clone(&lines);
    driverkit::set_log_sink(Some(Arc::new(move |kind, line: &str| {
        sink.lock().unwrap().push((kind, line.to_owned()))
    })));
    let session = Session::open();
    session.call(4, &[], 0).unwrap();
    session.finish();
    driverkit::set_log_sink(None);
    let lines = lines.lock().unwrap();
    let has = |kind: LogType, text: &str| lines.iter().any(|(k, l)| *k == kind && l == text);
    assert!(has(LogType::Default, "TestDriver: started on IOService"), "{lines:?}");
    assert!(has(LogType::Default, "fmt: visible 42 1 2 100% plain"), "{lines:?}");
    assert!(has(LogType::Error, "fmt error: 0xe00002c2"), "{lines:?}");
    assert!(has(LogType::Default, "fmt IOLog: 7"), "{lines:?}");
}

pub fn memory_is_shared_with_a_second_mapping() {
    let _serial = serial();
    let session = Session::open();
    let passed = session.call(6, &[], 1).unwrap()[0];
    assert_eq!(passed, 0xff, "memory checks that failed: {:#010b}", !passed & 0xff);

    let memory = session.client.copy_client_memory(0).expect("memory type 0");
    assert_eq!((memory.length, memory.read_only), (8192, false));
    let map = Mapping::new(&memory, true);
    // The dext writes, the second mapping sees it; and back.
    session.call(7, &[4097, 0xab], 0).unwrap();
    assert_eq!(map.bytes()[4097], 0xab);
    map.write(12, 0x3c);
    assert_eq!(session.call(8, &[12], 1), Ok(vec![0x3c]));
    let read_only = session.client.copy_client_memory(1).expect("memory type 1");
    assert!(read_only.read_only, "kIOUserClientMemoryReadOnly must reach the host");
    assert_eq!(session.client.copy_client_memory(2).err(), Some(IoReturn::BAD_ARGUMENT));
    drop(map);
    drop(memory);
    drop(read_only);
    session.finish();
}

/// A host's mapping of a user client's memory.
pub struct Mapping {
    address: *mut u8,
    length: usize,
}

impl Mapping {
    pub fn new(memory: &driverkit::ClientMemory, writable: bool) -> Mapping {
        use std::os::fd::AsRawFd;
        let length = memory.length as usize;
        let protection =
            if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        assert_eq!(memory.offset % 4096, 0, "a whole buffer starts at a page");
        // SAFETY: mapping a memfd we own a duplicate of, at an offset and
        // length inside it; unmapped in Drop.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                length,
                protection,
                libc::MAP_SHARED,
                memory.fd.as_raw_fd(),
                memory.offset as libc::off_t,
            )
        };
        assert_ne!(address, libc::MAP_FAILED, "mmap of the descriptor's memfd");
        Mapping { address: address.cast(), length }
    }

    pub fn bytes(&self) -> Vec<u8> {
        // SAFETY: the mapping is `length` readable bytes; read through
        // volatile copies because the dext writes it from its side.
        (0..self.length).map(|i| unsafe { self.address.add(i).read_volatile() }).collect()
    }

    pub fn write(&self, offset: usize, value: u8) {
        assert!(offset < self.length);
        // SAFETY: in bounds (checked) of a writable mapping.
        unsafe { self.address.add(offset).write_volatile(value) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the region mmap returned, unmapped once.
        unsafe { libc::munmap(self.address.cast(), self.length) };
    }
}

/// One #[test] per check for a build of the test dext.
#[macro_export]
macro_rules! dext_tests {
    ($build:expr) => {
        fn library() -> Option<&'static dextlink_sim::driverkit::Library> {
            let build: fn() -> Option<std::path::PathBuf> = $build;
            static BUILT: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
            let path = BUILT.get_or_init(build).clone()?;
            Some(common::load_once(move || path))
        }
        $crate::dext_tests!(@each lifecycle unknown_classes_are_refused external_method_follows_the_rust_rules
            structures_inline_and_by_descriptor retained_action_completes_many_times_from_a_timer
            collections_and_casts serial_queue_order a_cancelled_action_runs_its_handler_after_the_queued_work
            os_log_formats_reach_the_sink
            memory_is_shared_with_a_second_mapping);
    };
    (@each $($name:ident)*) => {
        $(
            #[test]
            fn $name() {
                if library().is_some() {
                    common::$name();
                }
            }
        )*
    };
}
