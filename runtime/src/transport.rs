//! The one small trait every backend implements: the operations DriverKit
//! offers a client (`IOConnectCallMethod`/`IOConnectCallAsyncMethod`,
//! `IOConnectMapMemory64`/`IOConnectUnmapMemory64`), and nothing more. The
//! generated client is the same code over every backend.

use std::ptr::NonNull;

use crate::{CompletionSlot, Error, IoReturn};

/// The structure output a call offers (docs/driverkit.md §3.1-2).
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

/// A memory type mapped into this process: the range and the backend's
/// guard, whose drop unmaps it (`IOConnectUnmapMemory64`) once no other
/// region of the same mapping is alive.
///
/// There is no other way to unmap: a range can only go away when the
/// region that describes it is dropped, and [`Mapping`](crate::Mapping),
/// which hands out references into the range, owns its region.
pub struct MappedRegion<'t> {
    address: NonNull<u8>,
    len: usize,
    read_only: bool,
    // Dropped after nothing can reach the range through this region any more.
    _guard: Box<dyn Send + Sync + 't>,
}

// SAFETY: a region is the description of a range and a guard that is `Send`
// and `Sync` itself; it gives no access to the range. Every access goes
// through `Mapping`, which hands out references under the borrow rules and
// the view registry (see `mapping`'s reasoning), from whichever thread.
unsafe impl Send for MappedRegion<'_> {}
// SAFETY: as above: `&MappedRegion` gives the address, length and access, no bytes.
unsafe impl Sync for MappedRegion<'_> {}

impl<'t> MappedRegion<'t> {
    /// A region of `len` bytes at `address`, unmapped when `guard` is dropped.
    ///
    /// Making one is safe: nothing trusts a region except as the return
    /// value of an `unsafe impl Transport`'s `map_memory`, whose
    /// implementer promises what [`Transport`]'s `# Safety` section says.
    pub fn new(
        address: NonNull<u8>,
        len: usize,
        read_only: bool,
        guard: impl Send + Sync + 't,
    ) -> MappedRegion<'t> {
        MappedRegion { address, len, read_only, _guard: Box::new(guard) }
    }

    /// Where the range starts in this process.
    pub fn address(&self) -> NonNull<u8> {
        self.address
    }

    /// The range's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the range is mapped read-only (the dext set
    /// `kIOUserClientMemoryReadOnly`, docs/driverkit.md §5.1, §9-6).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

impl std::fmt::Debug for MappedRegion<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedRegion")
            .field("address", &self.address)
            .field("len", &self.len)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// A connection to one user client of a dext.
///
/// Implementations must be usable from several threads at once (calls into
/// one user client are serialised by DriverKit, docs/driverkit.md §2.2-11, and
/// by the simulator alike) and must end every outstanding completion with
/// [`Error::Disconnected`] when the connection goes away.
///
/// # Safety
///
/// [`Mapping`](crate::Mapping) turns what [`Transport::map_memory`] returns
/// into `&[u8]` and `&mut [u8]`, so an implementation promises, for every
/// `Ok(region)` it returns:
///
/// 1. *Mapped:* `region.address() .. + region.len()` is mapped in this
///    process and readable, and writable unless `region.is_read_only()`;
///    it stays so, at the same address, at least until `region` and every
///    other region of the same mapping have been dropped.
/// 2. *One range per mapping:* the bytes are the memory the dext gave for
///    `memory_type` on this connection (`CopyClientMemoryForType`). Two
///    live regions are either the same range (the same mapping handed out
///    again) or do not overlap at all.
/// 3. *No other references:* the implementation itself creates no Rust
///    reference into the range while a region of it is alive; its only
///    accesses to it are the kernel's or another process's (the dext's),
///    which Rust does not see.
///
/// `Mapping` adds the rest: at most one writable view of a range at a time
/// in this process, and never one beside a read-only view.
pub unsafe trait Transport: Send + Sync {
    /// `IOConnectCallMethod` / `IOConnectCallAsyncMethod`.
    fn call(&self, call: Call<'_>) -> Result<Reply, CallError>;

    /// `IOConnectMapMemory64` with `kIOMapAnywhere`: maps memory type
    /// `memory_type`. Mapping a type again while it is mapped returns the
    /// same range, as IOKit does without `kIOMapUnique`; the last region
    /// dropped unmaps it (`IOConnectUnmapMemory64`).
    fn map_memory(&self, memory_type: u32) -> Result<MappedRegion<'_>, Error>;
}

// SAFETY: forwards to `T`, which keeps the promises; the region borrows `T`
// through `&T`, so it cannot outlive it.
unsafe impl<T: Transport + ?Sized> Transport for &T {
    fn call(&self, call: Call<'_>) -> Result<Reply, CallError> {
        (**self).call(call)
    }
    fn map_memory(&self, memory_type: u32) -> Result<MappedRegion<'_>, Error> {
        (**self).map_memory(memory_type)
    }
}

// SAFETY: forwards to `T`, as above; the region borrows the `Arc`, which
// keeps `T` alive.
unsafe impl<T: Transport + ?Sized> Transport for std::sync::Arc<T> {
    fn call(&self, call: Call<'_>) -> Result<Reply, CallError> {
        (**self).call(call)
    }
    fn map_memory(&self, memory_type: u32) -> Result<MappedRegion<'_>, Error> {
        (**self).map_memory(memory_type)
    }
}
