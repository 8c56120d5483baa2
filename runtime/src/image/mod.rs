//! Firmware image input: raw binaries, Intel HEX, Motorola S-record, ELF and
//! UF2, all normalised to address-ordered segments that the staging pipeline
//! reads slot by slot.
//!
//! ```no_run
//! use dextlink::image::Image;
//! # fn main() -> Result<(), dextlink::image::ImageError> {
//! let image = Image::open("firmware.hex".as_ref(), None, None)?;  // format detected
//! let raw = Image::open("firmware.bin".as_ref(), None, Some(0x0800_0000))?;  // raw: address required
//! let mut reader = image.reader()?;
//! let mut slot = vec![0u8; 4096];
//! let n = slot.len().min(usize::try_from(image.len()).unwrap_or(usize::MAX));
//! reader.read_at(0, &mut slot[..n])?;     // gaps read as GAP_FILL
//! # Ok(()) }
//! ```
//!
//! Where the bytes live, per format:
//!
//! | format | bytes come from | why |
//! | --- | --- | --- |
//! | raw binary | the file, read on demand | a 1 GiB image must not be held in memory |
//! | ELF | the file, read on demand (only headers are parsed) | segment data is stored verbatim in the file |
//! | Intel HEX | memory, decoded at open | the text must be decoded anyway |
//! | S-record | memory, decoded at open | the text must be decoded anyway |
//! | UF2 | memory, decoded at open | payloads are interleaved with block headers |
//!
//! [`Image::open`] validates the whole file up front, so that an upload never
//! starts on an image that turns out to be malformed half-way through.
//!
//! Rules shared by all formats:
//!
//! - Segments are address-ordered and never overlap; touching segments are
//!   merged when their bytes are contiguous in their source (always for HEX,
//!   S-record and UF2; for ELF only when the file data is contiguous too).
//! - Overlapping data is an [`ImageError::Overlap`] naming both origins. HEX
//!   and S-records and UF2 blocks that rewrite the *same* bytes are accepted
//!   (tools emit such duplicates harmlessly); differing bytes are an error.
//!   ELF segments may not overlap at all.
//! - Holes between segments are [`Gap`]s, read as [`GAP_FILL`] (erased
//!   flash). A gap larger than [`OpenOptions::max_gap`] (16 MiB by default) is
//!   an error: it usually means a misplaced section that would turn a small
//!   image into a huge upload.
//! - An image with no data is an error.
//!
//! Rules for raw binaries, which carry nothing but bytes, so that text is
//! never flashed as firmware:
//!
//! - A raw binary needs an explicit load address ([`OpenOptions::load_address`]);
//!   without one it is an [`ImageError::NoLoadAddress`], as dfu-util,
//!   espflash and picotool require. Assuming 0 flashed images to the wrong
//!   place on every chip whose flash is not at 0.
//! - A file whose start holds an Intel HEX or S-record record (see
//!   [`Format::detect`] for exactly what counts) is never read as raw, not
//!   even with [`Format::Bin`] given explicitly: that is an
//!   [`ImageError::TextFormat`] naming the format to use. Detection already
//!   reads such a file as its format, whatever its extension.
//! - When the format was detected (not given), a raw binary whose *whole*
//!   content is text is an [`ImageError::Text`]: a README or a source file
//!   handed over by mistake. Text means valid UTF-8 without control
//!   characters other than tab, line feed, carriage return and form feed.
//!   The file is read in chunks only until the first byte that is not text,
//!   which for real firmware is within its first few bytes (vector tables
//!   and instruction streams hold NULs and bytes above 0x7F that are not
//!   UTF-8), so the check costs next to nothing. One such byte anywhere makes
//!   the file a binary: no share of text below 100 % is refused, because
//!   firmware may well open with a long printable string table. Giving
//!   [`Format::Bin`] explicitly accepts an all-text file.

mod elf;
mod hex;
mod lines;
mod raw;
mod srec;
mod uf2;

use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The byte that gaps between segments read as: erased NOR flash.
pub const GAP_FILL: u8 = 0xFF;

/// The default for [`OpenOptions::max_gap`]: 16 MiB.
pub const DEFAULT_MAX_GAP: u64 = 16 << 20;

/// How many leading bytes [`Format::detect`] looks at: more than one Intel
/// HEX record line (at most 1 + 2 × 260 characters) or S-record line (at most
/// 2 + 2 × 257), and one UF2 block header.
const SNIFF_LEN: usize = 1024;

/// The chunk size of the whole-file text check for raw binaries.
const TEXT_CHUNK: usize = 64 * 1024;

// ----- formats ----------------------------------------------------------------

/// A firmware image file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Raw binary: the file's bytes, loaded at a given address (required).
    Bin,
    /// Intel HEX (record types 00–05).
    Hex,
    /// Motorola S-record (S0–S3 and S5–S9).
    Srec,
    /// ELF (32- or 64-bit, either byte order): its loadable segments.
    Elf,
    /// UF2 (USB Flashing Format): 512-byte blocks with their own addresses.
    Uf2,
}

