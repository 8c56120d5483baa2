//! A two-bank NOR flash that persists in a file: the bootloader's flash.
//!
//! The simulated device keeps its firmware in two banks. It runs from the
//! active one and writes a new image into the other; only when the new image
//! is whole and verified does [`Flash::commit`] make it active. The file
//! outlives the simulator process, so a test can kill the dext or the device
//! model part way through an upload and check, in a new process, that the
//! old image is still the one that boots.
//!
//! # File layout
//!
//! | offset | size | contents |
//! |---|---|---|
//! | 0 | 8 | magic `DXLKFLSH` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | sector size |
//! | 16 | 8 | bank size |
//! | 24 | 4 | active bank (0 or 1): the commit point, written with one aligned 4-byte store |
//! | 28 | 4 | which copy of the bootloader record is current (0 or 1), likewise |
//! | 32 | 32 | bank 0 record: image length u64, load address u64, CRC-32 u32, valid u32 (1 = valid), 8 reserved |
//! | 64 | 32 | bank 1 record |
//! | 1024 | 256 | bootloader record, copy 0 |
//! | 1280 | 256 | bootloader record, copy 1 |
//! | 4096 | bank size | bank 0 |
//! | 4096 + bank size | bank size | bank 1 |
//!
//! Integers are little-endian; the rest of the metadata page is zero.
//!
//! Bank bytes are stored **inverted** (`!byte`): erased NOR flash reads
//! `0xFF`, and a sparse file reads zeros, so a freshly created file (made
//! with `set_len`, no data written) is a fully erased flash, and a 1 GiB
//! bank costs no disk until it is programmed. Erasing a sector that is
//! already erased writes nothing, so it stays sparse too.
//!
//! # Time
//!
//! Erase and program take the time a [`FlashTiming`] gives. Like the USB
//! pipe, the flash keeps a virtual clock: `busy_until = max(now, busy_until)
//! + cost`, then the caller sleeps until `busy_until`, so the total is exact
//! even though each sleep wakes a little late. [`FlashTiming::INSTANT`]
//! never sleeps. [`FlashStats::busy`] sums the modelled costs.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use std::{fmt, thread};

use memmap2::{MmapMut, MmapOptions};
use zerocopy::{FromBytes, Immutable, IntoBytes};

const MAGIC: &[u8; 8] = b"DXLKFLSH";
/// The layout above; a file of another version is refused.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes before bank 0.
pub const METADATA_SIZE: u64 = 4096;
/// Bytes the bootloader's own record may take ([`Flash::write_record`]).
pub const RECORD_AREA_SIZE: usize = 256;

const VERSION_AT: usize = 8;
const SECTOR_SIZE_AT: usize = 12;
const BANK_SIZE_AT: usize = 16;
const ACTIVE_AT: usize = 24;
const RECORD_COPY_AT: usize = 28;
const BANK_RECORDS_AT: usize = 32;
const BANK_RECORD_SIZE: usize = 32;
const BOOT_RECORDS_AT: usize = 1024;

/// The shape of a flash: two banks of `bank_size` bytes, erased in sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashGeometry {
    /// Erase unit; a power of two, at least 256.
    pub sector_size: u32,
    /// Size of each bank; a non-zero multiple of `sector_size`.
    pub bank_size: u64,
}

impl FlashGeometry {
    /// Why this geometry cannot be a flash, if it cannot.
    pub fn check(&self) -> Result<(), FlashError> {
        let problem = if self.sector_size < 256 || !self.sector_size.is_power_of_two() {
            Some("the sector size must be a power of two of at least 256")
        } else if self.bank_size == 0 || !self.bank_size.is_multiple_of(u64::from(self.sector_size))
        {
            Some("the bank size must be a non-zero multiple of the sector size")
        } else if self.file_len().is_none_or(|len| usize::try_from(len).is_err()) {
            Some("two banks of this size do not fit in this machine's address space")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(FlashError::BadGeometry { geometry: *self, problem }),
            None => Ok(()),
        }
    }

    pub fn sectors_per_bank(&self) -> u64 {
        self.bank_size / u64::from(self.sector_size.max(1))
    }

    /// Bytes of the whole file: the metadata page and two banks.
    pub fn file_len(&self) -> Option<u64> {
        self.bank_size.checked_mul(2)?.checked_add(METADATA_SIZE)
    }
}

impl fmt::Display for FlashGeometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "2 banks of {} bytes in {}-byte sectors", self.bank_size, self.sector_size)
    }
}

/// How long the flash takes to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashTiming {
    pub erase_per_sector: Duration,
    /// Programming a whole sector; a part of a sector takes its share.
    pub program_per_sector: Duration,
}

impl FlashTiming {
    /// Erase and program take no time.
    pub const INSTANT: FlashTiming =
        FlashTiming { erase_per_sector: Duration::ZERO, program_per_sector: Duration::ZERO };

    /// A serial NOR flash with 4 KiB sectors, at typical datasheet figures
    /// (W25Q128JV class: sector erase 45 ms, page program 0.4 ms per 256-byte
    /// page, so 6.4 ms per 4 KiB). Meant for a 4096-byte sector geometry.
    pub const SERIAL_NOR_4K: FlashTiming = FlashTiming {
        erase_per_sector: Duration::from_millis(45),
        program_per_sector: Duration::from_micros(6400),
    };
}

