//! dextlink: typed access to DriverKit user clients, generated from one schema.
//!
//! ```ignore
//! dextlink::interface!("fwloader.dextlink");   // generates `mod fw_loader`
//!
//! let client = fw_loader::FwLoader::connect(transport)?;   // checks the schema fingerprint
//! let (session, resume) = client.begin(&info)?;
//! let done = client.submit(slot, len)?.wait()?;            // async: a Future, or wait()
//! ```
//!
//! The client runs over any [`Transport`]: the IOKit backend on macOS, the
//! simulator everywhere (in process, or a dext server on a Unix socket).

pub mod completion;
mod error;
pub mod image;
mod io_return;
#[cfg(target_vendor = "apple")]
pub mod iokit;
pub mod mapping;
pub mod server;
#[cfg(unix)]
pub mod sim;
pub mod staging;
mod transport;

pub use completion::{Completed, CompletionSlot, Pending};
pub use dextlink_macros::interface;
pub use error::{Error, UnknownVariant};
pub use io_return::IoReturn;
pub use mapping::{Mapping, ReadOnly, ReadWrite};
pub use transport::{Call, CallError, MappedRegion, Reply, StructOutput, Transport};

/// Used by generated code; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use zerocopy;

    use crate::Error;

    // Error paths of generated methods, out of line and cold, so that the
    // generated call path stays as small as a hand-written one.

    #[cold]
    #[inline(never)]
    pub fn short_reply(
        method: &'static str,
        what: &str,
        expected: impl std::fmt::Display,
        got: usize,
    ) -> Error {
        Error::MalformedReply { method, detail: format!("expected {expected} {what}, got {got}") }
    }

    #[cold]
    #[inline(never)]
    pub fn invalid_value(method: &'static str, name: &str, wire: u64, type_name: &str) -> Error {
        Error::MalformedReply {
            method,
            detail: format!("`{name}` = {wire:#x} is not a valid {type_name}"),
        }
    }

    #[cold]
    #[inline(never)]
    pub fn out_of_range(
        method: &'static str,
        parameter: &'static str,
        value: impl std::fmt::Display,
        range: &str,
    ) -> Error {
        Error::OutOfRange { method, parameter, value: value.to_string(), range: range.to_string() }
    }
}