impl Format {
    /// Every format, in the order of [`Format`]'s variants.
    pub const ALL: [Format; 5] = [Format::Bin, Format::Hex, Format::Srec, Format::Elf, Format::Uf2];

    /// The short name, as accepted by [`FromStr`] and printed by [`Display`](fmt::Display).
    pub fn name(self) -> &'static str {
        match self {
            Format::Bin => "bin",
            Format::Hex => "hex",
            Format::Srec => "srec",
            Format::Elf => "elf",
            Format::Uf2 => "uf2",
        }
    }

    /// A human-readable name for messages ("Intel HEX").
    pub fn description(self) -> &'static str {
        match self {
            Format::Bin => "raw binary",
            Format::Hex => "Intel HEX",
            Format::Srec => "Motorola S-record",
            Format::Elf => "ELF",
            Format::Uf2 => "UF2",
        }
    }

    /// Whether the format carries its own load addresses (all but raw binary).
    pub fn is_addressed(self) -> bool {
        self != Format::Bin
    }

    /// Detects the format of the file at `path`.
    ///
    /// Content decides first: ELF's `\x7fELF`; UF2's two start magics at the
    /// start of the first block; text records in the first 1024 bytes. For
    /// those, lines are taken in order, blank ones skipped: a line that is
    /// `:` followed by nothing but hex digits is Intel HEX, `S0` to `S9`
    /// followed by nothing but hex digits an S-record (surrounding whitespace
    /// aside; the line may be cut off by the 1024-byte limit); any other line
    /// of printable ASCII is skipped (a comment some tool wrote), and the
    /// first line with any other byte ends the search. The extension comes
    /// second (`.hex`/`.ihex`/`.ihx`, `.srec`/`.s19`/`.s28`/`.s37`/`.mot`,
    /// `.elf`/`.axf`, `.uf2`, `.bin`); anything else is a raw binary. Content
    /// wins over the name so that a mislabelled file is still read correctly,
    /// while a malformed file with a telling extension gets its format's
    /// precise error instead of being uploaded as raw bytes.
    pub fn detect(path: &Path) -> Result<Format, ImageError> {
        let file = File::open(path).map_err(|source| io_error(path, source))?;
        detect_file(path, &file)
    }

    fn from_magic(head: &[u8]) -> Option<Format> {
        if head.starts_with(b"\x7fELF") {
            return Some(Format::Elf);
        }
        if head.len() >= 8
            && le32(head, 0) == uf2::MAGIC_START0
            && le32(head, 4) == uf2::MAGIC_START1
        {
            return Some(Format::Uf2);
        }
        text_records(head).map(|(format, _)| format)
    }

    fn from_extension(path: &Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "hex" | "ihex" | "ihx" => Some(Format::Hex),
            "srec" | "s19" | "s28" | "s37" | "mot" => Some(Format::Srec),
            "elf" | "axf" => Some(Format::Elf),
            "uf2" => Some(Format::Uf2),
            "bin" => Some(Format::Bin),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = ParseFormatError;

    /// Accepts `bin`/`raw`, `hex`/`ihex`, `srec`/`s19`/`s28`/`s37`/`mot`,
    /// `elf` and `uf2`, in any case.
    fn from_str(s: &str) -> Result<Format, ParseFormatError> {
        match s.to_ascii_lowercase().as_str() {
            "bin" | "raw" => Ok(Format::Bin),
            "hex" | "ihex" => Ok(Format::Hex),
            "srec" | "s19" | "s28" | "s37" | "mot" => Ok(Format::Srec),
            "elf" => Ok(Format::Elf),
            "uf2" => Ok(Format::Uf2),
            _ => Err(ParseFormatError { input: s.to_owned() }),
        }
    }
}

/// A format name that [`Format::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown image format `{input}`; expected bin, raw, hex, ihex, srec, s19, s28, s37, mot, elf \
     or uf2"
)]
pub struct ParseFormatError {
    /// What was given.
    pub input: String,
}

fn detect_file(path: &Path, file: &File) -> Result<Format, ImageError> {
    let head = read_head(path, file)?;
    Ok(detect_head(path, &head))
}

fn detect_head(path: &Path, head: &[u8]) -> Format {
    Format::from_magic(head).or_else(|| Format::from_extension(path)).unwrap_or(Format::Bin)
}

/// Reads up to [`SNIFF_LEN`] bytes from the start without moving the file's
/// cursor, so that a parser can read the same handle from the beginning.
fn read_head(path: &Path, file: &File) -> Result<Vec<u8>, ImageError> {
    let mut head = vec![0u8; SNIFF_LEN];
    let filled = fill_at(path, file, &mut head, 0)?;
    head.truncate(filled);
    Ok(head)
}

