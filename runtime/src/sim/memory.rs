//! Memory a simulated dext shares with its clients.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;

/// A zeroed, page-aligned buffer, like an `IOBufferMemoryDescriptor`
/// (driverkit-facts §5.7: its length starts at its capacity).
#[derive(Debug)]
pub struct SharedMemory {
    ptr: NonNull<u8>,
    len: usize,
}

const PAGE: usize = 4096;

// SAFETY: the buffer is plain memory owned by this value; access goes through
// raw pointers whose users (the dext model and client mappings) coordinate
// as the schema's protocol says, exactly as with memory shared across processes.
unsafe impl Send for SharedMemory {}
// SAFETY: as above.
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    /// Allocates `len` zeroed bytes; `None` if `len` is 0 or allocation fails
    /// (`kIOReturnNoMemory` for the caller).
    pub fn new(len: usize) -> Option<SharedMemory> {
        let layout = Layout::from_size_align(len, PAGE).ok().filter(|l| l.size() > 0)?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some(SharedMemory { ptr, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Copies `bytes` in at `offset` (for dext models); false if out of bounds.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        match offset.checked_add(bytes.len()) {
            Some(end) if end <= self.len => {
                // SAFETY: `offset..end` lies inside the allocation; a byte copy
                // has no alignment requirement.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        self.ptr.as_ptr().add(offset),
                        bytes.len(),
                    )
                };
                true
            }
            _ => false,
        }
    }

    /// Copies `len` bytes out from `offset`; `None` if out of bounds.
    pub fn read(&self, offset: usize, len: usize) -> Option<Vec<u8>> {
        let end = offset.checked_add(len).filter(|end| *end <= self.len)?;
        let mut out = vec![0; end - offset];
        // SAFETY: `offset..end` lies inside the allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                out.as_mut_ptr(),
                out.len(),
            )
        };
        Some(out)
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout.
        unsafe { dealloc(self.ptr.as_ptr(), Layout::from_size_align_unchecked(self.len, PAGE)) };
    }
}
