//! `fwupload`: uploads a firmware image to a device through the fwloader dext.
//!
//! On Linux the target is the built-in simulator (the fwloader dext model on
//! a simulated USB device whose flash persists in a file); on macOS it is the
//! dext itself, through IOKit, unless `--sim` is given.
//!
//! Exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | the image is committed and verified |
//! | 1 | anything else (an internal error, the simulator's flash file unusable) |
//! | 2 | usage: bad arguments |
//! | 3 | the image file cannot be read, is malformed, or is refused: a raw binary without `--address`, text in a record format given as `--format bin`, or a detected raw binary that is all text |
//! | 4 | the device (the dext's service) was not found or cannot be opened |
//! | 5 | permission denied (the userclient-access entitlement) |
//! | 6 | the transfer failed after its retries, or the device went away for good |
//! | 7 | verification failed: the device refused to commit, or reports another image |
//! | 130 | cancelled (Ctrl-C); the device keeps its previous image, a rerun resumes |

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use dextlink::image::{Format, Image, OpenOptions};
use dextlink::sim::usb::{FaultKind, FaultPlan, LinkModel};
use dextlink::sim::{ServerProcess, SocketTransport};
use dextlink::staging::{Cancel, Config, Phase, Progress, Summary, Upload, UploadError};
use dextlink::{Error, Transport};
use fwloader::FwLoader;
use fwloader::fw_loader::{self, SLOT_COUNT, SLOT_HEADER_SIZE, SLOT_SIZE};
use fwloader::sim::{self, DextKind, SimArgs};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

/// Upload a firmware image through the fwloader dext.
#[derive(Debug, Parser)]
#[command(version, after_help = EXIT_CODES)]
struct Args {
    /// The image: raw binary, Intel HEX, Motorola S-record, ELF or UF2.
    image: PathBuf,
    /// Image format; `auto` detects it from the contents and the extension.
    #[arg(long, default_value = "auto", value_name = "FORMAT")]
    format: FormatArg,
    /// Load address of a raw binary (decimal or 0x hex): required for one,
    /// since it carries none; the other formats carry their own.
    #[arg(long, value_name = "ADDRESS", value_parser = parse_address)]
    address: Option<u64>,
    /// Slots in flight at once (1..=8; default all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=SLOT_COUNT as i64))]
    slots: Option<u32>,
    /// Bytes of each slot used, header included (e.g. 64K; default 1M, the whole slot).
    #[arg(long, value_name = "BYTES", value_parser = sim::parse_size)]
    slot_size: Option<u64>,
    /// Skip reading the device's state back after the commit.
    #[arg(long)]
    no_verify: bool,
    /// Parse the image and plan the upload without touching the device.
    #[arg(long)]
    dry_run: bool,
    /// JSON Lines on stdout (events, then a summary as the last line); nothing else.
    #[arg(long)]
    json: bool,
    /// Use the built-in simulator with this link model: usb2 (53.248 MB/s),
    /// usb2-real (41 MB/s), usb3 (450 MB/s) or fast (unthrottled).
    /// The default on Linux, with usb2.
    #[arg(long, value_name = "PROFILE", num_args = 0..=1, default_missing_value = "usb2", value_parser = sim::parse_link)]
    sim: Option<LinkModel>,
    /// Run the simulated dext in a child process (`fwloader-sim`), relaunched
    /// if it dies, as the system relaunches a crashed dext.
    #[arg(long)]
    sim_process: bool,
    /// Talk to an `fwloader-sim` already listening on this socket.
    #[arg(long, value_name = "SOCKET", conflicts_with_all = ["sim", "sim_process"])]
    connect: Option<PathBuf>,
    /// The simulated dext: `cpp` (the C++ dext of dext/, hosted by the
    /// simulator's DriverKit runtime on the simulated bootloader) or `rust`
    /// (its Rust model); in process and with --sim-process.
    #[arg(long, value_enum, default_value = "cpp", conflicts_with = "connect")]
    dext: DextKind,
    /// The dext's service name (IOKit).
    #[arg(long, value_name = "NAME", default_value = fw_loader::SERVICE)]
    service: String,
    #[command(flatten)]
    device: SimArgs,
}