/// Reads from `offset` until `buf` is full or the file ends; returns how
/// many bytes were read.
fn fill_at(path: &Path, file: &File, buf: &mut [u8], offset: u64) -> Result<usize, ImageError> {
    let mut filled = 0;
    while filled < buf.len() {
        match read_at(file, &mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(io_error(path, source)),
        }
    }
    Ok(filled)
}

/// The text format whose record `head` holds, and that record's line
/// (counted from 1), by the rules of [`Format::detect`].
fn text_records(head: &[u8]) -> Option<(Format, u64)> {
    for (index, line) in head.split(|&b| b == b'\n').enumerate() {
        let line = line.trim_ascii();
        let hex_after = |prefix_len: usize| {
            line.len() > prefix_len && line[prefix_len..].iter().all(u8::is_ascii_hexdigit)
        };
        if line.is_empty() {
            continue;
        }
        if line[0] == b':' && hex_after(1) {
            return Some((Format::Hex, index as u64 + 1));
        }
        if line[0] == b'S' && line.get(1).is_some_and(u8::is_ascii_digit) && hex_after(2) {
            return Some((Format::Srec, index as u64 + 1));
        }
        if !line.iter().all(|&b| b == b'\t' || b.is_ascii_graphic() || b == b' ') {
            return None;
        }
    }
    None
}

/// Whether the whole file is text (see the raw-binary rules above), read in
/// chunks of [`TEXT_CHUNK`] and only up to the first byte that is not.
fn is_all_text(path: &Path, file: &File, file_len: u64) -> Result<bool, ImageError> {
    let mut chunk = vec![0u8; TEXT_CHUNK];
    // Up to 3 bytes of a UTF-8 sequence cut by the chunk's end.
    let mut carry: Vec<u8> = Vec::new();
    let mut offset = 0u64;
    let is_text_char = |c: char| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c');
    while offset < file_len {
        let n = fill_at(path, file, &mut chunk, offset)?;
        if n == 0 {
            break;
        }
        offset += n as u64;
        let mut bytes = std::mem::take(&mut carry);
        bytes.extend_from_slice(&chunk[..n]);
        let valid = match std::str::from_utf8(&bytes) {
            Ok(text) => text,
            // An incomplete sequence at the end: complete it from the next chunk.
            Err(e) if e.error_len().is_none() => {
                carry = bytes[e.valid_up_to()..].to_vec();
                // Cannot fail: valid_up_to marks the valid prefix.
                std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default()
            }
            Err(_) => return Ok(false),
        };
        if !valid.chars().all(is_text_char) {
            return Ok(false);
        }
    }
    Ok(carry.is_empty())
}

/// The start of the first non-blank line, for [`ImageError::Text`].
fn first_text_line(head: &[u8]) -> String {
    const SHOWN: usize = 40;
    let text = String::from_utf8_lossy(head);
    match text.lines().map(str::trim).find(|line| !line.is_empty()) {
        None => "only whitespace".to_owned(),
        Some(line) if line.chars().count() > SHOWN => {
            let cut: String = line.chars().take(SHOWN).collect();
            format!("starting {:?}", format!("{cut}…"))
        }
        Some(line) => format!("starting {line:?}"),
    }
}

// ----- segments, gaps, locations ------------------------------------------------

/// A contiguous run of image bytes at an address.
#[derive(Clone, PartialEq, Eq)]
pub struct Segment {
    /// The first byte's address.
    pub address: u64,
    /// Length in bytes (never 0).
    pub len: u64,
    source: Source,
}

#[derive(Clone, PartialEq, Eq)]
enum Source {
    /// `len` bytes at this offset of the image file.
    File { offset: u64 },
    /// Decoded bytes (`len` of them).
    Memory(Box<[u8]>),
}

/// Where a [`Segment`]'s bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentSource<'a> {
    /// The segment's bytes are `len` bytes at `offset` of the image file.
    File {
        /// Byte offset in the file.
        offset: u64,
    },
    /// The segment's bytes, decoded at open.
    Memory(&'a [u8]),
}

impl Segment {
    /// One past the last byte's address.
    pub fn end(&self) -> u64 {
        // Cannot overflow: every constructor checks `address + len`.
        self.address + self.len
    }

    /// The address range the segment covers.
    pub fn range(&self) -> Range<u64> {
        self.address..self.end()
    }

    /// Where the bytes come from.
    pub fn source(&self) -> SegmentSource<'_> {
        match &self.source {
            Source::File { offset } => SegmentSource::File { offset: *offset },
            Source::Memory(bytes) => SegmentSource::Memory(bytes),
        }
    }

    fn from_file(address: u64, len: u64, offset: u64) -> Segment {
        Segment { address, len, source: Source::File { offset } }
    }
}

impl fmt::Debug for Segment {
    // By hand: a derived Debug would print every byte of a decoded segment.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Segment");
        s.field("address", &format_args!("{:#x}", self.address));
        s.field("len", &format_args!("{:#x}", self.len));
        match &self.source {
            Source::File { offset } => s.field("file_offset", &format_args!("{offset:#x}")),
            Source::Memory(_) => s.field("source", &"memory"),
        };
        s.finish()
    }
}

