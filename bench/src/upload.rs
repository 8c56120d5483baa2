//! The upload figures: the staging pipeline through the C++ fwloader dext
//! (its own code, hosted by the simulator's DriverKit runtime) on its
//! simulated device, each measured against the model it runs on, in the
//! same run.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dextlink::image::{Format, Image};
use dextlink::sim::flash::{FlashGeometry, FlashTiming};
use dextlink::sim::usb::{FaultPlan, LinkModel};
use dextlink::sim::{OpenOptions, ServerProcess, SocketTransport};
use dextlink::staging::{Config, Summary, Upload};
use fwloader::FwLoader;
use fwloader::device::BootloaderConfig;
use fwloader::fw_loader::{ImageInfo, SLOT_COUNT, SLOT_SIZE};
use fwloader::sim::{FlashStore, SimOptions};

use crate::Figure;

// The C++ dext where the simulator's DriverKit runtime runs (Linux); the
// Rust model of it elsewhere, so that the benchmark still builds there.
#[cfg(target_os = "linux")]
use fwloader::sim::cpp_simulator as simulator;
#[cfg(not(target_os = "linux"))]
use fwloader::sim::simulator;

const MIB: u64 = 1 << 20;

/// A scratch directory for image files, removed at the end.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("dextlink-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the benchmark's scratch directory");
        Scratch(dir)
    }

    /// A raw image of `len` bytes of a pattern, written once per size.
    fn image(&self, len: u64) -> PathBuf {
        let path = self.0.join(format!("image-{len}.bin"));
        if !path.exists() {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            let block: Vec<u8> = (0..MIB as u32)
                .map(|i| i.wrapping_mul(2_654_435_761).rotate_left(11) as u8)
                .collect();
            let mut written = 0;
            while written < len {
                let n = (len - written).min(MIB) as usize;
                // Vary each block so that no two are alike.
                let mut chunk = block[..n].to_vec();
                chunk[..8].copy_from_slice(&written.to_le_bytes());
                file.write_all(&chunk).unwrap();
                written += n as u64;
            }
            file.flush().unwrap();
        }
        path
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh simulated device in this process, its banks in memory and big
/// enough. `timing: None` is a device without the flash model: it checks
/// every slot and the whole-image CRC but stores nothing, so that the link
/// (or the host) is all that is measured.
fn device(link: LinkModel, timing: Option<FlashTiming>, bank_size: u64) -> SimOptions {
    SimOptions {
        link,
        faults: FaultPlan::none(),
        flash: FlashStore::Memory,
        geometry: FlashGeometry { sector_size: 4096, bank_size: bank_size.next_multiple_of(MIB) },
        timing: timing.unwrap_or(FlashTiming::INSTANT),
        bootloader: BootloaderConfig { flash: timing.is_some(), ..BootloaderConfig::default() },
        ..SimOptions::default()
    }
}

/// Uploads `image` to a fresh in-process device; returns the summary and the
/// device's modelled flash busy time.
fn upload(image: &Path, options: &SimOptions, config: Config) -> (Summary, Duration) {
    let simulator = simulator(options).expect("the simulated device");
    let image =
        Image::open(image, Some(Format::Bin), Some(0x0800_0000)).expect("the benchmark image");
    let connect = || FwLoader::connect(simulator.open()?);
    let summary = Upload::new(image).config(config).run(connect, |_| {}).expect("the upload");
    let busy = simulator.driver().bootloader().flash().stats().busy;
    (summary, busy)
}

/// Pipelined upload throughput over `link` as a share of its modelled rate.
pub fn pipelined(scratch: &Scratch, link: LinkModel, len: u64, target: f64) -> Figure {
    let image = scratch.image(len);
    let options = device(link, None, len);
    let (summary, _) = upload(&image, &options, Config::default());
    let rate = summary.transfer_rate();
    let link_rate = link.bytes_per_second.expect("a throttled link") as f64;
    eprintln!(
        "pipelined {}: {} MiB in {:.3} s = {:.2} MB/s (link {:.3} MB/s), {SLOT_COUNT} slots of {} KiB",
        link.name,
        len / MIB,
        summary.transfer_time.as_secs_f64(),
        rate / 1e6,
        link_rate / 1e6,
        SLOT_SIZE / 1024
    );
    let ratio = rate / link_rate;
    Figure {
        name: if link.name == "usb2" {
            "pipelined upload / USB 2.0 HS link rate (53.248 MB/s)"
        } else {
            "pipelined upload / SuperSpeed link rate (450 MB/s)"
        },
        value: ratio,
        unit: "x",
        target: if target >= 0.97 { ">= 0.97 x" } else { ">= 0.95 x" },
        met: ratio >= target,
    }
}

/// The naive way over the same USB 2.0 link: one synchronous `write` of 4 KiB
/// at a time, nothing in flight.
pub fn naive(scratch: &Scratch, len: u64) -> Figure {
    let path = scratch.image(len);
    let bytes = std::fs::read(&path).unwrap();
    let link = LinkModel::USB2;
    let simulator = simulator(&device(link, None, len)).expect("the device");
    let client = FwLoader::connect(simulator.open().expect("open")).expect("handshake");
    let mut info = ImageInfo::zeroed();
    info.total_len = len;
    info.image_crc32 = crc32fast::hash(&bytes);
    let start = Instant::now();
    client.begin(&info).expect("begin");
    for (index, block) in bytes.chunks(4096).enumerate() {
        client.write(index as u64 * 4096, block).expect("write");
    }
    let elapsed = start.elapsed();
    let status = client.finish(info.image_crc32).expect("finish");
    assert_eq!(status, fwloader::Status::Committed, "the naive upload did not commit");
    let rate = len as f64 / elapsed.as_secs_f64();
    let ratio = rate / link.bytes_per_second.unwrap() as f64;
    eprintln!(
        "naive usb2: {} MiB in {:.3} s = {:.2} MB/s, one synchronous 4 KiB write at a time",
        len / MIB,
        elapsed.as_secs_f64(),
        rate / 1e6
    );
    Figure {
        name: "naive upload (sync 4 KiB writes) / USB 2.0 HS link rate",
        value: ratio,
        unit: "x",
        target: "(reported)",
        met: true,
    }
}

/// The flash model on: upload time over the device's pure erase + program time.
pub fn flash_overlap(scratch: &Scratch, len: u64) -> Figure {
    // An MCU's internal flash: 4 KiB sectors, 1 ms erase, 0.5 ms program;
    // 2.7 MB/s, slower than the USB 2.0 link, as flash is.
    let timing = FlashTiming {
        erase_per_sector: Duration::from_millis(1),
        program_per_sector: Duration::from_micros(500),
    };
    let image = scratch.image(len);
    let options = device(LinkModel::USB2, Some(timing), len);
    let (summary, busy) = upload(&image, &options, Config::default());
    let total = summary.checksum_time + summary.transfer_time + summary.verify_time;
    eprintln!(
        "flash: {} MiB in {:.3} s; the flash was busy {:.3} s (erase 1 ms + program 0.5 ms per 4 KiB)",
        len / MIB,
        total.as_secs_f64(),
        busy.as_secs_f64()
    );
    let ratio = total.as_secs_f64() / busy.as_secs_f64();
    Figure {
        name: "upload time / pure flash erase+program time (USB 2.0, flash model on)",
        value: ratio,
        unit: "x",
        target: "<= 1.05 x",
        met: ratio <= 1.05,
    }
}

/// memcpy + CRC-32 bandwidth in this process, the ceiling of host staging:
/// the image's bytes (in memory) copied a slot at a time into a ring of the
/// dext's geometry (`SLOT_COUNT` slots of `SLOT_SIZE`), each slot's CRC-32
/// taken: the pipeline's data movement with nothing else.
fn memcpy_crc_bandwidth(image: &Path) -> f64 {
    let source = std::fs::read(image).expect("the benchmark image");
    let slot = SLOT_SIZE as usize;
    let mut ring = vec![0u8; SLOT_COUNT as usize * slot];
    let mut best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let mut crc = 0;
        for (index, chunk) in source.chunks(slot).enumerate() {
            let at = index % SLOT_COUNT as usize * slot;
            let target = &mut ring[at..at + chunk.len()];
            target.copy_from_slice(std::hint::black_box(chunk));
            crc ^= crc32fast::hash(target);
        }
        std::hint::black_box(crc);
        best = best.min(start.elapsed().as_secs_f64());
    }
    source.len() as f64 / best
}

