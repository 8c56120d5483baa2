//! Fault matrix: every fault kind × the first, middle and last
//! transfer of an upload × several seeds, through the real `fwupload` and
//! the C++ fwloader dext (`--dext cpp`: the dext's own code in the
//! simulator's DriverKit runtime, on the simulated bootloader).
//!
//! Each case starts from the same device: a flash file whose active bank holds
//! an OLD image (and whose inactive bank holds an older, stale one). It then
//! uploads a NEW image (its size and contents depend on the seed) with one
//! fault, `KIND@INDEX --seed S`, and checks:
//!
//! - the **active bank** holds the old image or the complete new one, byte for
//!   byte, under a valid record whose length and CRC-32 are that image's; no
//!   bank is marked valid over bytes that do not match its record;
//! - **`fwupload`** ends as documented: exit 0 with a verified summary for a
//!   fault within its retry budget (and the summary's retry counters show the
//!   fault was met), death by SIGKILL for `kill-client`; where it fails, a
//!   documented code (6, 7) and a message that names the fault;
//! - a **rerun** without faults exits 0 and leaves the complete new image
//!   active (resuming where the device kept a prefix).
//!
//! Faults at random transfers (`KIND%P`, and a mix of kinds) run as extra rows.
//! Every `fwupload` runs as a child process under a deadline; one that misses
//! it is killed and counted as hung. `kill-dext` needs the dext in a process of
//! its own (`--sim-process`); the other kinds alternate, by seed, between that
//! and the in-process simulator. The run ends with the line
//!
//! ```text
//! fault-matrix (cpp dext): N runs, N survived, 0 corrupt, 0 hung
//! ```
//!
//! Larger runs, from one command (defaults: 5 seeds, 320K images, 4 threads):
//!
//! ```text
//! FAULT_MATRIX_SEEDS=50 FAULT_MATRIX_SIZE=1M FAULT_MATRIX_THREADS=8 \
//!     cargo test --release -p fwloader --test fault_matrix -- --nocapture
//! ```
//!
//! A failing case prints the `fwupload` command that reproduces it; with
//! `DEXTLINK_KEEP_SCRATCH=1` its directory (flash file, images) is kept for
//! that, and otherwise removed like every other. `a_bit_flipped_in_a_slot_header_is_retried`
//! keeps the case larger runs found once: a bit flipped in a slot header.

use std::collections::VecDeque;
use std::fmt;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dextlink::sim::flash::{Flash, FlashError, FlashTiming};
use dextlink_tests::Scratch;
use fwloader::fw_loader::SLOT_HEADER_SIZE;
use serde_json::Value;

/// The dext every upload runs through.
const DEXT: &str = "cpp";
/// Bytes of each slot used, header included: small, so an upload takes many transfers.
const SLOT_SIZE: u64 = 16 * 1024;
/// The dext's transfer timeout: short, so that `timeout` faults cost little.
const TRANSFER_TIMEOUT_MS: &str = "50";
/// How long one `fwupload` may take before it counts as hung (a normal run
/// here takes well under a second).
const DEADLINE: Duration = Duration::from_secs(60);
/// How long the flash file may stay locked after `fwupload` ended (a
/// `--sim-process` server dies with its parent, a moment later).
const FLASH_RELEASE: Duration = Duration::from_secs(10);
const SIGKILL: i32 = 9;

// ---------------------------------------------------------------------------
// The matrix

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stall,
    Timeout,
    Short,
    Disconnect,
    BitFlip,
    KillDext,
    KillClient,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Stall,
        Kind::Timeout,
        Kind::Short,
        Kind::Disconnect,
        Kind::BitFlip,
        Kind::KillDext,
        Kind::KillClient,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Stall => "stall",
            Kind::Timeout => "timeout",
            Kind::Short => "short",
            Kind::Disconnect => "disconnect",
            Kind::BitFlip => "bitflip",
            Kind::KillDext => "kill-dext",
            Kind::KillClient => "kill-client",
        }
    }

    /// What a failure message must mention (lowercase) to name this fault.
    /// A flipped bit reaches the host as the device's STALL for a bad CRC; a
    /// dext that dies, as a device that went away.
    fn named_by(self) -> &'static [&'static str] {
        match self {
            Kind::Stall => &["stall"],
            Kind::Timeout => &["timeout", "timed out"],
            Kind::Short => &["short"],
            Kind::Disconnect => &["lost the device", "nodevice", "disconnect"],
            Kind::BitFlip => &["stall", "crc"],
            Kind::KillDext => &["lost the device", "dext", "nodevice"],
            Kind::KillClient => &[],
        }
    }

    /// The summary's retry counter that shows the fault was met.
    fn evidence(self) -> Option<&'static str> {
        match self {
            Kind::Stall | Kind::BitFlip => Some("stall"),
            Kind::Timeout => Some("timeout"),
            Kind::Short => Some("short"),
            Kind::Disconnect | Kind::KillDext => Some("reconnect"),
            Kind::KillClient => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    First,
    Middle,
    Last,
}

