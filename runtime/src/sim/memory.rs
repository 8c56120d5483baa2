//! Memory a simulated dext shares with its clients.
//!
//! A [`SharedMemory`] is a memfd (an anonymous file) mapped into the dext
//! model, as an `IOBufferMemoryDescriptor` is memory the dext owns. A client
//! maps the same file again — in this process, or in another one after the
//! descriptor travelled over the socket — so both sides see one set of pages,
//! as `IOConnectMapMemory64` gives (docs/driverkit.md §5.2-3). A read-only
//! memory type is mapped `PROT_READ` in the client, so a write there faults
//! as it would on a Mac (`kIOUserClientMemoryReadOnly` → `kIOMapReadOnly`, §5.1).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::MappedRegion;

use memmap2::{MmapOptions, MmapRaw};

/// A zeroed, page-aligned buffer shared through a file descriptor, like an
/// `IOBufferMemoryDescriptor` (docs/driverkit.md §5.7: its length starts at
/// its capacity).
#[derive(Debug)]
pub struct SharedMemory {
    file: File,
    /// The dext's own read-write view.
    map: MmapRaw,
}

impl SharedMemory {
    /// Allocates `len` zeroed bytes. Fails for a length of 0, as
    /// `IOBufferMemoryDescriptor::Create` with no capacity does.
    pub fn new(len: usize) -> io::Result<SharedMemory> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "shared memory of 0 bytes"));
        }
        let file = anonymous_file()?;
        file.set_len(len as u64)?;
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        Ok(SharedMemory { file, map })
    }

    /// Maps all of an existing shared file read-write: memory another part
    /// of the simulator allocated (the C++ DriverKit runtime's
    /// `IOBufferMemoryDescriptor`s are memfds), seen through its own mapping
    /// of the same pages. Fails for an empty file.
    pub fn from_file(file: File) -> io::Result<SharedMemory> {
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "shared file too large"))?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "shared memory of 0 bytes"));
        }
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        Ok(SharedMemory { file, map })
    }

    /// The memory of a file another runtime owns — the memfd behind a C++
    /// dext's `IOBufferMemoryDescriptor` — so that the dext's bytes and the
    /// client's mapping are one set of pages, as they are on a Mac. `file`
    /// becomes this value's own (pass a duplicate to keep the original).
    ///
    /// The descriptor's bytes must start at offset 0 of the file: clients,
    /// in this process or across the socket, map a memory type from the
    /// start of its file. Fails for a nonzero `offset`, a length of 0, or a
    /// file shorter than `offset + len`.
    pub fn from_fd(
        file: std::os::fd::OwnedFd,
        offset: u64,
        len: usize,
    ) -> io::Result<SharedMemory> {
        if offset != 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "the descriptor's bytes start at offset {offset} of its memfd; \
                     the simulator shares memory from offset 0 only"
                ),
            ));
        }
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "shared memory of 0 bytes"));
        }
        let file = File::from(file);
        let file_len = file.metadata()?.len();
        if file_len < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the memfd holds {file_len} bytes, fewer than the {len} shared"),
            ));
        }
        // Mapping a shared file is what makes both sides see one set of
        // pages; the map lives as long as `self`, and the file is never
        // shrunk by this process (a dext that truncates its own memfd is
        // as broken as one that frees memory it shared).
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        Ok(SharedMemory { file, map })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The dext's view of the memory.
    pub fn as_ptr(&self) -> NonNull<u8> {
        // A successful mmap never returns null.
        NonNull::new(self.map.as_mut_ptr()).expect("mmap returned null")
    }

    /// Copies `bytes` in at `offset` (for dext models); false if out of bounds.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        match offset.checked_add(bytes.len()) {
            Some(end) if end <= self.len() => {
                // SAFETY: `offset..end` lies inside the mapping, which lives as
                // long as `self`; a byte copy has no alignment requirement.
                // Clients may touch the same bytes concurrently, as with any
                // memory shared across processes; the schema's protocol
                // decides who writes when.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        self.map.as_mut_ptr().add(offset),
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
        let mut out = vec![0; len];
        self.read_into(offset, &mut out).then_some(out)
    }

    /// Copies bytes out from `offset` into `out`; false if out of bounds.
    pub fn read_into(&self, offset: usize, out: &mut [u8]) -> bool {
        match offset.checked_add(out.len()) {
            Some(end) if end <= self.len() => {
                // SAFETY: `offset..end` lies inside the mapping (see `write`).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.map.as_ptr().add(offset),
                        out.as_mut_ptr(),
                        out.len(),
                    )
                };
                true
            }
            _ => false,
        }
    }

    /// The file descriptor behind the memory, to pass to another process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Maps the memory again, as a client does.
    pub(crate) fn map_for_client(&self, read_only: bool) -> io::Result<ClientMap> {
        ClientMap::new(&self.file, self.len(), read_only)
    }

    /// What names this memory across processes: its address in the dext.
    pub(crate) fn identity(&self) -> u64 {
        self.map.as_ptr() as u64
    }
}