/// A hole between two segments; it reads as [`GAP_FILL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gap {
    /// The first missing address.
    pub address: u64,
    /// How many addresses are missing.
    pub len: u64,
}

impl Gap {
    /// One past the last missing address.
    pub fn end(&self) -> u64 {
        self.address + self.len
    }
}

/// A place in an image file, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Location {
    /// A line of an Intel HEX or S-record file, counted from 1.
    Line(u64),
    /// A character of an Intel HEX or S-record line, both counted from 1.
    Column {
        /// The line.
        line: u64,
        /// The column (byte) within it.
        column: u64,
    },
    /// A byte offset in the file.
    ByteOffset(u64),
    /// The ELF file header.
    ElfHeader,
    /// An ELF program header (segment), counted from 0 like `readelf -l`.
    ProgramHeader(u64),
    /// A UF2 block, counted from 0 in file order.
    Block {
        /// The block's index in the file.
        index: u64,
        /// Its byte offset (index × 512).
        offset: u64,
    },
    /// The end of the file (something is missing).
    EndOfFile,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Location::Line(line) => write!(f, "line {line}"),
            Location::Column { line, column } => write!(f, "line {line}, column {column}"),
            Location::ByteOffset(offset) => write!(f, "byte offset {offset:#x}"),
            Location::ElfHeader => f.write_str("ELF header"),
            Location::ProgramHeader(index) => write!(f, "program header {index}"),
            Location::Block { index, offset } => {
                write!(f, "block {index} (byte offset {offset:#x})")
            }
            Location::EndOfFile => f.write_str("end of file"),
        }
    }
}

/// Which addresses a piece of input covers and where in the file it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The addresses it covers.
    pub range: Range<u64>,
    /// The record, segment or block it comes from.
    pub origin: Location,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#x}..{:#x})", self.origin, self.range.start, self.range.end)
    }
}

// ----- errors -------------------------------------------------------------------