impl Position {
    const ALL: [Position; 3] = [Position::First, Position::Middle, Position::Last];

    fn index(self, transfers: u64) -> u64 {
        match self {
            Position::First => 0,
            Position::Middle => transfers / 2,
            Position::Last => transfers - 1,
        }
    }
}

/// Where the fault goes.
#[derive(Debug, Clone)]
enum Fault {
    /// `KIND@INDEX` at a position of the grid.
    At(Kind, Position),
    /// `KIND%P`: each transfer with probability P percent.
    Random(Kind, f64),
    /// Several kinds at random (`stall%3,short%3,…`).
    Mixed,
}

const MIXED: &str = "stall%3,timeout%2,short%3,disconnect%2,bitflip%3";

impl Fault {
    fn spec(&self, transfers: u64) -> String {
        match self {
            Fault::At(kind, position) => format!("{}@{}", kind.name(), position.index(transfers)),
            Fault::Random(kind, percent) => format!("{}%{percent}", kind.name()),
            Fault::Mixed => MIXED.to_string(),
        }
    }

    /// The kinds this fault can inject.
    fn kinds(&self) -> Vec<Kind> {
        match self {
            Fault::At(kind, _) | Fault::Random(kind, _) => vec![*kind],
            Fault::Mixed => {
                vec![Kind::Stall, Kind::Timeout, Kind::Short, Kind::Disconnect, Kind::BitFlip]
            }
        }
    }
}

struct Case {
    fault: Fault,
    seed: u64,
    /// The dext in a child process (`--sim-process`) rather than in `fwupload`.
    sim_process: bool,
}

// ---------------------------------------------------------------------------
// Images and the device

/// splitmix64: the test's own pseudo-random numbers (images, sizes).
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn random_bytes(len: usize, stream: u64) -> Vec<u8> {
    let mut state = splitmix(stream);
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state = splitmix(state);
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Everything the cases share: the images, the device they start from.
struct World {
    /// Removes `dir` when the world goes, whether the test passed or not.
    scratch: Scratch,
    dir: PathBuf,
    /// The flash every case starts from (OLD active, STALE inactive).
    base_flash: PathBuf,
    old: Vec<u8>,
    bank_size: u64,
    /// Per seed: the NEW image and its file.
    new: Vec<(Vec<u8>, PathBuf)>,
}

impl World {
    fn payload() -> u64 {
        SLOT_SIZE - u64::from(SLOT_HEADER_SIZE)
    }

    fn new_image(&self, seed: u64) -> &(Vec<u8>, PathBuf) {
        &self.new[seed as usize]
    }

    fn transfers(&self, seed: u64) -> u64 {
        (self.new_image(seed).0.len() as u64).div_ceil(World::payload())
    }
}

/// The NEW image for `seed`: its length varies by up to a slot, so the last
/// transfer is of every size. Even seeds are fresh bytes; odd seeds are the
/// stale image the inactive bank holds with a few bytes changed, so that most
/// sectors already hold their bytes and the device skips programming them.
fn new_image(seed: u64, size: usize, stale: &[u8]) -> Vec<u8> {
    let len = size - 1000 + (splitmix(seed ^ 0x5EED) % 16_000) as usize;
    if seed.is_multiple_of(2) {
        return random_bytes(len, 0x4E45_5700 + seed);
    }
    let mut image = stale[..len].to_vec();
    let mut at = (splitmix(seed) % 4096) as usize;
    while at < len {
        image[at] ^= 0x5A;
        at += 9_000 + (splitmix(seed.wrapping_add(at as u64)) % 4096) as usize;
    }
    image
}

fn fwupload() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fwupload"));
    command.stdin(Stdio::null());
    command
}

