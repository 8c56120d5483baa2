//! Writes the seed corpora, `fuzz/corpus/<target>/seed-*`:
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds
//! ```
//!
//! - schema: the example and test schemas, valid and invalid;
//! - dispatch: one well-formed call of every method of both interfaces,
//!   through the kernel layer and made by hand, and a few malformed ones,
//!   in the input layout `fuzz_targets/dispatch.rs` describes;
//! - image: tiny Intel HEX, S-record, UF2, ELF (32/64-bit, both byte
//!   orders) and raw images, written with `dextlink_tests::images`, and a
//!   text file (refused as raw).

use std::fs;
use std::path::{Path, PathBuf};

use dextlink_tests::images::{self, Phdr};

fn main() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = fuzz.parent().expect("fuzz/ has a parent");
    let corpus = |target: &str| {
        let dir = fuzz.join("corpus").join(target);
        fs::create_dir_all(&dir).unwrap();
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap().to_string_lossy().starts_with("seed-") {
                fs::remove_file(path).unwrap();
            }
        }
        dir
    };

    // ----- schema
    let dir = corpus("schema");
    for (name, path) in [
        ("fwloader", "examples/fwloader/fwloader.dextlink"),
        ("null_driver", "examples/null_driver/null_driver.dextlink"),
        ("shapes", "tests/schemas/shapes.dextlink"),
        ("sim_rules", "runtime/tests/sim_rules.dextlink"),
        ("duplicate_selector", "runtime/tests/ui/duplicate_selector.dextlink"),
        ("padding", "runtime/tests/ui/padding.dextlink"),
        ("range_outside_type", "runtime/tests/ui/range_outside_type.dextlink"),
        ("reserved_reuse", "runtime/tests/ui/reserved_reuse.dextlink"),
        ("too_many_scalars", "runtime/tests/ui/too_many_scalars.dextlink"),
        ("unknown_type", "runtime/tests/ui/unknown_type.dextlink"),
    ] {
        write(&dir, &format!("seed-{name}.dextlink"), &fs::read(root.join(path)).unwrap());
    }

    // ----- dispatch
    let dir = corpus("dispatch");
    let config = {
        let mut c = vec![0u8; 88];
        c[40..46].copy_from_slice(b"shapes");
        c[72] = 0xff; // mode: Auto
        c[73] = 1; // enabled
        c[74..76].copy_from_slice(&(-1i16).to_ne_bytes()); // trim: Down
        c
    };
    let image_info = {
        let mut i = vec![0u8; 24];
        i[..8].copy_from_slice(&4096u64.to_ne_bytes());
        i[16..20].copy_from_slice(&1u32.to_ne_bytes()); // IntelHex
        i
    };
    let shapes: Vec<(&str, Seed)> = vec![
        ("scalars", Seed::call(0).scalars(&[7, (-40i64) as u64, 65536, 1, 0xff]).outputs(2)),
        ("structs", Seed::call(1).input(&config).output(Out::Buffer(88))),
        ("mixed", Seed::call(2).scalars(&[3]).input(&[1; 8]).outputs(1).output(Out::Buffer(88))),
        ("wide", Seed::call(3).scalars(&[u64::MAX; 16]).outputs(16)),
        ("big_in", Seed::call(4).input(&padded(&[0x11; 16], 4800)).outputs(1)),
        ("big_out", Seed::call(5).scalars(&[9]).output(Out::Buffer(4800))),
        ("write_blob", Seed::call(6).input(&padded(&[0x22; 16], 5000)).outputs(1)),
        ("read_name", Seed::call(7).output(Out::Buffer(32))),
        ("read_log", Seed::call(8).scalars(&[3]).output(Out::Variable)),
        ("set_key", Seed::call(9).input(&[0x33; 16])),
        ("ping", Seed::call(10).completion()),
        ("measure", Seed::call(11).scalars(&[7]).completion()),
        ("sample", Seed::call(12).completion()),
        ("start", Seed::call(13).input(&config).outputs(1).completion()),
        ("raw", Seed::call(15).scalars(&[41]).outputs(1)),
        ("maybe_async", Seed::call(16).scalars(&[0]).completion()),
        ("handshake", Seed::handshake().outputs(2)),
        // Malformed: a range violated, an async call without a completion,
        // a reserved selector, too many scalars.
        ("bad-range", Seed::call(0).scalars(&[7, 126, 1, 1, 0]).outputs(2)),
        ("bad-no-completion", Seed::call(11).scalars(&[1])),
        ("bad-reserved", Seed::call(14).scalars(&[1])),
        ("bad-wide", Seed::call(3).scalars(&[1; 17]).outputs(17)),
    ];
    let fwloader: Vec<(&str, Seed)> = vec![
        ("begin", Seed::call(0).input(&image_info).outputs(2)),
        ("submit", Seed::call(1).scalars(&[7, 0x10_0000]).completion()),
        ("finish", Seed::call(2).scalars(&[0xdead_beef]).outputs(1)),
        ("status", Seed::call(3).output(Out::Buffer(48))),
        ("abort", Seed::call(4)),
        ("write", Seed::call(5).scalars(&[0x1000]).input(&padded(&[0x44; 16], 4096)).outputs(1)),
        ("handshake", Seed::handshake().outputs(2)),
        ("bad-slot", Seed::call(1).scalars(&[8, 1]).completion()),
    ];
    for (name, seed) in &shapes {
        write(&dir, &format!("seed-shapes-{name}"), &seed.encode(false, false));
    }
    for (name, seed) in &fwloader {
        write(&dir, &format!("seed-fwloader-{name}"), &seed.encode(true, false));
    }
    // Hand-made arguments for a few, and the handler failing.
    for (name, seed) in [&shapes[0], &shapes[2], &shapes[6], &shapes[15]] {
        write(&dir, &format!("seed-shapes-{name}-hand-made"), &seed.encode(false, true));
    }
    let mut failing = shapes[1].1.clone();
    failing.fail = true;
    write(&dir, "seed-shapes-structs-failing", &failing.encode(false, false));

    // ----- image
    let dir = corpus("image");
    let chunks =
        vec![(0x0800_0000u64, (0..40u8).collect::<Vec<_>>()), (0x0800_0100, vec![0xa5; 20])];
    write(&dir, "seed-two-chunks.hex", images::hex_text(&chunks).as_bytes());
    let wide = vec![(0x0001_fff8u64, vec![1u8; 16]), (0x0002_0400, vec![2; 3])];
    write(&dir, "seed-64k-boundary.hex", images::hex_text(&wide).as_bytes());
    let segment_records = [
        images::line(&[0x02, 0x00, 0x00, 0x02, 0x10, 0x00]), // extended segment address
        images::line(&[0x04, 0x00, 0x10, 0x00, 1, 2, 3, 4]),
        images::line(&[0x04, 0x00, 0x00, 0x05, 0, 0, 0, 0x10]), // start linear address
        images::EOF.to_string(),
    ];
    write(&dir, "seed-segment-address.hex", (segment_records.join("\n") + "\n").as_bytes());
    write(&dir, "seed-two-chunks.srec", images::srec_text(&chunks).as_bytes());
    write(&dir, "seed-s1.s19", images::srec_text_with(&[(0x0100, vec![3; 20])], 1).as_bytes());
    write(&dir, "seed-s2.s28", images::srec_text_with(&wide, 2).as_bytes());
    // An S6 count and an S9 after S3 data, with CRLF line ends.
    let mixed = [
        images::srec_line(0, b"\0\0hdr"),
        images::srec_line(3, &[0x08, 0, 0, 0, 1, 2, 3]),
        images::srec_line(6, &[0, 0, 1]),
        images::srec_line(9, &[0, 0]),
    ];
    write(&dir, "seed-mixed-crlf.srec", (mixed.join("\r\n") + "\r\n").as_bytes());
    write(&dir, "seed-text.txt", b"# not firmware\n\nplain text \xe2\x80\x94 UTF-8\n");
    write(&dir, "seed-two-chunks.uf2", &images::uf2(&images::uf2_blocks(&chunks)));
    let mut bare = images::uf2_blocks(&[(0x1000, vec![7; 300])]);
    bare[1].flags = 0; // no family ID
    write(&dir, "seed-no-family.uf2", &images::uf2(&bare));
    let phdrs = [
        Phdr::load(0x0800_0000, (0..48u8).collect()),
        Phdr { bss: 64, ..Phdr::load(0x0800_0040, vec![9; 8]) },
        Phdr { kind: images::PT_NOTE, ..Phdr::load(0, vec![1; 4]) },
    ];
    for (name, is64, big_endian) in [
        ("elf32-le", false, false),
        ("elf64-le", true, false),
        ("elf32-be", false, true),
        ("elf64-be", true, true),
    ] {
        write(&dir, &format!("seed-{name}.elf"), &images::elf(is64, big_endian, &phdrs).0);
    }
    write(&dir, "seed-raw.bin", &(0..=255u8).collect::<Vec<_>>());
}