/// A client's own mapping of shared memory; unmapped on drop.
#[derive(Debug)]
pub(crate) struct ClientMap {
    map: MmapRaw,
    read_only: bool,
}

impl ClientMap {
    /// Maps `len` bytes of `file`, `PROT_READ` only if `read_only`.
    pub(crate) fn new(file: &impl AsFd, len: usize, read_only: bool) -> io::Result<ClientMap> {
        let fd = file.as_fd().as_raw_fd();
        let mut options = MmapOptions::new();
        options.len(len);
        let map = if read_only { options.map_raw_read_only(fd)? } else { options.map_raw(fd)? };
        Ok(ClientMap { map, read_only })
    }

    fn address(&self) -> NonNull<u8> {
        NonNull::new(self.map.as_mut_ptr()).expect("mmap returned null")
    }
}

/// A client's mappings, by the [`SharedMemory::identity`] of what they map,
/// each with the number of live regions of it: mapping one descriptor again
/// gives the same range (IOKit without `kIOMapUnique`, docs/driverkit.md §5.3),
/// and the last region dropped unmaps it.
#[derive(Debug, Default)]
pub(crate) struct ClientMaps {
    maps: Mutex<HashMap<u64, (ClientMap, usize)>>,
}

impl ClientMaps {
    fn maps(&self) -> MutexGuard<'_, HashMap<u64, (ClientMap, usize)>> {
        // Every critical section leaves the table consistent.
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A region of the mapping of `identity`, made by `map` if there is none.
    pub(crate) fn region<E>(
        &self,
        identity: u64,
        map: impl FnOnce() -> Result<ClientMap, E>,
    ) -> Result<MappedRegion<'_>, E> {
        let mut maps = self.maps();
        let (client_map, users) = match maps.entry(identity) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert((map()?, 0)),
        };
        *users += 1;
        let region = MappedRegion::new(
            client_map.address(),
            client_map.map.len(),
            client_map.read_only,
            RegionGuard { maps: self, identity },
        );
        Ok(region)
    }
}

/// Gives a region back to its [`ClientMaps`]; the last one unmaps.
struct RegionGuard<'t> {
    maps: &'t ClientMaps,
    identity: u64,
}

impl Drop for RegionGuard<'_> {
    fn drop(&mut self) {
        let mut maps = self.maps.maps();
        if let Some((_, users)) = maps.get_mut(&self.identity) {
            *users -= 1;
            if *users == 0 {
                // Dropping the `ClientMap` is the `munmap`.
                maps.remove(&self.identity);
            }
        }
    }
}

/// A file with no name, to back shared memory.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn anonymous_file() -> io::Result<File> {
    use rustix::fs::{MemfdFlags, memfd_create};
    Ok(File::from(memfd_create("dextlink-shared-memory", MemfdFlags::CLOEXEC)?))
}

/// A file with no name, to back shared memory: where there is no memfd, a
/// temporary file unlinked at once.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn anonymous_file() -> io::Result<File> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "dextlink-shm-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}
