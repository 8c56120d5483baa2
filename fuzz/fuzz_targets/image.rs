//! The firmware image parsers: any file, read as raw, Intel HEX, S-record,
//! ELF, UF2 or detected, with and without a load address, opens or fails
//! with an error, never a panic; an image that opens reads back whole.
//!
//! What an opened image must satisfy (runtime/src/image/mod.rs, "Rules
//! shared by all formats"): segments address-ordered, non-empty and
//! non-overlapping; the gaps exactly the holes between them, none over the
//! limit; `len` = data + gaps; the flattened image reads segment bytes where
//! segments are (for decoded formats, the decoded bytes) and `GAP_FILL`
//! elsewhere; a read past the end is an error.

#![no_main]

use std::cell::RefCell;
use std::path::PathBuf;

use dextlink::image::{Format, GAP_FILL, Image, OpenOptions, SegmentSource};
use libfuzzer_sys::fuzz_target;

/// Small enough that a file of a few KiB flattens to a few MiB at most.
const MAX_GAP: u64 = 1024;
/// The load address given on the second open of each format (raw binaries
/// need one; for the others it must match, or the open fails).
const LOAD_ADDRESS: u64 = 0x0800_0000;
/// Reads of the flattened image, in chunks of this size.
const CHUNK: usize = 64 * 1024;

thread_local! {
    /// One file per process, rewritten for every input (libFuzzer's `-fork`
    /// and `-jobs` run several processes side by side).
    static PATH: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

fn scratch_path() -> PathBuf {
    PATH.with(|p| {
        p.borrow_mut()
            .get_or_insert_with(|| {
                std::env::temp_dir().join(format!("dextlink-fuzz-image-{}.img", std::process::id()))
            })
            .clone()
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch_path();
    std::fs::write(&path, data).expect("write the scratch image");
    let formats = Format::ALL.map(Some).into_iter().chain([None]);
    let opens: Vec<_> = formats.flat_map(|f| [(f, None), (f, Some(LOAD_ADDRESS))]).collect();
    for &(format, address) in &opens {
        let mut options = OpenOptions::new();
        options.max_gap(MAX_GAP);
        if let Some(format) = format {
            options.format(format);
        }
        if let Some(address) = address {
            options.load_address(address);
        }
        let Ok(image) = options.open(&path) else { continue };
        assert!(image.format() != Format::Bin || address.is_some(), "a raw binary without address");
        check(&image);
    }
    // The same through the convenience entry point (default gap limit):
    // it must not panic either; only small images are read back.
    for &(format, address) in &opens {
        if let Ok(image) = Image::open(&path, format, address)
            && image.len() <= 4 << 20
        {
            check(&image);
        }
    }
});

fn check(image: &Image) {
    let segments = image.segments();
    assert!(!segments.is_empty() && !image.is_empty());
    let mut data_len = 0u64;
    for s in segments {
        assert!(s.len > 0, "an empty segment");
        assert!(s.address.checked_add(s.len).is_some(), "a segment past the address space");
        data_len += s.len;
        if let SegmentSource::Memory(bytes) = s.source() {
            assert_eq!(bytes.len() as u64, s.len, "decoded bytes of another length");
        }
    }
    assert_eq!(image.data_len(), data_len);
    let mut holes = Vec::new();
    for pair in segments.windows(2) {
        assert!(pair[0].end() <= pair[1].address, "segments out of order or overlapping");
        if pair[0].end() < pair[1].address {
            holes.push((pair[0].end(), pair[1].address - pair[0].end()));
        }
    }
    let gaps: Vec<(u64, u64)> = image.gaps().iter().map(|g| (g.address, g.len)).collect();
    assert_eq!(gaps, holes, "gaps are not the holes between segments");
    let gap_len: u64 = gaps.iter().map(|g| g.1).sum();
    assert_eq!(image.len(), data_len + gap_len);
    assert_eq!(image.load_address(), segments[0].address);

    let mut reader = image.reader().expect("a reader of a file that did not change");
    let len = image.len();
    let base = image.load_address();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    let mut index = 0;
    while offset < len {
        let n = CHUNK.min(usize::try_from(len - offset).unwrap_or(CHUNK));
        let chunk = &mut buf[..n];
        reader.read_at(offset, chunk).expect("read inside the image");
        // Compare with the segments: decoded bytes where they are, fill in gaps.
        let start = base + offset;
        let end = start + n as u64;
        let mut at = start;
        while at < end {
            while index < segments.len() && segments[index].end() <= at {
                index += 1;
            }
            let here = &chunk[(at - start) as usize..];
            match segments.get(index) {
                Some(s) if s.address <= at => {
                    let m = (s.end().min(end) - at) as usize;
                    if let SegmentSource::Memory(bytes) = s.source() {
                        let within = (at - s.address) as usize;
                        assert!(here[..m] == bytes[within..within + m], "segment at {at:#x}");
                    }
                    at += m as u64;
                }
                next => {
                    let to = next.map_or(end, |s| s.address.min(end));
                    let m = (to - at) as usize;
                    assert!(here[..m].iter().all(|&b| b == GAP_FILL), "gap at {at:#x}");
                    at += m as u64;
                }
            }
        }
        offset += n as u64;
    }
    // Past the end, and an overflowing range: errors, not panics.
    assert!(reader.read_at(len, &mut [0u8; 1]).is_err());
    assert!(reader.read_at(u64::MAX, &mut [0u8; 2]).is_err());
    assert!(reader.read_at(len.saturating_sub(1), &mut [0u8; 2]).is_err());
    reader.read_at(len, &mut []).expect("an empty read at the end");
}