/// `head`, then zeros up to `len` bytes (the target pads inputs with zeros).
fn padded(head: &[u8], len: usize) -> Vec<u8> {
    let mut v = head.to_vec();
    v.resize(len, 0);
    v
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path: PathBuf = dir.join(name);
    fs::write(&path, bytes).unwrap();
    println!("{} ({} bytes)", path.display(), bytes.len());
}

#[derive(Debug, Clone, Copy)]
enum Out {
    None,
    Variable,
    Buffer(usize),
}

/// A call in the dispatch target's input layout.
#[derive(Debug, Clone)]
struct Seed {
    /// `None`: the handshake selector.
    selector: Option<u8>,
    scalars: Vec<u64>,
    outputs: u8,
    output: Out,
    input: Vec<u8>,
    completion: bool,
    fail: bool,
}

impl Seed {
    fn call(selector: u8) -> Seed {
        Seed {
            selector: Some(selector),
            scalars: Vec::new(),
            outputs: 0,
            output: Out::None,
            input: Vec::new(),
            completion: false,
            fail: false,
        }
    }

    fn handshake() -> Seed {
        Seed { selector: None, ..Seed::call(0) }
    }

    fn scalars(mut self, scalars: &[u64]) -> Seed {
        self.scalars = scalars.to_vec();
        self
    }