/// The arguments of an upload of `image` to the device in `flash`.
fn upload_args(world: &World, image: &Path, flash: &Path, sim_process: bool) -> Vec<String> {
    let mut args: Vec<String> = vec![
        image.display().to_string(),
        "--flash".into(),
        flash.display().to_string(),
        "--sim".into(),
        "fast".into(),
        "--slot-size".into(),
        SLOT_SIZE.to_string(),
        "--bank-size".into(),
        world.bank_size.to_string(),
        "--transfer-timeout-ms".into(),
        TRANSFER_TIMEOUT_MS.into(),
        "--json".into(),
        "--dext".into(),
        DEXT.into(),
        // The images are raw binaries, which carry no address of their own.
        "--address".into(),
        "0".into(),
    ];
    if sim_process {
        args.push("--sim-process".into());
    }
    args
}

fn parse_env(name: &str, default: u64, parse: fn(&str) -> Option<u64>) -> u64 {
    match std::env::var(name) {
        Ok(text) => parse(&text).unwrap_or_else(|| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

fn setup(seeds: u64, size: usize) -> World {
    // A short name: `--sim-process` puts its socket a few levels below.
    let scratch = Scratch::new("fm");
    let dir = scratch.to_path_buf();
    let stale = random_bytes(size + 16_000, 0x5747_4C45);
    let old = random_bytes(size * 3 / 4 + 77, 0x4F4C_4400);
    let new: Vec<(Vec<u8>, PathBuf)> = (0..seeds)
        .map(|seed| {
            let image = new_image(seed, size, &stale);
            let path = dir.join(format!("new{seed}.bin"));
            std::fs::write(&path, &image).unwrap();
            (image, path)
        })
        .collect();
    let largest = new.iter().map(|(image, _)| image.len()).chain([stale.len(), old.len()]).max();
    let bank_size = (largest.unwrap() as u64).div_ceil(64 * 1024) * 64 * 1024;
    let world = World {
        scratch,
        base_flash: dir.join("base.flash"),
        dir: dir.clone(),
        old: old.clone(),
        bank_size,
        new,
    };
    // The device: the stale image, then OLD over it; no faults.
    for (name, bytes) in [("stale.bin", &stale), ("old.bin", &old)] {
        let image = dir.join(name);
        std::fs::write(&image, bytes).unwrap();
        let args = upload_args(&world, &image, &world.base_flash, false);
        let ran = run(&args, DEADLINE);
        assert_eq!(ran.code(), Some(0), "setting up the device ({name}): {}", ran.stderr);
    }
    let (bank, _) = inspect(&world.base_flash, &world.old, &world.new_image(0).0)
        .unwrap_or_else(|e| panic!("the device set up for the matrix: {e}"));
    assert_eq!(bank, Holds::Old, "the device set up for the matrix");
    world
}

// ---------------------------------------------------------------------------
// Running fwupload

/// How a child process ended.
struct Ran {
    /// `None`: it missed its deadline and was killed (or its output stayed
    /// open: a process it started outlived it).
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Ran {
    fn hung(&self) -> bool {
        self.status.is_none()
    }

    fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    fn signal(&self) -> Option<i32> {
        self.status.and_then(|s| s.signal())
    }

    /// The last JSON line on stdout: the summary.
    fn summary(&self) -> Option<Value> {
        let line = self.stdout.lines().last()?;
        let value: Value = serde_json::from_str(line).ok()?;
        (value["event"] == "summary").then_some(value)
    }

    fn ending(&self) -> String {
        match self.status {
            None => "hung".into(),
            Some(status) => match (status.code(), status.signal()) {
                (Some(code), _) => format!("exit {code}"),
                (None, Some(signal)) => format!("signal {signal}"),
                _ => status.to_string(),
            },
        }
    }

    fn transcript(&self) -> String {
        let tail = |text: &str| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(6)..].join("\n      ")
        };
        format!(
            "{} after {:.2?}\n    stdout: {}\n    stderr: {}",
            self.ending(),
            self.elapsed,
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

fn read_all(mut from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        let _ = sender.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    receiver
}

/// Runs `fwupload ARGS` under `deadline`; kills it if it misses it.
fn run(args: &[String], deadline: Duration) -> Ran {
    run_in(args, deadline, None)
}

/// Like [`run`], with `TMPDIR` pointing into `tmp` (where `--sim-process`
/// makes its socket), so nothing outlives the case's directory.
fn run_in(args: &[String], deadline: Duration, tmp: Option<&Path>) -> Ran {
    let mut command = fwupload();
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(tmp) = tmp {
        command.env("TMPDIR", tmp);
    }
    let started = Instant::now();
    let mut child = {
        let _no_flash_open = FORK.lock().unwrap_or_else(|e| e.into_inner());
        command.spawn().expect("starting fwupload")
    };
    let stdout = read_all(child.stdout.take().unwrap());
    let stderr = read_all(child.stderr.take().unwrap());
    let mut status = loop {
        if let Some(status) = child.try_wait().expect("waiting for fwupload") {
            break Some(status);
        }
        if started.elapsed() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    // A `--sim-process` server shares fwupload's output; it must die with it.
    let grace = Duration::from_secs(10);
    let stdout = stdout.recv_timeout(grace).ok();
    let stderr = stderr.recv_timeout(grace).ok();
    if stdout.is_none() || stderr.is_none() {
        status = None;
    }
    Ran {
        status,
        stdout: stdout.unwrap_or_default(),
        stderr: stderr.unwrap_or_else(|| "(output still open 10 s after fwupload ended)".into()),
        elapsed,
    }
}

// ---------------------------------------------------------------------------
// Inspecting the device

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    Old,
    New,
}

impl fmt::Display for Holds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Holds::Old => "the old image",
            Holds::New => "the new image",
        })
    }
}

/// Held while this process has a flash file open, and while it starts a
/// child. A child gets a copy of every descriptor open in this process until
/// it execs (closing them), and with it a share of the flash file's lock
/// (`flock` locks belong to the open file): a flash being inspected by one
/// thread while another starts a child would stay locked a moment after the
/// inspection, and the rerun that follows could find it "in use".
static FORK: Mutex<()> = Mutex::new(());

/// An open flash file, with [`FORK`] held until it is closed.
struct OpenFlash {
    flash: Flash,
    _no_fork: std::sync::MutexGuard<'static, ()>,
}

/// Opens the flash file, waiting while a server that is going away still holds it.
fn open_flash(path: &Path) -> Result<OpenFlash, String> {
    let started = Instant::now();
    loop {
        let no_fork = FORK.lock().unwrap_or_else(|e| e.into_inner());
        match Flash::open_existing(path, FlashTiming::INSTANT) {
            Ok(flash) => return Ok(OpenFlash { flash, _no_fork: no_fork }),
            Err(FlashError::InUse { .. }) if started.elapsed() < FLASH_RELEASE => {
                drop(no_fork);
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(error) => return Err(format!("the flash file cannot be opened: {error}")),
        }
    }
}

/// What the device's active bank holds: the old or the new image, whole and
/// byte for byte under a valid record with that image's length and CRC-32.
/// Anything else is an error naming what is wrong. Also returns the active
/// bank's number.
fn inspect(path: &Path, old: &[u8], new: &[u8]) -> Result<(Holds, u8), String> {
    let open = open_flash(path)?;
    let flash = &open.flash;
    let active = flash.active_bank();
    let record = flash.bank_record(active);
    if !record.valid {
        return Err(format!("active bank {active} is not marked valid ({record:?})"));
    }
    let (holds, image) = if record.len == new.len() as u64 && record.crc32 == crc32fast::hash(new) {
        (Holds::New, new)
    } else if record.len == old.len() as u64 && record.crc32 == crc32fast::hash(old) {
        (Holds::Old, old)
    } else {
        return Err(format!(
            "active bank {active}'s record is neither image: {record:?}; old is {} bytes with \
             CRC-32 {:#010x}, new is {} bytes with {:#010x}",
            old.len(),
            crc32fast::hash(old),
            new.len(),
            crc32fast::hash(new)
        ));
    };
    if record.load_address != 0 {
        return Err(format!("active bank {active}'s record has load address {record:?}"));
    }
    let mut bytes = vec![0u8; image.len()];
    flash.read(active, 0, &mut bytes).map_err(|e| format!("reading bank {active}: {e}"))?;
    if let Some(at) = bytes.iter().zip(image).position(|(a, b)| a != b) {
        let differing = bytes.iter().zip(image).filter(|(a, b)| a != b).count();
        return Err(format!(
            "active bank {active}'s record says {holds}, but its byte {at:#x} is {:#04x}, not \
             {:#04x} ({differing} bytes differ)",
            bytes[at], image[at]
        ));
    }
    // No bank is marked good over bytes that are not what its record says.
    let other = 1 - active;
    let record = flash.bank_record(other);
    if record.valid {
        let crc = flash
            .crc32(other, record.len)
            .map_err(|e| format!("inactive bank {other} is marked valid with {record:?}: {e}"))?;
        if crc != record.crc32 {
            return Err(format!(
                "inactive bank {other} is marked valid with {record:?} but holds CRC-32 {crc:#010x}"
            ));
        }
    }
    Ok((holds, active))
}

// ---------------------------------------------------------------------------
// One case

#[derive(Default)]
struct Outcome {
    label: String,
    repro: String,
    hung: bool,
    corrupt: Option<String>,
    survived: bool,
    /// Expectations not met besides the device's state (exit codes, messages).
    problems: Vec<String>,
    /// The rerun's resume offset.
    resumed_from: Option<u64>,
    /// Where a `kill-client@N` fault struck.
    client_killed_at: Option<Position>,
    image_len: u64,
}

fn shell_line(args: &[String]) -> String {
    let mut line = String::from("fwupload");
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    line
}

fn run_case(world: &World, case: &Case, number: usize) -> Outcome {
    let (new, image) = world.new_image(case.seed);
    let transfers = world.transfers(case.seed);
    let spec = case.fault.spec(transfers);
    let dir = world.dir.join(format!("c{number}"));
    std::fs::create_dir_all(&dir).unwrap();
    let flash = dir.join("d.flash");
    std::fs::copy(&world.base_flash, &flash).expect("copying the base flash");
    let mut args = upload_args(world, image, &flash, case.sim_process);
    let rerun_args = args.clone();
    args.extend(["--fault".into(), spec.clone(), "--seed".into(), case.seed.to_string()]);
    let label = format!(
        "{spec} seed {} ({} bytes, {transfers} transfers, {})",
        case.seed,
        new.len(),
        if case.sim_process { "--sim-process" } else { "in-process" }
    );
    let mut outcome = Outcome {
        client_killed_at: match case.fault {
            Fault::At(Kind::KillClient, position) => Some(position),
            _ => None,
        },
        label: label.clone(),
        image_len: new.len() as u64,
        repro: format!(
            "cp {} {}; {}",
            world.base_flash.display(),
            flash.display(),
            shell_line(&args)
        ),
        ..Outcome::default()
    };

    // The faulted upload.
    let ran = run_in(&args, DEADLINE, Some(&dir));
    let problem = |what: String| format!("{what}\n    {}", ran.transcript());
    if ran.hung() {
        outcome.hung = true;
        outcome.problems.push(problem("fwupload did not finish".into()));
    }
    let after = inspect(&flash, &world.old, new);
    match &after {
        Err(error) => outcome.corrupt = Some(format!("after the faulted run: {error}")),
        Ok((holds, _)) => check_ending(case, &ran, *holds, new, &mut outcome.problems),
    }

    // The rerun, without faults.
    let rerun = run_in(&rerun_args, DEADLINE, Some(&dir));
    let mut rerun_ok = !rerun.hung();
    if rerun.hung() {
        outcome.hung = true;
    }
    if rerun.code() != Some(0) {
        rerun_ok = false;
        outcome.problems.push(format!("the rerun did not commit\n    {}", rerun.transcript()));
    } else if let Some(summary) = rerun.summary() {
        let fine = summary["ok"] == true
            && summary["verified"] == true
            && summary["bytes"] == new.len() as u64
            && summary["crc32"] == crc32fast::hash(new);
        if !fine {
            rerun_ok = false;
            outcome
                .problems
                .push(format!("the rerun's summary is not a verified commit: {summary}"));
        }
        outcome.resumed_from = summary["resumed_from"].as_u64();
    } else {
        rerun_ok = false;
        outcome.problems.push(format!("the rerun printed no summary\n    {}", rerun.transcript()));
    }
    match inspect(&flash, &world.old, new) {
        Ok((Holds::New, _)) => {}
        Ok((Holds::Old, _)) => {
            rerun_ok = false;
            if !rerun.hung() {
                outcome.problems.push("after the rerun the device still runs the old image".into());
            }
        }
        Err(error) => {
            rerun_ok = false;
            outcome.corrupt.get_or_insert(format!("after the rerun: {error}"));
        }
    }
    outcome.survived = after.is_ok() && rerun_ok && outcome.corrupt.is_none() && !outcome.hung;
    if outcome.problems.is_empty() && outcome.corrupt.is_none() && !outcome.hung {
        let _ = std::fs::remove_dir_all(&dir);
    }
    outcome
}

/// Checks how the faulted `fwupload` ended against what the device holds.
fn check_ending(case: &Case, ran: &Ran, holds: Holds, new: &[u8], problems: &mut Vec<String>) {
    if ran.hung() {
        return;
    }
    let kinds = case.fault.kinds();
    let mut problem = |what: String| problems.push(format!("{what}\n    {}", ran.transcript()));
    let summary = ran.summary();
    let killed = ran.signal() == Some(SIGKILL);
    let client_kill = kinds.contains(&Kind::KillClient);
    match &case.fault {
        // kill-client@N always fires: the process dies by SIGKILL, no exit code.
        Fault::At(Kind::KillClient, _) if !killed => {
            problem("kill-client: fwupload was not killed".into());
            return;
        }
        Fault::At(..) if !client_kill && ran.code() != Some(0) => {
            // One fault is within every retry budget: the upload recovers.
            problem(format!(
                "one {} fault is within the retry budget; fwupload should have committed",
                kinds[0].name()
            ));
        }
        _ => {}
    }
    if killed {
        if !client_kill {
            problem("fwupload died by SIGKILL without a kill-client fault".into());
        }
        return;
    }
    let Some(code) = ran.code() else {
        problem("fwupload ended without an exit code".into());
        return;
    };
    let Some(summary) = summary else {
        problem("stdout does not end with a JSON summary line".into());
        return;
    };
    if summary["ok"] != (code == 0) {
        problem(format!("exit {code} but the summary says ok = {}", summary["ok"]));
    }
    if code == 0 {
        // Committed and verified: the device must run the whole new image.
        if holds != Holds::New {
            problem(format!("fwupload exited 0 but the device holds {holds}"));
        }
        let fine = summary["verified"] == true
            && summary["bytes"] == new.len() as u64
            && summary["crc32"] == crc32fast::hash(new);
        if !fine {
            problem(format!("exit 0 without a verified summary of the new image: {summary}"));
        }
        // A recovered fault is no error: a successful run reports none.
        if let Some(line) = ran.stderr.lines().find(|line| line.contains("error:")) {
            problem(format!("fwupload committed but reported {line:?}"));
        }
        // The fault was met: its retry counter moved.
        if let Fault::At(kind, _) = case.fault
            && let Some(counter) = kind.evidence()
            && summary["retries"][counter].as_u64().unwrap_or(0) == 0
        {
            let text = format!(
                "{}: no {counter} retry in the summary: the fault never reached a transfer",
                kind.name()
            );
            // Every bit of a slot is covered by its CRC (the header's fields
            // too), so even a flipped bit must show as a stall.
            problem(text);
        }
        return;
    }
    // Failed: a documented code, and a message that names the fault.
    if ![6, 7].contains(&code) {
        problem(format!("exit {code} is not the documented code for a failed transfer (6, 7)"));
    }
    if summary["exit_code"] != code {
        problem(format!("exit {code} but the summary says exit_code = {}", summary["exit_code"]));
    }
    let message = summary["message"].as_str().unwrap_or_default().to_lowercase();
    let named =
        kinds.iter().flat_map(|kind| kind.named_by()).any(|needle| message.contains(needle));
    if !named {
        let names: Vec<&str> = kinds.iter().map(|kind| kind.name()).collect();
        problem(format!("the failure message does not name the fault ({})", names.join(", ")));
    }
}

// ---------------------------------------------------------------------------
// The test

fn cases(seeds: u64) -> Vec<Case> {
    let mut cases = Vec::new();
    for seed in 0..seeds {
        for kind in Kind::ALL {
            let sim_process = kind == Kind::KillDext || seed % 2 == 1;
            for position in Position::ALL {
                cases.push(Case { fault: Fault::At(kind, position), seed, sim_process });
            }
            let percent = if kind == Kind::Short { 20.0 } else { 10.0 };
            cases.push(Case { fault: Fault::Random(kind, percent), seed, sim_process });
        }
        cases.push(Case { fault: Fault::Mixed, seed, sim_process: seed.is_multiple_of(2) });
    }
    cases
}

#[test]
fn fault_matrix() {
    let seeds = parse_env("FAULT_MATRIX_SEEDS", 5, |t| t.trim().parse().ok()).max(1);
    let size = parse_env("FAULT_MATRIX_SIZE", 320 * 1024, |t| fwloader::sim::parse_size(t).ok());
    let threads = parse_env("FAULT_MATRIX_THREADS", 4, |t| t.trim().parse().ok()).max(1);
    assert!(size >= 64 * 1024, "FAULT_MATRIX_SIZE must be at least 64K");
    let started = Instant::now();
    let world = Arc::new(setup(seeds, size as usize));
    for seed in 0..seeds {
        assert!(world.transfers(seed) >= 4, "each upload must take several transfers");
    }

    let queue: Arc<Mutex<VecDeque<(usize, Case)>>> =
        Arc::new(Mutex::new(cases(seeds).into_iter().enumerate().collect()));
    let total = queue.lock().unwrap().len();
    let outcomes = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (queue, outcomes, world) =
                (Arc::clone(&queue), Arc::clone(&outcomes), Arc::clone(&world));
            std::thread::spawn(move || {
                loop {
                    let next = queue.lock().unwrap().pop_front();
                    let Some((number, case)) = next else { return };
                    let outcome = run_case(&world, &case, number);
                    outcomes.lock().unwrap().push((number, outcome));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a matrix worker panicked");
    }
    let mut outcomes = Arc::try_unwrap(outcomes).ok().unwrap().into_inner().unwrap();
    outcomes.sort_by_key(|(number, _)| *number);
    assert_eq!(outcomes.len(), total);

    let runs = outcomes.len();
    let survived = outcomes.iter().filter(|(_, o)| o.survived).count();
    let corrupt = outcomes.iter().filter(|(_, o)| o.corrupt.is_some()).count();
    let hung = outcomes.iter().filter(|(_, o)| o.hung).count();
    let mut failures = Vec::new();
    for (_, outcome) in &outcomes {
        let mut lines = Vec::new();
        if let Some(corrupt) = &outcome.corrupt {
            lines.push(format!("CORRUPT: {corrupt}"));
        }
        lines.extend(outcome.problems.iter().cloned());
        if !lines.is_empty() {
            failures.push(format!(
                "{}:\n  {}\n  repro: {}",
                outcome.label,
                lines.join("\n  "),
                outcome.repro
            ));
        }
    }
    // Resuming: after a client killed part way, the rerun starts from the
    // prefix the device kept (sector-aligned, within the image), and in at
    // least one case that prefix is not empty. (How much the device had
    // programmed when the client died is a race with its flash thread.)
    let mut resumed_any = false;
    for position in Position::ALL {
        let resumed: Vec<u64> = outcomes
            .iter()
            .filter(|(_, o)| o.client_killed_at == Some(position))
            .filter_map(|(_, o)| o.resumed_from)
            .collect();
        eprintln!("kill-client at the {position:?} transfer: reruns resumed from {resumed:?}");
        resumed_any |= resumed.iter().any(|&offset| offset > 0);
    }
    for (_, outcome) in &outcomes {
        let (Some(offset), Some(_)) = (outcome.resumed_from, outcome.client_killed_at) else {
            continue;
        };
        if offset > outcome.image_len || (offset % 4096 != 0 && offset != outcome.image_len) {
            failures.push(format!(
                "{}: the rerun resumed from {offset}: not a sector boundary in the image",
                outcome.label
            ));
        }
    }
    if !resumed_any {
        failures.push("no rerun after a kill-client fault resumed from a kept prefix".into());
    }
    for failure in &failures {
        eprintln!("FAILED {failure}\n");
    }
    eprintln!("fault matrix took {:.1?} on {threads} threads", started.elapsed());
    println!(
        "fault-matrix ({DEXT} dext): {runs} runs, {survived} survived, {corrupt} corrupt, {hung} hung"
    );
    assert!(
        failures.is_empty() && survived == runs && corrupt == 0 && hung == 0,
        "fault-matrix ({DEXT} dext): {runs} runs, {survived} survived, {corrupt} corrupt, {hung} hung; \
         {} case(s) failed (details above; their directories: {})",
        failures.len(),
        world.scratch.keep_hint()
    );
}

/// The inspection the matrix relies on fails for a half-written image, a
/// wrong CRC, and a bank marked valid over other bytes.
#[test]
fn the_inspection_catches_a_half_image_and_a_wrong_crc() {
    let world = setup(1, 64 * 1024);
    let new = &world.new_image(0).0;
    let (holds, active) = inspect(&world.base_flash, &world.old, new).unwrap();
    assert_eq!(holds, Holds::Old);
    let bank_at = |bank: u8| 4096 + u64::from(bank) * world.bank_size;
    let record_at = |bank: u8| 32 + 32 * u64::from(bank);
    let tamper = |name: &str, at: u64, bytes: &[u8]| {
        use std::os::unix::fs::FileExt;
        let path = world.dir.join(name);
        std::fs::copy(&world.base_flash, &path).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(bytes, at).unwrap();
        inspect(&path, &world.old, new)
    };
    // Half of the new image over the old one (bank bytes are stored inverted).
    let half: Vec<u8> = new[..new.len() / 2].iter().map(|b| !b).collect();
    let error = tamper("half.flash", bank_at(active), &half).unwrap_err();
    assert!(error.contains("differ"), "{error}");
    // One byte of the old image changed.
    let error = tamper("byte.flash", bank_at(active) + 1000, &[0x00]).unwrap_err();
    assert!(error.contains("byte 0x3e8"), "{error}");
    // The record's CRC wrong.
    let error = tamper("crc.flash", record_at(active) + 16, &[0xAA, 0xBB]).unwrap_err();
    assert!(error.contains("neither image"), "{error}");
    // The record not valid.
    let error = tamper("invalid.flash", record_at(active) + 20, &[0]).unwrap_err();
    assert!(error.contains("not marked valid"), "{error}");
    // The inactive bank marked valid over bytes that are not its image.
    let error = tamper("other.flash", bank_at(1 - active) + 5, &[0x11]).unwrap_err();
    assert!(error.contains("inactive bank"), "{error}");
}

/// A single bit flipped in transit costs a retry, not the upload, wherever
/// it lands. With seed 22662 the `bitflip@0` fault flips bit 14 of the first
/// slot's `image_offset` (0 → 0x4000); the header's CRC-32 covers its fields,
/// so the device refuses the slot (a stall) instead of storing the payload at
/// the wrong place, and the slot goes again. (Before the CRC covered the
/// fields, this upload failed with "finish failed: kIOReturnNotReady".)
#[test]
fn a_bit_flipped_in_a_slot_header_is_retried() {
    let world = setup(1, 320 * 1024);
    let (new, image) = world.new_image(0);
    let flash = world.dir.join("flip.flash");
    std::fs::copy(&world.base_flash, &flash).unwrap();
    let mut args = upload_args(&world, image, &flash, false);
    args.extend(["--fault".into(), "bitflip@0".into(), "--seed".into(), "22662".into()]);
    let ran = run(&args, DEADLINE);
    let holds = inspect(&flash, &world.old, new).unwrap();
    assert_eq!(ran.code(), Some(0), "{}", ran.transcript());
    assert_eq!(holds.0, Holds::New);
}
