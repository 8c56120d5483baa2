//! The IOKit backend (Apple targets only): a [`Transport`] over a dext's
//! user client, through `IOServiceOpen`, `IOConnectCallMethod`,
//! `IOConnectCallAsyncMethod` and `IOConnectMapMemory64`.
//!
//! ```ignore
//! use dextlink::iokit::{IoKit, OpenOptions};
//! use std::time::Duration;
//!
//! let options = OpenOptions { user_client_type: 0, wait: Some(Duration::from_secs(5)) };
//! let transport = IoKit::open(fw_loader::SERVICE, options)?;
//! let client = fw_loader::FwLoader::connect(transport)?;   // same client as over the simulator
//! ```
//!
//! Async calls get one `IONotificationPort` per connection, created with the
//! first async call and served by one thread (`dextlink-iokit-…`) that parses
//! the completion messages itself (`notifier.rs` describes the routing).
//! Dropping the [`IoKit`] closes the connection, stops that thread, and
//! ends every call still waiting for its completion with
//! [`Error::Disconnected`].

mod ffi;
mod message;
mod notifier;

use std::collections::HashMap;
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use ffi::{Connection, IoObject, ServiceNotification};
use notifier::Notifier;

use crate::{Call, CallError, Error, IoReturn, MappedRegion, Reply, StructOutput, Transport};

/// How to open a user client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// The `type` argument of `IOServiceOpen`, which the dext's
    /// `NewUserClient(type, …)` receives.
    pub user_client_type: u32,
    /// Wait up to this long for the service to appear (a dext that is still
    /// starting, a device being plugged in). `None`: fail at once.
    pub wait: Option<Duration>,
}

/// An open connection to a dext's user client.
///
/// `IoKit` is `Send` and `Sync`: calls from several threads at once are
/// sound (each is a MIG request on the calling thread's reply port, and
/// DriverKit serialises them in the dext, docs/driverkit.md §2.2-11); the
/// completion table and the mapping table are behind mutexes.
pub struct IoKit {
    // Field order is drop order: close the connection first (the kernel then
    // sends no more completions), then stop the notification thread and fail
    // what is left, then release the service.
    connection: Connection,
    notifier: OnceLock<Notifier>,
    mappings: Mutex<HashMap<u32, Mapped>>,
    _service: IoObject,
    service_name: String,
    user_client_type: u32,
}

/// A memory type mapped into this task, shared by every `map_memory` of it.
#[derive(Debug, Clone, Copy)]
struct Mapped {
    /// Where `IOConnectMapMemory64` mapped it; never 0.
    address: u64,
    len: usize,
    read_only: bool,
    users: usize,
}

impl std::fmt::Debug for IoKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoKit")
            .field("service", &self.service_name)
            .field("user_client_type", &self.user_client_type)
            .field("connection", &self.connection.raw())
            .finish_non_exhaustive()
    }
}

impl IoKit {
    /// Finds the service named `service_name` in the I/O Registry
    /// (`IOServiceNameMatching`; the schema's `service`, generated as
    /// `SERVICE`), waiting for it if `options.wait` says so, and opens a
    /// user client of type `options.user_client_type` on it.
    ///
    /// Fails with [`Error::NotFound`] if no such service appears, and with
    /// [`Error::NotPermitted`] when DriverKit refuses this app the connection
    /// (a missing entitlement, docs/driverkit.md §2.2-12).
    pub fn open(service_name: &str, options: OpenOptions) -> Result<IoKit, Error> {
        let service = find_service(service_name, options.wait)?;
        let connection = Connection::open(&service, options.user_client_type).map_err(|code| {
            if code == IoReturn::NOT_PERMITTED {
                Error::NotPermitted {
                    service: service_name.to_string(),
                    code,
                    hint: NOT_PERMITTED_HINT.to_string(),
                }
            } else {
                Error::Transport(format!(
                    "IOServiceOpen({service_name:?}, type {}) failed: {code}",
                    options.user_client_type
                ))
            }
        })?;
        Ok(IoKit {
            connection,
            notifier: OnceLock::new(),
            mappings: Mutex::new(HashMap::new()),
            _service: service,
            service_name: service_name.to_string(),
            user_client_type: options.user_client_type,
        })
    }

    /// The name the service was matched by.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// The user-client type it was opened with.
    pub fn user_client_type(&self) -> u32 {
        self.user_client_type
    }

