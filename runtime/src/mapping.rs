//! Memory types mapped into the client (`IOConnectMapMemory64`), unmapped on drop.
//!
//! A mapping of a read-only type gives `&[u8]`; only a read-write type gives
//! `&mut [u8]`. Views of schema structs at an offset are bounds- and
//! alignment-checked by zerocopy.
//!
//! # Why the references this module hands out are sound
//!
//! A [`Mapping`] owns a [`MappedRegion`] from an `unsafe impl Transport`,
//! whose contract (see [`Transport`]'s `# Safety`) gives:
//!
//! - *Validity:* the range is mapped, readable, and writable unless the
//!   region says read-only, for as long as the region lives. The region is
//!   a field of the `Mapping`, and every reference borrows the `Mapping`, so
//!   no reference outlives the mapping. There is no unmap call: dropping the
//!   last region of a mapping is the only way to unmap it.
//! - *Aliasing within this process:* one range per mapped type, shared by
//!   every region of it. This module keeps a registry of live views by
//!   range, like a `RwLock` taken for the mapping's lifetime: any number of
//!   read-only [`Mapping`]s of a range, or exactly one read-write one, never
//!   both. [`Mapping::map`] refuses the rest at run time. So `as_mut_slice`
//!   (`&mut self`) is the only reference into the range in this process
//!   while it lives, and `as_slice` shares the range only with other shared
//!   references.
//! - *Initialisation and bit validity:* every byte of a mapping is
//!   initialised (it is a file's pages: a memfd's or the kernel's), and
//!   every type handed out is `[u8]` or a zerocopy `FromBytes` type, for
//!   which every bit pattern is valid.
//!
//! What Rust cannot see: the dext (another process, or another thread of
//! the simulator through its own mapping) may read and write the same pages
//! at any time. Rust's model does not cover writes from outside the
//! process, and the compiler may assume the bytes behind a reference do not
//! change while it lives. With the two properties above that never makes a
//! value invalid, but a reader may see bytes half old and half new, or a
//! value the compiler read once and kept. So the protocol in the schema
//! decides who owns which bytes when: the staging ring, for example, owns a
//! slot from its completion until it is submitted, and the dext touches it
//! only in between. Code that watches bytes the dext is writing copies them
//! out with [`Mapping::read_at`], which reads the memory again on every
//! call, rather than holding a reference across the change.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Mutex, PoisonError};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{Error, MappedRegion, Transport};

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
    memory_type: u32,
    region: MappedRegion<'t>,
    _access: PhantomData<A>,
}

impl<A> std::fmt::Debug for Mapping<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("memory_type", &self.memory_type)
            .field("len", &self.region.len())
            .finish()
    }
}

impl<'t, A: Access> Mapping<'t, A> {
    /// Maps `memory_type` through `transport`, checking that it has the size
    /// and access the schema declares.
    ///
    /// Fails with [`Error::Memory`] while this process already holds a
    /// `Mapping` of the same range that conflicts with this one: a
    /// read-write mapping beside any other, or a read-only one beside a
    /// read-write one. Drop the other first, or keep one `Mapping` and
    /// borrow it.
    pub fn map(
        transport: &'t dyn Transport,
        memory_type: u32,
        expected_len: u64,
    ) -> Result<Self, Error> {
        let region = transport.map_memory(memory_type)?;
        let memory_error = |detail: String| Error::Memory { memory_type, detail };
        if region.len() as u64 != expected_len {
            return Err(memory_error(format!(
                "the dext mapped {} bytes, the schema declares {expected_len}",
                region.len()
            )));
        }
        if A::WRITABLE && region.is_read_only() {
            return Err(memory_error(
                "the dext mapped it read-only, the schema declares read_write".to_string(),
            ));
        }
        views::acquire(region.address().as_ptr() as usize, A::WRITABLE).map_err(memory_error)?;
        // From here on, dropping the mapping releases the view, then unmaps.
        Ok(Mapping { memory_type, region, _access: PhantomData })
    }
}