/// Why an image cannot be opened or read. Every message starts with the
/// file's path; malformed input also names the line, block, program header or
/// byte offset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The image file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },

    /// The file is not valid in its format.
    #[error("{}: {location}: {what}", path.display())]
    Malformed {
        /// The image file.
        path: PathBuf,
        /// Where in the file.
        location: Location,
        /// What is wrong.
        what: String,
    },

    /// The file is valid but uses a feature this reader does not take.
    #[error("{}: {location}: {what}", path.display())]
    Unsupported {
        /// The image file.
        path: PathBuf,
        /// Where in the file.
        location: Location,
        /// What is not supported, and what to do instead.
        what: String,
    },

    /// Two pieces of the image write the same addresses (with different
    /// bytes, for HEX, S-record and UF2; at all, for ELF).
    #[error(
        "{}: {second} overlaps {first}{}",
        path.display(),
        differing_at.map(|a| format!(" with different bytes (first at {a:#x})")).unwrap_or_default()
    )]
    Overlap {
        /// The image file.
        path: PathBuf,
        /// The piece earlier in the file.
        first: Placement,
        /// The piece later in the file.
        second: Placement,
        /// For HEX, S-record and UF2: the first address where the two disagree.
        differing_at: Option<u64>,
    },

    /// A hole between segments is larger than the configured limit.
    #[error(
        "{}: gap of {len:#x} bytes at {address:#x}..{:#x} is larger than the limit of {limit:#x} \
         bytes; check the linker script, or raise OpenOptions::max_gap",
        path.display(),
        address.saturating_add(*len)
    )]
    GapTooLarge {
        /// The image file.
        path: PathBuf,
        /// The first missing address.
        address: u64,
        /// The gap's size.
        len: u64,
        /// The limit in force.
        limit: u64,
    },

    /// The image holds no data to upload.
    #[error("{}: the {} image holds no data", path.display(), format.description())]
    Empty {
        /// The image file.
        path: PathBuf,
        /// Its format.
        format: Format,
    },

    /// A load address was given for a format that carries its own, and it
    /// differs from the image's lowest address.
    #[error(
        "{}: {} images carry their own addresses: the given load address {given:#x} differs from \
         the image's lowest address {lowest:#x}; omit the load address",
        path.display(),
        format.description()
    )]
    LoadAddressMismatch {
        /// The image file.
        path: PathBuf,
        /// Its format.
        format: Format,
        /// The load address given.
        given: u64,
        /// The image's own lowest address.
        lowest: u64,
    },

    /// A raw binary was opened without a load address: it carries none of
    /// its own, and guessing one flashes the image to the wrong place. Give
    /// one with [`OpenOptions::load_address`]; the message names the flag of
    /// the upload tools (`--address`), which is where users meet it.
    #[error(
        "{}: a raw binary carries no load address: give the address of its first byte, e.g. \
         `--address 0x08000000`; Intel HEX, S-record, ELF and UF2 images carry their own \
         addresses and need none",
        path.display()
    )]
    NoLoadAddress {
        /// The image file.
        path: PathBuf,
    },

    /// The file was to be read as a raw binary, but holds the records of a
    /// text format: flashing it raw would write its text.
    #[error(
        "{}: line {line} is {}: the file is {} text, not a raw binary; read it as {} \
         (`--format {}`), whose records carry the addresses",
        path.display(),
        if *format == Format::Hex { "an Intel HEX record" } else { "an S-record" },
        format.description(),
        format.description(),
        format.name()
    )]
    TextFormat {
        /// The image file.
        path: PathBuf,
        /// The format its records are in.
        format: Format,
        /// The first record's line, counted from 1.
        line: u64,
    },

    /// No format was given or detected, and the whole file is text: not
    /// firmware, but a README or source file handed over by mistake.
    /// [`OpenOptions::format`] with [`Format::Bin`] insists (`--format bin`).
    #[error(
        "{}: the file is all text ({start}), not firmware; if it really is a raw image, insist \
         with `--format bin`",
        path.display()
    )]
    Text {
        /// The image file.
        path: PathBuf,
        /// What it starts with, for the message.
        start: String,
    },

    /// The image would extend past the end of the 64-bit address space.
    #[error(
        "{}: {len:#x} bytes at load address {address:#x} pass the end of the address space",
        path.display()
    )]
    AddressOverflow {
        /// The image file.
        path: PathBuf,
        /// The load address.
        address: u64,
        /// The image's length.
        len: u64,
    },

    /// An option was given that the image's format does not use.
    #[error("{}: `{option}` does not apply to {} images", path.display(), format.description())]
    UnsupportedOption {
        /// The image file.
        path: PathBuf,
        /// Its format.
        format: Format,
        /// The option's name.
        option: &'static str,
    },

    /// [`OpenOptions::uf2_family`] selected a family that no block carries.
    #[error(
        "{}: no block is for UF2 family {family:#010x}; the file holds {}",
        path.display(),
        if present.is_empty() {
            "blocks without a family ID".to_owned()
        } else {
            present.iter().map(|f| format!("{f:#010x}")).collect::<Vec<_>>().join(", ")
        }
    )]
    NoSuchFamily {
        /// The image file.
        path: PathBuf,
        /// The family asked for.
        family: u32,
        /// The families the file holds.
        present: Vec<u32>,
    },

    /// A file-backed image's file changed size after it was opened, so its
    /// segments no longer describe it.
    #[error("{}: the file changed since it was opened; open it again", path.display())]
    Changed {
        /// The image file.
        path: PathBuf,
    },

    /// [`ImageReader::read_at`] was asked for bytes past the image's end.
    #[error(
        "{}: read of {len:#x} bytes at offset {offset:#x} passes the image's end ({image_len:#x})",
        path.display()
    )]
    OutOfBounds {
        /// The image file.
        path: PathBuf,
        /// The offset asked for, within the flattened image.
        offset: u64,
        /// The number of bytes asked for.
        len: u64,
        /// The image's length.
        image_len: u64,
    },
}

impl ImageError {
    /// The image file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ImageError::Io { path, .. }
            | ImageError::Malformed { path, .. }
            | ImageError::Unsupported { path, .. }
            | ImageError::Overlap { path, .. }
            | ImageError::GapTooLarge { path, .. }
            | ImageError::Empty { path, .. }
            | ImageError::LoadAddressMismatch { path, .. }
            | ImageError::AddressOverflow { path, .. }
            | ImageError::NoLoadAddress { path }
            | ImageError::TextFormat { path, .. }
            | ImageError::Text { path, .. }
            | ImageError::UnsupportedOption { path, .. }
            | ImageError::NoSuchFamily { path, .. }
            | ImageError::Changed { path }
            | ImageError::OutOfBounds { path, .. } => path,
        }
    }

    /// The place in the file, for [`Malformed`](ImageError::Malformed) and
    /// [`Unsupported`](ImageError::Unsupported).
    pub fn location(&self) -> Option<Location> {
        match self {
            ImageError::Malformed { location, .. } | ImageError::Unsupported { location, .. } => {
                Some(*location)
            }
            _ => None,
        }
    }
}

fn io_error(path: &Path, source: io::Error) -> ImageError {
    ImageError::Io { path: path.to_owned(), source }
}

fn malformed(path: &Path, location: Location, what: impl Into<String>) -> ImageError {
    ImageError::Malformed { path: path.to_owned(), location, what: what.into() }
}

fn unsupported(path: &Path, location: Location, what: impl Into<String>) -> ImageError {
    ImageError::Unsupported { path: path.to_owned(), location, what: what.into() }
}

// ----- opening --------------------------------------------------------------------

