//! Motorola S-record (as `objcopy -O srec`, `srec_cat` and vendor IDEs write
//! it): records S0 (header), S1/S2/S3 (data with 16-, 24- and 32-bit
//! addresses), S5/S6 (record counts) and S7/S8/S9 (start address, ending
//! the file).
//!
//! A record is `S`, a type digit, then hex digits: a byte count, the address,
//! the data and a checksum. The byte count covers address, data and
//! checksum; the checksum is the ones' complement of the low byte of the sum
//! of the count, address and data bytes. What is checked, and why:
//!
//! - Every record's count and checksum, S0 included: a header that fails its
//!   checksum means the file was damaged, even if the header itself is
//!   ignored.
//! - S4 is reserved by the format and written by no tool: an error.
//! - S5/S6 must state the number of S1–S3 records seen so far: a mismatch
//!   means records were lost (a file cut and pasted together, say).
//! - S7/S8/S9 end the file and must be present: without one the file may be
//!   truncated. Any record after it is an error, not ignored, because a tool
//!   that stops at the termination record would flash an image without the
//!   data that follows it, and one that reads on would flash it with that
//!   data; refusing is the reading that cannot flash the wrong bytes. The
//!   start address itself is ignored, as for Intel HEX: the device boots
//!   from its vector table, not from an entry point the host hands over.
//! - The termination type need not pair with the data type (S9 after S3
//!   records is accepted): tools mix them, and the addresses are in the data
//!   records anyway.
//! - Blank lines and surrounding whitespace (CRLF line ends included) are
//!   accepted; hex digits may be either case.
//!
//! A data record's bytes go to `address + i`; one that passes the top of its
//! address width (an S1 record at 0xFFF0 with 32 bytes) continues linearly
//! rather than wrapping, as for Intel HEX. Overlaps follow the rules shared
//! by all formats (see the module's rules list): identical rewrites pass,
//! differing bytes are an error naming both lines.

use std::fs::File;
use std::path::Path;

use super::lines::{Line, RecordLines, describe, hex_value};
use super::{ImageError, Location, Pieces, Segment, malformed};

/// Decodes the file into segments (empty if it holds no data records).
pub(super) fn load(path: &Path, file: &File) -> Result<Vec<Segment>, ImageError> {
    let mut lines = RecordLines::new(path, file, "S-record");
    let mut data_records = 0u64;
    let mut end_line = None;
    let mut pieces = Pieces::default();
    while let Some(Line { number, indent, text }) = lines.next_line()? {
        if let Some((end, kind)) = end_line {
            return Err(malformed(
                path,
                Location::Line(number),
                format!("record after the S{kind} termination record on line {end}"),
            ));
        }
        let record = parse_record(path, number, indent, text)?;
        let here = Location::Line(number);
        match record.kind {
            0 => {}
            1..=3 => {
                data_records += 1;
                pieces.push(record.address, &record.data, here);
            }
            5 | 6 => {
                if record.address != data_records {
                    return Err(malformed(
                        path,
                        here,
                        format!(
                            "S{} record count is {}, but {data_records} data records (S1 to S3) \
                             precede it",
                            record.kind, record.address
                        ),
                    ));
                }
            }
            kind => end_line = Some((number, kind)),
        }
    }
    if end_line.is_none() {
        return Err(malformed(
            path,
            Location::EndOfFile,
            format!(
                "no termination record (S7, S8 or S9) after line {}; the file is truncated",
                lines.lines_read()
            ),
        ));
    }
    pieces.into_segments(path)
}

/// One decoded record.
struct Record {
    /// The type digit's value (0 to 9, never 4).
    kind: u8,
    /// The address field (for S5/S6: the record count).
    address: u64,
    /// The data bytes (empty for all but S0 to S3).
    data: Vec<u8>,
}

