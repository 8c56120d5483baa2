//! The lines of a text format with one record per line (Intel HEX,
//! S-record): read one at a time, so that memory stays bounded to the
//! decoded data, numbered from 1 for error messages, blank ones skipped;
//! and the two helpers both formats' record parsers use.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::{ImageError, Location, io_error, malformed};

/// The longest line accepted. An Intel HEX record is at most 521 characters
/// (`:` and 2 × 260 digits), an S-record at most 516 (`S`, the type and
/// 2 × 257 digits); the rest leaves room for trailing whitespace. A longer
/// line is neither, and the limit keeps a huge binary file without newlines
/// from being read into one line buffer.
pub(super) const MAX_LINE: usize = 1024;

/// One non-blank line.
#[derive(Debug)]
pub(super) struct Line<'a> {
    /// From 1.
    pub number: u64,
    /// Bytes of leading whitespace, for the columns of errors.
    pub indent: usize,
    /// The line without its surrounding whitespace (CRLF included).
    pub text: &'a [u8],
}

/// Reads the lines of `file`, a file in the format `format` names in errors.
pub(super) struct RecordLines<'f> {
    path: &'f Path,
    format: &'static str,
    reader: BufReader<&'f File>,
    buffer: Vec<u8>,
    number: u64,
}

impl<'f> RecordLines<'f> {
    /// `format` completes "no … is" in the error for an overlong line.
    pub(super) fn new(path: &'f Path, file: &'f File, format: &'static str) -> RecordLines<'f> {
        RecordLines { path, format, reader: BufReader::new(file), buffer: Vec::new(), number: 0 }
    }

    /// How many lines were read, blank ones included.
    pub(super) fn lines_read(&self) -> u64 {
        self.number
    }

    /// The next non-blank line, `None` at the end of the file.
    pub(super) fn next_line(&mut self) -> Result<Option<Line<'_>>, ImageError> {
        loop {
            self.buffer.clear();
            let read = (&mut self.reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut self.buffer)
                .map_err(|source| io_error(self.path, source))?;
            if read == 0 {
                return Ok(None);
            }
            self.number += 1;
            if self.buffer.last() != Some(&b'\n') && self.buffer.len() > MAX_LINE {
                return Err(malformed(
                    self.path,
                    Location::Line(self.number),
                    format!("line is longer than {MAX_LINE} characters; no {} is", self.format),
                ));
            }
            if !self.buffer.trim_ascii().is_empty() {
                break;
            }
        }
        let indent = self.buffer.len() - self.buffer.trim_ascii_start().len();
        Ok(Some(Line { number: self.number, indent, text: self.buffer.trim_ascii() }))
    }
}

/// The value of a hex digit (either case); 0 for anything else, which the
/// callers have refused already.
pub(super) fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

/// A byte for a message: the character if printable, else its value.
pub(super) fn describe(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}'", byte as char)
    } else {
        format!("byte 0x{byte:02X}")
    }
}