/// Options for opening an [`Image`]; [`Image::open`] covers the common case.
///
/// ```no_run
/// use dextlink::image::{Format, OpenOptions};
/// # fn main() -> Result<(), dextlink::image::ImageError> {
/// let image = OpenOptions::new()
///     .format(Format::Uf2)
///     .uf2_family(0xe48b_ff56)          // RP2040
///     .max_gap(64 << 20)
///     .open("blink.uf2".as_ref())?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOptions {
    format: Option<Format>,
    load_address: Option<u64>,
    max_gap: u64,
    uf2_family: Option<u32>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { format: None, load_address: None, max_gap: DEFAULT_MAX_GAP, uf2_family: None }
    }
}

impl OpenOptions {
    /// Detect the format, no load address, gaps up to [`DEFAULT_MAX_GAP`],
    /// every UF2 family.
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }

    /// Reads the file as `format` instead of detecting it ([`Format::detect`]).
    pub fn format(&mut self, format: Format) -> &mut OpenOptions {
        self.format = Some(format);
        self
    }

    /// The address of a raw binary's first byte: required for raw binaries
    /// (without it, opening one is an [`ImageError::NoLoadAddress`]).
    ///
    /// HEX, S-record, ELF and UF2 images carry their own addresses and are never
    /// relocated: for them a load address is accepted only when it equals the
    /// image's lowest address (so a script may always pass one as a check),
    /// and is otherwise an [`ImageError::LoadAddressMismatch`].
    pub fn load_address(&mut self, address: u64) -> &mut OpenOptions {
        self.load_address = Some(address);
        self
    }

    /// The largest gap between segments that is accepted and filled with
    /// [`GAP_FILL`] ([`DEFAULT_MAX_GAP`] unless set).
    pub fn max_gap(&mut self, bytes: u64) -> &mut OpenOptions {
        self.max_gap = bytes;
        self
    }

    /// For UF2: keep only blocks of this family ID (blocks without a family
    /// ID are kept too). Without it, a file mixing families is an error, since
    /// their blocks target the same addresses on different chips. An error
    /// for the other formats.
    pub fn uf2_family(&mut self, family: u32) -> &mut OpenOptions {
        self.uf2_family = Some(family);
        self
    }

    /// Opens and validates the image at `path`.
    pub fn open(&self, path: &Path) -> Result<Image, ImageError> {
        let file = File::open(path).map_err(|source| io_error(path, source))?;
        let metadata = file.metadata().map_err(|source| io_error(path, source))?;
        if !metadata.is_file() {
            // A directory or device has no fixed length to validate against.
            let source = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
            return Err(io_error(path, source));
        }
        let file_len = metadata.len();
        // Raw reading needs the head too, for its refusals.
        let head = match self.format {
            None | Some(Format::Bin) => read_head(path, &file)?,
            Some(_) => Vec::new(),
        };
        let format = match self.format {
            Some(format) => format,
            None => detect_head(path, &head),
        };
        if self.uf2_family.is_some() && format != Format::Uf2 {
            return Err(ImageError::UnsupportedOption {
                path: path.to_owned(),
                format,
                option: "uf2_family",
            });
        }
        let mut family_id = None;
        let (segments, keep_file) = match format {
            Format::Bin => {
                // Only reached with Bin given: detection reads such a file as its format.
                if let Some((format, line)) = text_records(&head) {
                    return Err(ImageError::TextFormat { path: path.to_owned(), format, line });
                }
                if file_len == 0 {
                    (Vec::new(), true)
                } else if self.format.is_none() && is_all_text(path, &file, file_len)? {
                    return Err(ImageError::Text {
                        path: path.to_owned(),
                        start: first_text_line(&head),
                    });
                } else {
                    let Some(address) = self.load_address else {
                        return Err(ImageError::NoLoadAddress { path: path.to_owned() });
                    };
                    (raw::load(path, file_len, address)?, true)
                }
            }
            Format::Hex => (hex::load(path, &file)?, false),
            Format::Srec => (srec::load(path, &file)?, false),
            Format::Elf => (elf::load(path, &file, file_len)?, true),
            Format::Uf2 => {
                let loaded = uf2::load(path, &file, self.uf2_family)?;
                family_id = loaded.family_id;
                (loaded.segments, false)
            }
        };

        let Some(first) = segments.first() else {
            return Err(ImageError::Empty { path: path.to_owned(), format });
        };
        let lowest = first.address;
        if format.is_addressed()
            && let Some(given) = self.load_address
            && given != lowest
        {
            return Err(ImageError::LoadAddressMismatch {
                path: path.to_owned(),
                format,
                given,
                lowest,
            });
        }

        let mut gaps = Vec::new();
        for pair in segments.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            if after.address > before.end() {
                let gap = Gap { address: before.end(), len: after.address - before.end() };
                if gap.len > self.max_gap {
                    return Err(ImageError::GapTooLarge {
                        path: path.to_owned(),
                        address: gap.address,
                        len: gap.len,
                        limit: self.max_gap,
                    });
                }
                gaps.push(gap);
            }
        }

        Ok(Image {
            path: path.to_owned(),
            format,
            // Decoded formats need the file no longer; file-backed ones keep
            // this very handle, so that later reads see the file that was
            // validated even if the path is replaced meanwhile.
            file: keep_file.then_some(file),
            file_len,
            segments,
            gaps,
            family_id,
        })
    }
}

