//! A compiled dext as the simulator's [`Driver`]: its C++ runs behind the
//! same transports and kernel rules as a dext modelled in Rust.
//!
//! [`CppDext::load`] does what DriverKit does with a dext bundle: loads its
//! code, reads its `Info.plist`, and for every personality makes the
//! `IOUserClass` on its provider, then `init` and `Start` (docs/driverkit.md
//! §9). A service is findable, by its `IOUserClass` name, only once it
//! called `RegisterService` (§9-3). Opening a connection calls the
//! service's `NewUserClient`; closing it calls the user client's `Stop`,
//! and dropping the last handle of the dext stops its services.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dextlink::IoReturn;
use dextlink::server::{Arguments, StructureInput};
use dextlink::sim::{self, SharedMemory};

use crate::driverkit::{self, BufferedCall, Library, LoadError, Service};
use crate::personality::{self, Personality, PersonalityError};

/// Why a dext could not be loaded and started, or a service found.
#[derive(Debug)]
pub enum HostError {
    /// The library is not a dext this process can load.
    Load(LoadError),
    /// Its plist is not usable.
    Personality(PersonalityError),
    /// A personality's `IOUserClass` (or its `UserClientProperties`'
    /// `IOUserClass`) is not a class the library defines.
    UnknownClass {
        library: PathBuf,
        plist: PathBuf,
        personality: String,
        key: &'static str,
        class: String,
    },
    /// Making or starting the service failed with `code`.
    StartFailed { plist: PathBuf, personality: String, class: String, code: IoReturn },
    /// No personality's service has that name.
    NotFound { service: String, plist: PathBuf, known: Vec<String> },
    /// The service started but never called `RegisterService`.
    NotRegistered { service: String },
    /// No personality of the plist matches the USB interface (each one's reason).
    NoUsbMatch { plist: PathBuf, mismatches: Vec<String> },
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Load(error) => error.fmt(f),
            HostError::Personality(error) => error.fmt(f),
            HostError::UnknownClass { library, plist, personality, key, class } => write!(
                f,
                "{}: personality {personality:?}: {key} {class:?} is not a class that {} defines",
                plist.display(),
                library.display()
            ),
            HostError::StartFailed { plist, personality, class, code } => write!(
                f,
                "{}: personality {personality:?}: {class}::Start failed: {code}",
                plist.display()
            ),
            HostError::NotFound { service, plist, known } => write!(
                f,
                "no service {service:?} in {} (its services: {})",
                plist.display(),
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ),
            HostError::NotRegistered { service } => write!(
                f,
                "service {service:?} not found: it started but did not call RegisterService, \
                 so clients cannot find it (docs/driverkit.md §9-3)"
            ),
            HostError::NoUsbMatch { plist, mismatches } => write!(
                f,
                "{}: no personality matches the USB interface ({})",
                plist.display(),
                if mismatches.is_empty() {
                    "it has none".to_string()
                } else {
                    mismatches.join("; ")
                }
            ),
        }
    }
}

impl std::error::Error for HostError {}

impl HostError {
    /// Whether the dext itself failed (its Start), rather than its files.
    pub fn is_start_failure(&self) -> bool {
        matches!(self, HostError::StartFailed { .. })
    }
}

/// One started service; `None` once the dext was shut down.
#[derive(Debug)]
struct Started {
    personality: Personality,
    service: Mutex<Option<Service>>,
}

impl Started {
    fn service(&self) -> std::sync::MutexGuard<'_, Option<Service>> {
        // Every critical section leaves the slot consistent.
        self.service.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_registered(&self) -> bool {
        self.service().as_ref().is_some_and(Service::is_registered)
    }

    /// Stops and releases the service (once).
    fn stop(&self) {
        let Some(service) = self.service().take() else { return };
        // A service Stop already ran on answers kIOReturnNotReady;
        // anything else is the dext's own error.
        if let Err(code) = service.stop()
            && code != IoReturn::NOT_READY
        {
            eprintln!("dextlink-sim: {}::Stop failed: {code}", self.personality.user_class);
        }
    }
}

/// The loaded dext: its services, stopped and released when the last
/// handle ([`CppDext`], [`CppService`], an open user client) goes.
struct Loaded {
    library: Library,
    plist: PathBuf,
    services: Vec<Started>,
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field("library", &self.library.path())
            .field("plist", &self.plist)
            .field("services", &self.services.len())
            .finish()
    }
}