/// What image a bank holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BankRecord {
    pub len: u64,
    pub crc32: u32,
    pub load_address: u64,
    /// The bank holds a whole, verified image.
    pub valid: bool,
}

impl BankRecord {
    fn encode(&self) -> [u8; BANK_RECORD_SIZE] {
        let mut bytes = [0; BANK_RECORD_SIZE];
        bytes[0..8].copy_from_slice(&self.len.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.load_address.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.crc32.to_le_bytes());
        bytes[20..24].copy_from_slice(&u32::from(self.valid).to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> BankRecord {
        BankRecord {
            len: le_u64(bytes, 0),
            load_address: le_u64(bytes, 8),
            crc32: le_u32(bytes, 16),
            valid: le_u32(bytes, 20) == 1,
        }
    }
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        word.copy_from_slice(src);
    }
    u64::from_le_bytes(word)
}

/// What the flash has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlashStats {
    pub sectors_erased: u64,
    pub bytes_programmed: u64,
    /// Modelled time: the sum of every erase's and program's cost. Not measured.
    pub busy: Duration,
}

/// Why a flash operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    #[error("flash file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "flash file {} is in use by another simulator (it holds the file's lock); \
         stop it or use another file",
        path.display()
    )]
    InUse { path: PathBuf },
    #[error("{} is not a dextlink flash file: {reason}", path.display())]
    NotAFlashFile { path: PathBuf, reason: String },
    #[error("flash file {} holds {found}, but {expected} were asked for", path.display())]
    GeometryMismatch { path: PathBuf, found: FlashGeometry, expected: FlashGeometry },
    #[error("flash geometry ({geometry}) is invalid: {problem}")]
    BadGeometry { geometry: FlashGeometry, problem: &'static str },
    #[error("there is no bank {bank}: a flash has banks 0 and 1")]
    NoSuchBank { bank: u8 },
    #[error(
        "bank {bank} is the active bank (the image the device runs); only the inactive bank can be changed"
    )]
    ActiveBank { bank: u8 },
    #[error(
        "bank {bank}: {what} of {len} bytes at offset {offset:#x} ends past the bank's {bank_size} bytes"
    )]
    OutOfRange { bank: u8, what: &'static str, offset: u64, len: u64, bank_size: u64 },
    #[error("bank {bank}: there is no sector {sector}; the bank has {sectors}")]
    NoSuchSector { bank: u8, sector: u64, sectors: u64 },
    #[error(
        "bank {bank} offset {offset:#x}: cannot program {wanted:#04x} over {found:#04x}: \
         NOR flash only clears bits; erase the sector first"
    )]
    NotErased { bank: u8, offset: u64, found: u8, wanted: u8 },
    #[error("bank {bank}: refusing to commit a record not marked valid")]
    InvalidRecord { bank: u8 },
}

/// Where the flash lives.
enum Backing {
    /// The file, kept open for its lock.
    File {
        path: PathBuf,
        _file: File,
    },
    Memory,
}

struct Clock {
    busy_until: Option<Instant>,
    stats: FlashStats,
}

/// A two-bank flash (see the module docs). `Send + Sync`: each operation
/// takes the flash's lock.
pub struct Flash {
    geometry: FlashGeometry,
    timing: FlashTiming,
    /// Declared before `backing`, so it is unmapped before the file closes.
    map: Mutex<MmapMut>,
    clock: Mutex<Clock>,
    backing: Backing,
}

impl fmt::Debug for Flash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Flash");
        if let Backing::File { path, .. } = &self.backing {
            debug.field("path", path);
        }
        debug
            .field("geometry", &self.geometry)
            .field("active_bank", &self.active_bank())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections leave the flash consistent, so a panic elsewhere
    // does not make it unusable.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The metadata page of a new flash.
