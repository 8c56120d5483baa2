//! ELF: the loadable segments (`PT_LOAD` with `p_filesz > 0`) at their
//! physical addresses.
//!
//! `p_paddr` (the load memory address), not `p_vaddr`, is where firmware is
//! written: for a section such as `.data` that runs from RAM, the vaddr is its
//! RAM address while the paddr is the flash address its initial values are
//! stored at, and flash is what gets programmed.
//!
//! Only `p_filesz` bytes are uploaded. The rest of `p_memsz` (`.bss`) is
//! zero-filled at run time by the firmware's startup code and has no bytes in
//! the file; if such a tail lies between two segments it reads as
//! [`GAP_FILL`](super::GAP_FILL) like any other gap.
//!
//! Only the file header and program headers are read here (through
//! `object`'s `ReadCache`, which reads just the ranges asked for); segment
//! bytes stay in the file and are read on demand. Section headers, symbols
//! and debug information are never looked at, so a stripped or oddly
//! sectioned image loads as well as a full one.

use std::fs::File;
use std::path::Path;

use object::Endianness;
use object::elf::{self, FileHeader32, FileHeader64};
use object::read::ReadCache;
use object::read::elf::{FileHeader, ProgramHeader};

use super::{ImageError, Location, Placement, Segment, malformed, read_at, unsupported};

// `e_ident` bytes, checked by hand before `object` parses the header so that
// each problem gets its own message.
const CLASS_32: u8 = 1;
const CLASS_64: u8 = 2;
const DATA_LSB: u8 = 1;
const DATA_MSB: u8 = 2;

/// A loadable segment: `len` bytes at file `offset`, placed at `address`.
#[derive(Debug, Clone, Copy)]
struct FilePiece {
    address: u64,
    len: u64,
    offset: u64,
    /// Its program header's index.
    index: u64,
}

impl FilePiece {
    fn end(&self) -> u64 {
        self.address + self.len
    }

    fn placement(&self) -> Placement {
        Placement { range: self.address..self.end(), origin: Location::ProgramHeader(self.index) }
    }
}

