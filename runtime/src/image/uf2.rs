//! UF2 (USB Flashing Format, <https://github.com/microsoft/uf2>): 512-byte
//! blocks, each a 32-byte header, up to 476 payload bytes and an end magic.
//!
//! Checks beyond the magics: the payload fits the block; block numbers count
//! up from 0 to `numBlocks - 1` with one `numBlocks` throughout, and the file
//! ends on a complete run (a missing block means a truncated download — the
//! case that bricks devices). Concatenated UF2 files, which the spec allows,
//! are runs one after the other. Blocks flagged "not main flash" are checked
//! and skipped; file-container blocks are refused, since they carry files for
//! the device's file system rather than flash contents.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::{ImageError, Location, Pieces, Segment, io_error, le32, malformed, unsupported};

/// `magicStart0`: "UF2\n".
pub(super) const MAGIC_START0: u32 = 0x0A32_4655;
/// `magicStart1`.
pub(super) const MAGIC_START1: u32 = 0x9E5D_5157;
/// `magicEnd`.
const MAGIC_END: u32 = 0x0AB1_6F30;

const BLOCK_LEN: usize = 512;
/// The data area between the 32-byte header and the end magic.
const MAX_PAYLOAD: u32 = 476;

/// The block is not for main flash: skip it.
const FLAG_NOT_MAIN_FLASH: u32 = 0x0000_0001;
/// The block carries part of a file (`targetAddr` is a file offset).
const FLAG_FILE_CONTAINER: u32 = 0x0000_1000;
/// `fileSize` holds a family ID.
const FLAG_FAMILY_ID: u32 = 0x0000_2000;

/// What a UF2 file decodes to.
#[derive(Debug)]
pub(super) struct Loaded {
    pub(super) segments: Vec<Segment>,
    pub(super) family_id: Option<u32>,
}

/// Decodes the file; with `family`, keeps only that family's blocks (and
/// blocks without a family ID).
pub(super) fn load(path: &Path, file: &File, family: Option<u32>) -> Result<Loaded, ImageError> {
    let mut reader = BufReader::new(file);
    let mut block = [0u8; BLOCK_LEN];
    let mut pieces = Pieces::default();
    // The current run: (next expected block number, numBlocks, first block's index).
    let mut run: Option<(u32, u32, u64)> = None;
    // The family ID kept, and the block it was first seen in.
    let mut kept_family: Option<(u32, u64)> = None;
    let mut families_present: Vec<u32> = Vec::new();
    for index in 0u64.. {
        let offset = index * BLOCK_LEN as u64;
        let here = Location::Block { index, offset };
        let filled = read_full(&mut reader, &mut block).map_err(|source| io_error(path, source))?;
        if filled == 0 {
            break;
        }
        if filled < BLOCK_LEN {
            return Err(malformed(
                path,
                here,
                format!(
                    "truncated block: {filled} of {BLOCK_LEN} bytes (a UF2 file is a sequence of \
                     {BLOCK_LEN}-byte blocks)"
                ),
            ));
        }
        let field = |n: usize| le32(&block, 4 * n);
        let (magic0, magic1, flags, target, payload_len, number, count, family_or_size) =
            (field(0), field(1), field(2), field(3), field(4), field(5), field(6), field(7));
        let magic_end = le32(&block, BLOCK_LEN - 4);
        if magic0 != MAGIC_START0 || magic1 != MAGIC_START1 {
            return Err(malformed(
                path,
                here,
                format!(
                    "bad start magic {magic0:#010x} {magic1:#010x}, expected {MAGIC_START0:#010x} \
                     {MAGIC_START1:#010x}: not a UF2 block"
                ),
            ));
        }
        if magic_end != MAGIC_END {
            return Err(malformed(
                path,
                here,
                format!("bad end magic {magic_end:#010x}, expected {MAGIC_END:#010x}"),
            ));
        }
        if flags & FLAG_FILE_CONTAINER != 0 {
            return Err(unsupported(
                path,
                here,
                "file-container block (flag 0x1000): it carries a file for the device's file \
                 system, not flash contents",
            ));
        }
        if payload_len > MAX_PAYLOAD {
            return Err(malformed(
                path,
                here,
                format!(
                    "payload size is {payload_len}, more than the {MAX_PAYLOAD} bytes a block holds"
                ),
            ));
        }
        if count == 0 {
            return Err(malformed(path, here, "numBlocks is 0"));
        }
        if number >= count {
            return Err(malformed(
                path,
                here,
                format!("block number {number} is not below numBlocks ({count})"),
            ));
        }
        match run {
            Some((next, run_count, first)) if next < run_count => {
                if count != run_count {
                    return Err(malformed(
                        path,
                        here,
                        format!("numBlocks is {count}, but block {first} said {run_count}"),
                    ));
                }
                if number != next {
                    return Err(malformed(
                        path,
                        here,
                        format!("block number is {number}, expected {next}"),
                    ));
                }
                run = Some((next + 1, run_count, first));
            }
            // No run yet, or the last one is complete: a new one starts at 0.
            _ if number == 0 => run = Some((1, count, index)),
            _ => {
                return Err(malformed(
                    path,
                    here,
                    format!("block number is {number}, expected 0 to start the file"),
                ));
            }
        }

        if flags & FLAG_NOT_MAIN_FLASH != 0 {
            continue;
        }
        let block_family = (flags & FLAG_FAMILY_ID != 0).then_some(family_or_size);
        if let Some(f) = block_family
            && !families_present.contains(&f)
        {
            families_present.push(f);
        }
        match (family, block_family) {
            (Some(wanted), Some(f)) if f != wanted => continue,
            (None, Some(f)) => match kept_family {
                None => kept_family = Some((f, index)),
                Some((kept, first)) if kept != f => {
                    return Err(malformed(
                        path,
                        here,
                        format!(
                            "family ID {f:#010x} differs from {kept:#010x} in block {first}; \
                             choose one with OpenOptions::uf2_family"
                        ),
                    ));
                }
                Some(_) => {}
            },
            (Some(_), Some(f)) => kept_family = Some((f, index)),
            (_, None) => {}
        }
        let payload = block.get(32..32 + payload_len as usize).unwrap_or_default();
        pieces.push(u64::from(target), payload, here);
    }
    if let Some((next, count, first)) = run
        && next < count
    {
        return Err(malformed(
            path,
            Location::EndOfFile,
            format!(
                "the run of {count} blocks that starts at block {first} ends after block number \
                 {}; the file is truncated",
                next - 1
            ),
        ));
    }
    if let Some(wanted) = family
        && pieces.is_empty()
        && !families_present.is_empty()
        && !families_present.contains(&wanted)
    {
        return Err(ImageError::NoSuchFamily {
            path: path.to_owned(),
            family: wanted,
            present: families_present,
        });
    }
    Ok(Loaded { segments: pieces.into_segments(path)?, family_id: kept_family.map(|(f, _)| f) })
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
