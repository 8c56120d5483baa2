//! The simulated fwloader device put together: the dext model over a bulk
//! OUT pipe with a link model and faults, to a bootloader whose two flash
//! banks persist in a file.

use std::path::PathBuf;
use std::time::Duration;

use dextlink::sim::Simulator;
use dextlink::sim::flash::{Flash, FlashError, FlashGeometry, FlashTiming};
use dextlink::sim::usb::{BulkOutPipe, FaultPlan, LinkModel};

#[cfg(target_os = "linux")]
use crate::device::BootloaderUsb;
use crate::device::{Bootloader, BootloaderConfig};
use crate::dext::{FwLoaderDext, TRANSFER_TIMEOUT_MS};
use crate::fw_loader::SERVICE;
#[cfg(target_os = "linux")]
use dextlink::IoReturn;

/// The default flash: 4 KiB sectors, 256 MiB banks (sparse in the file).
pub const DEFAULT_GEOMETRY: FlashGeometry =
    FlashGeometry { sector_size: 4096, bank_size: 256 << 20 };

/// Where the flash banks live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlashStore {
    /// In a file that outlives the process, as a device keeps its flash.
    File(PathBuf),
    /// In memory, gone with the process (tests).
    Memory,
}

/// Everything the simulated device is made of.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub link: LinkModel,
    pub faults: FaultPlan,
    pub flash: FlashStore,
    pub geometry: FlashGeometry,
    pub timing: FlashTiming,
    pub bootloader: BootloaderConfig,
    /// The dext's `AsyncIO` completion timeout.
    pub transfer_timeout_ms: u32,
    /// How long a disconnected device stays away.
    pub reconnect_delay: Duration,
    /// Another build of the C++ dext to host instead of the one this crate
    /// built (an instrumented one, say); `None`: the crate's own.
    pub dext_library: Option<PathBuf>,
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            link: LinkModel::USB2,
            faults: FaultPlan::none(),
            flash: FlashStore::Memory,
            geometry: DEFAULT_GEOMETRY,
            timing: FlashTiming::INSTANT,
            bootloader: BootloaderConfig::default(),
            transfer_timeout_ms: TRANSFER_TIMEOUT_MS,
            reconnect_delay: Duration::from_millis(50),
            dext_library: None,
        }
    }
}

/// Why the simulated device could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Flash(#[from] FlashError),
    #[error("allocating the staging ring: {0}")]
    Ring(#[from] std::io::Error),
    /// The C++ dext could not be found, loaded or started.
    #[error("the C++ fwloader dext: {0}")]
    Dext(String),
}

/// The fwloader dext on its simulated device, publishing the schema's service.
pub fn simulator(options: &SimOptions) -> Result<Simulator<FwLoaderDext>, SimError> {
    let flash = match &options.flash {
        FlashStore::File(path) => Flash::open(path, options.geometry, options.timing)?,
        FlashStore::Memory => Flash::in_memory(options.geometry, options.timing)?,
    };
    let bootloader = Bootloader::new(flash, options.bootloader);
    let pipe = BulkOutPipe::new(
        options.link,
        options.faults.clone(),
        std::sync::Arc::new(bootloader.clone()),
    )
    .with_reconnect_delay(options.reconnect_delay);
    let dext =
        FwLoaderDext::new(pipe, bootloader)?.with_transfer_timeout(options.transfer_timeout_ms);
    Ok(Simulator::new(SERVICE, dext))
}

/// The simulated device's command-line options, shared by `fwloader-sim`
/// and `fwupload`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// File holding the simulated device's two flash banks; created if
    /// missing, kept between runs (as a device keeps its flash).
    #[arg(long, value_name = "FILE")]
    pub flash: Option<PathBuf>,
    /// Flash timing: `instant`, or `typical` (erase and program times of a
    /// NOR flash, so that the device, not the link, sets the pace).
    #[arg(long, value_name = "MODEL", default_value = "instant", value_parser = parse_timing)]
    pub flash_timing: FlashTiming,
    /// Size of each flash bank (sectors of 4 KiB), e.g. `256M`, `1G`.
    #[arg(long, value_name = "BYTES", default_value = "256M", value_parser = parse_size)]
    pub bank_size: u64,
    /// Faults to inject, e.g. `stall@3,timeout@10,bitflip%1` (kinds: stall,
    /// timeout, short, disconnect, bitflip, kill-dext, kill-client; `@N` is
    /// the N-th transfer from 0, `%P` a probability in percent).
    #[arg(long, value_name = "SPEC", default_value = "")]
    pub fault: String,
    /// Seed for the faults' random choices.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// The dext's transfer timeout in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = TRANSFER_TIMEOUT_MS)]
    pub transfer_timeout_ms: u32,
    /// Host this build of the C++ dext (a shared library built like the
    /// crate's own, e.g. with sanitizers) instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub dext_library: Option<PathBuf>,
}

