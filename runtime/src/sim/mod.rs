//! The simulator: a dext's user-client side on Linux, with DriverKit's rules.
//!
//! A dext is modelled in Rust as a [`Driver`] (the `IOService` whose
//! `NewUserClient` makes one [`UserClient`] per open connection). A
//! [`Simulator`] runs it in one of two modes, behind the same
//! [`Transport`](crate::Transport) the generated client uses on a Mac:
//!
//! - [`InProcess`]: each user client runs on a thread of its own, for unit tests;
//! - [`SocketTransport`] to a dext server process ([`Simulator::serve`]) on a
//!   Unix socket: memory types are memfds passed with `SCM_RIGHTS` and mapped
//!   in both processes, completions travel back on the socket, and a server
//!   that dies gives its clients [`Error::Disconnected`](crate::Error::Disconnected).
//!
//! [`kernel`] is what sits between an app and a dext (IOKitLib, the kernel's
//! MIG handlers and the `IOUserUserClient` proxy, the iig stubs): it shapes a
//! client call into the [`Arguments`] a dext receives and applies the return
//! rules to what comes back (docs/driverkit.md §3).
//!
//! Behind the dext sits the hardware: [`usb`] models its `IOUSBHostPipe`
//! (a bulk OUT pipe with a link rate and injected faults), [`flash`] the
//! device's two-bank flash, kept in a file that outlives the process.
//!
//! # Rules and the tests that hold the simulator to them
//!
//! | docs/driverkit.md | rule | test |
//! |---|---|---|
//! | §2.2-1 | completion present exactly for async calls; checkCompletionExists true/0/-1U | `server::tests::completion_check_follows_the_header_contract`; `shapes_roundtrip::dext_refuses_completion_mismatches`, `completion_any_accepts_calls_with_and_without_a_completion` |
//! | §2.2-2..5, 7 | the four count/size checks, only `0xffffffff` is don't-care, 0 is exact; the output check compares the capacity offered | `server::tests::zero_is_an_exact_check_and_variable_is_dont_care`; `shapes_roundtrip::dext_refuses_wrong_counts_and_sizes`; `sim_rules::count_and_size_checks_refuse_wrong_shapes_in_both_modes` |
//! | §2.2-6 | a NULL `function` gives `kIOReturnNoCompletion` | the C++ shim's `test_shim.cpp` (the Rust model has no function pointers: `#[unchecked]` methods go to their handler) |
//! | §2.2-8 | a mismatch is `kIOReturnBadArgument` (ASSUMPTION: the kernel twin's code, DriverKit's is unpublished) | the same tests |
//! | §2.2-10 | a selector past the table is refused | `shapes_roundtrip::dext_refuses_reserved_and_unknown_selectors` |
//! | §2.2-11 | calls into one user client run one at a time; clients run side by side | `sim_rules::calls_into_one_user_client_are_serialised`, `sim_rules::clients_of_one_dext_run_side_by_side`, `shapes_roundtrip::calls_from_many_threads_are_serialised` |
//! | §3.2-4, 5 | scalar outputs start zeroed; count returned = min(requested, set by the dext) | `kernel::tests::scalar_outputs_start_zeroed_and_come_back_as_min_of_requested_and_set` |
//! | §3.2-5 | input inline up to 4096 bytes, a descriptor above | `kernel::tests::structure_input_is_inline_up_to_4096_bytes_then_a_descriptor`, `sim_rules::large_input_arrives_as_a_descriptor` |
//! | §3.3-1 | inline output: the OSData length, no more than the capacity; none: the capacity | `kernel::tests::inline_output_returns_the_osdata_length_or_the_capacity` |
//! | §3.3-2 | output over 4096 bytes through a descriptor, full capacity reported | `kernel::tests::large_output_goes_through_a_descriptor_and_reports_the_full_capacity` |
//! | §3.3-3 | var-output: the OSData whole, none is an underrun | `kernel::tests::variable_output_returns_the_osdata_whole_or_underruns` |
//! | §3.2-5 | on error nothing is copied back; more than 16 scalars never reach the dext | `kernel::tests::failures_return_nothing_and_too_many_scalars_never_reach_the_dext`, `sim_rules::count_and_size_checks_refuse_wrong_shapes_in_both_modes` |
//! | §4.1-3 | more than 16 completion values are dropped: the client times out | `server::tests::more_than_sixteen_completion_values_are_dropped`, `sim_rules::seventeen_completion_values_never_arrive` |
//! | §4.3-5 | completions after the client went away are no-ops | `sim_rules::completion_after_close_is_a_no_op`, `sim_rules::a_client_that_dies_does_not_take_the_server_down` |
//! | §4 | completions may arrive in any order | `sim_rules::completions_arrive_in_any_order` |
//! | §5.1-3 | the same descriptor per type; shared both ways; unknown type fails | `sim_rules::memory_is_shared_both_ways`, `shapes_roundtrip::unknown_memory_type_is_refused` |
//! | §5.1 | a read-only type is mapped read-only: a write faults | `sim_rules::writing_read_only_memory_faults` (in a child process) |
//! | — | a server that dies disconnects its clients, never a hang | `sim_rules::killing_the_server_disconnects_its_clients` |
//! | — | userclient-access entitlement gate: `kIOReturnNotPermitted` | `sim_rules::open_without_entitlement_is_refused` |
//!
//! (`sim_rules` is `runtime/tests/sim_rules.rs`; each test runs in both modes
//! where the mode matters. The bodies of its tests live in
//! `runtime/tests/shared/sim_rules_checks.rs`, and run, with the same
//! expected results, against the rules dext compiled from C++ and hosted by
//! dextlink-sim, in process and through `dextlink-sim serve`:
//! `runtime/sim/tests/cpp_rules.rs`, which also runs the read-only fault,
//! the killed server and the client that dies against it. The entitlement
//! gate is the kernel's, not the dext's, and is not repeated there.)