impl<A> Mapping<'_, A> {
    pub fn memory_type(&self) -> u32 {
        self.memory_type
    }

    pub fn len(&self) -> usize {
        self.region.len()
    }

    pub fn is_empty(&self) -> bool {
        self.region.is_empty()
    }

    /// The whole mapping.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: see the module's reasoning;
        // - valid: the range is mapped and readable while `self.region`
        //   lives (the `Transport` contract), and the borrow of `self` keeps
        //   it alive; it is initialised memory of `len` bytes, and `len`
        //   fits in `isize` because it is mapped in this address space;
        // - aliasing: the view registry admits no writable `Mapping` of this
        //   range beside this one, so no `&mut` into it exists in this process.
        unsafe { std::slice::from_raw_parts(self.region.address().as_ptr(), self.region.len()) }
    }

    /// A view of a `T` at `offset`: fails if it does not fit or is misaligned.
    pub fn view<T: FromBytes + KnownLayout + Immutable>(&self, offset: usize) -> Result<&T, Error> {
        let bytes = self.range(offset, std::mem::size_of::<T>())?;
        T::ref_from_bytes(bytes).map_err(|_| self.misaligned::<T>(offset))
    }

    /// Copies `out.len()` bytes at `offset` out of the mapping, reading the
    /// memory afresh: for bytes the dext may be changing (see the module's
    /// reasoning), where a reference held across the change could show a
    /// value read once and kept.
    pub fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), Error> {
        let len = out.len();
        let end = offset
            .checked_add(len)
            .filter(|end| *end <= self.region.len())
            .ok_or_else(|| self.out_of_bounds(offset, len))?;
        debug_assert!(end <= self.region.len());
        let base = self.region.address().as_ptr();
        for (index, byte) in out.iter_mut().enumerate() {
            // SAFETY: `offset + index < end <= len`, so the byte is inside
            // the range, which is mapped and readable while `self.region`
            // lives; a volatile read of a `u8` has no alignment requirement
            // and creates no reference, so it aliases nothing.
            *byte = unsafe { base.add(offset + index).read_volatile() };
        }
        Ok(())
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
            detail: format!(
                "{len} bytes at offset {offset} do not fit in {} bytes",
                self.region.len()
            ),
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
        // SAFETY: see the module's reasoning;
        // - valid: as in `as_slice`, and writable: `map` refused a region
        //   the transport mapped read-only for a `ReadWrite` mapping;
        // - aliasing: the view registry admitted this `Mapping` as the only
        //   one of its range in this process, and `&mut self` makes this
        //   the only borrow of it, so this is the only reference into the
        //   range in this process while it lives.
        unsafe { std::slice::from_raw_parts_mut(self.region.address().as_ptr(), self.region.len()) }
    }

    /// A writable view of a `T` at `offset`.
    pub fn view_mut<T: FromBytes + IntoBytes + KnownLayout>(
        &mut self,
        offset: usize,
    ) -> Result<&mut T, Error> {
        let len = std::mem::size_of::<T>();
        let end = offset
            .checked_add(len)
            .filter(|end| *end <= self.region.len())
            .ok_or_else(|| self.out_of_bounds(offset, len))?;
        let misaligned = self.misaligned::<T>(offset);
        T::mut_from_bytes(&mut self.as_mut_slice()[offset..end]).map_err(|_| misaligned)
    }
}

impl<A> Drop for Mapping<'_, A> {
    fn drop(&mut self) {
        // The view goes first; the region (a field) is dropped after this,
        // which unmaps once it is the mapping's last region.
        views::release(self.region.address().as_ptr() as usize);
    }
}

/// The registry of live [`Mapping`]s in this process, by the address their
/// range starts at: a `RwLock` per range, held for a mapping's lifetime.
///
/// Keyed by address because a range is what references alias, whatever
/// transport or connection it came through, and because a transport hands a
/// live mapping out again only as the same range (its `# Safety` contract):
/// while a range is registered it cannot be unmapped and reused, since the
/// registering `Mapping` holds a region of it.
mod views {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Held {
        Readers(usize),
        Writer,
    }

    static LIVE: Mutex<Option<HashMap<usize, Held>>> = Mutex::new(None);

    pub(super) fn acquire(address: usize, writable: bool) -> Result<(), String> {
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        let live = live.get_or_insert_with(HashMap::new);
        match (live.get(&address).copied(), writable) {
            (None, true) => {
                live.insert(address, Held::Writer);
                Ok(())
            }
            (None, false) => {
                live.insert(address, Held::Readers(1));
                Ok(())
            }
            (Some(Held::Readers(n)), false) => {
                live.insert(address, Held::Readers(n + 1));
                Ok(())
            }
            (Some(Held::Writer), _) => Err("is already mapped by a live read-write Mapping in \
                 this process: at most one may exist at a time; drop it first, or keep one \
                 Mapping and borrow it"
                .to_string()),
            (Some(Held::Readers(n)), true) => Err(format!(
                "is mapped by {n} live read-only Mapping(s) in this process: a read-write \
                 Mapping cannot exist beside them; drop them first"
            )),
        }
    }

    pub(super) fn release(address: usize) {
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(live) = live.as_mut() else { return };
        match live.get(&address).copied() {
            Some(Held::Readers(n)) if n > 1 => {
                live.insert(address, Held::Readers(n - 1));
            }
            Some(_) => {
                live.remove(&address);
            }
            None => {}
        }
    }
}
