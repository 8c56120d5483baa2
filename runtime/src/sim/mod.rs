//! The simulator: a dext's user-client side on Linux, with DriverKit's rules.
//!
//! [`kernel`] is what sits between an app and a dext (IOKitLib, the kernel's
//! MIG handlers and the `IOUserUserClient` proxy, the iig stubs): it shapes a
//! client [`Call`](crate::Call) into the [`Arguments`] a dext receives and
//! applies the return rules to what comes back (driverkit-facts §3).
//! [`InProcess`] is a [`Transport`](crate::Transport) that runs a [`Dext`] in
//! this process.

mod in_process;
pub mod kernel;
mod memory;

pub use in_process::InProcess;
pub use memory::SharedMemory;

use std::sync::Arc;

use crate::IoReturn;
use crate::server::Arguments;

/// A dext's user client, as the simulator drives it.
pub trait Dext: Send {
    /// `ExternalMethod`: called one at a time per user client (driverkit-facts §2.2-11).
    fn external_method(&mut self, selector: u64, arguments: &mut Arguments<'_>) -> IoReturn;

    /// `CopyClientMemoryForType`: the same memory for a type on every call
    /// (§5.1), and whether the client maps it read-only.
    fn copy_client_memory(
        &mut self,
        memory_type: u64,
    ) -> Result<(Arc<SharedMemory>, bool), IoReturn> {
        let _ = memory_type;
        Err(IoReturn::UNSUPPORTED)
    }
}