impl SimArgs {
    /// The device these options describe, over `link`.
    pub fn options(&self, link: LinkModel) -> Result<SimOptions, String> {
        let faults = FaultPlan::parse(&self.fault, self.seed)
            .map_err(|error| format!("invalid --fault: {error}"))?;
        let geometry =
            FlashGeometry { sector_size: DEFAULT_GEOMETRY.sector_size, bank_size: self.bank_size };
        if self.bank_size == 0 || !self.bank_size.is_multiple_of(u64::from(geometry.sector_size)) {
            return Err(format!(
                "invalid --bank-size {}: it must be a non-zero multiple of the {}-byte sector",
                self.bank_size, geometry.sector_size
            ));
        }
        Ok(SimOptions {
            link,
            faults,
            flash: match &self.flash {
                Some(path) => FlashStore::File(path.clone()),
                None => FlashStore::File(default_flash_file()),
            },
            geometry,
            timing: self.flash_timing,
            transfer_timeout_ms: self.transfer_timeout_ms,
            dext_library: self.dext_library.clone(),
            ..SimOptions::default()
        })
    }
}

/// Where the simulated flash lives unless `--flash` says otherwise.
pub fn default_flash_file() -> PathBuf {
    std::env::temp_dir().join("fwloader-sim.flash")
}

fn parse_timing(text: &str) -> Result<FlashTiming, String> {
    match text {
        "instant" => Ok(FlashTiming::INSTANT),
        "typical" => Ok(FlashTiming::SERIAL_NOR_4K),
        other => Err(format!("unknown flash timing {other:?}; expected `instant` or `typical`")),
    }
}

/// A link profile by name.
pub fn parse_link(text: &str) -> Result<LinkModel, String> {
    LinkModel::by_name(text).ok_or_else(|| {
        let names: Vec<&str> = LinkModel::PROFILES.iter().map(|p| p.name).collect();
        format!("unknown link profile {text:?}; expected one of {}", names.join(", "))
    })
}

/// A byte count: decimal or `0x` hex, with an optional K, M or G (binary) suffix.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let (digits, shift) = match trimmed.char_indices().last() {
        Some((at, 'k' | 'K')) => (&trimmed[..at], 10),
        Some((at, 'm' | 'M')) => (&trimmed[..at], 20),
        Some((at, 'g' | 'G')) => (&trimmed[..at], 30),
        _ => (trimmed, 0),
    };
    let value = parse_number(digits)
        .ok_or_else(|| format!("{text:?} is not a size (write e.g. 4096, 0x1000, 64K or 1M)"))?;
    value.checked_mul(1 << shift).ok_or_else(|| format!("{text:?} is too large"))
}

/// A number in decimal or with a `0x` prefix in hex; `_` separators allowed.
pub fn parse_number(text: &str) -> Option<u64> {
    let clean = text.replace('_', "");
    match clean.strip_prefix("0x").or_else(|| clean.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => clean.parse().ok(),
    }
}

/// Ends this process with SIGKILL: what a `kill-dext` or `kill-client`
/// fault does to the process it hits.
pub fn kill_this_process() -> ! {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    // SIGKILL cannot be caught; should it fail to be sent, abort instead.
    std::process::abort()
}

/// Which dext serves the simulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DextKind {
    /// The C++ dext of `dext/`, compiled by this crate's build script and
    /// hosted by the simulator's DriverKit runtime, with the bootloader as
    /// its USB provider.
    #[default]
    Cpp,
    /// The Rust model of the same dext ([`crate::dext`]).
    Rust,
}

impl DextKind {
    pub fn name(self) -> &'static str {
        match self {
            DextKind::Cpp => "cpp",
            DextKind::Rust => "rust",
        }
    }
}

/// Where the build script put the C++ dext, or why it is not there.
#[cfg(target_os = "linux")]
pub fn cpp_dext_paths() -> Result<(PathBuf, PathBuf), String> {
    let library = env!("FWLOADER_DEXT");
    if library.is_empty() {
        return Err("the C++ fwloader dext was not built: no C++ compiler was found when this \
                    program was built (install g++ or set CXX, and rebuild); `--dext rust` \
                    runs the Rust model instead"
            .to_string());
    }
    let plist = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dext/Info.plist");
    Ok((PathBuf::from(library), plist))
}

