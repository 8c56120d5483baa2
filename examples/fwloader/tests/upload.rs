//! End-to-end uploads through the out-of-process simulator: the C++
//! fwloader dext (hosted by the simulator's DriverKit runtime, `--dext cpp`)
//! and its simulated USB bootloader run in `fwloader-sim`, the
//! staging pipeline in this process, the flash banks in a file. Every image
//! format lands byte for byte in the committed bank; each fault kind ends as
//! expected: recovered, or refused with the previous image intact.

use std::path::{Path, PathBuf};
use std::process::Command;

use dextlink::Error;
use dextlink::image::{Format, Image};
use dextlink::sim::flash::{Flash, FlashTiming};
use dextlink::sim::{OpenOptions, ServerProcess, SocketTransport};
use dextlink::staging::{Config, Phase, Summary, Upload, UploadError};
use dextlink_tests::child;
use dextlink_tests::images::{self, Phdr};
use fwloader::FwLoader;
use tempfile::TempDir;

/// The client-killed test's child: an `#[ignore]`d test that this binary
/// runs in a process of its own (`dextlink_tests::child`).
const UPLOAD_HELPER: &str = "upload_child";

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed)).wrapping_mul(2_654_435_761).rotate_left(9) as u8)
        .collect()
}

/// A simulator server over the flash file `flash`.
fn server(flash: &Path, extra: &[&str]) -> ServerProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fwloader-sim"));
    command
        .arg("--flash")
        .arg(flash)
        .args(["--dext", "cpp", "--link", "fast", "--bank-size", "16M"])
        .args(extra);
    // Under the_uploads_under_sanitizers_report_nothing: the instrumented
    // dext, in a server with the sanitizer runtime preloaded.
    if let Some(library) = std::env::var_os(SANITIZED_DEXT_ENV) {
        command.arg("--dext-library").arg(library);
    }
    if let Some(runtime) = std::env::var_os(SANITIZER_RUNTIME_ENV) {
        command
            .env("LD_PRELOAD", runtime)
            // The server is killed, never exits, so no leak check could run.
            .env("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
            .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
    }
    ServerProcess::spawn(command).expect("starting fwloader-sim")
}

fn connect(socket: PathBuf) -> impl FnMut() -> Result<FwLoader<SocketTransport>, Error> {
    move || FwLoader::connect(SocketTransport::connect(&socket, &OpenOptions::default())?)
}

/// The C++ dext built with ASan and UBSan, for the servers of a child run.
const SANITIZED_DEXT_ENV: &str = "FWLOADER_TEST_SANITIZED_DEXT";
/// The sanitizer runtime those servers preload.
const SANITIZER_RUNTIME_ENV: &str = "FWLOADER_TEST_SANITIZER_RUNTIME";