const EXIT_CODES: &str = "\
Exit codes:
  0    committed and verified
  1    other errors
  2    usage
  3    image file unreadable, malformed or refused (a raw binary needs --address)
  4    device not found or cannot be opened
  5    permission denied
  6    transfer failed after retries, or the device did not come back
  7    verification failed (refused to commit, or another image reported)
  130  cancelled; the device keeps its previous image and a rerun resumes";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FormatArg {
    Auto,
    // The aliases are the names `Format::from_str` accepts.
    #[value(alias = "raw")]
    Bin,
    #[value(alias = "ihex")]
    Hex,
    #[value(alias = "s19", alias = "s28", alias = "s37", alias = "mot")]
    Srec,
    Elf,
    Uf2,
}

fn parse_address(text: &str) -> Result<u64, String> {
    sim::parse_number(text)
        .ok_or_else(|| format!("{text:?} is not an address (write e.g. 0x08000000)"))
}

/// How the run ended, as an exit code and a message.
struct Failure {
    code: u8,
    kind: &'static str,
    message: String,
}

impl Failure {
    fn new(code: u8, kind: &'static str, message: impl Into<String>) -> Failure {
        Failure { code, kind, message: message.into() }
    }
}

fn connect_failure(error: &Error) -> Failure {
    match error {
        Error::NotPermitted { .. } => Failure::new(5, "permission", error.to_string()),
        _ => Failure::new(4, "device-not-found", error.to_string()),
    }
}

fn upload_failure(error: &UploadError) -> Failure {
    match error {
        UploadError::Config(_) => Failure::new(2, "usage", error.to_string()),
        UploadError::Image(_) => Failure::new(3, "image", error.to_string()),
        UploadError::Connect(inner) => connect_failure(inner),
        UploadError::Refused { .. } => Failure::new(7, "verify-failed", error.to_string()),
        UploadError::Cancelled => Failure::new(130, "cancelled", error.to_string()),
        _ => Failure::new(6, "transfer-failed", error.to_string()),
    }
}

/// Where messages go: JSON Lines on stdout, or text (progress on stderr).
struct Output {
    json: bool,
    bar: Option<ProgressBar>,
    phase: Option<Phase>,
    last_line: Instant,
}

impl Output {
    fn new(json: bool) -> Output {
        let bar = (!json && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>9} [{bar:36}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        });
        Output { json, bar, phase: None, last_line: Instant::now() }
    }

    fn event(&self, value: Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{value}");
        let _ = stdout.flush();
    }

    fn progress(&mut self, p: &Progress) {
        let new_phase = self.phase != Some(p.phase);
        self.phase = Some(p.phase);
        if self.json {
            if new_phase
                || self.last_line.elapsed() >= Duration::from_millis(200)
                || p.done == p.total
            {
                self.last_line = Instant::now();
                self.event(json!({
                    "event": "progress",
                    "phase": p.phase.name(),
                    "done": p.done,
                    "total": p.total,
                    "acknowledged": p.acknowledged,
                    "resumed_from": p.resumed_from,
                    "bytes_per_second": p.bytes_per_second.round(),
                    "transfers": p.transfers,
                    "retries": retries_json(&p.retries),
                }));
            }
            return;
        }
        if let Some(bar) = &self.bar {
            if new_phase {
                bar.reset();
                bar.set_prefix(p.phase.name());
                bar.set_length(p.total);
            }
            bar.set_position(p.done);
            let retries = p.retries.total();
            if retries > 0 {
                bar.set_message(format!("({retries} retries)"));
            }
        } else if new_phase {
            eprintln!("{}…", p.phase.name());
            self.last_line = Instant::now();
        } else if self.last_line.elapsed() >= Duration::from_secs(1) {
            self.last_line = Instant::now();
            eprintln!(
                "  {} {:.1}% ({} of {} bytes, {:.2} MB/s)",
                p.phase.name(),
                percent(p.done, p.total),
                p.done,
                p.total,
                p.bytes_per_second / 1e6
            );
        }
    }

    fn finish_bar(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn note(&self, text: &str) {
        if self.json {
            eprintln!("fwupload: {text}");
        } else if let Some(bar) = &self.bar {
            bar.println(text);
        } else {
            eprintln!("{text}");
        }
    }
}