/// The C++ dext on the bootloader's USB interface, as a [`dextlink::sim::Driver`].
///
/// A `disconnect` fault terminates the device: the runtime stops the dext's
/// driver (its `Stop` runs) and every later call fails with
/// `kIOReturnNoDevice`. When the device is back (the pipe reconnects after
/// [`SimOptions::reconnect_delay`]), the next client finds a new interface
/// and a newly matched driver on it, as a replugged device is matched again.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct CppFwLoader {
    device: std::sync::Arc<BootloaderUsb>,
    library: PathBuf,
    plist: PathBuf,
    plugged: std::sync::Mutex<Plugged>,
}

#[cfg(target_os = "linux")]
#[derive(Debug)]
struct Plugged {
    // Kept for as long as its driver serves: the provider of the service.
    _interface: dextlink_sim::driverkit::usb::UsbInterface,
    dext: dextlink_sim::CppDext,
    service: dextlink_sim::CppService,
    generation: u64,
}

#[cfg(target_os = "linux")]
impl CppFwLoader {
    fn plug(
        device: &std::sync::Arc<BootloaderUsb>,
        library: &std::path::Path,
        plist: &std::path::Path,
    ) -> Result<Plugged, String> {
        let provider: std::sync::Arc<dyn dextlink_sim::driverkit::usb::UsbDevice> = device.clone();
        let interface = dextlink_sim::driverkit::usb::UsbInterface::new(provider, 0)
            .map_err(|code| format!("the bootloader's USB interface: {code}"))?;
        let dext =
            dextlink_sim::CppDext::load_on_usb(library, plist, &interface, &device.identity())
                .map_err(|error| error.to_string())?;
        let service = dext.service(SERVICE).map_err(|error| error.to_string())?;
        Ok(Plugged { _interface: interface, dext, service, generation: device.pipe.generation() })
    }

    /// The bootloader the dext drives.
    pub fn bootloader(&self) -> &Bootloader {
        &self.device.bootloader
    }

    pub fn pipe(&self) -> &BulkOutPipe {
        &self.device.pipe
    }

    /// Stops the dext's services now (what exit does to a dext).
    pub fn shut_down(&self) {
        self.plugged.lock().unwrap_or_else(|e| e.into_inner()).dext.shut_down();
    }
}

#[cfg(target_os = "linux")]
impl dextlink::sim::Driver for CppFwLoader {
    type UserClient = dextlink_sim::CppUserClient;

    fn new_user_client(&self, kind: u32) -> Result<dextlink_sim::CppUserClient, IoReturn> {
        if !self.device.pipe.is_connected() {
            return Err(IoReturn::NO_DEVICE);
        }
        let mut plugged = self.plugged.lock().unwrap_or_else(|e| e.into_inner());
        if plugged.generation != self.device.pipe.generation() {
            // The device went away and came back: match it again.
            *plugged =
                CppFwLoader::plug(&self.device, &self.library, &self.plist).map_err(|e| {
                    eprintln!("fwloader: re-matching the dext on the replugged device: {e}");
                    IoReturn::NO_DEVICE
                })?;
        }
        dextlink::sim::Driver::new_user_client(&plugged.service, kind)
    }
}

/// The C++ fwloader dext on its simulated device, publishing the schema's service.
#[cfg(target_os = "linux")]
pub fn cpp_simulator(options: &SimOptions) -> Result<Simulator<CppFwLoader>, SimError> {
    let plist = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dext/Info.plist");
    let library = match &options.dext_library {
        Some(library) => library.clone(),
        None => cpp_dext_paths().map_err(SimError::Dext)?.0,
    };
    let flash = match &options.flash {
        FlashStore::File(path) => Flash::open(path, options.geometry, options.timing)?,
        FlashStore::Memory => Flash::in_memory(options.geometry, options.timing)?,
    };
    let bootloader = Bootloader::new(flash, options.bootloader);
    let pipe = BulkOutPipe::new(
        options.link,
        options.faults.clone(),
        std::sync::Arc::new(bootloader.clone()),
    )
    .with_reconnect_delay(options.reconnect_delay);
    let device = std::sync::Arc::new(BootloaderUsb::new(bootloader, pipe));
    let plugged = CppFwLoader::plug(&device, &library, &plist).map_err(SimError::Dext)?;
    let driver = CppFwLoader { device, library, plist, plugged: std::sync::Mutex::new(plugged) };
    Ok(Simulator::new(SERVICE, driver))
}