/// How many dexts are loaded: the runtime's leak report counts the whole
/// process, so only the last one to go reports it.
static LOADED: AtomicUsize = AtomicUsize::new(0);

impl Drop for Loaded {
    fn drop(&mut self) {
        for started in &self.services {
            started.stop();
        }
        if LOADED.fetch_sub(1, Ordering::AcqRel) == 1 {
            report_leaks();
        }
    }
}

/// Prints the runtime's leak report to stderr if anything is still alive.
/// Objects are freed by the queue threads' last release too, so their
/// stragglers get a moment first.
fn report_leaks() {
    let mut report = driverkit::leak_report();
    for _ in 0..100 {
        if report.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
        report = driverkit::leak_report();
    }
    let build = if cfg!(debug_assertions) { " (debug build)" } else { "" };
    eprintln!("dextlink-sim: the dext leaked{build}:\n{}", report.trim_end());
}

/// A compiled dext, loaded and started in this process.
#[derive(Debug, Clone)]
pub struct CppDext {
    loaded: Arc<Loaded>,
}

impl CppDext {
    /// Loads the dext `library` (a shared library built against
    /// `dextlink-sim --print-cflags`), reads the personalities of its
    /// `plist`, and starts every personality's service on its provider.
    ///
    /// Every error names the file it is about: a library that is not a
    /// dext, a plist without personalities, a provider the simulator does
    /// not have, an `IOUserClass` the library does not define, a `Start`
    /// that fails (with its IOReturn).
    pub fn load(library: &Path, plist: &Path) -> Result<CppDext, HostError> {
        let personalities = personality::read(plist).map_err(HostError::Personality)?;
        for personality in &personalities {
            personality.provider(plist).map_err(HostError::Personality)?;
        }
        let library = Library::load(library).map_err(HostError::Load)?;
        let unknown = |personality: &Personality, key, class: &str| HostError::UnknownClass {
            library: library.path().to_owned(),
            plist: plist.to_owned(),
            personality: personality.name.clone(),
            key,
            class: class.to_owned(),
        };
        for personality in &personalities {
            if !driverkit::class_exists(&personality.user_class) {
                return Err(unknown(personality, "IOUserClass", &personality.user_class));
            }
            if let Some(client) = &personality.user_client_class
                && !driverkit::class_exists(client)
            {
                return Err(unknown(personality, "UserClientProperties.IOUserClass", client));
            }
        }
        LOADED.fetch_add(1, Ordering::AcqRel);
        // From here on, dropping `loaded` stops what started.
        let mut loaded = Loaded { library, plist: plist.to_owned(), services: Vec::new() };
        for personality in personalities {
            let start_failed = |code| HostError::StartFailed {
                plist: plist.to_owned(),
                personality: personality.name.clone(),
                class: personality.user_class.clone(),
                code,
            };
            let properties = personality.to_dictionary().map_err(start_failed)?;
            let service = Service::start(&properties).map_err(start_failed)?;
            loaded.services.push(Started { personality, service: Mutex::new(Some(service)) });
        }
        Ok(CppDext { loaded: Arc::new(loaded) })
    }

    /// [`load`](CppDext::load) for a dext whose personalities match a USB
    /// interface: every personality whose `IOProviderClass` and USB keys
    /// match `identity` ([`crate::usb_match`]) is started on `interface`
    /// (docs/driverkit.md §9); a plist in which none matches is an error
    /// that names each personality's first differing key.
    pub fn load_on_usb(
        library: &Path,
        plist: &Path,
        interface: &crate::driverkit::usb::UsbInterface,
        identity: &crate::usb_match::UsbInterfaceIdentity,
    ) -> Result<CppDext, HostError> {
        let personalities = personality::read(plist).map_err(HostError::Personality)?;
        let mut matching = Vec::new();
        let mut mismatches = Vec::new();
        for personality in personalities {
            match crate::usb_match::match_usb_interface(&personality.usb_keys(), identity) {
                Ok(()) => matching.push(personality),
                Err(why) => mismatches.push(format!("{}: {why}", personality.name)),
            }
        }
        if matching.is_empty() {
            return Err(HostError::NoUsbMatch { plist: plist.to_owned(), mismatches });
        }
        let library = Library::load(library).map_err(HostError::Load)?;
        for personality in &matching {
            let classes = std::iter::once(("IOUserClass", &personality.user_class)).chain(
                personality
                    .user_client_class
                    .iter()
                    .map(|c| ("UserClientProperties.IOUserClass", c)),
            );
            for (key, class) in classes {
                if !driverkit::class_exists(class) {
                    return Err(HostError::UnknownClass {
                        library: library.path().to_owned(),
                        plist: plist.to_owned(),
                        personality: personality.name.clone(),
                        key,
                        class: class.clone(),
                    });
                }
            }
        }
        LOADED.fetch_add(1, Ordering::AcqRel);
        let mut loaded = Loaded { library, plist: plist.to_owned(), services: Vec::new() };
        for personality in matching {
            let start_failed = |code| HostError::StartFailed {
                plist: plist.to_owned(),
                personality: personality.name.clone(),
                class: personality.user_class.clone(),
                code,
            };
            let properties = personality.to_dictionary().map_err(start_failed)?;
            let service = Service::start_on(&properties, interface).map_err(start_failed)?;
            loaded.services.push(Started { personality, service: Mutex::new(Some(service)) });
        }
        Ok(CppDext { loaded: Arc::new(loaded) })
    }