pub mod flash;
mod host;
mod in_process;
pub mod kernel;
mod memory;
mod process;
pub mod registry;
mod socket;
pub mod usb;
mod wire;

pub use in_process::InProcess;
pub use memory::SharedMemory;
pub use process::{SOCKET_ENV, ServerProcess, socket_path_from_env};
pub use socket::SocketTransport;

use std::sync::Arc;

use crate::server::Arguments;
use crate::{Error, IoReturn};

/// Memory a user client hands out for a type (`CopyClientMemoryForType`).
#[derive(Debug, Clone)]
pub struct ClientMemory {
    pub memory: Arc<SharedMemory>,
    /// `kIOUserClientMemoryReadOnly`: the client maps it read-only.
    pub read_only: bool,
}

/// A dext's user client (an `IOUserClient` subclass), as the simulator drives it.
pub trait UserClient: Send + 'static {
    /// `ExternalMethod`: called one at a time per user client (docs/driverkit.md §2.2-11).
    fn external_method(&mut self, selector: u64, arguments: &mut Arguments<'_>) -> IoReturn;

    /// `CopyClientMemoryForType`: the same memory for a type on every call
    /// (§5.1), and whether the client maps it read-only.
    fn copy_client_memory(&mut self, memory_type: u64) -> Result<ClientMemory, IoReturn> {
        let _ = memory_type;
        Err(IoReturn::UNSUPPORTED)
    }

    /// `Stop`: the client closed the connection or its process died.
    /// Completions sent after this are no-ops (§4.3-5).
    fn stop(&mut self) {}
}

/// A dext (its `IOService`): makes a user client for each connection, as
/// `NewUserClient` does. State shared by all clients lives here.
pub trait Driver: Send + Sync + 'static {
    type UserClient: UserClient;

    /// `NewUserClient(type)`: `kind` is the type the client passed to `IOServiceOpen`.
    fn new_user_client(&self, kind: u32) -> Result<Self::UserClient, IoReturn>;
}