/// The same with the image read from its file (page cache) by `pread`.
fn pread_crc_bandwidth(image: &Path) -> f64 {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(image).expect("the benchmark image");
    let len = file.metadata().unwrap().len();
    let slot = SLOT_SIZE as usize;
    let mut ring = vec![0u8; SLOT_COUNT as usize * slot];
    let mut best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let mut crc = 0;
        let mut offset = 0;
        let mut index = 0;
        while offset < len {
            let n = slot.min((len - offset) as usize);
            let at = index % SLOT_COUNT as usize * slot;
            let target = &mut ring[at..at + n];
            file.read_exact_at(target, offset).unwrap();
            crc ^= crc32fast::hash(target);
            offset += n as u64;
            index += 1;
        }
        std::hint::black_box(crc);
        best = best.min(start.elapsed().as_secs_f64());
    }
    len as f64 / best
}

/// Host staging with an infinitely fast device against memcpy + CRC-32.
pub fn staging(scratch: &Scratch, len: u64) -> Figure {
    let image = scratch.image(len);
    let options = device(LinkModel::UNTHROTTLED, None, len);
    // Warm the page cache, then the best of three.
    let mut best = 0.0f64;
    for _ in 0..3 {
        let (summary, _) = upload(&image, &options, Config::default());
        best = best.max(summary.transfer_rate());
    }
    let ceiling = memcpy_crc_bandwidth(&image);
    if std::env::var_os("DEXTLINK_BENCH_DETAIL").is_some() {
        eprintln!("pread + CRC-32 into a ring: {:.0} MB/s", pread_crc_bandwidth(&image) / 1e6);
    }
    eprintln!(
        "staging: {:.0} MB/s to an unthrottled device; memcpy + CRC-32 {:.0} MB/s",
        best / 1e6,
        ceiling / 1e6
    );
    let ratio = best / ceiling;
    Figure {
        name: "host staging, unthrottled device / memcpy+CRC-32 bandwidth",
        value: ratio,
        unit: "x",
        target: ">= 0.5 x",
        met: ratio >= 0.5,
    }
}