/// Reads the headers and returns the loadable segments (empty if none).
pub(super) fn load(path: &Path, file: &File, file_len: u64) -> Result<Vec<Segment>, ImageError> {
    let mut ident = [0u8; 16];
    let mut filled = 0;
    while filled < ident.len() {
        match read_at(file, &mut ident[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => return Err(super::io_error(path, source)),
        }
    }
    let ident = &ident[..filled];
    if !ident.starts_with(b"\x7fELF") {
        let start: Vec<String> = ident.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(malformed(
            path,
            Location::ByteOffset(0),
            format!(
                "not an ELF file: it starts with [{}], not the ELF magic [7f 45 4c 46]",
                start.join(" ")
            ),
        ));
    }
    let truncated = |needs: u64| {
        malformed(
            path,
            Location::ElfHeader,
            format!("truncated ELF header: the file is {file_len} bytes, the header takes {needs}"),
        )
    };
    let (Some(&class), Some(&data)) = (ident.get(4), ident.get(5)) else {
        return Err(truncated(52));
    };
    let header_len = match class {
        CLASS_32 => 52,
        CLASS_64 => 64,
        other => {
            return Err(malformed(
                path,
                Location::ByteOffset(4),
                format!("ELF class {other} is neither 1 (32-bit) nor 2 (64-bit)"),
            ));
        }
    };
    if data != DATA_LSB && data != DATA_MSB {
        return Err(malformed(
            path,
            Location::ByteOffset(5),
            format!("ELF data encoding {data} is neither 1 (little-endian) nor 2 (big-endian)"),
        ));
    }
    if file_len < header_len {
        return Err(truncated(header_len));
    }

    let cache = ReadCache::new(file);
    let pieces = if class == CLASS_32 {
        loadable::<FileHeader32<Endianness>>(path, &cache, file_len)?
    } else {
        loadable::<FileHeader64<Endianness>>(path, &cache, file_len)?
    };
    merge(path, pieces)
}

/// The `PT_LOAD` segments with file data, checked against the file's size.
fn loadable<Elf: FileHeader<Endian = Endianness>>(
    path: &Path,
    cache: &ReadCache<&File>,
    file_len: u64,
) -> Result<Vec<FilePiece>, ImageError> {
    let header = Elf::parse(cache)
        .map_err(|e| malformed(path, Location::ElfHeader, format!("invalid ELF header: {e}")))?;
    let endian = header
        .endian()
        .map_err(|e| malformed(path, Location::ElfHeader, format!("invalid ELF header: {e}")))?;
    if header.e_type(endian) == elf::ET_REL {
        return Err(unsupported(
            path,
            Location::ElfHeader,
            "relocatable object file (ET_REL): it has no load addresses; link it into an \
             executable first",
        ));
    }

    // Checked here as well as by `object`, for a message that says what is
    // wrong rather than "invalid size".
    let phoff: u64 = header.e_phoff(endian).into();
    let phnum = header.e_phnum(endian);
    let phentsize = header.e_phentsize(endian);
    if phoff != 0 && phnum != 0 && phnum != elf::PN_XNUM {
        let table_len = u64::from(phnum) * u64::from(phentsize);
        if phoff.checked_add(table_len).is_none_or(|end| end > file_len) {
            return Err(malformed(
                path,
                Location::ElfHeader,
                format!(
                    "the program header table ({phnum} entries of {phentsize} bytes at file offset \
                     {phoff:#x}) extends past the end of the file ({file_len:#x} bytes); the file \
                     is truncated"
                ),
            ));
        }
    }
    let headers = header.program_headers(endian, cache).map_err(|e| {
        malformed(path, Location::ElfHeader, format!("cannot read the program headers: {e}"))
    })?;

    let mut pieces = Vec::new();
    for (index, ph) in (0u64..).zip(headers) {
        let len: u64 = ph.p_filesz(endian).into();
        if ph.p_type(endian) != elf::PT_LOAD || len == 0 {
            continue;
        }
        let offset: u64 = ph.p_offset(endian).into();
        let address: u64 = ph.p_paddr(endian).into();
        let here = Location::ProgramHeader(index);
        if offset.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(malformed(
                path,
                here,
                format!(
                    "segment data at file offset {offset:#x}..{:#x} extends past the end of the \
                     file ({file_len:#x} bytes); the file is truncated",
                    offset.saturating_add(len)
                ),
            ));
        }
        if address.checked_add(len).is_none() {
            return Err(malformed(
                path,
                here,
                format!(
                    "segment of {len:#x} bytes at physical address {address:#x} passes the end \
                     of the address space"
                ),
            ));
        }
        pieces.push(FilePiece { address, len, offset, index });
    }
    Ok(pieces)
}

/// Sorts by address, refuses overlaps and merges segments that touch both in
/// address and in the file.
fn merge(path: &Path, mut pieces: Vec<FilePiece>) -> Result<Vec<Segment>, ImageError> {
    pieces.sort_by_key(|p| p.address);
    let mut segments: Vec<Segment> = Vec::new();
    let mut previous: Option<FilePiece> = None;
    for piece in pieces {
        if let Some(prev) = previous {
            if piece.address < prev.end() {
                let (first, second) =
                    if prev.index < piece.index { (prev, piece) } else { (piece, prev) };
                return Err(ImageError::Overlap {
                    path: path.to_owned(),
                    first: first.placement(),
                    second: second.placement(),
                    differing_at: None,
                });
            }
            if let Some(last) = segments.last_mut()
                && piece.address == last.end()
                && let super::Source::File { offset } = last.source
                && offset + last.len == piece.offset
            {
                last.len += piece.len;
                previous = Some(piece);
                continue;
            }
        }
        segments.push(Segment::from_file(piece.address, piece.len, piece.offset));
        previous = Some(piece);
    }
    Ok(segments)
}
