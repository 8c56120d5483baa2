//! Raw binary: the whole file is one segment at the load address.
//!
//! Nothing is read here: the bytes stay in the file and are read on demand by
//! [`ImageReader`](super::ImageReader), so a 1 GiB image costs no memory.

use std::path::Path;

use super::{ImageError, Segment};

/// The file's `file_len` bytes as one segment at `address` (none if empty).
pub(super) fn load(path: &Path, file_len: u64, address: u64) -> Result<Vec<Segment>, ImageError> {
    if file_len == 0 {
        return Ok(Vec::new());
    }
    if address.checked_add(file_len).is_none() {
        return Err(ImageError::AddressOverflow { path: path.to_owned(), address, len: file_len });
    }
    Ok(vec![Segment::from_file(address, file_len, 0)])
}