/// Address field width in bytes, by record type; `None` for S4 (reserved).
fn address_len(kind: u8) -> Option<usize> {
    match kind {
        0 | 1 | 5 | 9 => Some(2),
        2 | 6 | 8 => Some(3),
        3 | 7 => Some(4),
        _ => None,
    }
}

/// Parses one record, `text` being the line without surrounding whitespace
/// (`indent` characters of which preceded it; never empty).
fn parse_record(path: &Path, line: u64, indent: usize, text: &[u8]) -> Result<Record, ImageError> {
    let here = Location::Line(line);
    let column = |i: usize| Location::Column { line, column: (indent + i + 1) as u64 };
    let Some(&start) = text.first() else {
        return Err(malformed(path, here, "empty record"));
    };
    if start != b'S' {
        return Err(malformed(
            path,
            column(0),
            format!("expected 'S' to start a record, found {}", describe(start)),
        ));
    }
    let Some(&kind_digit) = text.get(1) else {
        return Err(malformed(path, here, "record is truncated: 'S' without a type digit"));
    };
    if !kind_digit.is_ascii_digit() {
        return Err(malformed(
            path,
            column(1),
            format!("{} is not an S-record type (S0 to S9)", describe(kind_digit)),
        ));
    }
    let kind = kind_digit - b'0';
    let Some(address_len) = address_len(kind) else {
        return Err(malformed(path, here, "S4 is a reserved record type that no tool writes"));
    };
    let digits = &text[2..];
    if let Some(i) = digits.iter().position(|b| !b.is_ascii_hexdigit()) {
        return Err(malformed(
            path,
            column(i + 2),
            format!("{} is not a hex digit", describe(digits[i])),
        ));
    }
    // Length checks before the checksum, so that a cut-off record is
    // reported as such rather than as the checksum mismatch it also causes.
    if !digits.len().is_multiple_of(2) {
        return Err(malformed(
            path,
            here,
            format!(
                "odd number of hex digits ({}) after 'S{kind}': the record is cut off or has a \
                 stray digit",
                digits.len()
            ),
        ));
    }
    let minimum = 2 * (1 + address_len + 1);
    if digits.len() < minimum {
        return Err(malformed(
            path,
            here,
            format!(
                "record is truncated: {} hex digits after 'S{kind}', while byte count, a \
                 {address_len}-byte address and checksum alone take {minimum}",
                digits.len()
            ),
        ));
    }
    // Every digit is hex and there is an even number of them, at least 8.
    let bytes: Vec<u8> =
        digits.chunks_exact(2).map(|pair| (hex_value(pair[0]) << 4) | hex_value(pair[1])).collect();
    let declared = usize::from(bytes[0]);
    let holds = bytes.len() - 1;
    if holds != declared {
        let problem = if holds < declared { "truncated" } else { "too long" };
        return Err(malformed(
            path,
            here,
            format!(
                "record is {problem}: its byte count is 0x{declared:02X} ({declared}), but \
                 {holds} bytes follow it (address, data and checksum)"
            ),
        ));
    }
    let Some((&stated, summed)) = bytes.split_last() else {
        return Err(malformed(path, here, "empty record")); // unreachable: at least 4 bytes
    };
    let needed = !summed.iter().fold(0u8, |sum, b| sum.wrapping_add(*b));
    if stated != needed {
        return Err(malformed(
            path,
            here,
            format!("checksum is 0x{stated:02X}, but the record's bytes need 0x{needed:02X}"),
        ));
    }
    let address = summed[1..=address_len].iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
    let data_len = summed.len() - 1 - address_len;
    if kind >= 5 && data_len != 0 {
        let what = if kind <= 6 { "record count" } else { "termination" };
        return Err(malformed(
            path,
            here,
            format!("an S{kind} ({what}) record holds no data bytes, this one {data_len}"),
        ));
    }
    // Keep only the data: drop the checksum, then the count and address.
    let mut data = bytes;
    data.truncate(1 + address_len + data_len);
    data.drain(..1 + address_len);
    Ok(Record { kind, address, data })
}