    /// The `IOUserClass` names of the services that called `RegisterService`.
    pub fn registered(&self) -> Vec<String> {
        self.loaded
            .services
            .iter()
            .filter(|started| started.is_registered())
            .map(|started| started.personality.user_class.clone())
            .collect()
    }

    /// The service whose `IOUserClass` is `name`, as a [`sim::Driver`]:
    /// [`HostError::NotRegistered`] if it never called `RegisterService`.
    pub fn service(&self, name: &str) -> Result<CppService, HostError> {
        let Some(index) =
            self.loaded.services.iter().position(|started| started.personality.user_class == name)
        else {
            return Err(HostError::NotFound {
                service: name.to_owned(),
                plist: self.loaded.plist.clone(),
                known: self.registered(),
            });
        };
        if !self.loaded.services[index].is_registered() {
            return Err(HostError::NotRegistered { service: name.to_owned() });
        }
        Ok(CppService { loaded: Arc::clone(&self.loaded), index })
    }
}

impl CppDext {
    /// What exit does to a dext (docs/driverkit.md §9): stops and releases
    /// every service now, even while handles to it remain (they then fail
    /// to open with kIOReturnNotAttached), and prints the runtime's leak
    /// report to stderr if anything is still alive. For a server about to
    /// exit, whose connection threads still hold the dext.
    pub fn shut_down(&self) {
        for started in &self.loaded.services {
            started.stop();
        }
        report_leaks();
    }
}

/// A registered service of a [`CppDext`]: a [`sim::Driver`] whose user
/// clients are the dext's own.
#[derive(Debug, Clone)]
pub struct CppService {
    loaded: Arc<Loaded>,
    index: usize,
}

impl CppService {
    fn started(&self) -> &Started {
        &self.loaded.services[self.index]
    }

    /// Its `IOUserClass`, the name clients find it by.
    pub fn user_class(&self) -> &str {
        &self.started().personality.user_class
    }
}

impl sim::Driver for CppService {
    type UserClient = CppUserClient;

    /// `NewUserClient(kind)`; with `UserClientProperties`, the dext's
    /// `Create(this, "UserClientProperties", …)` makes the class it names.
    fn new_user_client(&self, kind: u32) -> Result<CppUserClient, IoReturn> {
        let client = match self.started().service().as_ref() {
            Some(service) => service.new_user_client(kind)?,
            None => return Err(IoReturn::NOT_ATTACHED),
        };
        Ok(CppUserClient {
            client,
            memory: HashMap::new(),
            stopped: false,
            _loaded: Arc::clone(&self.loaded),
        })
    }
}

/// What identifies a memory descriptor's backing across calls: the memfd's
/// inode and the range, so that a type the dext answers with the same
/// descriptor gives the client the same mapping (docs/driverkit.md §5.1).
type MemoryKey = (u64, u64, u64, u64);

/// A user client of a [`CppService`] (an `IOUserClient` subclass in C++).
pub struct CppUserClient {
    client: driverkit::UserClient,
    memory: HashMap<u64, (MemoryKey, Arc<SharedMemory>)>,
    stopped: bool,
    _loaded: Arc<Loaded>,
}