    fn notifier(&self) -> Result<&Notifier, Error> {
        if let Some(notifier) = self.notifier.get() {
            return Ok(notifier);
        }
        let started = Notifier::start(self.connection.raw())?;
        // If another thread got there first, its notifier is kept and ours,
        // unused, stops again.
        Ok(self.notifier.get_or_init(|| started))
    }

    fn mappings(&self) -> MutexGuard<'_, HashMap<u32, Mapped>> {
        // Every update of the table is a single insert, remove or field
        // write, so a poisoned lock still holds a consistent table.
        self.mappings.lock().unwrap_or_else(|e| e.into_inner())
    }
}

const NOT_PERMITTED_HINT: &str = "DriverKit lets an app open a dext's user client only if the app \
    has the com.apple.developer.driverkit.userclient-access entitlement listing the dext's bundle \
    identifier, or the dext has com.apple.developer.driverkit.allow-any-userclient-access; check \
    both with `codesign -d --entitlements - <bundle>`";

fn not_found(service_name: &str, waited: Option<Duration>) -> Error {
    let waited = match waited {
        Some(wait) => format!(" within {wait:?}"),
        None => String::new(),
    };
    Error::NotFound {
        service: service_name.to_string(),
        hint: format!(
            "{waited}; is the dext installed and activated (`systemextensionsctl list` shows it \
             [activated enabled]) and has it registered its service? The name is matched \
             against I/O Registry names: `ioreg -l -w0 | grep -i {service_name}`"
        ),
    }
}

fn find_service(service_name: &str, wait: Option<Duration>) -> Result<IoObject, Error> {
    let name = CString::new(service_name).map_err(|_| Error::NotFound {
        service: service_name.to_string(),
        hint: "; a service name cannot contain a NUL byte".to_string(),
    })?;
    let lookup_failed = |code: IoReturn| {
        Error::Transport(format!("looking up service {service_name:?} failed: {code}"))
    };
    if let Some(service) = ffi::service_named(&name).map_err(lookup_failed)? {
        return Ok(service);
    }
    let Some(timeout) = wait else {
        return Err(not_found(service_name, None));
    };
    let deadline = Instant::now() + timeout;
    // The notification's iterator also yields services that appeared between
    // the lookup above and its creation.
    let notification = ServiceNotification::new(&name).map_err(lookup_failed)?;
    loop {
        if let Some(service) = notification.next() {
            // Release any further matches; one service is opened.
            while notification.next().is_some() {}
            return Ok(service);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(not_found(service_name, Some(timeout)));
        }
        notification.wait(left);
    }
}

// SAFETY: a region is the range `IOConnectMapMemory64` mapped for the type
// (`kIOMapAnywhere`: at an address no other mapping holds), readable, and
// writable unless `mach_vm_region` reports otherwise; it is unmapped only
// when the last region of it is dropped (`RegionGuard`, which borrows the
// `IoKit`). The table holds one mapping per memory type, so the type mapped
// again is the same range. Nothing here makes a reference into a mapping.
unsafe impl Transport for IoKit {
    fn call(&self, call: Call<'_>) -> Result<Reply, CallError> {
        let Call {
            selector,
            scalar_input,
            struct_input,
            scalar_output,
            mut struct_output,
            completion,
        } = call;
        let capacity = match &struct_output {
            StructOutput::Buffer(buffer) => Some(buffer.len()),
            _ => None,
        };
        let counts = match completion {
            None => self.connection.call_method(
                selector,
                scalar_input,
                struct_input,
                scalar_output,
                &mut struct_output,
                None,
            ),
            Some(slot) => {
                if matches!(struct_output, StructOutput::Variable(_)) {
                    return Err(CallError::Transport(Error::Transport(
                        "IOKit has no variable-size structure output for async calls \
                         (IOConnectCallAsyncMethod has no kIOConnectMethodVarOutputSize path)"
                            .to_string(),
                    )));
                }
                let notifier = self.notifier().map_err(CallError::Transport)?;
                // Registered before the call: the completion may arrive
                // before `IOConnectCallAsyncMethod` returns.
                let (id, mut reference) = notifier.register(slot).map_err(CallError::Transport)?;
                let result = self.connection.call_method(
                    selector,
                    scalar_input,
                    struct_input,
                    scalar_output,
                    &mut struct_output,
                    Some((notifier.wake_port(), &mut reference)),
                );
                if result.is_err() {
                    notifier.forget(id);
                }
                result
            }
        }
        .map_err(CallError::Status)?;

        let scalar_output_count = counts.scalar_output as usize;
        if scalar_output_count > scalar_output.len() {
            return Err(CallError::Transport(Error::Transport(format!(
                "selector {selector}: IOKit returned {scalar_output_count} scalars for room for {}",
                scalar_output.len()
            ))));
        }
        let struct_output_size = match (&struct_output, capacity) {
            (StructOutput::None, _) => 0,
            (StructOutput::Variable(out), _) => out.len(),
            (StructOutput::Buffer(_), Some(capacity)) if counts.struct_output > capacity => {
                return Err(CallError::Transport(Error::Transport(format!(
                    "selector {selector}: IOKit returned {} bytes of structure output for a \
                     {capacity}-byte buffer",
                    counts.struct_output
                ))));
            }
            (StructOutput::Buffer(_), _) => counts.struct_output,
        };
        Ok(Reply { scalar_output_count, struct_output_size })
    }