fn new_header(geometry: FlashGeometry) -> Vec<u8> {
    let mut page = vec![0; METADATA_SIZE as usize];
    page[..8].copy_from_slice(MAGIC);
    page[VERSION_AT..VERSION_AT + 4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    page[SECTOR_SIZE_AT..SECTOR_SIZE_AT + 4].copy_from_slice(&geometry.sector_size.to_le_bytes());
    page[BANK_SIZE_AT..BANK_SIZE_AT + 8].copy_from_slice(&geometry.bank_size.to_le_bytes());
    page
}

/// Checks an existing file's metadata page and returns its geometry.
fn read_header(file: &File, path: &Path) -> Result<FlashGeometry, FlashError> {
    let io_error = |source| FlashError::Io { path: path.to_path_buf(), source };
    let not_flash = |reason: String| FlashError::NotAFlashFile { path: path.to_path_buf(), reason };
    let file_len = file.metadata().map_err(io_error)?.len();
    if file_len < METADATA_SIZE {
        return Err(not_flash(format!(
            "it is {file_len} bytes, shorter than the {METADATA_SIZE}-byte metadata page"
        )));
    }
    let mut page = vec![0; METADATA_SIZE as usize];
    file.read_exact_at(&mut page, 0).map_err(io_error)?;
    if &page[..8] != MAGIC {
        return Err(not_flash("it does not start with the magic `DXLKFLSH`".to_string()));
    }
    let version = le_u32(&page, VERSION_AT);
    if version != FORMAT_VERSION {
        return Err(not_flash(format!(
            "it has format version {version}; this dextlink reads version {FORMAT_VERSION}"
        )));
    }
    let geometry = FlashGeometry {
        sector_size: le_u32(&page, SECTOR_SIZE_AT),
        bank_size: le_u64(&page, BANK_SIZE_AT),
    };
    geometry
        .check()
        .map_err(|e| not_flash(format!("its header records an invalid geometry: {e}")))?;
    let expected = geometry.file_len().unwrap_or(u64::MAX);
    if file_len != expected {
        return Err(not_flash(format!(
            "it is {file_len} bytes, but its header ({geometry}) needs {expected}"
        )));
    }
    for (at, what) in [(ACTIVE_AT, "active bank"), (RECORD_COPY_AT, "current record copy")] {
        let value = le_u32(&page, at);
        if value > 1 {
            return Err(not_flash(format!("its {what} field is {value}, not 0 or 1")));
        }
    }
    Ok(geometry)
}

/// Opens `path` read-write (creating it if `create`) and takes its lock.
fn open_locked(path: &Path, create: bool) -> Result<File, FlashError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|source| FlashError::Io { path: path.to_path_buf(), source })?;
    // An open file description's lock: a second `open`, in this process or
    // another, conflicts with it until the first `Flash` is dropped.
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |errno| {
            if errno == rustix::io::Errno::WOULDBLOCK {
                FlashError::InUse { path: path.to_path_buf() }
            } else {
                FlashError::Io { path: path.to_path_buf(), source: errno.into() }
            }
        },
    )?;
    Ok(file)
}

impl Flash {
    /// Opens the flash file at `path`, creating it if it is absent or empty
    /// (both banks erased, no valid image, bank 0 active). An existing file
    /// must be a flash file of the same geometry. Takes an exclusive
    /// advisory lock (`flock`), so two simulator processes cannot share one
    /// file: a second open fails with [`FlashError::InUse`].
    pub fn open(
        path: &Path,
        geometry: FlashGeometry,
        timing: FlashTiming,
    ) -> Result<Flash, FlashError> {
        geometry.check()?;
        let file = open_locked(path, true)?;
        let io_error = |source| FlashError::Io { path: path.to_path_buf(), source };
        let existing = file.metadata().map_err(io_error)?.len();
        if existing == 0 {
            // Header first, then the length: a crash in between leaves a
            // file that `open` refuses by name rather than a blank one.
            file.write_all_at(&new_header(geometry), 0).map_err(io_error)?;
            file.set_len(geometry.file_len().unwrap_or(u64::MAX)).map_err(io_error)?;
            file.sync_all().map_err(io_error)?;
        } else {
            let found = read_header(&file, path)?;
            if found != geometry {
                return Err(FlashError::GeometryMismatch {
                    path: path.to_path_buf(),
                    found,
                    expected: geometry,
                });
            }
        }
        Flash::map_file(file, path, geometry, timing)
    }

    /// Opens an existing flash file with whatever geometry it has (for
    /// inspection tools). Takes the same lock as [`Flash::open`].
    pub fn open_existing(path: &Path, timing: FlashTiming) -> Result<Flash, FlashError> {
        let file = open_locked(path, false)?;
        let geometry = read_header(&file, path)?;
        Flash::map_file(file, path, geometry, timing)
    }

    /// A flash in memory, for tests: erased, no valid image, bank 0 active.
    pub fn in_memory(geometry: FlashGeometry, timing: FlashTiming) -> Result<Flash, FlashError> {
        geometry.check()?;
        let len = geometry.file_len().and_then(|len| usize::try_from(len).ok()).unwrap_or(0);
        let mut map = MmapMut::map_anon(len)
            .map_err(|source| FlashError::Io { path: PathBuf::from("<memory>"), source })?;
        let header = new_header(geometry);
        map[..header.len()].copy_from_slice(&header);
        Ok(Flash::new(map, Backing::Memory, geometry, timing))
    }

    fn map_file(
        file: File,
        path: &Path,
        geometry: FlashGeometry,
        timing: FlashTiming,
    ) -> Result<Flash, FlashError> {
        // `check` made sure the length fits a usize.
        let len = geometry.file_len().and_then(|len| usize::try_from(len).ok()).unwrap_or(0);
        // SAFETY: the mapping covers exactly the file's length (checked by
        // `read_header`, or just set). It may change under us only through a
        // process that ignores the exclusive lock we hold; nothing in
        // dextlink does. We read and write it only as plain bytes (and one
        // aligned u32 as an atomic), for which any contents are valid.
        let map = unsafe { MmapOptions::new().len(len).map_mut(&file) }
            .map_err(|source| FlashError::Io { path: path.to_path_buf(), source })?;
        let backing = Backing::File { path: path.to_path_buf(), _file: file };
        Ok(Flash::new(map, backing, geometry, timing))
    }

    fn new(map: MmapMut, backing: Backing, geometry: FlashGeometry, timing: FlashTiming) -> Flash {
        Flash {
            geometry,
            timing,
            map: Mutex::new(map),
            clock: Mutex::new(Clock { busy_until: None, stats: FlashStats::default() }),
            backing,
        }
    }

