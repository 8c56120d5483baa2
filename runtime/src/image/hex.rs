//! Intel HEX: records 00 (data), 01 (end of file), 02 (extended segment
//! address), 04 (extended linear address); 03 and 05 (start addresses) are
//! accepted and ignored, since the device boots from its vector table, not
//! from an entry point the host hands over.
//!
//! The file is read line by line and each line goes through the `ihex`
//! crate's record parser. Its `Reader` iterator is not used because it
//! needs the whole file as one `&str` and reports errors without line numbers;
//! feeding it lines ourselves keeps memory bounded to the decoded data and
//! lets every error name its line (and column, for a bad character).
//!
//! Addresses: a data record's bytes go to `base + offset + i`, where `base` is
//! the last extended linear address << 16 or extended segment address << 4.
//! A record that crosses a 64 KiB boundary continues linearly instead of
//! wrapping within the segment, as objcopy and srec_cat read it.

use std::fs::File;
use std::path::Path;

use ihex::{ReaderError, Record};

use super::lines::{Line, RecordLines, describe, hex_value};
use super::{ImageError, Location, Pieces, Segment, malformed};

/// Decodes the file into segments (empty if it holds no data records).
pub(super) fn load(path: &Path, file: &File) -> Result<Vec<Segment>, ImageError> {
    let mut lines = RecordLines::new(path, file, "Intel HEX record");
    let mut base = 0u64;
    let mut eof_line = None;
    let mut pieces = Pieces::default();
    while let Some(Line { number, indent, text }) = lines.next_line()? {
        if let Some(eof) = eof_line {
            return Err(malformed(
                path,
                Location::Line(number),
                format!("data after the end-of-file record on line {eof}"),
            ));
        }
        match parse_record(path, number, indent, text)? {
            Record::Data { offset, value } => {
                pieces.push(base + u64::from(offset), &value, Location::Line(number));
            }
            Record::EndOfFile => eof_line = Some(number),
            Record::ExtendedSegmentAddress(segment) => base = u64::from(segment) << 4,
            Record::ExtendedLinearAddress(upper) => base = u64::from(upper) << 16,
            Record::StartSegmentAddress { .. } | Record::StartLinearAddress(_) => {}
        }
    }
    if eof_line.is_none() {
        return Err(malformed(
            path,
            Location::EndOfFile,
            format!(
                "no end-of-file record (:00000001FF) after line {}; the file is truncated",
                lines.lines_read()
            ),
        ));
    }
    pieces.into_segments(path)
}

/// Parses one record, `text` being the line without surrounding whitespace
/// (`indent` characters of which preceded it).
fn parse_record(path: &Path, line: u64, indent: usize, text: &[u8]) -> Result<Record, ImageError> {
    let here = Location::Line(line);
    let column = |i: usize| Location::Column { line, column: (indent + i + 1) as u64 };
    let Some((&start, digits)) = text.split_first() else {
        return Err(malformed(path, here, "empty record"));
    };
    if start != b':' {
        return Err(malformed(
            path,
            column(0),
            format!("expected ':' to start a record, found {}", describe(start)),
        ));
    }
    if let Some(i) = digits.iter().position(|b| !b.is_ascii_hexdigit()) {
        return Err(malformed(
            path,
            column(i + 1),
            format!("{} is not a hex digit", describe(digits[i])),
        ));
    }
    // Length checks before the crate's, so that a cut-off record is reported
    // as such rather than as the checksum mismatch it also causes.
    if digits.len() % 2 != 0 {
        return Err(malformed(
            path,
            here,
            format!(
                "odd number of hex digits ({}): the record is cut off or has a stray digit",
                digits.len()
            ),
        ));
    }
    if digits.len() < 10 {
        return Err(malformed(
            path,
            here,
            format!(
                "record is truncated: {} hex digits, while byte count, address, type and checksum \
                 alone take 10",
                digits.len()
            ),
        ));
    }
    let byte = |i: usize| {
        digits
            .get(2 * i..2 * i + 2)
            .map_or(0, |pair| (hex_value(pair[0]) << 4) | hex_value(pair[1]))
    };
    let declared = usize::from(byte(0));
    let holds = digits.len() / 2 - 5;
    if holds != declared {
        let problem = if holds < declared { "truncated" } else { "too long" };
        return Err(malformed(
            path,
            here,
            format!(
                "record is {problem}: its byte count is 0x{declared:02X} ({declared}), \
                 but it holds {holds} data bytes"
            ),
        ));
    }
    let Ok(text) = std::str::from_utf8(text) else {
        // Unreachable: every byte was checked to be ASCII above.
        return Err(malformed(path, here, "record is not ASCII"));
    };
    let record_type = byte(3);
    Record::from_record_string(text).map_err(|e| {
        let what = match e {
            ReaderError::ChecksumMismatch(computed, stated) => {
                format!("checksum is 0x{stated:02X}, but the record's bytes need 0x{computed:02X}")
            }
            ReaderError::UnsupportedRecordType(t) => {
                format!("record type 0x{t:02X} is not an Intel HEX record type (00 to 05)")
            }
            ReaderError::InvalidLengthForType => {
                let needs = match record_type {
                    0x02 | 0x04 => "2",
                    0x03 | 0x05 => "4",
                    _ => "0",
                };
                format!(
                    "a type {record_type:02X} record holds {needs} data bytes, this one {declared}"
                )
            }
            other => other.to_string(),
        };
        malformed(path, here, what)
    })
}
