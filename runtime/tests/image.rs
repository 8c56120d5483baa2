//! The firmware image module: every format round-trips to the expected
//! flattened bytes (gaps as 0xFF), malformed files are refused with the file
//! and the place named, text is never taken as a raw binary, a raw binary
//! needs a load address, and no input makes a parser panic.

use std::fs;
use std::path::{Path, PathBuf};

use dextlink::image::{
    DEFAULT_MAX_GAP, Format, GAP_FILL, Gap, Image, ImageError, Location, OpenOptions, SegmentSource,
};
use dextlink_tests::images::*;
use proptest::prelude::*;
use tempfile::TempDir;

// ----- helpers ------------------------------------------------------------------

fn write(dir: &TempDir, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, bytes).unwrap();
    path
}

/// The whole flattened image, read in one call.
fn flatten(image: &Image) -> Vec<u8> {
    let mut bytes = vec![0u8; usize::try_from(image.len()).unwrap()];
    image.reader().unwrap().read_at(0, &mut bytes).unwrap();
    bytes
}

/// What `segments` flatten to: from the lowest address, gaps as GAP_FILL.
fn expected(segments: &[(u64, Vec<u8>)]) -> (u64, Vec<u8>) {
    let low = segments.iter().map(|s| s.0).min().unwrap();
    let high = segments.iter().map(|s| s.0 + s.1.len() as u64).max().unwrap();
    let mut bytes = vec![GAP_FILL; (high - low) as usize];
    for (address, data) in segments {
        let at = (address - low) as usize;
        bytes[at..at + data.len()].copy_from_slice(data);
    }
    (low, bytes)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// The error's message must start with the file's path and the location.
fn assert_names(err: &ImageError, path: &Path, location: &str) {
    let message = err.to_string();
    let prefix = format!("{}: {location}: ", path.display());
    assert!(message.starts_with(&prefix), "`{message}` does not start with `{prefix}`");
}

fn malformed_at(result: Result<Image, ImageError>) -> (Location, String, ImageError) {
    match result {
        Err(err @ ImageError::Malformed { .. }) => {
            let ImageError::Malformed { location, what, .. } = &err else { unreachable!() };
            (*location, what.clone(), err)
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

// ----- formats and detection --------------------------------------------------------

#[test]
fn format_names_round_trip() {
    for format in Format::ALL {
        assert_eq!(format.to_string().parse::<Format>().unwrap(), format);
    }
    assert_eq!("raw".parse::<Format>().unwrap(), Format::Bin);
    assert_eq!("IHEX".parse::<Format>().unwrap(), Format::Hex);
    for name in ["srec", "S19", "s28", "s37", "mot"] {
        assert_eq!(name.parse::<Format>().unwrap(), Format::Srec, "{name}");
    }
    assert_eq!(Format::Srec.name(), "srec");
    assert_eq!(Format::Srec.description(), "Motorola S-record");
    assert!(Format::Srec.is_addressed());
    assert_eq!(Format::ALL.len(), 5);
    let err = "motorola".parse::<Format>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown image format `motorola`; expected bin, raw, hex, ihex, srec, s19, s28, s37, mot, \
         elf or uf2"
    );
}

#[test]
fn detection_by_magic_then_extension() {
    let dir = TempDir::new().unwrap();
    let (elf_bytes, _) = elf(false, false, &[Phdr::load(0x100, vec![1, 2, 3])]);
    let uf2_bytes = uf2(&uf2_blocks(&[(0x2000, vec![7; 10])]));
    let hex = hex_text(&[(0x10, vec![1, 2, 3])]);
    let srec = srec_text(&[(0x10, vec![1, 2, 3])]);
    let commented_hex = format!("# written by a build script\n\n{hex}");
    let commented_srec = format!("  ; header comment\r\n{srec}");
    let cases: &[(&str, &[u8], Format)] = &[
        // Content wins over a misleading name.
        ("app.bin", &elf_bytes, Format::Elf),
        ("app.dat", &uf2_bytes, Format::Uf2),
        ("app.txt", hex.as_bytes(), Format::Hex),
        ("app.elf", hex.as_bytes(), Format::Hex),
        ("crlf.x", b":0100000001FE\r\n:00000001FF\r\n", Format::Hex),
        ("app.srec.txt", srec.as_bytes(), Format::Srec),
        ("fw.bin", srec.as_bytes(), Format::Srec),
        ("fw.hex", srec.as_bytes(), Format::Srec),
        ("fw.s19", hex.as_bytes(), Format::Hex),
        ("lower.x", b"s0030000fc\n", Format::Bin), // 's' is not a record start
        ("fw2.bin", commented_hex.as_bytes(), Format::Hex),
        ("fw3.bin", commented_srec.as_bytes(), Format::Srec),
        ("cut.dat", b"S3150800", Format::Srec), // cut off: still an S-record's start
        // No magic: the extension decides.
        ("broken.hex", b"garbage", Format::Hex),
        ("broken.ELF", b"garbage", Format::Elf),
        ("broken.uf2", b"garbage", Format::Uf2),
        ("empty.ihex", b"", Format::Hex),
        ("broken.srec", b"garbage", Format::Srec),
        ("broken.S19", b"garbage", Format::Srec),
        ("broken.s28", b"garbage", Format::Srec),
        ("broken.s37", b"garbage", Format::Srec),
        ("broken.mot", b"garbage", Format::Srec),
        // Neither: raw.
        ("blob", b"\x00\x01\x02", Format::Bin),
        ("colon.dat", b":hello\n", Format::Bin),
        ("s.dat", b"S1 is not a record\n", Format::Bin),
        ("empty", b"", Format::Bin),
        // A record after a binary line is not looked for.
        ("late.dat", b"\x00\x01\n:0100000001FE\n", Format::Bin),
    ];
    for (name, bytes, format) in cases {
        let path = write(&dir, name, bytes);
        assert_eq!(Format::detect(&path).unwrap(), *format, "{name}");
    }
    // Open detects too, and a mislabelled file gets its format's error.
    let path = write(&dir, "garbled.hex", b"not hex at all\n");
    let (location, _, err) = malformed_at(Image::open(&path, None, None));
    assert_eq!(location, Location::Column { line: 1, column: 1 });
    assert_names(&err, &path, "line 1, column 1");

    let missing = dir.path().join("missing.bin");
    let err = Format::detect(&missing).unwrap_err();
    assert!(matches!(err, ImageError::Io { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&format!("{}: ", missing.display())));
}

// ----- raw binaries -----------------------------------------------------------------

#[test]
fn raw_round_trip_is_file_backed() {
    let dir = TempDir::new().unwrap();
    let data = pattern(100_003, 5);
    let path = write(&dir, "fw.bin", &data);
    let image = Image::open(&path, Some(Format::Bin), Some(0x0800_0000)).unwrap();
    assert_eq!(image.format(), Format::Bin);
    assert_eq!(image.path(), path);
    assert_eq!(image.load_address(), 0x0800_0000);
    assert_eq!(image.len(), data.len() as u64);
    assert_eq!(image.end_address(), 0x0800_0000 + data.len() as u64);
    assert!(image.gaps().is_empty());
    assert_eq!(image.segments().len(), 1);
    let segment = &image.segments()[0];
    assert_eq!((segment.address, segment.len), (0x0800_0000, data.len() as u64));
    assert_eq!(segment.source(), SegmentSource::File { offset: 0 });
    assert_eq!(flatten(&image), data);

    // Detected, with its load address.
    let image = Image::open(&path, None, Some(0)).unwrap();
    assert_eq!((image.format(), image.load_address()), (Format::Bin, 0));
}

#[test]
fn a_raw_binary_needs_a_load_address() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "fw.bin", pattern(4096, 1));
    for format in [None, Some(Format::Bin)] {
        let err = Image::open(&path, format, None).unwrap_err();
        assert!(matches!(err, ImageError::NoLoadAddress { .. }), "{err:?}");
        assert_eq!(err.path(), path);
        assert_eq!(
            err.to_string(),
            format!(
                "{}: a raw binary carries no load address: give the address of its first byte, \
                 e.g. `--address 0x08000000`; Intel HEX, S-record, ELF and UF2 images carry \
                 their own addresses and need none",
                path.display()
            )
        );
    }
    // Formats with addresses need none.
    let path = write(&dir, "fw.srec", srec_text(&[(0x0800_0000, vec![1; 4])]));
    assert_eq!(Image::open(&path, None, None).unwrap().load_address(), 0x0800_0000);
}

#[test]
fn hex_and_srec_text_is_never_read_as_raw() {
    let dir = TempDir::new().unwrap();
    let chunks = [(0x0800_0000u64, pattern(40, 1))];
    let hex = hex_text(&chunks);
    let srec = srec_text(&chunks);
    let cases: Vec<(&str, String, Format, u64)> = vec![
        ("fw.bin", hex.clone(), Format::Hex, 1),
        ("fw.dat", srec.clone(), Format::Srec, 1),
        ("commented.bin", format!("// by the build\r\n\r\n{srec}"), Format::Srec, 3),
        ("cut-off.bin", ":0400\n".to_owned(), Format::Hex, 1),
    ];
    for (name, text, format, line) in cases {
        let path = write(&dir, name, &text);
        // Explicitly raw, even with a load address: refused, naming the format.
        let err = Image::open(&path, Some(Format::Bin), Some(0x0800_0000)).unwrap_err();
        assert!(
            matches!(&err, ImageError::TextFormat { format: f, line: l, .. } if *f == format && *l == line),
            "{name}: {err:?}"
        );
        let message = err.to_string();
        let record = if format == Format::Hex { "an Intel HEX record" } else { "an S-record" };
        let expected = format!(
            "{}: line {line} is {record}: the file is {} text, not a raw binary; read it as {} \
             (`--format {}`), whose records carry the addresses",
            path.display(),
            format.description(),
            format.description(),
            format.name()
        );
        assert_eq!(message, expected, "{name}");
        // Detected: read as its format, whatever the extension.
        assert_eq!(Format::detect(&path).unwrap(), format, "{name}");
    }
    // The well-formed ones open as their format, with their addresses.
    let path = write(&dir, "hex.bin", &hex);
    assert_eq!(flatten(&Image::open(&path, None, None).unwrap()), chunks[0].1);
    let path = write(&dir, "srec.bin", &srec);
    let image = Image::open(&path, None, None).unwrap();
    assert_eq!((image.format(), image.load_address()), (Format::Srec, 0x0800_0000));
    assert_eq!(flatten(&image), chunks[0].1);
}

#[test]
fn all_text_is_refused_as_a_detected_raw_binary() {
    let dir = TempDir::new().unwrap();
    let readme =
        "# fwloader\n\nUpload with `fwupload fw.srec` — see the manual.\r\n\tIndented.\x0c\n";
    // Text longer than one read chunk (64 KiB), with a multi-byte character
    // cut by the chunk boundary.
    let mut long = "x".repeat(64 * 1024 - 1);
    long.push('é');
    long.push_str(&"y".repeat(1000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("README.md", readme.as_bytes().to_vec(), "starting \"# fwloader\""),
        ("notes.bin", b"abc".to_vec(), "starting \"abc\""),
        ("spaces", b"  \n\t \r\n".to_vec(), "only whitespace"),
        (
            "long.txt",
            long.clone().into_bytes(),
            "starting \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…\"",
        ),
    ];
    for (name, bytes, start) in &cases {
        let path = write(&dir, name, bytes);
        for address in [None, Some(0x0800_0000)] {
            let err = Image::open(&path, None, address).unwrap_err();
            assert!(matches!(err, ImageError::Text { .. }), "{name}: {err:?}");
            assert_eq!(
                err.to_string(),
                format!(
                    "{}: the file is all text ({start}), not firmware; if it really is a raw \
                     image, insist with `--format bin`",
                    path.display()
                ),
                "{name}"
            );
        }
        // Insisting works, at the given address.
        let image = Image::open(&path, Some(Format::Bin), Some(0x100)).unwrap();
        assert_eq!(flatten(&image), *bytes, "{name}");
    }

    // One byte that is not text anywhere makes it a binary: a control
    // character, invalid UTF-8, a truncated UTF-8 sequence at the end, or
    // any of those past the first chunk.
    let mut late_nul = long.clone().into_bytes();
    late_nul.push(0);
    let mut cut_utf8 = b"abc".to_vec();
    cut_utf8.extend_from_slice(&"é".as_bytes()[..1]);
    let binaries: Vec<(&str, Vec<u8>)> = vec![
        ("nul.bin", b"abc\0def".to_vec()),
        ("esc.bin", b"abc\x1b[0m".to_vec()),
        ("del.bin", b"abc\x7f".to_vec()),
        ("c1.bin", "abc\u{85}".as_bytes().to_vec()),
        ("latin1.bin", b"caf\xe9 au lait".to_vec()),
        ("cut.bin", cut_utf8),
        ("late.bin", late_nul),
        ("vectors.bin", [0x00, 0x80, 0x00, 0x20, 0xC1, 0x01, 0x00, 0x08].to_vec()),
    ];
    for (name, bytes) in binaries {
        let path = write(&dir, name, &bytes);
        let image =
            Image::open(&path, None, Some(0x0800_0000)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(image.format(), Format::Bin, "{name}");
        assert_eq!(flatten(&image), bytes, "{name}");
    }
}

#[test]
fn raw_reads_in_chunks_at_arbitrary_offsets() {
    let dir = TempDir::new().unwrap();
    let data = pattern(70_001, 9);
    let path = write(&dir, "fw.bin", &data);
    let image = Image::open(&path, None, Some(0x1000)).unwrap();
    let mut reader = image.reader().unwrap();
    for (offset, len) in [(0, 1), (1, 4095), (4096, 4096), (12_345, 30_000), (70_000, 1), (0, 0)] {
        let mut buf = vec![0u8; len];
        reader.read_at(offset as u64, &mut buf).unwrap();
        assert_eq!(buf, data[offset..offset + len], "at {offset}, {len} bytes");
    }
    // Odd-sized chunks in reverse order cover the whole image.
    let mut rebuilt = vec![0u8; data.len()];
    let chunks: Vec<(usize, usize)> =
        (0..data.len()).step_by(777).map(|at| (at, 777.min(data.len() - at))).collect();
    for &(at, len) in chunks.iter().rev() {
        reader.read_at(at as u64, &mut rebuilt[at..at + len]).unwrap();
    }
    assert_eq!(rebuilt, data);

    let err = reader.read_at(70_000, &mut [0u8; 2]).unwrap_err();
    assert!(
        matches!(err, ImageError::OutOfBounds { offset: 70_000, len: 2, image_len: 70_001, .. }),
        "{err:?}"
    );
    let err = reader.read_at(u64::MAX, &mut [0u8; 2]).unwrap_err();
    assert!(matches!(err, ImageError::OutOfBounds { .. }), "{err:?}");
}

#[test]
fn raw_empty_overflowing_or_changed() {
    let dir = TempDir::new().unwrap();
    let empty = write(&dir, "empty.bin", b"");
    let err = Image::open(&empty, None, None).unwrap_err();
    assert!(matches!(err, ImageError::Empty { format: Format::Bin, .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("{}: the raw binary image holds no data", empty.display()));

    // An empty file is empty whether or not an address was given.
    let err = Image::open(&empty, None, Some(0x1000)).unwrap_err();
    assert!(matches!(err, ImageError::Empty { format: Format::Bin, .. }), "{err:?}");

    let path = write(&dir, "fw.bin", [1u8; 16]);
    let err = Image::open(&path, None, Some(u64::MAX - 8)).unwrap_err();
    assert!(matches!(err, ImageError::AddressOverflow { len: 16, .. }), "{err:?}");

    // A file truncated after open no longer matches its segments.
    let image = Image::open(&path, None, Some(0)).unwrap();
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(8).unwrap();
    let err = image.reader().unwrap_err();
    assert!(matches!(err, ImageError::Changed { .. }), "{err:?}");
    assert_eq!(err.path(), path);

    let err = Image::open(&dir.path().join("absent.bin"), None, None).unwrap_err();
    assert!(matches!(err, ImageError::Io { .. }), "{err:?}");
    let err = Image::open(dir.path(), Some(Format::Bin), Some(0)).unwrap_err();
    assert!(matches!(err, ImageError::Io { .. }), "{err:?}");
    assert!(err.to_string().ends_with("not a regular file"), "{err}");
}

// ----- Intel HEX ---------------------------------------------------------------------

#[test]
fn hex_round_trip_with_gaps_and_64k_crossing() {
    let dir = TempDir::new().unwrap();
    let segments = vec![
        (0x0800_0000, pattern(300, 1)),
        (0x0800_1000, pattern(20, 2)),
        // Crosses a 64 KiB boundary, so an extended linear address record
        // falls in the middle of it.
        (0x0801_FFF0, pattern(40, 3)),
    ];
    let path = write(&dir, "fw.hex", hex_text(&segments));
    let image = Image::open(&path, None, None).unwrap();
    assert_eq!(image.format(), Format::Hex);
    let (low, bytes) = expected(&segments);
    assert_eq!(image.load_address(), low);
    assert_eq!(image.len(), bytes.len() as u64);
    assert_eq!(image.data_len(), 360);
    let got: Vec<(u64, u64)> = image.segments().iter().map(|s| (s.address, s.len)).collect();
    assert_eq!(got, [(0x0800_0000, 300), (0x0800_1000, 20), (0x0801_FFF0, 40)]);
    assert!(
        matches!(image.segments()[0].source(), SegmentSource::Memory(b) if b == &segments[0].1[..])
    );
    assert_eq!(
        image.gaps(),
        [
            Gap { address: 0x0800_012C, len: 0x1000 - 300 },
            Gap { address: 0x0800_1014, len: 0x0801_FFF0 - 0x0800_1014 }
        ]
    );
    assert_eq!(flatten(&image), bytes);

    // A read spanning segment, gap and segment.
    let mut buf = [0u8; 8];
    image.reader().unwrap().read_at(296, &mut buf).unwrap();
    assert_eq!(buf[..4], segments[0].1[296..]);
    assert_eq!(buf[4..], [GAP_FILL; 4]);
}

#[test]
fn hex_segment_addresses_start_records_and_whitespace() {
    let dir = TempDir::new().unwrap();
    let text = [
        line(&[0x02, 0x00, 0x00, 0x02, 0x12, 0x34]), // segment 0x1234 -> base 0x12340
        line(&[0x03, 0x00, 0x10, 0x00, 0xAA, 0xBB, 0xCC]),
        line(&[0x04, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00]), // start segment: ignored
        String::new(),                                           // blank line
        format!("  {}\t", line(&[0x04, 0x00, 0x00, 0x05, 0x08, 0x00, 0x01, 0x01])), // start linear
        EOF.to_lowercase(),
        String::new(),
    ]
    .join("\r\n");
    let path = write(&dir, "seg.hex", text);
    let image = Image::open(&path, None, None).unwrap();
    assert_eq!(image.load_address(), 0x12340 + 0x10);
    assert_eq!(flatten(&image), [0xAA, 0xBB, 0xCC]);
}

#[test]
fn hex_malformed_records_name_file_and_line() {
    let dir = TempDir::new().unwrap();
    let good = line(&[0x02, 0x00, 0x00, 0x00, 0x11, 0x22]);
    let mut bad_sum = line(&[0x02, 0x00, 0x02, 0x00, 0x33, 0x44]);
    let correct = bad_sum.split_off(bad_sum.len() - 2);
    bad_sum.push_str(if correct == "00" { "01" } else { "00" });
    let cases: Vec<(&str, String, Location, &str)> = vec![
        ("checksum", format!("{good}\n{bad_sum}\n{EOF}\n"), Location::Line(2), "checksum is 0x"),
        (
            "digit",
            format!("{good}\n:0200G000334487\n{EOF}\n"),
            Location::Column { line: 2, column: 6 },
            "'G' is not a hex digit",
        ),
        (
            "nonascii",
            format!("{good}\n:02\u{e9}\n{EOF}\n"),
            Location::Column { line: 2, column: 4 },
            "byte 0xC3 is not a hex digit",
        ),
        ("truncated", format!("{good}\n:0400000011\n{EOF}\n"), Location::Line(2), "truncated"),
        ("short", format!("{good}\n:0400\n{EOF}\n"), Location::Line(2), "truncated"),
        ("odd", format!("{good}\n:04000\n{EOF}\n"), Location::Line(2), "odd number"),
        ("missing-eof", format!("{good}\n"), Location::EndOfFile, "no end-of-file record"),
        ("empty", String::new(), Location::EndOfFile, "no end-of-file record"),
        (
            "after-eof",
            format!("{good}\n{EOF}\n\n{good}\n"),
            Location::Line(4),
            "data after the end-of-file record on line 2",
        ),
        (
            "no-colon",
            format!("{good}\n  x{good}\n"),
            Location::Column { line: 2, column: 3 },
            "expected ':'",
        ),
        (
            "type",
            format!("{}\n{EOF}\n", line(&[0x00, 0x00, 0x00, 0x07])),
            Location::Line(1),
            "record type 0x07",
        ),
        (
            "eof-length",
            format!("{}\n", line(&[0x01, 0x00, 0x00, 0x01, 0x00])),
            Location::Line(1),
            "a type 01 record holds 0 data bytes",
        ),
        ("long", format!(":{}\n", "0".repeat(2000)), Location::Line(1), "longer than"),
    ];
    for (name, text, location, what) in cases {
        let path = write(&dir, &format!("{name}.hex"), text);
        let (got, message, err) = malformed_at(Image::open(&path, Some(Format::Hex), None));
        assert_eq!(got, location, "{name}: {err}");
        assert!(message.contains(what), "{name}: `{message}` lacks `{what}`");
        assert_names(&err, &path, &location.to_string());
    }

    // The checksum message in full: the stated byte, then the right one.
    let path = write(&dir, "sum.hex", ":0100000041BF\n:00000001FF\n");
    let err = Image::open(&path, None, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: line 1: checksum is 0xBF, but the record's bytes need 0xBE", path.display())
    );

    // Only an EOF record: valid, but empty.
    let path = write(&dir, "eof-only.hex", format!("{EOF}\n"));
    let err = Image::open(&path, None, None).unwrap_err();
    assert!(matches!(err, ImageError::Empty { format: Format::Hex, .. }), "{err:?}");
}

#[test]
fn hex_overlaps_name_both_lines_and_identical_rewrites_pass() {
    let dir = TempDir::new().unwrap();
    let text = [
        line(&[0x04, 0x10, 0x00, 0x00, 1, 2, 3, 4]),
        line(&[0x02, 0x20, 0x00, 0x00, 9, 9]),
        line(&[0x04, 0x0F, 0xFE, 0x00, 0, 0, 1, 2]), // rewrites 0x1000..0x1002 identically
        line(&[0x02, 0x10, 0x02, 0x00, 3, 5]),       // 0x1003 differs
        EOF.to_owned(),
    ]
    .join("\n");
    let path = write(&dir, "overlap.hex", text);
    let err = Image::open(&path, None, None).unwrap_err();
    let ImageError::Overlap { first, second, differing_at, .. } = &err else {
        panic!("expected Overlap, got {err:?}");
    };
    assert_eq!(first.origin, Location::Line(1));
    assert_eq!(first.range, 0x1000..0x1004);
    assert_eq!(second.origin, Location::Line(4));
    assert_eq!(second.range, 0x1002..0x1004);
    assert_eq!(*differing_at, Some(0x1003));
    assert_eq!(
        err.to_string(),
        format!(
            "{}: line 4 (0x1002..0x1004) overlaps line 1 (0x1000..0x1004) with different bytes \
             (first at 0x1003)",
            path.display()
        )
    );

    let text = [
        line(&[0x04, 0x10, 0x00, 0x00, 1, 2, 3, 4]),
        line(&[0x04, 0x0F, 0xFE, 0x00, 0, 0, 1, 2]),
        line(&[0x02, 0x10, 0x02, 0x00, 3, 4]),
        EOF.to_owned(),
    ]
    .join("\n");
    let path = write(&dir, "rewrite.hex", text);
    let image = Image::open(&path, None, None).unwrap();
    assert_eq!(image.load_address(), 0x0FFE);
    assert_eq!(flatten(&image), [0, 0, 1, 2, 3, 4]);
    assert_eq!(image.segments().len(), 1);
}

#[test]
fn gap_limit_and_load_address_rules() {
    let dir = TempDir::new().unwrap();
    let far = 0x10 + DEFAULT_MAX_GAP + 1;
    let segments = vec![(0, vec![1; 16]), (far, vec![2; 16])];
    let path = write(&dir, "far.hex", hex_text(&segments));
    let err = Image::open(&path, None, None).unwrap_err();
    assert!(
        matches!(err, ImageError::GapTooLarge { address: 0x10, len, limit, .. }
            if len == DEFAULT_MAX_GAP + 1 && limit == DEFAULT_MAX_GAP),
        "{err:?}"
    );
    assert!(err.to_string().starts_with(&format!("{}: gap of ", path.display())));
    let image = OpenOptions::new().max_gap(DEFAULT_MAX_GAP + 1).open(&path).unwrap();
    assert_eq!(image.gaps(), [Gap { address: 0x10, len: DEFAULT_MAX_GAP + 1 }]);
    let mut tail = [0u8; 20];
    image.reader().unwrap().read_at(image.len() - 20, &mut tail).unwrap();
    assert_eq!(tail[..4], [GAP_FILL; 4]);
    assert_eq!(tail[4..], [2; 16]);

    // Addressed formats: a load address must match, or it is an error.
    let path = write(&dir, "at.hex", hex_text(&[(0x0800_0000, vec![1; 4])]));
    assert!(Image::open(&path, None, Some(0x0800_0000)).is_ok());
    let err = Image::open(&path, None, Some(0)).unwrap_err();
    assert!(
        matches!(err, ImageError::LoadAddressMismatch { given: 0, lowest: 0x0800_0000, .. }),
        "{err:?}"
    );
    let err = OpenOptions::new().uf2_family(FAMILY).open(&path).unwrap_err();
    assert!(matches!(err, ImageError::UnsupportedOption { option: "uf2_family", .. }), "{err:?}");
}

// ----- Motorola S-record ------------------------------------------------------------

/// The example from the format's Wikipedia article, written by hand there
/// (not by this project's writer): a header, three S1 records, a count and S9.
const WIKIPEDIA: [&str; 6] = [
    "S00F000068656C6C6F202020202000003C",
    "S11F00007C0802A6900100049421FFF07C6C1B787C8C23783C6000003863000026",
    "S11F001C4BFFFFE5398000007D83637880010014382100107C0803A64E800020E9",
    "S111003848656C6C6F20776F726C642E0A0042",
    "S5030003F9",
    "S9030000FC",
];

#[test]
fn srec_reads_a_file_written_by_hand_with_crlf_case_and_blank_lines() {
    let dir = TempDir::new().unwrap();
    let plain = WIKIPEDIA.join("\n");
    let mut untidy = WIKIPEDIA.map(str::to_owned);
    untidy[1] = untidy[1].to_lowercase().replacen('s', "S", 1);
    untidy[2] = format!("  {}\t", untidy[2]);
    let untidy = format!("{}\r\n\r\n", untidy.join("\r\n\r\n"));
    for (name, text) in [("hello.s19", plain), ("untidy.mot", untidy)] {
        let path = write(&dir, name, text);
        let image = Image::open(&path, None, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(image.format(), Format::Srec);
        assert_eq!((image.load_address(), image.len()), (0, 70), "{name}");
        assert_eq!(image.segments().len(), 1, "{name}");
        let bytes = flatten(&image);
        assert_eq!(bytes[..4], [0x7C, 0x08, 0x02, 0xA6], "{name}");
        assert_eq!(&bytes[56..], b"Hello world.\n\0", "{name}");
    }
}

#[test]
fn srec_round_trip_in_each_address_width() {
    let dir = TempDir::new().unwrap();
    let cases = [
        (1u8, "fw.s19", vec![(0x0100u64, pattern(300, 1)), (0x2000, pattern(20, 2))]),
        (2, "fw.s28", vec![(0x01_0000, pattern(100, 3)), (0xFF_FF00, pattern(0x100, 4))]),
        (
            3,
            "fw.s37",
            vec![
                (0x0800_0000, pattern(300, 5)),
                (0x0800_1000, pattern(20, 6)),
                (0xFFFF_FF00, pattern(0x100, 7)),
            ],
        ),
    ];
    for (kind, name, segments) in cases {
        let text = srec_text_with(&segments, kind);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with(&format!("S{kind}")), "{name}: {}", lines[1]);
        assert!(lines.last().unwrap().starts_with(&format!("S{}", 10 - kind)), "{name}");
        let path = write(&dir, name, &text);
        let image = OpenOptions::new().max_gap(u64::MAX).open(&path).unwrap();
        assert_eq!(image.format(), Format::Srec, "{name}");
        let (low, bytes) = expected(&segments);
        assert_eq!(image.load_address(), low, "{name}");
        let got: Vec<(u64, u64)> = image.segments().iter().map(|s| (s.address, s.len)).collect();
        let want: Vec<(u64, u64)> = segments.iter().map(|(a, d)| (*a, d.len() as u64)).collect();
        assert_eq!(got, want, "{name}");
        assert!(matches!(image.segments()[0].source(), SegmentSource::Memory(_)), "{name}");
        if bytes.len() < 1 << 20 {
            assert_eq!(flatten(&image), bytes, "{name}");
        } else {
            let last = &segments.last().unwrap().1;
            let mut tail = vec![0u8; last.len()];
            image.reader().unwrap().read_at(image.len() - last.len() as u64, &mut tail).unwrap();
            assert_eq!(&tail, last, "{name}");
        }
    }
}

#[test]
fn srec_header_counts_and_termination_records() {
    let dir = TempDir::new().unwrap();
    let data = |kind: u8, address: &[u8], bytes: &[u8]| {
        let mut fields = address.to_vec();
        fields.extend_from_slice(bytes);
        srec_line(kind, &fields)
    };
    // A header with any content, an S6 count, S9 after S3 records (the
    // termination type need not match), an S1 record running past 0xFFFF
    // (continues linearly), and a record count after each record.
    let text = [
        srec_line(0, b"\x12\x34anything at all"),
        data(3, &[0, 0x10, 0, 0], &[1, 2]),
        srec_line(5, &[0, 1]),
        data(1, &[0xFF, 0xFE], &[3, 4, 5, 6]),
        srec_line(6, &[0, 0, 2]),
        data(2, &[0x10, 0, 0x02], &[7]),
        srec_line(9, &[0, 0]),
    ]
    .join("\n");
    let path = write(&dir, "mixed.srec", text);
    let image = OpenOptions::new().max_gap(u64::MAX).open(&path).unwrap();
    let got: Vec<(u64, u64)> = image.segments().iter().map(|s| (s.address, s.len)).collect();
    assert_eq!(got, [(0xFFFE, 4), (0x10_0000, 3)]);
    let mut tail = [0u8; 3];
    image.reader().unwrap().read_at(image.len() - 3, &mut tail).unwrap();
    assert_eq!(tail, [1, 2, 7]);

    for (kind, address) in [(7u8, vec![0x08, 0, 0, 0x01]), (8, vec![0, 0, 0x01])] {
        let text = format!("{}\n{}\n", data(1, &[0, 0x10], &[9, 8]), srec_line(kind, &address));
        let path = write(&dir, &format!("end{kind}.srec"), text);
        let image = Image::open(&path, None, None).unwrap_or_else(|e| panic!("S{kind}: {e}"));
        assert_eq!((image.load_address(), flatten(&image)), (0x10, vec![9, 8]), "S{kind}");
    }

    // A header and a termination record: valid, but empty.
    let path = write(&dir, "empty.srec", format!("{}\n{}\n", WIKIPEDIA[0], WIKIPEDIA[5]));
    let err = Image::open(&path, None, None).unwrap_err();
    assert!(matches!(err, ImageError::Empty { format: Format::Srec, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: the Motorola S-record image holds no data", path.display())
    );
}

#[test]
fn srec_malformed_records_name_file_and_line() {
    let dir = TempDir::new().unwrap();
    let good = srec_line(1, &[0x00, 0x10, 0xAA, 0xBB]);
    let end = "S9030000FC";
    let with_sum = |line: &str, sum: &str| format!("{}{sum}", &line[..line.len() - 2]);
    let bad_sum = with_sum(&good, if good.ends_with("00") { "01" } else { "00" });
    let bad_header = with_sum(WIKIPEDIA[0], "3D");
    let cases: Vec<(&str, String, Location, &str)> = vec![
        ("checksum", format!("{good}\n{bad_sum}\n{end}\n"), Location::Line(2), "checksum is 0x"),
        (
            "header-checksum",
            format!("{bad_header}\n{good}\n{end}\n"),
            Location::Line(1),
            "checksum is 0x3D, but the record's bytes need 0x3C",
        ),
        (
            "digit",
            format!("{good}\nS1050010G0AA00\n{end}\n"),
            Location::Column { line: 2, column: 9 },
            "'G' is not a hex digit",
        ),
        (
            "nonascii",
            format!("{good}\nS105\u{e9}\n{end}\n"),
            Location::Column { line: 2, column: 5 },
            "byte 0xC3 is not a hex digit",
        ),
        (
            "type",
            format!("{good}\nSX030000FC\n{end}\n"),
            Location::Column { line: 2, column: 2 },
            "'X' is not an S-record type (S0 to S9)",
        ),
        (
            "reserved",
            format!("{good}\n{}\n{end}\n", srec_line(4, &[0, 0])),
            Location::Line(2),
            "S4 is a reserved record type",
        ),
        (
            "no-s",
            format!("{good}\n  x{good}\n{end}\n"),
            Location::Column { line: 2, column: 3 },
            "expected 'S' to start a record, found 'x'",
        ),
        ("lone-s", format!("{good}\nS\n{end}\n"), Location::Line(2), "'S' without a type digit"),
        (
            "odd",
            format!("{good}\nS10500100\n{end}\n"),
            Location::Line(2),
            "odd number of hex digits (7) after 'S1'",
        ),
        (
            "short",
            format!("{good}\nS1030010\n{end}\n"),
            Location::Line(2),
            "record is truncated: 6 hex digits after 'S1', while byte count, a 2-byte address and checksum alone take 8",
        ),
        (
            "short-s3",
            format!("{good}\nS30408000000\n{end}\n"),
            Location::Line(2),
            "10 hex digits after 'S3', while byte count, a 4-byte address and checksum alone take 12",
        ),
        (
            "count-high",
            format!("{good}\nS1060010AABB00\n{end}\n"),
            Location::Line(2),
            "record is truncated: its byte count is 0x06 (6), but 5 bytes follow it (address, data and checksum)",
        ),
        (
            "count-low",
            format!("{good}\nS1040010AABB00\n{end}\n"),
            Location::Line(2),
            "record is too long: its byte count is 0x04 (4), but 5 bytes follow it",
        ),
        (
            "count-record",
            format!("{good}\n{good}\n{}\n{end}\n", srec_line(5, &[0, 3])),
            Location::Line(3),
            "S5 record count is 3, but 2 data records (S1 to S3) precede it",
        ),
        (
            "count-record-s6",
            format!("{good}\n{}\n{end}\n", srec_line(6, &[0, 0, 0])),
            Location::Line(2),
            "S6 record count is 0, but 1 data records (S1 to S3) precede it",
        ),
        (
            "count-with-data",
            format!("{good}\n{}\n{end}\n", srec_line(5, &[0, 1, 0xEE])),
            Location::Line(2),
            "an S5 (record count) record holds no data bytes, this one 1",
        ),
        (
            "end-with-data",
            format!("{good}\n{}\n", srec_line(9, &[0, 0, 1, 2])),
            Location::Line(2),
            "an S9 (termination) record holds no data bytes, this one 2",
        ),
        (
            "after-end",
            format!("{good}\n{}\n\n{good}\n", srec_line(7, &[0, 0, 0, 0])),
            Location::Line(4),
            "record after the S7 termination record on line 2",
        ),
        (
            "header-after-end",
            format!("{good}\n{end}\n{}\n", WIKIPEDIA[0]),
            Location::Line(3),
            "record after the S9 termination record on line 2",
        ),
        (
            "missing-end",
            format!("{}\n{good}\n", WIKIPEDIA[0]),
            Location::EndOfFile,
            "no termination record (S7, S8 or S9) after line 2; the file is truncated",
        ),
        ("empty", String::new(), Location::EndOfFile, "no termination record"),
        (
            "long",
            format!("S1{}\n", "0".repeat(2000)),
            Location::Line(1),
            "longer than 1024 characters",
        ),
    ];
    for (name, text, location, what) in cases {
        let path = write(&dir, &format!("{name}.srec"), text);
        let (got, message, err) = malformed_at(Image::open(&path, Some(Format::Srec), None));
        assert_eq!(got, location, "{name}: {err}");
        assert!(message.contains(what), "{name}: `{message}` lacks `{what}`");
        assert_names(&err, &path, &location.to_string());
    }

    // The checksum message in full: the stated byte, then the right one.
    let path = write(&dir, "sum.srec", format!("S1050010AABB00\n{end}\n"));
    let err = Image::open(&path, None, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: line 1: checksum is 0x00, but the record's bytes need 0x85", path.display())
    );
}

#[test]
fn srec_overlaps_name_both_lines_and_identical_rewrites_pass() {
    let dir = TempDir::new().unwrap();
    let end = "S9030000FC";
    let text = [
        srec_line(1, &[0x10, 0x00, 1, 2, 3, 4]),
        srec_line(1, &[0x20, 0x00, 9, 9]),
        srec_line(1, &[0x0F, 0xFE, 0, 0, 1, 2]), // rewrites 0x1000..0x1002 identically
        srec_line(1, &[0x10, 0x02, 3, 5]),       // 0x1003 differs
        end.to_owned(),
    ]
    .join("\n");
    let path = write(&dir, "overlap.srec", text);
    let err = Image::open(&path, None, None).unwrap_err();
    let ImageError::Overlap { first, second, differing_at, .. } = &err else {
        panic!("expected Overlap, got {err:?}");
    };
    assert_eq!((first.origin, first.range.clone()), (Location::Line(1), 0x1000..0x1004));
    assert_eq!((second.origin, second.range.clone()), (Location::Line(4), 0x1002..0x1004));
    assert_eq!(*differing_at, Some(0x1003));
    assert_eq!(
        err.to_string(),
        format!(
            "{}: line 4 (0x1002..0x1004) overlaps line 1 (0x1000..0x1004) with different bytes \
             (first at 0x1003)",
            path.display()
        )
    );

    let text = [
        srec_line(1, &[0x10, 0x00, 1, 2, 3, 4]),
        srec_line(1, &[0x0F, 0xFE, 0, 0, 1, 2]),
        srec_line(1, &[0x10, 0x02, 3, 4]),
        end.to_owned(),
    ]
    .join("\n");
    let path = write(&dir, "rewrite.srec", text);
    let image = Image::open(&path, None, None).unwrap();
    assert_eq!(image.load_address(), 0x0FFE);
    assert_eq!(flatten(&image), [0, 0, 1, 2, 3, 4]);
    assert_eq!(image.segments().len(), 1);

    // The gap limit applies as to every format.
    let path = write(
        &dir,
        "far.srec",
        srec_text(&[(0, vec![1; 16]), (0x10 + DEFAULT_MAX_GAP + 1, vec![2; 16])]),
    );
    let err = Image::open(&path, None, None).unwrap_err();
    assert!(matches!(err, ImageError::GapTooLarge { address: 0x10, .. }), "{err:?}");
    // A load address must match, as for every addressed format.
    let path = write(&dir, "at.srec", srec_text(&[(0x0800_0000, vec![1; 4])]));
    assert!(Image::open(&path, None, Some(0x0800_0000)).is_ok());
    let err = Image::open(&path, None, Some(0)).unwrap_err();
    assert!(
        matches!(err, ImageError::LoadAddressMismatch { given: 0, lowest: 0x0800_0000, .. }),
        "{err:?}"
    );
}

// ----- ELF ---------------------------------------------------------------------------

#[test]
fn elf_round_trip_uses_physical_addresses_and_skips_bss() {
    let dir = TempDir::new().unwrap();
    for (is64, big_endian) in [(false, false), (true, false), (false, true), (true, true)] {
        let text = pattern(1000, 1);
        let data = pattern(64, 2);
        let phdrs = [
            Phdr { kind: PT_NOTE, vaddr: 0, paddr: 0, data: vec![0xEE; 12], bss: 0 },
            Phdr::load(0x0800_0000, text.clone()),
            // .data: runs from RAM, stored in flash right after .text.
            Phdr {
                kind: PT_LOAD,
                vaddr: 0x2000_0000,
                paddr: 0x0800_0400,
                data: data.clone(),
                bss: 0,
            },
            // .bss: memory only, nothing to upload.
            Phdr {
                kind: PT_LOAD,
                vaddr: 0x2000_0040,
                paddr: 0x0800_0440,
                data: vec![],
                bss: 0x400,
            },
            // A segment with a .bss tail: only its file bytes are uploaded.
            Phdr {
                kind: PT_LOAD,
                vaddr: 0x0800_1000,
                paddr: 0x0800_1000,
                data: vec![7; 32],
                bss: 32,
            },
        ];
        let (bytes, offsets) = elf(is64, big_endian, &phdrs);
        let path = write(&dir, "fw.elf", &bytes);
        let image = Image::open(&path, None, None).unwrap();
        assert_eq!(image.format(), Format::Elf);
        let got: Vec<_> = image.segments().iter().map(|s| (s.address, s.len, s.source())).collect();
        assert_eq!(
            got,
            [
                (0x0800_0000, 1000, SegmentSource::File { offset: offsets[1] }),
                (0x0800_0400, 64, SegmentSource::File { offset: offsets[2] }),
                (0x0800_1000, 32, SegmentSource::File { offset: offsets[4] }),
            ],
            "is64 {is64}, big endian {big_endian}"
        );
        let (_, flat) = expected(&[
            (0x0800_0000, text.clone()),
            (0x0800_0400, data),
            (0x0800_1000, vec![7; 32]),
        ]);
        assert_eq!(flatten(&image), flat);
        assert_eq!(image.gaps().len(), 2);
    }
}

#[test]
fn elf_merges_segments_contiguous_in_memory_and_file() {
    let dir = TempDir::new().unwrap();
    // 16-byte segments are laid out back to back in the file by `elf`.
    let (bytes, _) =
        elf(false, false, &[Phdr::load(0x100, vec![1; 16]), Phdr::load(0x110, vec![2; 16])]);
    let path = write(&dir, "merge.elf", &bytes);
    let image = Image::open(&path, None, None).unwrap();
    assert_eq!(image.segments().len(), 1);
    assert_eq!(flatten(&image), [[1u8; 16], [2; 16]].concat());
}

#[test]
fn elf_malformed_files_name_file_and_place() {
    let dir = TempDir::new().unwrap();
    let (good, offsets) =
        elf(false, false, &[Phdr::load(0x100, vec![1; 64]), Phdr::load(0x200, vec![2; 64])]);

    // Truncated in the file header.
    let path = write(&dir, "header.elf", &good[..30]);
    let (location, what, err) = malformed_at(Image::open(&path, None, None));
    assert_eq!(location, Location::ElfHeader);
    assert!(
        what.contains("truncated ELF header: the file is 30 bytes, the header takes 52"),
        "{what}"
    );
    assert_names(&err, &path, "ELF header");

    // Truncated in the program header table.
    let path = write(&dir, "phdrs.elf", &good[..60]);
    let (location, what, _) = malformed_at(Image::open(&path, None, None));
    assert_eq!(location, Location::ElfHeader);
    assert!(what.contains("program header table"), "{what}");

    // Truncated in the second segment's data.
    let path = write(&dir, "data.elf", &good[..offsets[1] as usize + 10]);
    let (location, what, err) = malformed_at(Image::open(&path, None, None));
    assert_eq!(location, Location::ProgramHeader(1));
    assert!(what.contains("extends past the end of the file"), "{what}");
    assert_names(&err, &path, "program header 1");

    // Not ELF, forced.
    let path = write(&dir, "not.elf", b"MZ\x90\x00 not an elf");
    let (location, what, _) = malformed_at(Image::open(&path, Some(Format::Elf), None));
    assert_eq!(location, Location::ByteOffset(0));
    assert!(what.contains("not an ELF file"), "{what}");

    // Bad class and encoding.
    let mut bad = good.clone();
    bad[4] = 3;
    let path = write(&dir, "class.elf", &bad);
    assert_eq!(malformed_at(Image::open(&path, None, None)).0, Location::ByteOffset(4));
    let mut bad = good.clone();
    bad[5] = 0;
    let path = write(&dir, "data-enc.elf", &bad);
    assert_eq!(malformed_at(Image::open(&path, None, None)).0, Location::ByteOffset(5));

    // Wrong program header entry size.
    let mut bad = good.clone();
    bad[42] = 33;
    let path = write(&dir, "phentsize.elf", &bad);
    let (location, what, _) = malformed_at(Image::open(&path, None, None));
    assert_eq!(location, Location::ElfHeader);
    assert!(what.contains("program headers"), "{what}");

    // A relocatable object has no load addresses.
    let mut rel = good.clone();
    rel[16] = 1;
    let path = write(&dir, "obj.o", &rel);
    let err = Image::open(&path, None, None).unwrap_err();
    assert!(
        matches!(err, ImageError::Unsupported { location: Location::ElfHeader, .. }),
        "{err:?}"
    );

    // No loadable data.
    let (only_bss, _) =
        elf(true, false, &[Phdr { kind: PT_LOAD, vaddr: 0, paddr: 0, data: vec![], bss: 16 }]);
    let path = write(&dir, "bss.elf", &only_bss);
    let err = Image::open(&path, None, None).unwrap_err();
    assert!(matches!(err, ImageError::Empty { format: Format::Elf, .. }), "{err:?}");
}

#[test]
fn elf_overlapping_segments_are_refused() {
    let dir = TempDir::new().unwrap();
    let (bytes, _) = elf(
        false,
        false,
        &[
            Phdr::load(0x1000, vec![1; 32]),
            Phdr::load(0x2000, vec![3; 8]),
            Phdr::load(0x1010, vec![1; 32]),
        ],
    );
    let path = write(&dir, "overlap.elf", &bytes);
    let err = Image::open(&path, None, None).unwrap_err();
    let ImageError::Overlap { first, second, differing_at, .. } = &err else {
        panic!("expected Overlap, got {err:?}");
    };
    assert_eq!((first.origin, first.range.clone()), (Location::ProgramHeader(0), 0x1000..0x1020));
    assert_eq!((second.origin, second.range.clone()), (Location::ProgramHeader(2), 0x1010..0x1030));
    assert_eq!(*differing_at, None);
    assert_eq!(
        err.to_string(),
        format!(
            "{}: program header 2 (0x1010..0x1030) overlaps program header 0 (0x1000..0x1020)",
            path.display()
        )
    );
}

// ----- UF2 ---------------------------------------------------------------------------

#[test]
fn uf2_round_trip_with_gap_family_and_skipped_blocks() {
    let dir = TempDir::new().unwrap();
    let segments = vec![(0x1000_0000, pattern(600, 1)), (0x1000_1000, pattern(256, 2))];
    let mut blocks = uf2_blocks(&segments);
    // A not-main-flash block (e.g. for a second processor), numbered in sequence.
    let mut other = Block::new(0x1000_0000, vec![0xAB; 256], 0, 0);
    other.flags |= 0x1;
    blocks.insert(1, other);
    let count = blocks.len() as u32;
    for (i, b) in blocks.iter_mut().enumerate() {
        (b.number, b.count) = (i as u32, count);
    }
    let path = write(&dir, "fw.uf2", uf2(&blocks));
    let image = Image::open(&path, None, None).unwrap();
    assert_eq!(image.format(), Format::Uf2);
    assert_eq!(image.family_id(), Some(FAMILY));
    let got: Vec<(u64, u64)> = image.segments().iter().map(|s| (s.address, s.len)).collect();
    assert_eq!(got, [(0x1000_0000, 600), (0x1000_1000, 256)]);
    assert_eq!(flatten(&image), expected(&segments).1);

    // Blocks without a family ID, and a concatenation of two complete runs.
    let mut first = uf2_blocks(&[(0x0, vec![1; 10])]);
    first[0].flags = 0;
    let second = uf2_blocks(&[(0x100, vec![2; 300])]);
    let path = write(&dir, "concat.uf2", [uf2(&first), uf2(&second)].concat());
    let image = Image::open(&path, None, None).unwrap();
    assert_eq!(image.family_id(), Some(FAMILY));
    assert_eq!(image.len(), 0x100 + 300);
}

#[test]
fn uf2_families_are_selected_or_refused_when_mixed() {
    let dir = TempDir::new().unwrap();
    let mut blocks = uf2_blocks(&[(0x0, vec![1; 256]), (0x0, vec![2; 256])]);
    blocks[1].family = 0x1234_5678;
    let path = write(&dir, "mixed.uf2", uf2(&blocks));
    let (location, what, _) = malformed_at(Image::open(&path, None, None));
    assert_eq!(location, Location::Block { index: 1, offset: 512 });
    assert!(what.contains("family ID 0x12345678 differs from 0xe48bff56 in block 0"), "{what}");

    let image = OpenOptions::new().uf2_family(0x1234_5678).open(&path).unwrap();
    assert_eq!(image.family_id(), Some(0x1234_5678));
    assert_eq!(flatten(&image), [2; 256]);

    let err = OpenOptions::new().uf2_family(7).open(&path).unwrap_err();
    assert!(
        matches!(&err, ImageError::NoSuchFamily { family: 7, present, .. }
        if present == &[FAMILY, 0x1234_5678]),
        "{err:?}"
    );
    assert!(err.to_string().contains("0xe48bff56, 0x12345678"), "{err}");
}

#[test]
fn uf2_malformed_blocks_name_file_and_block() {
    let dir = TempDir::new().unwrap();
    let good = uf2_blocks(&[(0x2000, pattern(1024, 4))]); // 4 blocks
    let block = |i: u64| Location::Block { index: i, offset: i * 512 };
    let with = |f: &dyn Fn(&mut Vec<Block>)| {
        let mut blocks = good.clone();
        f(&mut blocks);
        uf2(&blocks)
    };
    let mut bad_magic = uf2(&good);
    bad_magic[512 + 4] ^= 0xFF;
    let mut bad_end = uf2(&good);
    bad_end[2 * 512 + 510] ^= 0xFF;
    let cases: Vec<(&str, Vec<u8>, Location, &str)> = vec![
        ("magic", bad_magic, block(1), "bad start magic"),
        ("end", bad_end, block(2), "bad end magic"),
        ("short", uf2(&good)[..3 * 512 - 100].to_vec(), block(2), "truncated block: 412 of 512"),
        (
            "payload",
            with(&|b| b[3].payload = vec![0; 477]),
            block(3),
            "payload size is 477, more than the 476",
        ),
        ("order", with(&|b| b.swap(1, 2)), block(1), "block number is 2, expected 1"),
        ("count", with(&|b| b[2].count = 5), block(2), "numBlocks is 5, but block 0 said 4"),
        ("range", with(&|b| b[0].number = 4), block(0), "block number 4 is not below numBlocks"),
        ("zero", with(&|b| b[0].count = 0), block(0), "numBlocks is 0"),
        ("missing", uf2(&good[..3]), Location::EndOfFile, "ends after block number 2"),
        ("restart", with(&|b| b[0].number = 1), block(0), "expected 0 to start"),
    ];
    for (name, bytes, location, what) in cases {
        let path = write(&dir, &format!("{name}.uf2"), bytes);
        let (got, message, err) = malformed_at(Image::open(&path, Some(Format::Uf2), None));
        assert_eq!(got, location, "{name}: {err}");
        assert!(message.contains(what), "{name}: `{message}` lacks `{what}`");
        assert_names(&err, &path, &location.to_string());
    }

    // File containers are a different use of UF2.
    let path = write(&dir, "container.uf2", with(&|b| b[0].flags = 0x1000));
    let err = Image::open(&path, None, None).unwrap_err();
    assert!(matches!(err, ImageError::Unsupported { .. }), "{err:?}");
    assert_names(&err, &path, "block 0 (byte offset 0x0)");
}

#[test]
fn uf2_overlaps_name_both_blocks() {
    let dir = TempDir::new().unwrap();
    let mut blocks =
        uf2_blocks(&[(0x0, vec![1; 256]), (0x400, vec![2; 256]), (0x80, vec![1; 256])]);
    let path = write(&dir, "same.uf2", uf2(&blocks));
    // Identical bytes where blocks 0 and 2 overlap: accepted.
    assert_eq!(Image::open(&path, None, None).unwrap().segments().len(), 2);

    blocks[2].payload[0x100 - 0x80 - 1] = 9; // last byte of block 0's range
    let path = write(&dir, "overlap.uf2", uf2(&blocks));
    let err = Image::open(&path, None, None).unwrap_err();
    let ImageError::Overlap { first, second, differing_at, .. } = &err else {
        panic!("expected Overlap, got {err:?}");
    };
    assert_eq!(first.origin, Location::Block { index: 0, offset: 0 });
    assert_eq!(second.origin, Location::Block { index: 2, offset: 1024 });
    assert_eq!(*differing_at, Some(0xFF));
}

// ----- properties ----------------------------------------------------------------------

/// Non-overlapping segments: (gap before, bytes), starting at `base`.
fn segment_set() -> impl Strategy<Value = Vec<(u64, Vec<u8>)>> {
    (
        0u64..0xFFF0_0000,
        prop::collection::vec((0u64..600, prop::collection::vec(any::<u8>(), 1..300)), 1..12),
    )
        .prop_map(|(base, parts)| {
            let mut address = base;
            parts
                .into_iter()
                .map(|(gap, data)| {
                    address += gap;
                    let segment = (address, data);
                    address += segment.1.len() as u64;
                    segment
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random segments written as HEX records in random order read back as
    /// the same flattened bytes, gaps and merged segments.
    #[test]
    fn hex_random_segments_read_back(
        (segments, order) in segment_set().prop_flat_map(|s| {
            let n = s.len();
            (Just(s), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        }),
    ) {
        let dir = TempDir::new().unwrap();
        let shuffled: Vec<_> = order.iter().map(|&i| segments[i].clone()).collect();
        let path = write(&dir, "p.hex", hex_text(&shuffled));
        let image = Image::open(&path, None, None).unwrap();
        let (low, bytes) = expected(&segments);
        prop_assert_eq!(image.load_address(), low);
        prop_assert_eq!(flatten(&image), bytes);
        // Segments are the input with touching neighbours merged.
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (address, data) in &segments {
            match merged.last_mut() {
                Some((a, len)) if *a + *len == *address => *len += data.len() as u64,
                _ => merged.push((*address, data.len() as u64)),
            }
        }
        let got: Vec<(u64, u64)> = image.segments().iter().map(|s| (s.address, s.len)).collect();
        prop_assert_eq!(got, merged);
        let gaps: u64 = image.gaps().iter().map(|g| g.len).sum();
        prop_assert_eq!(image.data_len() + gaps, image.len());
    }

    /// The same segments as S-records in random order read back too.
    #[test]
    fn srec_random_segments_read_back(
        (segments, order) in segment_set().prop_flat_map(|s| {
            let n = s.len();
            (Just(s), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        }),
    ) {
        let dir = TempDir::new().unwrap();
        let shuffled: Vec<_> = order.iter().map(|&i| segments[i].clone()).collect();
        let path = write(&dir, "p.srec", srec_text(&shuffled));
        let image = Image::open(&path, None, None).unwrap();
        let (low, bytes) = expected(&segments);
        prop_assert_eq!(image.load_address(), low);
        prop_assert_eq!(flatten(&image), bytes);
    }

    /// The same segments as UF2 blocks read back too.
    #[test]
    fn uf2_random_segments_read_back(segments in segment_set()) {
        let dir = TempDir::new().unwrap();
        let path = write(&dir, "p.uf2", uf2(&uf2_blocks(&segments)));
        let image = Image::open(&path, None, None).unwrap();
        prop_assert_eq!(flatten(&image), expected(&segments).1);
    }

    /// No input makes a parser panic: random bytes, and valid files with
    /// bytes changed or cut off, in every format.
    #[test]
    fn no_input_panics(
        random in prop::collection::vec(any::<u8>(), 0..2048),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let dir = TempDir::new().unwrap();
        let segments = [(0x0800_0000u64, pattern(700, 3)), (0x0800_0400, pattern(40, 4))];
        let (elf_bytes, _) = elf(false, false, &[
            Phdr::load(0x0800_0000, pattern(100, 1)),
            Phdr::load(0x0800_0100, pattern(50, 2)),
        ]);
        let valid = [
            hex_text(&segments).into_bytes(),
            srec_text(&segments).into_bytes(),
            uf2(&uf2_blocks(&segments)),
            elf_bytes,
        ];
        let mut inputs = vec![random];
        for file in valid {
            let mut edited = file.clone();
            for (at, byte) in &edits {
                let i = at.index(edited.len());
                edited[i] = *byte;
            }
            inputs.push(edited);
            inputs.push(file[..cut.index(file.len())].to_vec());
        }
        for (i, bytes) in inputs.iter().enumerate() {
            let path = write(&dir, &format!("in{i}"), bytes);
            let opens = Format::ALL.into_iter().map(Some).chain([None]);
            for (format, address) in opens.flat_map(|f| [(f, None), (f, Some(0x0800_0000))]) {
                if let Ok(image) = Image::open(&path, format, address) {
                    // Read a bounded prefix; a (valid) gap may make len large.
                    let n = image.len().min(4096) as usize;
                    let mut buf = vec![0u8; n];
                    image.reader().unwrap().read_at(0, &mut buf).unwrap();
                }
            }
            let _ = Format::detect(&path);
        }
    }
}