    /// The file behind the flash (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        match &self.backing {
            Backing::File { path, .. } => Some(path),
            Backing::Memory => None,
        }
    }

    pub fn geometry(&self) -> FlashGeometry {
        self.geometry
    }

    pub fn timing(&self) -> FlashTiming {
        self.timing
    }

    /// The bank the device runs from: 0 or 1.
    pub fn active_bank(&self) -> u8 {
        active(&lock(&self.map))
    }

    pub fn inactive_bank(&self) -> u8 {
        1 - self.active_bank()
    }

    /// What image `bank` holds (a default, invalid record for a bank that
    /// does not exist).
    pub fn bank_record(&self, bank: u8) -> BankRecord {
        if bank > 1 {
            return BankRecord::default();
        }
        let at = bank_record_at(bank);
        BankRecord::decode(&lock(&self.map)[at..at + BANK_RECORD_SIZE])
    }

    /// Reads `out.len()` bytes of `bank` from `offset`.
    pub fn read(&self, bank: u8, offset: u64, out: &mut [u8]) -> Result<(), FlashError> {
        let range = self.range(bank, offset, out.len() as u64, "read")?;
        let map = lock(&self.map);
        for (byte, stored) in out.iter_mut().zip(&map[range]) {
            *byte = !stored;
        }
        Ok(())
    }

    /// CRC-32 (IEEE, as `crc32fast`) of the first `len` bytes of `bank`.
    pub fn crc32(&self, bank: u8, len: u64) -> Result<u32, FlashError> {
        let range = self.range(bank, 0, len, "CRC")?;
        let map = lock(&self.map);
        let mut hasher = crc32fast::Hasher::new();
        let mut chunk = vec![0u8; 64 * 1024];
        for stored in map[range].chunks(chunk.len()) {
            let chunk = &mut chunk[..stored.len()];
            for (byte, stored) in chunk.iter_mut().zip(stored) {
                *byte = !stored;
            }
            hasher.update(chunk);
        }
        Ok(hasher.finalize())
    }

    /// Erases one sector of `bank` to `0xFF`, taking `erase_per_sector`.
    /// Refuses the active bank ([`FlashError::ActiveBank`]).
    pub fn erase_sector(&self, bank: u8, sector: u64) -> Result<(), FlashError> {
        self.erase_sectors(bank, sector..sector + 1)
    }

    /// Erases the sectors `sectors` of `bank`, taking `erase_per_sector`
    /// each, in one command (one wait, however many sectors). Refuses the
    /// active bank and changes nothing if any sector is out of range.
    pub fn erase_sectors(&self, bank: u8, sectors: Range<u64>) -> Result<(), FlashError> {
        let count = self.geometry.sectors_per_bank();
        if bank > 1 {
            return Err(FlashError::NoSuchBank { bank });
        }
        if sectors.end > count || sectors.start > sectors.end {
            let sector = sectors.end.saturating_sub(1).max(sectors.start);
            return Err(FlashError::NoSuchSector { bank, sector, sectors: count });
        }
        let size = u64::from(self.geometry.sector_size);
        let len = (sectors.end - sectors.start) * size;
        let range = self.range(bank, sectors.start * size, len, "erase")?;
        {
            let mut map = lock(&self.map);
            if active(&map) == bank {
                return Err(FlashError::ActiveBank { bank });
            }
            // Erased is 0 on disk; leaving an erased sector alone keeps a
            // sparse file sparse.
            for stored in map[range].chunks_mut(size as usize) {
                if stored.iter().any(|&b| b != 0) {
                    stored.fill(0);
                }
            }
        }
        let n = sectors.end - sectors.start;
        let cost = self.timing.erase_per_sector.saturating_mul(n as u32);
        self.spend(cost, |stats| stats.sectors_erased += n);
        Ok(())
    }

    /// Whether `bank` holds exactly `data` at `offset` (read, compared, no copy).
    pub fn holds(&self, bank: u8, offset: u64, data: &[u8]) -> Result<bool, FlashError> {
        let range = self.range(bank, offset, data.len() as u64, "read")?;
        let map = lock(&self.map);
        Ok(map[range].iter().zip(data).all(|(stored, byte)| !stored == *byte))
    }

    /// NOR programming: bits only go from 1 to 0. Programming a byte whose
    /// target bits are not erased (`data` has a 1 where the flash has a 0)
    /// is [`FlashError::NotErased`] and changes nothing; programming bytes
    /// that only clear more bits is allowed. Takes `program_per_sector` pro
    /// rata to the bytes. Refuses the active bank; `offset + data.len()`
    /// must fit the bank.
    pub fn program(&self, bank: u8, offset: u64, data: &[u8]) -> Result<(), FlashError> {
        let range = self.range(bank, offset, data.len() as u64, "program")?;
        {
            let mut map = lock(&self.map);
            if active(&map) == bank {
                return Err(FlashError::ActiveBank { bank });
            }
            let stored = &mut map[range];
            // Stored inverted: the flash has a 0 bit where `stored` has a 1.
            if let Some(i) = stored.iter().zip(data).position(|(s, d)| s & d != 0) {
                return Err(FlashError::NotErased {
                    bank,
                    offset: offset + i as u64,
                    found: !stored[i],
                    wanted: data[i],
                });
            }
            // flash & data, inverted: !(!s & d) = s | !d.
            for (s, d) in stored.iter_mut().zip(data) {
                *s |= !d;
            }
        }
        let cost = pro_rata(self.timing.program_per_sector, data.len(), self.geometry.sector_size);
        self.spend(cost, |stats| stats.bytes_programmed += data.len() as u64);
        Ok(())
    }

    /// The atomic commit: writes `record` for `bank` (which must be the
    /// inactive bank, and `record` marked valid), then makes `bank` active
    /// with one aligned 4-byte store, then flushes (`msync`).
    pub fn commit(&self, bank: u8, record: BankRecord) -> Result<(), FlashError> {
        if bank > 1 {
            return Err(FlashError::NoSuchBank { bank });
        }
        if !record.valid {
            return Err(FlashError::InvalidRecord { bank });
        }
        self.range(bank, 0, record.len, "image")?;
        let mut map = lock(&self.map);
        if active(&map) == bank {
            return Err(FlashError::ActiveBank { bank });
        }
        // Why a process killed at any instant leaves either the old bank
        // active with its record, or the new one with its record:
        // - the record goes to the *inactive* bank's slot; until the switch
        //   nothing reads it as the running image;
        // - the switch is one aligned 4-byte atomic store (release: the
        //   record's stores come before it), so the field holds the old
        //   value or the new one, never a mix;
        // - stores to a shared file mapping are in the page cache the moment
        //   they are made, so they survive the process (only a machine crash
        //   can lose them; the msyncs below order them on disk for that
        //   case: the record reaches the disk before the switch can).
        let at = bank_record_at(bank);
        map[at..at + BANK_RECORD_SIZE].copy_from_slice(&record.encode());
        self.sync_metadata(&map)?;
        store_u32(&mut map, ACTIVE_AT, u32::from(bank));
        self.sync_metadata(&map)
    }

    /// Invalidates the record of `bank`, which must be inactive (the
    /// bootloader does this before it starts writing a new image there).
    pub fn invalidate(&self, bank: u8) -> Result<(), FlashError> {
        if bank > 1 {
            return Err(FlashError::NoSuchBank { bank });
        }
        let mut map = lock(&self.map);
        if active(&map) == bank {
            return Err(FlashError::ActiveBank { bank });
        }
        let at = bank_record_at(bank);
        map[at..at + BANK_RECORD_SIZE].fill(0);
        Ok(())
    }

    /// The bootloader's own persistent record (its upload-session state),
    /// all zeros on a new flash. `T` must fit in 256 bytes (checked when
    /// the program is compiled).
    pub fn read_record<T: FromBytes>(&self) -> T {
        const { assert!(size_of::<T>() <= RECORD_AREA_SIZE, "a flash record is at most 256 bytes") };
        let map = lock(&self.map);
        let at = boot_record_at(&map);
        T::read_from_bytes(&map[at..at + size_of::<T>()]).unwrap_or_else(|_| T::new_zeroed())
    }

    /// Replaces the bootloader's record. Atomic against a process kill: the
    /// record goes to the copy not in use, then one aligned 4-byte store
    /// makes it current (as [`Flash::commit`] switches banks). Survives the
    /// process at once; [`Flash::flush`] for a machine crash.
    pub fn write_record<T: IntoBytes + Immutable>(&self, record: &T) {
        const { assert!(size_of::<T>() <= RECORD_AREA_SIZE, "a flash record is at most 256 bytes") };
        let bytes = record.as_bytes();
        let mut map = lock(&self.map);
        let next = 1 - le_u32(&map, RECORD_COPY_AT).min(1);
        let at = BOOT_RECORDS_AT + next as usize * RECORD_AREA_SIZE;
        let area = &mut map[at..at + RECORD_AREA_SIZE];
        area[..bytes.len()].copy_from_slice(bytes);
        area[bytes.len()..].fill(0);
        store_u32(&mut map, RECORD_COPY_AT, next);
    }

    /// Writes every change to the file (`msync`); nothing to do in memory.
    pub fn flush(&self) -> io::Result<()> {
        match self.backing {
            Backing::File { .. } => lock(&self.map).flush(),
            Backing::Memory => Ok(()),
        }
    }

    pub fn stats(&self) -> FlashStats {
        lock(&self.clock).stats
    }

    /// The byte range of the mapping for `len` bytes of `bank` at `offset`.
    fn range(
        &self,
        bank: u8,
        offset: u64,
        len: u64,
        what: &'static str,
    ) -> Result<std::ops::Range<usize>, FlashError> {
        if bank > 1 {
            return Err(FlashError::NoSuchBank { bank });
        }
        let bank_size = self.geometry.bank_size;
        let out_of_range = FlashError::OutOfRange { bank, what, offset, len, bank_size };
        match offset.checked_add(len) {
            Some(end) if end <= bank_size => {
                let base = METADATA_SIZE + u64::from(bank) * bank_size;
                // The whole file fits a usize (`FlashGeometry::check`).
                let start = usize::try_from(base + offset).map_err(|_| out_of_range)?;
                Ok(start..start + len as usize)
            }
            _ => Err(out_of_range),
        }
    }

    /// `msync`s the metadata page of a file-backed flash.
    fn sync_metadata(&self, map: &MmapMut) -> Result<(), FlashError> {
        match &self.backing {
            Backing::File { path, .. } => map
                .flush_range(0, METADATA_SIZE as usize)
                .map_err(|source| FlashError::Io { path: path.clone(), source }),
            Backing::Memory => Ok(()),
        }
    }

    /// Accounts `cost` on the virtual clock and sleeps until the flash is done.
    fn spend(&self, cost: Duration, account: impl FnOnce(&mut FlashStats)) {
        let done_at = {
            let mut clock = lock(&self.clock);
            account(&mut clock.stats);
            clock.stats.busy += cost;
            if cost.is_zero() {
                None
            } else {
                let now = Instant::now();
                // Back to back with the previous operation unless the flash
                // has been idle: a late wake-up from the last sleep, or the
                // caller's work between two operations, must not add up to
                // time the flash was never busy (the device queues its next
                // command while the current one runs). An idle flash starts now.
                let start = match clock.busy_until {
                    Some(busy) if now <= busy + BACK_TO_BACK => busy,
                    _ => now,
                };
                let end = start.checked_add(cost).unwrap_or(start);
                clock.busy_until = Some(end);
                Some(end)
            }
        };
        if let Some(done_at) = done_at {
            let now = Instant::now();
            if done_at > now {
                thread::sleep(done_at - now);
            }
        }
    }
}