/// Environment variables of the peak-memory children.
const ROLE_ENV: &str = "DEXTLINK_BENCH_ROLE";
const IMAGE_ENV: &str = "DEXTLINK_BENCH_IMAGE";

/// Peak RSS of a client uploading a 1 GiB image, measured in a child process
/// of its own (the device in another), against the ring size + 32 MiB.
pub fn peak_memory(scratch: &Scratch, len: u64) -> Figure {
    let image = scratch.image(len);
    let exe = std::env::current_exe().expect("this benchmark's path");
    let flash = scratch.path().join("peak.flash");
    let mut server = Command::new(&exe);
    server.env(ROLE_ENV, "server").env(IMAGE_ENV, &flash);
    let server = ServerProcess::spawn(server).expect("starting the device process");
    let output = Command::new(&exe)
        .env(ROLE_ENV, "client")
        .env(IMAGE_ENV, &image)
        .env(dextlink::sim::SOCKET_ENV, server.socket_path())
        .output()
        .expect("running the upload process");
    drop(server);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let peak_kib: f64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("peak-rss-kib "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!("the upload process failed: {}", String::from_utf8_lossy(&output.stderr))
        });
    let peak = peak_kib / 1024.0;
    let ring = f64::from(SLOT_COUNT * SLOT_SIZE) / MIB as f64;
    eprintln!("peak RSS uploading {} MiB: {peak:.1} MiB (ring {ring} MiB)", len / MIB);
    Figure {
        name: "peak RSS uploading a 1 GiB image, MiB (ring 8 MiB)",
        value: peak,
        unit: "MiB",
        target: "<= 40 MiB",
        met: peak <= ring + 32.0,
    }
}

/// Runs a child role if this process is one; returns whether it was.
pub fn child_role() -> bool {
    let Some(role) = std::env::var_os(ROLE_ENV) else { return false };
    let path = PathBuf::from(std::env::var_os(IMAGE_ENV).expect("the role's file"));
    match role.to_str() {
        Some("server") => {
            let options = SimOptions {
                link: LinkModel::UNTHROTTLED,
                flash: FlashStore::File(path),
                geometry: FlashGeometry { sector_size: 4096, bank_size: 1 << 30 },
                ..SimOptions::default()
            };
            let simulator = simulator(&options).expect("the device");
            let socket = dextlink::sim::socket_path_from_env().expect("a socket");
            simulator.serve_path(&socket).expect("serving");
        }
        Some("client") => {
            let socket = dextlink::sim::socket_path_from_env().expect("a socket");
            let image =
                Image::open(&path, Some(Format::Bin), Some(0x0800_0000)).expect("the image");
            let connect =
                || FwLoader::connect(SocketTransport::connect(&socket, &OpenOptions::default())?);
            Upload::new(image).run(connect, |_| {}).expect("the upload");
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let peak = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .map(|v| v.trim().trim_end_matches("kB").trim().to_string())
                .unwrap_or_default();
            println!("peak-rss-kib {peak}");
        }
        _ => panic!("unknown benchmark role"),
    }
    true
}