/// Builds the C++ dext as build.rs does, with `clang++` and the sanitizers.
fn build_sanitized_dext(dir: &Path) -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dext = crate_dir.join("dext");
    let schema = dextlink_tests::load(&crate_dir.join("fwloader.dextlink"));
    std::fs::write(dir.join("FwLoader.h"), dextlink_tests::cpp_header(&schema)).unwrap();
    let mut sources = vec![dext.join("FwLoaderDriver.cpp"), dext.join("FwLoaderUserClient.cpp")];
    for class in ["FwLoaderDriver.iig", "FwLoaderUserClient.iig"] {
        let path = dext.join(class);
        let text = std::fs::read_to_string(&path).unwrap();
        let output = dextlink_schema::iig::generate(&path, &text)
            .unwrap_or_else(|e| panic!("dextlink iig {}: {e}", path.display()));
        std::fs::write(dir.join(&output.header_name), output.header).unwrap();
        std::fs::write(dir.join(&output.source_name), output.source).unwrap();
        sources.push(dir.join(output.source_name));
    }
    let library = dir.join("libfwloader_dext_asan.so");
    let result = Command::new("clang++")
        .args(["-std=c++17", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror"])
        .args(["-fsanitize=address,undefined", "-fno-sanitize-recover=all"])
        .args(["-fno-omit-frame-pointer", "-g"])
        .arg("-I")
        .arg(crate_dir.join("../../runtime/sim/driverkit/include"))
        .arg("-I")
        .arg(dir)
        .arg("-I")
        .arg(&dext)
        .args(&sources)
        .arg("-o")
        .arg(&library)
        .output()
        .expect("run clang++");
    assert!(
        result.status.success(),
        "clang++ could not build the sanitized dext:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    library
}

/// Every other test of this file again, in a child run whose servers host
/// the dext built with ASan and UBSan: a clean run reports nothing.
#[test]
fn the_uploads_under_sanitizers_report_nothing() {
    if !dextlink_tests::tools::require("clang++", "the sanitizer run")
        || !dextlink_tests::tools::require("clang", "the sanitizer run")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let library = build_sanitized_dext(dir.path());
    let output = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--skip", "the_uploads_under_sanitizers_report_nothing", "--test-threads=2"])
        .env(SANITIZED_DEXT_ENV, &library)
        .env(SANITIZER_RUNTIME_ENV, dextlink_tests::clang_asan_runtime())
        .output()
        .expect("run the uploads again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let hosted = format!("hosting the C++ dext {}", library.display());
    assert!(
        output.status.success()
            && stdout.contains("test result: ok. 7 passed")
            && stderr.contains(&hosted)
            && !stderr.contains("Sanitizer")
            && !stderr.contains("runtime error"),
        "status {}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        output.status
    );
}

/// Small slots so that small images take many transfers.
fn config() -> Config {
    Config { slot_size: 16 * 1024, ..Config::default() }
}

/// Opens any of the test images; raw ones (`.bin`) are placed at 0x08000000.
fn open_image(path: &Path) -> Image {
    let raw = path.extension().is_some_and(|e| e == "bin");
    Image::open(path, None, raw.then_some(0x0800_0000))
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

fn upload(image: &Path, socket: &Path) -> Result<Summary, UploadError> {
    let image = open_image(image);
    Upload::new(image).config(config()).run(connect(socket.to_path_buf()), |_| {})
}

/// The flattened image: what the active bank must hold.
fn flattened(path: &Path) -> Vec<u8> {
    let image = open_image(path);
    let mut bytes = vec![0; image.len() as usize];
    image.reader().unwrap().read_at(0, &mut bytes).unwrap();
    bytes
}

/// The active bank's first `len` bytes and its record (the server must be gone).
fn active_bank(flash: &Path, len: usize) -> (Vec<u8>, u32) {
    let flash = Flash::open_existing(flash, FlashTiming::INSTANT).expect("opening the flash file");
    let bank = flash.active_bank();
    let record = flash.bank_record(bank);
    assert!(record.valid, "the active bank holds no valid image");
    assert_eq!(record.len as usize, len);
    let mut bytes = vec![0; len];
    flash.read(bank, 0, &mut bytes).unwrap();
    (bytes, record.crc32)
}

fn assert_committed(flash: &Path, image: &Path) {
    let expected = flattened(image);
    let (bytes, crc) = active_bank(flash, expected.len());
    assert!(bytes == expected, "the active bank differs from {}", image.display());
    assert_eq!(crc, crc32fast::hash(&expected));
}

struct Rig {
    dir: TempDir,
    flash: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let flash = dir.path().join("device.flash");
        Rig { dir, flash }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn raw(&self, name: &str, len: usize, seed: u32) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, pattern(len, seed)).unwrap();
        path
    }
}

#[test]
fn every_format_lands_byte_for_byte_in_the_committed_bank() {
    let rig = Rig::new();
    let chunks = vec![(0x0800_0000u64, pattern(150_000, 1)), (0x0802_8000, pattern(70_000, 2))];
    let hex = rig.path("image.hex");
    std::fs::write(&hex, images::hex_text(&chunks)).unwrap();
    let uf2 = rig.path("image.uf2");
    std::fs::write(&uf2, images::uf2(&images::uf2_blocks(&chunks))).unwrap();
    let srec = rig.path("image.srec");
    std::fs::write(&srec, images::srec_text(&chunks)).unwrap();
    let elf = rig.path("image.elf");
    let phdrs: Vec<Phdr> = chunks.iter().map(|(a, d)| Phdr::load(*a, d.clone())).collect();
    std::fs::write(&elf, images::elf(false, false, &phdrs).0).unwrap();
    let bin = rig.raw("image.bin", 333_333, 3);

    for image in [&bin, &hex, &srec, &elf, &uf2] {
        let server = server(&rig.flash, &[]);
        let summary = upload(image, server.socket_path())
            .unwrap_or_else(|e| panic!("{}: {e}", image.display()));
        assert_eq!(summary.retries.total(), 0);
        assert_eq!(summary.image.crc32, crc32fast::hash(&flattened(image)));
        drop(server);
        assert_committed(&rig.flash, image);
    }
    // The formats reached the device as the schema names them.
    assert_eq!(fwloader::image_format(Format::Uf2), fwloader::ImageFormat::Uf2);
    assert_eq!(fwloader::image_format(Format::Srec), fwloader::ImageFormat::Srec);
}

/// Uploads `image` with `fault` injected; returns the summary.
fn upload_with_fault(rig: &Rig, image: &Path, fault: &str, extra: &[&str]) -> Summary {
    let mut args = vec!["--fault", fault, "--seed", "7"];
    args.extend_from_slice(extra);
    let server = server(&rig.flash, &args);
    let summary =
        upload(image, server.socket_path()).unwrap_or_else(|e| panic!("fault {fault}: {e}"));
    drop(server);
    assert_committed(&rig.flash, image);
    summary
}

#[test]
fn link_faults_are_recovered_each_counted_as_its_kind() {
    let rig = Rig::new();
    let image = rig.raw("image.bin", 400_000, 4);

    let stall = upload_with_fault(&rig, &image, "stall@3", &[]);
    assert_eq!(stall.retries.stalls, 1, "{stall:?}");

    let timeout = upload_with_fault(&rig, &image, "timeout@2", &["--transfer-timeout-ms", "50"]);
    assert_eq!(timeout.retries.timeouts, 1, "{timeout:?}");
    assert_eq!(timeout.retries.stalls, 0);

    let short = upload_with_fault(&rig, &image, "short@4", &[]);
    assert_eq!(short.retries.short, 1, "{short:?}");

    // A flipped bit fails the slot's CRC at the device, which stalls; the
    // slot goes again.
    let bitflip = upload_with_fault(&rig, &image, "bitflip@5", &[]);
    assert_eq!(bitflip.retries.stalls, 1, "{bitflip:?}");

    let disconnect = upload_with_fault(&rig, &image, "disconnect@6", &[]);
    assert_eq!(disconnect.retries.reconnects, 1, "{disconnect:?}");
}

#[test]
fn a_killed_dext_is_restarted_on_the_same_flash_and_the_upload_resumes() {
    let rig = Rig::new();
    let image = rig.raw("image.bin", 600_000, 5);
    let flash = rig.flash.clone();
    // The first server dies at transfer 20; the system relaunches the dext
    // (here: the connect closure starts a new server on the same flash).
    let mut servers = vec![server(&flash, &["--fault", "kill-dext@20"])];
    let mut socket = servers[0].socket_path().to_path_buf();
    let first = socket.clone();
    let open = |socket: &Path| {
        FwLoader::connect(SocketTransport::connect(socket, &OpenOptions::default())?)
    };
    let connect = || {
        let result = open(&socket);
        if result.is_err() && socket == first {
            let restarted = server(&flash, &[]);
            socket = restarted.socket_path().to_path_buf();
            servers.push(restarted);
            return open(&socket);
        }
        result
    };
    let image_file = open_image(&image);
    let summary = Upload::new(image_file).config(config()).run(connect, |_| {}).unwrap();
    assert_eq!(summary.retries.reconnects, 1, "{summary:?}");
    // Not a restart from zero: less than twice the image went over the wire.
    assert!(summary.bytes_sent < 2 * 600_000, "{summary:?}");
    drop(servers);
    assert_committed(&rig.flash, &image);
}

#[test]
fn a_refused_commit_keeps_the_previous_image() {
    let rig = Rig::new();
    let old = rig.raw("old.bin", 100_000, 6);
    let server = server(&rig.flash, &[]);
    upload(&old, server.socket_path()).unwrap();
    // The new image changes on disk after its CRC was taken (same length):
    // every slot's own CRC is right, the whole-image CRC is not.
    let new = rig.raw("new.bin", 100_000, 7);
    let changed = pattern(100_000, 8);
    let image = open_image(&new);
    let mut rewritten = false;
    let error = Upload::new(image)
        .config(config())
        .run(connect(server.socket_path().to_path_buf()), |p| {
            if p.phase == Phase::Connect && !rewritten {
                std::fs::write(&new, &changed).unwrap();
                rewritten = true;
            }
        })
        .unwrap_err();
    assert!(matches!(error, UploadError::Refused { .. }), "{error}");
    drop(server);
    assert_committed(&rig.flash, &old);
}

#[test]
fn a_cancelled_upload_keeps_the_previous_image_and_a_rerun_resumes() {
    let rig = Rig::new();
    let old = rig.raw("old.bin", 50_000, 9);
    let new = rig.raw("new.bin", 500_000, 10);
    let server = server(&rig.flash, &[]);
    upload(&old, server.socket_path()).unwrap();

    let upload_new = Upload::new(open_image(&new)).config(config());
    let cancel = upload_new.cancel_handle();
    let error = upload_new
        .run(connect(server.socket_path().to_path_buf()), |p| {
            if p.phase == Phase::Transfer && p.done >= 200_000 {
                cancel.cancel();
            }
        })
        .unwrap_err();
    assert!(matches!(error, UploadError::Cancelled), "{error}");
    let summary = upload(&new, server.socket_path()).unwrap();
    assert!(summary.resumed_from > 0, "{summary:?}");
    assert!(summary.bytes_sent < 500_000, "{summary:?}");
    drop(server);
    assert_committed(&rig.flash, &new);
}

#[test]
fn a_killed_client_leaves_the_old_image_and_the_rerun_resumes() {
    let rig = Rig::new();
    let old = rig.raw("old.bin", 40_000, 11);
    // Bigger than the device's 2 MiB of RAM: once 3 MB are done, the device
    // has programmed (acknowledged) at least the first megabyte.
    let new = rig.raw("new.bin", 4_000_000, 12);
    let server = server(&rig.flash, &[]);
    upload(&old, server.socket_path()).unwrap();

    let child = child::command(UPLOAD_HELPER)
        .env("FWLOADER_TEST_IMAGE", &new)
        .env("FWLOADER_TEST_SOCKET", server.socket_path())
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.signal(), Some(9), "the child should have been killed: {child:?}");

    let summary = upload(&new, server.socket_path()).unwrap();
    assert!(summary.resumed_from > 0, "{summary:?}");
    drop(server);
    assert_committed(&rig.flash, &new);
}

/// The child of the client-killed test: uploads and kills itself once 3 MB
/// are done.
#[test]
#[ignore = "a child-process helper of a_killed_client_leaves_the_old_image_and_the_rerun_resumes"]
fn upload_child() {
    child::enter(UPLOAD_HELPER);
    let image =
        PathBuf::from(std::env::var_os("FWLOADER_TEST_IMAGE").expect("the image to upload"));
    let socket =
        PathBuf::from(std::env::var_os("FWLOADER_TEST_SOCKET").expect("the server's socket"));
    let image = open_image(&image);
    let _ = Upload::new(image).config(config()).run(connect(socket), |p| {
        if p.phase == Phase::Transfer && p.done >= 3_000_000 {
            fwloader::sim::kill_this_process();
        }
    });
    unreachable!("the upload should have been killed");
}

#[test]
fn without_the_flash_model_the_device_composes_the_whole_image_crc() {
    use dextlink::sim::usb::LinkModel;
    use fwloader::device::BootloaderConfig;
    use fwloader::sim::{SimOptions, simulator};
    let rig = Rig::new();
    let image = rig.raw("image.bin", 3_000_000, 13);
    let options = SimOptions {
        link: LinkModel::UNTHROTTLED,
        bootloader: BootloaderConfig { flash: false, ..BootloaderConfig::default() },
        ..SimOptions::default()
    };
    let simulator = simulator(&options).unwrap();
    let connect = || FwLoader::connect(simulator.open()?);
    let summary = Upload::new(open_image(&image)).run(connect, |_| {});
    let summary = summary.unwrap();
    assert_eq!(summary.image.total_len, 3_000_000);
}