/// How late an operation may follow the previous one and still count as
/// back to back: above a sleep's usual overshoot, far below any idle period.
const BACK_TO_BACK: Duration = Duration::from_millis(2);

fn active(map: &[u8]) -> u8 {
    u8::from(le_u32(map, ACTIVE_AT) == 1)
}

fn bank_record_at(bank: u8) -> usize {
    BANK_RECORDS_AT + usize::from(bank.min(1)) * BANK_RECORD_SIZE
}

fn boot_record_at(map: &[u8]) -> usize {
    BOOT_RECORDS_AT + le_u32(map, RECORD_COPY_AT).min(1) as usize * RECORD_AREA_SIZE
}

/// One store of a little-endian u32 at `at` (4-aligned in a page-aligned
/// mapping): another process sees the old value or the new one.
fn store_u32(map: &mut [u8], at: usize, value: u32) {
    let word = u32::from_ne_bytes(value.to_le_bytes());
    match AtomicU32::mut_from_bytes(&mut map[at..at + 4]) {
        Ok(cell) => cell.store(word, Ordering::Release),
        // Not reachable (mappings are page-aligned); still a correct store.
        Err(_) => map[at..at + 4].copy_from_slice(&value.to_le_bytes()),
    }
}

/// `per_sector` × `len` / `sector_size`, rounded up to the nanosecond.
fn pro_rata(per_sector: Duration, len: usize, sector_size: u32) -> Duration {
    let nanos = (per_sector.as_nanos() * len as u128).div_ceil(u128::from(sector_size.max(1)));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use zerocopy::{FromZeros, KnownLayout};

    use super::*;

    const GEOMETRY: FlashGeometry = FlashGeometry { sector_size: 4096, bank_size: 64 * 4096 };

    #[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    struct Session {
        session: u64,
        acknowledged: u64,
        crc: u32,
        status: u32,
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    fn read(flash: &Flash, bank: u8, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        flash.read(bank, offset, &mut out).unwrap();
        out
    }

    #[test]
    fn programmed_bytes_records_and_the_active_bank_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.flash");
        let image = pattern(10_000, 3);
        {
            let flash = Flash::open(&path, GEOMETRY, FlashTiming::INSTANT).unwrap();
            assert_eq!(flash.active_bank(), 0);
            assert_eq!(flash.bank_record(0), BankRecord::default());
            flash.program(1, 0, &image).unwrap();
            let record = BankRecord {
                len: 10_000,
                crc32: 0xDEAD_BEEF,
                load_address: 0x0800_0000,
                valid: true,
            };
            flash.commit(1, record).unwrap();
            flash.write_record(&Session { session: 9, acknowledged: 4096, crc: 7, status: 1 });
        }
        let flash = Flash::open(&path, GEOMETRY, FlashTiming::INSTANT).unwrap();
        assert_eq!(flash.active_bank(), 1);
        assert_eq!(flash.inactive_bank(), 0);
        assert_eq!(read(&flash, 1, 0, 10_000), image);
        assert_eq!(read(&flash, 1, 10_000, 16), vec![0xFF; 16], "the rest stays erased");
        assert_eq!(flash.bank_record(1).load_address, 0x0800_0000);
        assert!(flash.bank_record(1).valid);
        let session: Session = flash.read_record();
        assert_eq!(session, Session { session: 9, acknowledged: 4096, crc: 7, status: 1 });
        drop(flash);
        let inspected = Flash::open_existing(&path, FlashTiming::INSTANT).unwrap();
        assert_eq!(inspected.geometry(), GEOMETRY);
        assert_eq!(inspected.active_bank(), 1);
    }

    #[test]
    fn a_new_file_is_sparse_and_reads_erased() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.flash");
        let geometry = FlashGeometry { sector_size: 4096, bank_size: 256 << 20 };
        let flash = Flash::open(&path, geometry, FlashTiming::INSTANT).unwrap();
        assert_eq!(read(&flash, 0, geometry.bank_size - 4096, 4096), vec![0xFF; 4096]);
        assert_eq!(read(&flash, 1, 0, 4096), vec![0xFF; 4096]);
        flash.erase_sector(1, 5).unwrap();
        flash.flush().unwrap();
        let metadata = std::fs::metadata(&path).unwrap();
        assert_eq!(metadata.len(), METADATA_SIZE + 2 * geometry.bank_size);
        assert!(metadata.blocks() * 512 < 16 << 20, "{} blocks allocated", metadata.blocks());
    }

    #[test]
    fn a_geometry_mismatch_names_the_file_and_both_geometries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.flash");
        drop(Flash::open(&path, GEOMETRY, FlashTiming::INSTANT).unwrap());
        let other = FlashGeometry { sector_size: 8192, bank_size: GEOMETRY.bank_size };
        let error = Flash::open(&path, other, FlashTiming::INSTANT).unwrap_err();
        assert!(matches!(error, FlashError::GeometryMismatch { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains("4096-byte sectors") && message.contains("8192-byte"),
            "{message}"
        );
    }

    #[test]
    fn garbage_and_short_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short.flash");
        std::fs::write(&short, b"hello").unwrap();
        let garbage = dir.path().join("garbage.flash");
        std::fs::write(&garbage, pattern(8192, 1)).unwrap();
        let truncated = dir.path().join("truncated.flash");
        drop(Flash::open(&truncated, GEOMETRY, FlashTiming::INSTANT).unwrap());
        std::fs::OpenOptions::new().write(true).open(&truncated).unwrap().set_len(8192).unwrap();
        for (path, reason) in [
            (&short, "shorter than the 4096-byte metadata page"),
            (&garbage, "magic"),
            (&truncated, "needs"),
        ] {
            for error in [
                Flash::open(path, GEOMETRY, FlashTiming::INSTANT).unwrap_err(),
                Flash::open_existing(path, FlashTiming::INSTANT).unwrap_err(),
            ] {
                assert!(matches!(error, FlashError::NotAFlashFile { .. }), "{error:?}");
                let message = error.to_string();
                assert!(message.contains(&path.display().to_string()), "{message}");
                assert!(message.contains(reason), "{message}");
            }
        }
        let missing = dir.path().join("missing.flash");
        let error = Flash::open_existing(&missing, FlashTiming::INSTANT).unwrap_err();
        assert!(error.to_string().contains("missing.flash"), "{error}");
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused_as_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.flash");
        let first = Flash::open(&path, GEOMETRY, FlashTiming::INSTANT).unwrap();
        let error = Flash::open(&path, GEOMETRY, FlashTiming::INSTANT).unwrap_err();
        assert!(matches!(error, FlashError::InUse { .. }), "{error:?}");
        assert!(error.to_string().contains("in use"), "{error}");
        assert!(error.to_string().contains(&path.display().to_string()), "{error}");
        drop(first);
        Flash::open(&path, GEOMETRY, FlashTiming::INSTANT).unwrap();
    }

    #[test]
    fn programming_only_clears_bits() {
        let flash = Flash::in_memory(GEOMETRY, FlashTiming::INSTANT).unwrap();
        flash.program(1, 100, &[0xF0, 0x0F, 0xAA]).unwrap();
        // Clearing more bits is allowed.
        flash.program(1, 100, &[0x80, 0x0F, 0x00]).unwrap();
        assert_eq!(read(&flash, 1, 100, 3), [0x80, 0x0F, 0x00]);
        // 0x0F over 0x80 needs bits to go from 0 to 1: refused, and the
        // byte before it, which alone would program fine, is unchanged too.
        let error = flash.program(1, 99, &[0x00, 0x0F, 0x0F, 0x00]).unwrap_err();
        assert!(
            matches!(
                error,
                FlashError::NotErased { bank: 1, offset: 100, found: 0x80, wanted: 0x0F }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("bank 1 offset 0x64"), "{error}");
        assert_eq!(read(&flash, 1, 99, 4), [0xFF, 0x80, 0x0F, 0x00], "nothing changed");
        flash.erase_sector(1, 0).unwrap();
        assert_eq!(read(&flash, 1, 99, 4), [0xFF; 4]);
        flash.program(1, 99, &[0x00, 0x0F, 0x0F, 0x00]).unwrap();
        assert_eq!(read(&flash, 1, 99, 4), [0x00, 0x0F, 0x0F, 0x00]);
    }

    #[test]
    fn the_active_bank_cannot_be_erased_programmed_or_invalidated() {
        let flash = Flash::in_memory(GEOMETRY, FlashTiming::INSTANT).unwrap();
        assert!(matches!(flash.erase_sector(0, 0), Err(FlashError::ActiveBank { bank: 0 })));
        assert!(matches!(flash.program(0, 0, &[0]), Err(FlashError::ActiveBank { bank: 0 })));
        assert!(matches!(flash.invalidate(0), Err(FlashError::ActiveBank { bank: 0 })));
        let record = BankRecord { len: 1, crc32: 0, load_address: 0, valid: true };
        assert!(matches!(flash.commit(0, record), Err(FlashError::ActiveBank { bank: 0 })));
        assert_eq!(read(&flash, 0, 0, 1), [0xFF]);
        assert!(matches!(flash.program(2, 0, &[0]), Err(FlashError::NoSuchBank { bank: 2 })));
        let sectors = GEOMETRY.sectors_per_bank();
        assert!(matches!(flash.erase_sector(1, sectors), Err(FlashError::NoSuchSector { .. })));
        let error = flash.program(1, GEOMETRY.bank_size - 1, &[0, 0]).unwrap_err();
        assert!(matches!(error, FlashError::OutOfRange { bank: 1, .. }), "{error:?}");
        assert!(flash.read(1, u64::MAX, &mut [0]).is_err());
        assert!(flash.crc32(1, GEOMETRY.bank_size + 1).is_err());
    }

    #[test]
    fn commit_switches_banks_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.flash");
        let flash = Flash::open(&path, GEOMETRY, FlashTiming::INSTANT).unwrap();
        let old = BankRecord { len: 4, crc32: 1, load_address: 0, valid: true };
        flash.commit(1, old).unwrap();
        assert_eq!(flash.active_bank(), 1);
        let invalid = BankRecord { valid: false, ..old };
        assert!(matches!(flash.commit(0, invalid), Err(FlashError::InvalidRecord { bank: 0 })));
        let too_long = BankRecord { len: GEOMETRY.bank_size + 1, ..old };
        assert!(matches!(flash.commit(0, too_long), Err(FlashError::OutOfRange { .. })));
        assert_eq!(flash.active_bank(), 1, "refused commits change nothing");
        let new = BankRecord { len: 8, crc32: 2, load_address: 0x100, valid: true };
        flash.commit(0, new).unwrap();
        drop(flash);
        let flash = Flash::open(&path, GEOMETRY, FlashTiming::INSTANT).unwrap();
        assert_eq!(flash.active_bank(), 0);
        assert_eq!(flash.bank_record(0), new);
        assert_eq!(flash.bank_record(1), old, "the previous image's record is kept");
        flash.invalidate(1).unwrap();
        assert!(!flash.bank_record(1).valid);
        assert_eq!(flash.bank_record(7), BankRecord::default());
    }

    #[test]
    fn the_bootloader_record_round_trips_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.flash");
        let flash = Flash::open(&path, GEOMETRY, FlashTiming::INSTANT).unwrap();
        assert_eq!(flash.read_record::<Session>(), Session::new_zeroed(), "zero on a new flash");
        let mut session = Session { session: 1, acknowledged: 0, crc: 0xABCD, status: 1 };
        for acknowledged in [4096, 8192, 12288] {
            session.acknowledged = acknowledged;
            flash.write_record(&session);
            assert_eq!(flash.read_record::<Session>(), session);
        }
        // A smaller record after a larger one reads no stale bytes.
        flash.write_record(&[0xAAu8; 200]);
        flash.write_record(&7u32);
        assert_eq!(flash.read_record::<[u8; 8]>(), [7, 0, 0, 0, 0, 0, 0, 0]);
        flash.write_record(&session);
        drop(flash);
        let flash = Flash::open(&path, GEOMETRY, FlashTiming::INSTANT).unwrap();
        assert_eq!(flash.read_record::<Session>(), session);
        assert_eq!(flash.read_record::<[u8; 256]>()[24..], [0; 232]);
    }

    #[test]
    fn crc32_matches_crc32fast_over_the_bytes_read() {
        let flash = Flash::in_memory(GEOMETRY, FlashTiming::INSTANT).unwrap();
        let image = pattern(200_000, 9);
        flash.program(1, 0, &image).unwrap();
        for len in [0, 1, 4096, 65_536, 65_537, 200_000, 200_100] {
            let expected = crc32fast::hash(&read(&flash, 1, 0, len));
            assert_eq!(flash.crc32(1, len as u64).unwrap(), expected, "{len} bytes");
        }
        assert_eq!(flash.crc32(1, 200_000).unwrap(), crc32fast::hash(&image));
    }

    #[test]
    fn stats_count_erases_bytes_and_modelled_busy_time() {
        let timing = FlashTiming {
            erase_per_sector: Duration::from_micros(300),
            program_per_sector: Duration::from_micros(200),
        };
        let flash = Flash::in_memory(GEOMETRY, timing).unwrap();
        for sector in 0..3 {
            flash.erase_sector(1, sector).unwrap();
        }
        flash.program(1, 0, &pattern(2 * 4096, 0)).unwrap();
        flash.program(1, 3 * 4096 - 1024, &pattern(1024, 0)).unwrap(); // a quarter sector
        let stats = flash.stats();
        assert_eq!(stats.sectors_erased, 3);
        assert_eq!(stats.bytes_programmed, 2 * 4096 + 1024);
        let quarter = timing.program_per_sector / 4;
        let expected = 3 * timing.erase_per_sector + 2 * timing.program_per_sector + quarter;
        assert_eq!(stats.busy, expected);
        // Refused operations cost nothing.
        assert!(flash.program(0, 0, &[0]).is_err());
        assert_eq!(flash.stats(), stats);
        assert_eq!(FlashTiming::INSTANT.erase_per_sector, Duration::ZERO);
    }

    #[test]
    fn a_flash_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Flash>();
    }

    #[test]
    fn bad_geometries_are_refused() {
        for (sector_size, bank_size) in [(128, 4096), (3000, 6000), (4096, 0), (4096, 6144)] {
            let geometry = FlashGeometry { sector_size, bank_size };
            let error = Flash::in_memory(geometry, FlashTiming::INSTANT).unwrap_err();
            assert!(matches!(error, FlashError::BadGeometry { .. }), "{error:?}");
        }
        let huge = FlashGeometry { sector_size: 4096, bank_size: u64::MAX - 4095 };
        assert!(huge.check().is_err());
    }
}
