//! Memory types mapped into the client (`IOConnectMapMemory64`), unmapped on drop.
//!
//! A mapping of a read-only type gives `&[u8]`; only a read-write type gives
//! `&mut [u8]`. Views of schema structs at an offset are bounds- and
//! alignment-checked by zerocopy.
//!
//! The memory is shared with the dext, which may write it while the client
//! reads. Like `memmap2` for shared file mappings, this type hands out plain
//! slices and leaves the protocol (who writes which bytes when) to the
//! schema's users: a staging ring, for example, owns a slot until it is
//! submitted and gets it back with the completion.

use std::marker::PhantomData;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{Error, RawMapping, Transport};

/// How the client may access a memory type.
pub trait Access {
    /// Whether the client may write.
    const WRITABLE: bool;
}

/// Marker: the client may only read this memory type.
#[derive(Debug, Clone, Copy)]
pub enum ReadOnly {}

/// Marker: the client may read and write this memory type.
#[derive(Debug, Clone, Copy)]
pub enum ReadWrite {}

impl Access for ReadOnly {
    const WRITABLE: bool = false;
}

impl Access for ReadWrite {
    const WRITABLE: bool = true;
}

/// A mapped memory type. `A` is [`ReadOnly`] or [`ReadWrite`], as the schema declares.
pub struct Mapping<'t, A> {
    transport: &'t dyn Transport,
    memory_type: u32,
    raw: RawMapping,
    _access: PhantomData<A>,
}

impl<A> std::fmt::Debug for Mapping<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("memory_type", &self.memory_type)
            .field("len", &self.raw.len)
            .finish()
    }
}

impl<'t, A: Access> Mapping<'t, A> {
    /// Maps `memory_type` through `transport`, checking that it has the size
    /// and access the schema declares.
    pub fn map(
        transport: &'t dyn Transport,
        memory_type: u32,
        expected_len: u64,
    ) -> Result<Self, Error> {
        let raw = transport.map_memory(memory_type)?;
        // From here on, dropping `mapping` unmaps.
        let mapping = Mapping { transport, memory_type, raw, _access: PhantomData };
        if mapping.raw.len as u64 != expected_len {
            return Err(Error::Memory {
                memory_type,
                detail: format!(
                    "the dext mapped {} bytes, the schema declares {expected_len}",
                    mapping.raw.len
                ),
            });
        }
        if A::WRITABLE && mapping.raw.read_only {
            return Err(Error::Memory {
                memory_type,
                detail: "the dext mapped it read-only, the schema declares read_write".to_string(),
            });
        }
        Ok(mapping)
    }
}

impl<A> Mapping<'_, A> {
    pub fn memory_type(&self) -> u32 {
        self.memory_type
    }

    pub fn len(&self) -> usize {
        self.raw.len
    }

    pub fn is_empty(&self) -> bool {
        self.raw.len == 0
    }

    /// The whole mapping.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the transport guarantees `address..address+len` is mapped
        // and readable until `unmap_memory`, which only `drop` calls; the
        // returned borrow cannot outlive `self`.
        unsafe { std::slice::from_raw_parts(self.raw.address.as_ptr(), self.raw.len) }
    }

    /// A view of a `T` at `offset`: fails if it does not fit or is misaligned.
    pub fn view<T: FromBytes + KnownLayout + Immutable>(&self, offset: usize) -> Result<&T, Error> {
        let bytes = self.range(offset, std::mem::size_of::<T>())?;
        T::ref_from_bytes(bytes).map_err(|_| self.misaligned::<T>(offset))
    }

    fn range(&self, offset: usize, len: usize) -> Result<&[u8], Error> {
        offset
            .checked_add(len)
            .and_then(|end| self.as_slice().get(offset..end))
            .ok_or_else(|| self.out_of_bounds(offset, len))
    }

    fn out_of_bounds(&self, offset: usize, len: usize) -> Error {
        Error::Memory {
            memory_type: self.memory_type,
            detail: format!("{len} bytes at offset {offset} do not fit in {} bytes", self.raw.len),
        }
    }

    fn misaligned<T>(&self, offset: usize) -> Error {
        Error::Memory {
            memory_type: self.memory_type,
            detail: format!(
                "offset {offset} is not aligned for {} ({} bytes)",
                std::any::type_name::<T>(),
                std::mem::align_of::<T>()
            ),
        }
    }
}

impl Mapping<'_, ReadWrite> {
    /// The whole mapping, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; the type is read-write (the transport
        // mapped it writable, `RawMapping::read_only` is false), and `&mut
        // self` makes this the only borrow in this process.
        unsafe { std::slice::from_raw_parts_mut(self.raw.address.as_ptr(), self.raw.len) }
    }

    /// A writable view of a `T` at `offset`.
    pub fn view_mut<T: FromBytes + IntoBytes + KnownLayout>(
        &mut self,
        offset: usize,
    ) -> Result<&mut T, Error> {
        let len = std::mem::size_of::<T>();
        let end = offset
            .checked_add(len)
            .filter(|end| *end <= self.raw.len)
            .ok_or_else(|| self.out_of_bounds(offset, len))?;
        let misaligned = self.misaligned::<T>(offset);
        T::mut_from_bytes(&mut self.as_mut_slice()[offset..end]).map_err(|_| misaligned)
    }
}

impl<A> Drop for Mapping<'_, A> {
    fn drop(&mut self) {
        // Unmapping can only fail if the connection is already gone, and then
        // the kernel (or the simulator) has torn the mapping down itself.
        let _ = self.transport.unmap_memory(self.memory_type, &self.raw);
    }
}