    /// Maps the memory type once per connection; further maps of the same
    /// type share that mapping, which is unmapped when the last of them is.
    ///
    /// `read_only` comes from the protection `mach_vm_region` reports for the
    /// mapped range: the kernel maps a type read-only when the dext set
    /// `kIOUserClientMemoryReadOnly` (docs/driverkit.md §5.1, §5.3), and the
    /// client cannot ask otherwise.
    fn map_memory(&self, memory_type: u32) -> Result<MappedRegion<'_>, Error> {
        let memory_error = |detail: String| Error::Memory { memory_type, detail };
        let mut mappings = self.mappings();
        if let Some(mapped) = mappings.get_mut(&memory_type) {
            return self.region(memory_type, mapped);
        }
        let (address, size) = self
            .connection
            .map_memory(memory_type)
            .map_err(|code| memory_error(format!("IOConnectMapMemory64 failed: {code}")))?;
        let unmap = |detail: String| {
            // SAFETY: nothing has seen this mapping yet.
            let _ = unsafe { self.connection.unmap_memory(memory_type, address) };
            memory_error(detail)
        };
        let Ok(len) = usize::try_from(size) else {
            return Err(unmap(format!(
                "the mapping of {size} bytes does not fit this address space"
            )));
        };
        if address == 0 {
            return Err(unmap("IOConnectMapMemory64 mapped it at address 0".to_string()));
        }
        let read_only = match ffi::is_writable(address, size) {
            Ok(writable) => !writable,
            Err(kr) => {
                return Err(unmap(format!(
                    "cannot read the mapping's protection (mach_vm_region: {})",
                    IoReturn(kr)
                )));
            }
        };
        let mapped =
            mappings.entry(memory_type).or_insert(Mapped { address, len, read_only, users: 0 });
        self.region(memory_type, mapped)
    }
}

impl IoKit {
    /// One more region of `mapped`, counted in its `users`.
    fn region(&self, memory_type: u32, mapped: &mut Mapped) -> Result<MappedRegion<'_>, Error> {
        let start = NonNull::new(mapped.address as usize as *mut u8).ok_or_else(|| {
            Error::Memory { memory_type, detail: "mapped at address 0".to_string() }
        })?;
        mapped.users += 1;
        Ok(MappedRegion::new(
            start,
            mapped.len,
            mapped.read_only,
            RegionGuard { iokit: self, memory_type },
        ))
    }
}

/// Gives a region back; the last one of a memory type unmaps it.
struct RegionGuard<'t> {
    iokit: &'t IoKit,
    memory_type: u32,
}

impl Drop for RegionGuard<'_> {
    fn drop(&mut self) {
        let mut mappings = self.iokit.mappings();
        let Some(mapped) = mappings.get_mut(&self.memory_type) else { return };
        mapped.users -= 1;
        if mapped.users > 0 {
            return;
        }
        let address = mapped.address;
        mappings.remove(&self.memory_type);
        // SAFETY: the last region of the mapping is being dropped, and with
        // it the last `Mapping` that could reach the range (the `Transport`
        // contract: references into a range live no longer than a region).
        // Unmapping can only fail when the connection is gone already, and
        // then the kernel has torn the mapping down itself.
        let _ = unsafe { self.iokit.connection.unmap_memory(self.memory_type, address) };
    }
}