    fn outputs(mut self, n: u8) -> Seed {
        self.outputs = n;
        self
    }

    fn output(mut self, output: Out) -> Seed {
        self.output = output;
        self
    }

    fn input(mut self, bytes: &[u8]) -> Seed {
        self.input = bytes.to_vec();
        self
    }

    fn completion(mut self) -> Seed {
        self.completion = true;
        self
    }

    fn encode(&self, fwloader: bool, hand_made: bool) -> Vec<u8> {
        let flags = u8::from(fwloader)
            | u8::from(hand_made) << 1
            | u8::from(self.completion) << 2
            | u8::from(self.fail) << 3
            | 5 << 4; // `read_name` answers 5 bytes
        let mut out = vec![flags, self.selector.unwrap_or(0xF0)];
        out.push(self.scalars.len() as u8);
        for &v in &self.scalars {
            match v {
                0..=0xEF => out.push(v as u8),
                _ if v <= u64::from(u32::MAX) => {
                    out.push(0xF2);
                    out.extend_from_slice(&(v as u32).to_le_bytes());
                }
                _ if (v as i64) >= i64::from(i32::MIN) && (v as i64) < 0 => {
                    out.push(0xF1);
                    out.extend_from_slice(&(v as i64 as i32).to_le_bytes());
                }
                _ => {
                    out.push(0xF0);
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        out.push(self.outputs);
        match self.output {
            Out::None => out.push(0),
            Out::Variable => out.push(1),
            Out::Buffer(n) if n <= 4096 => {
                out.push(2);
                out.extend_from_slice(&(n as u16).to_le_bytes());
            }
            Out::Buffer(n) => {
                out.push(3);
                out.extend_from_slice(&((n - 4096) as u16).to_le_bytes());
            }
        }
        let len = self.input.len();
        match len {
            0 => out.push(0),
            1..=0xffff if len <= 4096 => {
                out.push(1);
                out.extend_from_slice(&(len as u16).to_le_bytes());
            }
            _ => {
                out.push(2);
                out.extend_from_slice(&((len - 4096) as u16).to_le_bytes());
            }
        }
        if hand_made {
            out.push(16); // scalar output slots
        }
        // Trailing zeros are implied: the target pads the input to its length.
        let used = self.input.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        out.extend_from_slice(&self.input[..used]);
        out
    }
}
