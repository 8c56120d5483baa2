//! The one small trait every backend implements: the operations DriverKit
//! offers a client (`IOConnectCallMethod`/`IOConnectCallAsyncMethod`,
//! `IOConnectMapMemory64`/`IOConnectUnmapMemory64`), and nothing more. The
//! generated client is the same code over every backend.

use std::ptr::NonNull;

use crate::{CompletionSlot, Error, IoReturn};

/// The structure output a call offers (driverkit-facts §3.1-2).
#[derive(Debug)]
pub enum StructOutput<'a> {
    /// No output buffer: a capacity of 0.
    None,
    /// A buffer of this capacity; inline up to 4096 bytes, out of line above.
    Buffer(&'a mut [u8]),
    /// `kIOConnectMethodVarOutputSize`: the dext returns any length.
    Variable(&'a mut Vec<u8>),
}

/// One external method call, as `IOConnectCallMethod` takes it.
#[derive(Debug)]
pub struct Call<'a> {
    pub selector: u32,
    pub scalar_input: &'a [u64],
    pub struct_input: &'a [u8],
    /// Room for the scalar outputs; its length is the count requested.
    pub scalar_output: &'a mut [u64],
    pub struct_output: StructOutput<'a>,
    /// For async calls: where the completion is delivered. Its presence is
    /// what makes DriverKit hand the dext a `completion` action (§4.2-2).
    pub completion: Option<CompletionSlot>,
}

/// What came back from a successful call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Scalars the dext returned: at most the count requested (§3.2-5).
    pub scalar_output_count: usize,
    /// Bytes of structure output: the OSData length inline, the full
    /// capacity out of line (§3.3-2), the length returned for a variable output.
    pub struct_output_size: usize,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// DriverKit or the dext answered with this status.
    Status(IoReturn),
    /// The transport itself failed (disconnected, protocol error, …).
    Transport(Error),
}

impl CallError {
    /// The error a generated method reports for this failure.
    pub fn for_method(self, method: &'static str, selector: u32) -> Error {
        match self {
            CallError::Status(code) => Error::Dext { method, selector, code },
            CallError::Transport(error) => error,
        }
    }
}

/// A memory type mapped into this process.
#[derive(Debug)]
pub struct RawMapping {
    pub address: NonNull<u8>,
    pub len: usize,
    /// Whether the mapping is read-only (the dext set `kIOUserClientMemoryReadOnly`).
    pub read_only: bool,
}

// SAFETY: a RawMapping is an address range, not access to it; every access
// goes through `Mapping`, which hands out references under Rust's borrow
// rules. The memory stays mapped until `Transport::unmap_memory`.
unsafe impl Send for RawMapping {}
// SAFETY: as above; sharing the description of a range shares no access.
unsafe impl Sync for RawMapping {}

/// A connection to one user client of a dext.
///
/// Implementations must be usable from several threads at once (calls into
/// one user client are serialised by DriverKit, driverkit-facts §2.2-11, and
/// by the simulator alike) and must end every outstanding completion with
/// [`Error::Disconnected`] when the connection goes away.
pub trait Transport: Send + Sync {
    /// `IOConnectCallMethod` / `IOConnectCallAsyncMethod`.
    fn call(&self, call: Call<'_>) -> Result<Reply, CallError>;

    /// `IOConnectMapMemory64` with `kIOMapAnywhere`: maps memory type
    /// `memory_type` and returns where. The range stays valid until
    /// [`Transport::unmap_memory`] is called with it.
    fn map_memory(&self, memory_type: u32) -> Result<RawMapping, Error>;

    /// `IOConnectUnmapMemory64`.
    fn unmap_memory(&self, memory_type: u32, mapping: &RawMapping) -> Result<(), Error>;
}

impl<T: Transport + ?Sized> Transport for &T {
    fn call(&self, call: Call<'_>) -> Result<Reply, CallError> {
        (**self).call(call)
    }
    fn map_memory(&self, memory_type: u32) -> Result<RawMapping, Error> {
        (**self).map_memory(memory_type)
    }
    fn unmap_memory(&self, memory_type: u32, mapping: &RawMapping) -> Result<(), Error> {
        (**self).unmap_memory(memory_type, mapping)
    }
}

impl<T: Transport + ?Sized> Transport for std::sync::Arc<T> {
    fn call(&self, call: Call<'_>) -> Result<Reply, CallError> {
        (**self).call(call)
    }
    fn map_memory(&self, memory_type: u32) -> Result<RawMapping, Error> {
        (**self).map_memory(memory_type)
    }
    fn unmap_memory(&self, memory_type: u32, mapping: &RawMapping) -> Result<(), Error> {
        (**self).unmap_memory(memory_type, mapping)
    }
}