impl fmt::Debug for CppUserClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CppUserClient")
            .field("class", &self.client.class_name())
            .field("stopped", &self.stopped)
            .finish()
    }
}

/// The capacity DriverKit's var-output call uses.
const VARIABLE: u64 = 0xffff_ffff;

impl sim::UserClient for CppUserClient {
    fn external_method(&mut self, selector: u64, arguments: &mut Arguments<'_>) -> IoReturn {
        let structure_input = match arguments.structure_input {
            StructureInput::None => &[][..],
            StructureInput::Inline(bytes) | StructureInput::Descriptor(bytes) => bytes,
        };
        let capacity = arguments.structure_output_maximum_size;
        let mut own_buffer = Vec::new();
        let descriptor = arguments.structure_output_descriptor.is_some();
        let structure_output: &mut [u8] = match arguments.structure_output_descriptor.as_deref_mut()
        {
            Some(descriptor) => descriptor,
            None => {
                let length = if capacity == VARIABLE {
                    driverkit::VARIABLE_OUTPUT_BUFFER
                } else {
                    // The kernel offers at most 4096 bytes inline (§3.2-5).
                    usize::try_from(capacity).unwrap_or(usize::MAX).min(4096)
                };
                own_buffer.resize(length, 0);
                &mut own_buffer
            }
        };
        let mut scalar_output = [0u64; 16];
        let on_completion = arguments.completion.clone().map(|completion| {
            Arc::new(move |status: IoReturn, values: &[u64]| completion.complete(status, values))
                as Arc<driverkit::CompletionFn>
        });
        let (status, reply) = self.client.call_with_buffers(
            BufferedCall {
                selector,
                scalar_input: arguments.scalar_input,
                structure_input,
                scalar_output: &mut scalar_output,
                scalar_output_count: arguments.scalar_output_count,
                structure_output,
                structure_output_capacity: capacity,
            },
            on_completion,
        );
        if !status.is_success() {
            return status;
        }
        let count = (reply.scalar_output_count as usize).min(arguments.scalar_output.len());
        arguments.scalar_output[..count].copy_from_slice(&scalar_output[..count]);
        arguments.scalar_output_count = count as u32;
        if !descriptor && reply.structure_output_set {
            let length = usize::try_from(reply.structure_output_length).unwrap_or(usize::MAX);
            own_buffer.truncate(length);
            arguments.structure_output = Some(own_buffer);
        }
        status
    }

    fn copy_client_memory(&mut self, memory_type: u64) -> Result<sim::ClientMemory, IoReturn> {
        let memory = self.client.copy_client_memory(memory_type)?;
        let stat = fstat(&memory.fd).map_err(|error| {
            eprintln!("dextlink-sim: memory type {memory_type}: cannot stat its memfd: {error}");
            IoReturn::NO_RESOURCES
        })?;
        let key = (stat.0, stat.1, memory.offset, memory.length);
        if let Some((known, shared)) = self.memory.get(&memory_type)
            && *known == key
        {
            return Ok(sim::ClientMemory {
                memory: Arc::clone(shared),
                read_only: memory.read_only,
            });
        }
        let length = usize::try_from(memory.length).map_err(|_| IoReturn::NO_MEMORY)?;
        let shared = SharedMemory::from_fd(memory.fd, memory.offset, length).map_err(|error| {
            eprintln!("dextlink-sim: memory type {memory_type} cannot be shared: {error}");
            IoReturn::UNSUPPORTED
        })?;
        let shared = Arc::new(shared);
        self.memory.insert(memory_type, (key, Arc::clone(&shared)));
        Ok(sim::ClientMemory { memory: shared, read_only: memory.read_only })
    }

    fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            if let Err(code) = self.client.stop()
                && code != IoReturn::NOT_READY
            {
                eprintln!("dextlink-sim: {}::Stop failed: {code}", self.client.class_name());
            }
        }
    }
}

impl Drop for CppUserClient {
    fn drop(&mut self) {
        // A connection that ends without its transport stopping it (a
        // dropped in-process client) still closes as on a Mac.
        sim::UserClient::stop(self);
    }
}

/// The device and inode of an open file.
fn fstat(fd: &std::os::fd::OwnedFd) -> std::io::Result<(u64, u64)> {
    let metadata = std::fs::File::from(fd.try_clone()?).metadata()?;
    use std::os::unix::fs::MetadataExt;
    Ok((metadata.dev(), metadata.ino()))
}