// ----- the image ------------------------------------------------------------------

/// A validated firmware image: address-ordered segments and the gaps between
/// them. Raw and ELF images keep their file open and read it on demand; HEX,
/// S-record and UF2 images hold their decoded bytes.
#[derive(Debug)]
pub struct Image {
    path: PathBuf,
    format: Format,
    file: Option<File>,
    file_len: u64,
    segments: Vec<Segment>,
    gaps: Vec<Gap>,
    family_id: Option<u32>,
}

impl Image {
    /// Opens and validates the image at `path`. `format: None` detects it
    /// ([`Format::detect`]); `load_address` places a raw binary (which needs
    /// one: see the raw-binary rules in the module's documentation) and must
    /// equal the lowest address for the other formats (see
    /// [`OpenOptions::load_address`]). Gaps up to [`DEFAULT_MAX_GAP`] are
    /// accepted; [`OpenOptions`] changes that.
    pub fn open(
        path: &Path,
        format: Option<Format>,
        load_address: Option<u64>,
    ) -> Result<Image, ImageError> {
        let mut options = OpenOptions::new();
        if let Some(format) = format {
            options.format(format);
        }
        if let Some(address) = load_address {
            options.load_address(address);
        }
        options.open(path)
    }

    /// The file the image was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The lowest address: where offset 0 of the flattened image goes.
    pub fn load_address(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.address)
    }

    /// One past the highest address.
    pub fn end_address(&self) -> u64 {
        self.segments.last().map_or(0, Segment::end)
    }

    /// The flattened image's length: from the lowest address to the highest
    /// end, gaps included. This is what gets uploaded.
    pub fn len(&self) -> u64 {
        self.end_address() - self.load_address()
    }

    /// Always `false`: opening an image without data fails with
    /// [`ImageError::Empty`].
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The number of bytes that come from the file (the length without gaps).
    pub fn data_len(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// The segments: address-ordered, non-overlapping, never empty.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The holes between segments, address-ordered; each reads as [`GAP_FILL`].
    pub fn gaps(&self) -> &[Gap] {
        &self.gaps
    }

    /// For UF2: the family ID of the blocks kept, if they carry one.
    pub fn family_id(&self) -> Option<u32> {
        self.family_id
    }

    /// A reader of the flattened image.
    ///
    /// For file-backed images (raw, ELF) this checks that the file still has
    /// the size it had when opened, and fails with [`ImageError::Changed`]
    /// otherwise.
    pub fn reader(&self) -> Result<ImageReader<'_>, ImageError> {
        if let Some(file) = &self.file {
            let len = file.metadata().map_err(|source| io_error(&self.path, source))?.len();
            if len != self.file_len {
                return Err(ImageError::Changed { path: self.path.clone() });
            }
        }
        Ok(ImageReader { image: self })
    }
}

/// Reads the flattened image — segments at their offsets from
/// [`Image::load_address`], gaps as [`GAP_FILL`] — at any offset, in any
/// order, without holding a file-backed image in memory.
#[derive(Debug)]
pub struct ImageReader<'a> {
    image: &'a Image,
}

impl ImageReader<'_> {
    /// The image being read.
    pub fn image(&self) -> &Image {
        self.image
    }

    /// Fills `buf` with the flattened image's bytes from `offset` on.
    ///
    /// Fails with [`ImageError::OutOfBounds`] if the range passes
    /// [`Image::len`], and with [`ImageError::Changed`] if a file-backed
    /// image's file was truncated meanwhile.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ImageError> {
        let image = self.image;
        let image_len = image.len();
        let wanted = buf.len() as u64;
        if offset.checked_add(wanted).is_none_or(|end| end > image_len) {
            return Err(ImageError::OutOfBounds {
                path: image.path.clone(),
                offset,
                len: wanted,
                image_len,
            });
        }
        let mut address = image.load_address() + offset;
        let segments = &image.segments;
        // The first segment that ends after `address`.
        let mut index = segments.partition_point(|s| s.end() <= address);
        let mut out = buf;
        while !out.is_empty() {
            let (n, segment) = match segments.get(index) {
                Some(s) if s.address <= address => {
                    (usize_min(out.len(), s.end() - address), Some(s))
                }
                Some(s) => (usize_min(out.len(), s.address - address), None),
                // Unreachable: the range check keeps reads below the last
                // segment's end. Filling is the harmless answer anyway.
                None => (out.len(), None),
            };
            let (head, tail) = std::mem::take(&mut out).split_at_mut(n);
            match segment {
                None => head.fill(GAP_FILL),
                Some(s) => {
                    let within = address - s.address;
                    match &s.source {
                        Source::Memory(bytes) => {
                            let start = usize::try_from(within).unwrap_or(usize::MAX);
                            match bytes.get(start..).and_then(|b| b.get(..n)) {
                                Some(src) => head.copy_from_slice(src),
                                None => head.fill(GAP_FILL),
                            }
                        }
                        Source::File { offset } => self.read_file(*offset + within, head)?,
                    }
                    index += 1;
                }
            }
            address += n as u64;
            out = tail;
        }
        Ok(())
    }

    fn read_file(&self, offset: u64, mut buf: &mut [u8]) -> Result<(), ImageError> {
        let image = self.image;
        let Some(file) = &image.file else {
            // File-backed segments only exist in images that keep their file.
            return Err(ImageError::Changed { path: image.path.clone() });
        };
        let mut offset = offset;
        while !buf.is_empty() {
            match read_at(file, buf, offset) {
                Ok(0) => return Err(ImageError::Changed { path: image.path.clone() }),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(io_error(&image.path, source)),
            }
        }
        Ok(())
    }
}