/// A driver whose user clients are made by a closure.
impl<U: UserClient, F> Driver for F
where
    F: Fn(u32) -> Result<U, IoReturn> + Send + Sync + 'static,
{
    type UserClient = U;

    fn new_user_client(&self, kind: u32) -> Result<U, IoReturn> {
        self(kind)
    }
}

/// What a client presents when it opens a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOptions {
    /// The `type` argument of `IOServiceOpen`.
    pub kind: u32,
    /// Whether the app holds `com.apple.developer.driverkit.userclient-access`
    /// for this dext (only checked when the simulator requires it).
    pub entitled: bool,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions { kind: 0, entitled: true }
    }
}

/// A simulated dext: its driver, its service name and its open-time policy.
/// Cheap to clone; clones run the same dext.
#[derive(Debug)]
pub struct Simulator<D> {
    driver: Arc<D>,
    service: Arc<str>,
    require_entitlement: bool,
}

impl<D> Clone for Simulator<D> {
    fn clone(&self) -> Self {
        Simulator {
            driver: Arc::clone(&self.driver),
            service: Arc::clone(&self.service),
            require_entitlement: self.require_entitlement,
        }
    }
}

impl<D: Driver> Simulator<D> {
    /// A dext publishing `service`.
    pub fn new(service: &str, driver: D) -> Simulator<D> {
        Simulator { driver: Arc::new(driver), service: service.into(), require_entitlement: false }
    }

    /// Refuses clients without the userclient-access entitlement with
    /// `kIOReturnNotPermitted`, as macOS refuses `IOServiceOpen` for an app
    /// whose entitlement does not name the dext.
    pub fn require_entitlement(mut self, required: bool) -> Simulator<D> {
        self.require_entitlement = required;
        self
    }

    /// The service name clients match.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The driver, for tests that look at its shared state.
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// Opens a user client in this process (an entitled client, type 0).
    pub fn open(&self) -> Result<InProcess<D::UserClient>, Error> {
        self.open_with(&OpenOptions::default())
    }

    /// Opens a user client in this process as `options` describe the client.
    pub fn open_with(&self, options: &OpenOptions) -> Result<InProcess<D::UserClient>, Error> {
        let user_client = self.new_user_client(options).map_err(|code| self.open_error(code))?;
        Ok(InProcess::new(user_client))
    }

    /// `IOServiceOpen` on the dext side: the entitlement gate, then `NewUserClient`.
    fn new_user_client(&self, options: &OpenOptions) -> Result<D::UserClient, IoReturn> {
        if self.require_entitlement && !options.entitled {
            return Err(IoReturn::NOT_PERMITTED);
        }
        self.driver.new_user_client(options.kind)
    }

    fn open_error(&self, code: IoReturn) -> Error {
        open_error(&self.service, code)
    }
}

/// Opens a user client of the dext served as `service` (its `IOUserClass`)
/// by a running simulator, found through the [`registry`]: the simulator's
/// `IOServiceGetMatchingService(IOServiceNameMatching(service))` and
/// `IOServiceOpen`. With several servers of one service, the oldest entry
/// (the lowest registry ID) is opened, as the first match is on a Mac.
pub fn open(service: &str, options: &OpenOptions) -> Result<SocketTransport, Error> {
    registry::Registry::from_env().open(service, options)
}

/// The client's error for a refused open.
fn open_error(service: &str, code: IoReturn) -> Error {
    if code == IoReturn::NOT_PERMITTED {
        Error::NotPermitted {
            service: service.to_string(),
            code,
            hint: "the app needs the com.apple.developer.driverkit.userclient-access \
                   entitlement naming this dext (the simulator was told to require it)"
                .to_string(),
        }
    } else {
        Error::Transport(format!("opening {service:?} failed: {code}"))
    }
}