fn percent(done: u64, total: u64) -> f64 {
    if total == 0 { 100.0 } else { done as f64 * 100.0 / total as f64 }
}

fn retries_json(r: &dextlink::staging::Retries) -> Value {
    json!({
        "stall": r.stalls,
        "timeout": r.timeouts,
        "aborted": r.aborted,
        "short": r.short,
        "reconnect": r.reconnects,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut output = Output::new(args.json);
    let outcome = run(&args, &mut output);
    output.finish_bar();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if args.json {
                output.event(json!({
                    "event": "summary",
                    "ok": false,
                    "exit_code": failure.code,
                    "error": failure.kind,
                    "message": failure.message,
                }));
            } else {
                eprintln!("error: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

fn open_image(args: &Args) -> Result<Image, Failure> {
    let mut options = OpenOptions::new();
    let format = match args.format {
        FormatArg::Auto => None,
        FormatArg::Bin => Some(Format::Bin),
        FormatArg::Hex => Some(Format::Hex),
        FormatArg::Srec => Some(Format::Srec),
        FormatArg::Elf => Some(Format::Elf),
        FormatArg::Uf2 => Some(Format::Uf2),
    };
    if let Some(format) = format {
        options.format(format);
    }
    if let Some(address) = args.address {
        options.load_address(address);
    }
    options.open(&args.image).map_err(|e| Failure::new(3, "image", e.to_string()))
}

fn config(args: &Args) -> Result<Config, Failure> {
    let slot_size = match args.slot_size {
        None => 0,
        Some(size) if size > u64::from(SLOT_HEADER_SIZE) && size <= u64::from(SLOT_SIZE) => {
            size as u32
        }
        Some(size) => {
            return Err(Failure::new(
                2,
                "usage",
                format!(
                    "--slot-size {size} does not fit: it must be more than the {SLOT_HEADER_SIZE}-byte \
                     header and at most the dext's {SLOT_SIZE}-byte slot"
                ),
            ));
        }
    };
    Ok(Config { slots: args.slots.unwrap_or(0), slot_size, ..Config::default() })
}

type Client = FwLoader<Arc<dyn Transport>>;
type Connect = Box<dyn FnMut() -> Result<Client, Error> + Send>;

/// What the upload talks to, and how to reach it again after it went away.
struct Target {
    description: String,
    link: Option<LinkModel>,
    connect: Connect,
    /// A simulator server this run started (kept alive for the run).
    _server: Option<Arc<Mutex<Option<ServerProcess>>>>,
}

fn default_to_sim(args: &Args) -> bool {
    args.sim.is_some() || args.sim_process || !cfg!(target_vendor = "apple")
}

fn target(args: &Args, faults: &FaultPlan) -> Result<Target, Failure> {
    if let Some(socket) = &args.connect {
        let socket = socket.clone();
        let description = format!("fwloader-sim on {}", socket.display());
        let connect: Connect = Box::new(move || {
            let transport = SocketTransport::connect(&socket, &Default::default())?;
            FwLoader::connect(Arc::new(transport) as Arc<dyn Transport>)
        });
        return Ok(Target { description, link: None, connect, _server: None });
    }
    if !default_to_sim(args) {
        return iokit_target(args);
    }
    let link = args.sim.unwrap_or(LinkModel::USB2);
    let mut options = args.device.options(link).map_err(|e| Failure::new(2, "usage", e))?;
    options.faults = faults.clone();
    let flash = match &options.flash {
        sim::FlashStore::File(path) => path.display().to_string(),
        sim::FlashStore::Memory => "memory".to_string(),
    };
    if args.sim_process {
        return sim_process_target(args, link, flash);
    }
    let description = format!(
        "built-in simulator ({} dext, link {}, flash {flash})",
        args.dext.name(),
        link.name
    );
    let connect = match args.dext {
        DextKind::Rust => in_process(
            args,
            sim::simulator(&options).map_err(|e| Failure::new(1, "simulator", e.to_string()))?,
        )?,
        #[cfg(target_os = "linux")]
        DextKind::Cpp => in_process(
            args,
            sim::cpp_simulator(&options)
                .map_err(|e| Failure::new(1, "simulator", e.to_string()))?,
        )?,
        #[cfg(not(target_os = "linux"))]
        DextKind::Cpp => {
            return Err(Failure::new(
                2,
                "usage",
                "the C++ dext runs in the simulator on Linux only; pass --dext rust",
            ));
        }
    };
    Ok(Target { description, link: Some(link), connect, _server: None })
}

/// Connections to `simulator` in this process, once its service is the one asked for.
fn in_process<D>(args: &Args, simulator: dextlink::sim::Simulator<D>) -> Result<Connect, Failure>
where
    D: dextlink::sim::Driver,
    dextlink::sim::InProcess<D::UserClient>: Transport,
{
    if simulator.service() != args.service {
        return Err(Failure::new(
            4,
            "device-not-found",
            format!(
                "no service named {:?}: the simulator publishes {:?}",
                args.service,
                simulator.service()
            ),
        ));
    }
    Ok(Box::new(move || {
        let transport = simulator.open()?;
        FwLoader::connect(Arc::new(transport) as Arc<dyn Transport>)
    }))
}

/// The simulated dext in a child process, relaunched when it dies.
fn sim_process_target(args: &Args, link: LinkModel, flash: String) -> Result<Target, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(1, "simulator", e.to_string()))?
        .with_file_name("fwloader-sim");
    let mut server_args: Vec<String> = vec![
        "--exit-with-parent".into(),
        "--dext".into(),
        args.dext.name().into(),
        "--link".into(),
        link.name.into(),
        "--flash".into(),
        flash.clone(),
    ];
    server_args.extend(["--bank-size".into(), args.device.bank_size.to_string()]);
    server_args
        .extend(["--transfer-timeout-ms".into(), args.device.transfer_timeout_ms.to_string()]);
    if args.device.flash_timing != dextlink::sim::flash::FlashTiming::INSTANT {
        server_args.extend(["--flash-timing".into(), "typical".into()]);
    }
    if let Some(library) = &args.device.dext_library {
        server_args.extend(["--dext-library".into(), library.display().to_string()]);
    }
    let mut first_args = server_args.clone();
    first_args.extend([
        "--fault".into(),
        args.device.fault.clone(),
        "--seed".into(),
        args.device.seed.to_string(),
    ]);
    let start = move |args: &[String]| -> Result<ServerProcess, Error> {
        let mut command = Command::new(&exe);
        command.args(args);
        ServerProcess::spawn(command)
            .map_err(|e| Error::Transport(format!("starting {}: {e}", exe.display())))
    };
    let server = Arc::new(Mutex::new(Some(
        start(&first_args).map_err(|e| Failure::new(1, "simulator", e.to_string()))?,
    )));
    let held = Arc::clone(&server);
    let connect: Connect = Box::new(move || {
        let mut slot = held.lock().unwrap_or_else(|e| e.into_inner());
        let socket = slot.as_ref().map(|s| s.socket_path().to_path_buf());
        let attempt = |socket: &Path| {
            let transport = SocketTransport::connect(socket, &Default::default())?;
            FwLoader::connect(Arc::new(transport) as Arc<dyn Transport>)
        };
        match socket.as_deref().map(attempt) {
            Some(Ok(client)) => Ok(client),
            // The server answered (its device is away for a moment, say):
            // the dext lives; another one could not take its flash anyway.
            Some(Err(error)) if !matches!(error, Error::NotFound { .. } | Error::Disconnected) => {
                Err(error)
            }
            _ => {
                // The dext died: relaunch it, without the faults (they were
                // for the first run), on the same flash.
                let relaunched = start(&server_args)?;
                let socket = relaunched.socket_path().to_path_buf();
                *slot = Some(relaunched);
                attempt(&socket)
            }
        }
    });
    let description =
        format!("simulator process ({} dext, link {}, flash {flash})", args.dext.name(), link.name);
    Ok(Target { description, link: Some(link), connect, _server: Some(server) })
}

#[cfg(target_vendor = "apple")]
fn iokit_target(args: &Args) -> Result<Target, Failure> {
    use dextlink::iokit::{IoKit, OpenOptions};
    let service = args.service.clone();
    let description = format!("IOKit service {service:?}");
    let connect: Connect = Box::new(move || {
        let options = OpenOptions { wait: Some(Duration::from_secs(5)), ..OpenOptions::default() };
        let transport = IoKit::open(&service, options)?;
        FwLoader::connect(Arc::new(transport) as Arc<dyn Transport>)
    });
    Ok(Target { description, link: None, connect, _server: None })
}

#[cfg(not(target_vendor = "apple"))]
fn iokit_target(_args: &Args) -> Result<Target, Failure> {
    unreachable!("off Apple platforms the simulator is always the target")
}

fn run(args: &Args, output: &mut Output) -> Result<(), Failure> {
    let faults = FaultPlan::parse(&args.device.fault, args.device.seed)
        .map_err(|e| Failure::new(2, "usage", format!("invalid --fault: {e}")))?;
    let server_faults = args
        .device
        .fault
        .split(',')
        .map(str::trim)
        .any(|item| !item.is_empty() && !item.starts_with(FaultKind::KillClient.name()));
    if args.connect.is_some() && server_faults {
        return Err(Failure::new(
            2,
            "usage",
            "with --connect, faults are the server's: pass --fault to fwloader-sim (only kill-client applies here)",
        ));
    }
    let config = config(args)?;
    let image = open_image(args)?;
    describe_image(&image, output);
    if args.dry_run {
        return dry_run(&image, &config, output);
    }

    let mut target = target(args, &faults)?;
    if output.json {
        output.event(json!({"event": "target", "target": target.description}));
    } else {
        output.note(&format!("target: {}", target.description));
    }

    let upload = Upload::new(image).config(config);
    let cancel = upload.cancel_handle();
    install_ctrl_c(&cancel);
    // A kill-client fault fires at the transfer it names: progress comes at
    // completions, so check every transfer submitted since the last report.
    let mut checked = 0;
    let summary = upload
        .run(&mut target.connect, |p| {
            if (checked..p.transfers).any(|index| faults.kills_client_at(index)) {
                output.note("kill-client fault: killing this process");
                sim::kill_this_process();
            }
            checked = p.transfers;
            output.progress(p);
        })
        .map_err(|e| upload_failure(&e))?;
    output.finish_bar();

    let verified = if args.no_verify { None } else { Some(verify(&mut target.connect, &summary)?) };
    report(&summary, target.link, verified, output);
    Ok(())
}

/// Reads the device's state back: the active bank must hold this image.
fn verify(connect: &mut Connect, summary: &Summary) -> Result<u32, Failure> {
    let client = connect().map_err(|e| connect_failure(&e))?;
    let state = client.status().map_err(|e| {
        Failure::new(7, "verify-failed", format!("reading the device's state: {e}"))
    })?;
    if state.active_len != summary.image.total_len || state.active_crc32 != summary.image.crc32 {
        return Err(Failure::new(
            7,
            "verify-failed",
            format!(
                "the device reports {} bytes with CRC-32 {:#010x} in its active bank; the image is {} bytes with {:#010x}",
                state.active_len, state.active_crc32, summary.image.total_len, summary.image.crc32
            ),
        ));
    }
    Ok(state.active_bank)
}

fn install_ctrl_c(cancel: &Cancel) {
    let cancel = cancel.clone();
    // If a handler cannot be installed, Ctrl-C simply ends the process: the
    // device still keeps its previous image, as with any interruption.
    let _ = ctrlc::set_handler(move || {
        eprintln!("\nfwupload: cancelling (the device keeps its previous image)…");
        cancel.cancel();
    });
}

fn describe_image(image: &Image, output: &Output) {
    if output.json {
        let segments: Vec<Value> =
            image.segments().iter().map(|s| json!({"address": s.address, "len": s.len})).collect();
        let gaps: Vec<Value> =
            image.gaps().iter().map(|g| json!({"address": g.address, "len": g.len})).collect();
        output.event(json!({
            "event": "image",
            "path": image.path().display().to_string(),
            "format": image.format().name(),
            "load_address": image.load_address(),
            "len": image.len(),
            "segments": segments,
            "gaps": gaps,
        }));
    } else {
        output.note(&format!(
            "image: {} ({}), {} bytes at {:#010x} in {} segment(s){}",
            image.path().display(),
            image.format().description(),
            image.len(),
            image.load_address(),
            image.segments().len(),
            match image.gaps().iter().map(|g| g.len).sum::<u64>() {
                0 => String::new(),
                gap => format!(", {gap} gap bytes filled with 0xFF"),
            }
        ));
    }
}

fn dry_run(image: &Image, config: &Config, output: &Output) -> Result<(), Failure> {
    let mut reader = image.reader().map_err(|e| Failure::new(3, "image", e.to_string()))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < image.len() {
        let n = buffer.len().min((image.len() - offset) as usize);
        reader
            .read_at(offset, &mut buffer[..n])
            .map_err(|e| Failure::new(3, "image", e.to_string()))?;
        hasher.update(&buffer[..n]);
        offset += n as u64;
    }
    let crc = hasher.finalize();
    let slot_size = if config.slot_size == 0 { SLOT_SIZE } else { config.slot_size };
    let payload = u64::from(slot_size - SLOT_HEADER_SIZE);
    let transfers = image.len().div_ceil(payload);
    let slots = if config.slots == 0 { SLOT_COUNT } else { config.slots };
    if output.json {
        output.event(json!({
            "event": "summary",
            "ok": true,
            "dry_run": true,
            "len": image.len(),
            "crc32": crc,
            "transfers": transfers,
            "slots": slots,
            "slot_size": slot_size,
        }));
    } else {
        println!(
            "dry run: {} bytes, CRC-32 {crc:#010x}; {transfers} transfer(s) of up to {payload} bytes, \
             {slots} slot(s) of {slot_size} bytes in flight; the device was not touched",
            image.len()
        );
    }
    Ok(())
}

fn report(summary: &Summary, link: Option<LinkModel>, active_bank: Option<u32>, output: &Output) {
    let rate = summary.transfer_rate();
    let utilisation = link.and_then(|l| l.bytes_per_second).map(|bps| rate / bps as f64);
    let total_time = summary.checksum_time + summary.transfer_time + summary.verify_time;
    if output.json {
        output.event(json!({
            "event": "summary",
            "ok": true,
            "bytes": summary.image.total_len,
            "crc32": summary.image.crc32,
            "load_address": summary.image.load_address,
            "session": summary.session,
            "resumed_from": summary.resumed_from,
            "bytes_sent": summary.bytes_sent,
            "transfers": summary.transfers,
            "slots": summary.slots,
            "slot_size": summary.slot_size,
            "seconds": total_time.as_secs_f64(),
            "transfer_seconds": summary.transfer_time.as_secs_f64(),
            "bytes_per_second": rate.round(),
            "link_utilisation": utilisation,
            "retries": retries_json(&summary.retries),
            "verified": active_bank.is_some(),
            "active_bank": active_bank,
        }));
        return;
    }
    let retries = &summary.retries;
    println!(
        "committed {} bytes (CRC-32 {:#010x}) in {:.3} s: {:.2} MB/s{}",
        summary.image.total_len,
        summary.image.crc32,
        total_time.as_secs_f64(),
        rate / 1e6,
        utilisation.map(|u| format!(", {:.1}% of the link", u * 100.0)).unwrap_or_default()
    );
    if summary.resumed_from > 0 {
        println!(
            "resumed at byte {} ({:.1}% was already on the device)",
            summary.resumed_from,
            percent(summary.resumed_from, summary.image.total_len)
        );
    }
    println!(
        "{} transfers, {} slots of {} bytes; retries: {} stall, {} timeout, {} aborted, {} short, {} reconnect",
        summary.transfers,
        summary.slots,
        summary.slot_size,
        retries.stalls,
        retries.timeouts,
        retries.aborted,
        retries.short,
        retries.reconnects
    );
    match active_bank {
        Some(bank) => println!("verified: the device runs the new image from bank {bank}"),
        None => println!("not verified (--no-verify)"),
    }
}