fn usize_min(a: usize, b: u64) -> usize {
    usize::try_from(b).map_or(a, |b| a.min(b))
}

/// Positioned read that leaves the file's cursor alone (pread on Unix).
#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    match bytes.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

// ----- merging decoded pieces (HEX, S-record, UF2) ------------------------------------------

/// A piece of decoded data: `len` bytes at `at` in a shared pool, to be
/// placed at `address`. Pieces are collected in file order (`seq`).
#[derive(Debug, Clone, Copy)]
struct Piece {
    address: u64,
    len: usize,
    at: usize,
    seq: usize,
    origin: Location,
}

impl Piece {
    fn end(&self) -> u64 {
        self.address + self.len as u64
    }

    fn placement(&self) -> Placement {
        Placement { range: self.address..self.end(), origin: self.origin }
    }
}

/// Decoded pieces in file order, their bytes in one pool (one allocation
/// instead of one per record).
#[derive(Debug, Default)]
struct Pieces {
    pieces: Vec<Piece>,
    pool: Vec<u8>,
}

impl Pieces {
    fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    fn push(&mut self, address: u64, data: &[u8], origin: Location) {
        if data.is_empty() {
            return;
        }
        let seq = self.pieces.len();
        self.pieces.push(Piece { address, len: data.len(), at: self.pool.len(), seq, origin });
        self.pool.extend_from_slice(data);
    }

    /// Sorts by address and merges into segments. Overlaps that rewrite the
    /// same bytes are accepted; differing bytes are an [`ImageError::Overlap`].
    fn into_segments(self, path: &Path) -> Result<Vec<Segment>, ImageError> {
        let Pieces { mut pieces, pool } = self;
        // Stable: pieces at the same address stay in file order.
        pieces.sort_by_key(|p| p.address);
        let mut merged: Vec<(u64, Vec<u8>)> = Vec::new();
        for (k, piece) in pieces.iter().enumerate() {
            let Some(data) = pool.get(piece.at..piece.at + piece.len) else { continue };
            if let Some((start, bytes)) = merged.last_mut() {
                let current_end = *start + bytes.len() as u64;
                if piece.address <= current_end {
                    // Touching or overlapping the current segment.
                    let overlap_end = piece.end().min(current_end);
                    let old =
                        &bytes[to_usize(piece.address - *start)..to_usize(overlap_end - *start)];
                    let new = &data[..to_usize(overlap_end - piece.address)];
                    if let Some(d) = old.iter().zip(new).position(|(a, b)| a != b) {
                        let at = piece.address + d as u64;
                        return Err(overlap(path, &pieces[..k], piece, at));
                    }
                    if piece.end() > current_end {
                        bytes.extend_from_slice(&data[to_usize(current_end - piece.address)..]);
                    }
                    continue;
                }
            }
            merged.push((piece.address, data.to_vec()));
        }
        Ok(merged
            .into_iter()
            .map(|(address, bytes)| Segment {
                address,
                len: bytes.len() as u64,
                source: Source::Memory(bytes.into_boxed_slice()),
            })
            .collect())
    }
}

/// Lengths here index in-memory buffers, so they fit in `usize`.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The overlap error for `piece`, whose byte at `at` differs from what an
/// earlier (by address) piece wrote there.
fn overlap(path: &Path, earlier: &[Piece], piece: &Piece, at: u64) -> ImageError {
    let other = earlier.iter().rev().find(|q| q.address <= at && at < q.end()).unwrap_or(piece);
    let (first, second) = if other.seq <= piece.seq { (other, piece) } else { (piece, other) };
    ImageError::Overlap {
        path: path.to_owned(),
        first: first.placement(),
        second: second.placement(),
        differing_at: Some(at),
    }
}
