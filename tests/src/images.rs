//! Writers of firmware image files (Intel HEX, Motorola S-record, UF2, ELF)
//! for tests: the image parsers' round trips, the upload end-to-end tests,
//! the benchmark. Raw binaries need no writer.

use ihex::Record;

// ----- Intel HEX writers ------------------------------------------------------------

/// `(address, bytes)` chunks as data records of at most 16 bytes that never
/// cross a 64 KiB boundary, with extended linear address records as needed.
pub fn hex_records(chunks: &[(u64, Vec<u8>)]) -> Vec<Record> {
    let mut records = Vec::new();
    let mut upper = None;
    for (address, data) in chunks {
        let mut address = *address;
        let mut rest = &data[..];
        while !rest.is_empty() {
            let room = 0x1_0000 - (address & 0xFFFF) as usize;
            let n = rest.len().min(16).min(room);
            let high = (address >> 16) as u16;
            if upper != Some(high) {
                records.push(Record::ExtendedLinearAddress(high));
                upper = Some(high);
            }
            let value = rest[..n].to_vec();
            records.push(Record::Data { offset: address as u16, value });
            address += n as u64;
            rest = &rest[n..];
        }
    }
    records
}

pub fn hex_text(chunks: &[(u64, Vec<u8>)]) -> String {
    let mut records = hex_records(chunks);
    records.push(Record::EndOfFile);
    ihex::create_object_file_representation(&records).unwrap()
}

/// One record line, `:` + bytes + the correct checksum.
pub fn line(bytes: &[u8]) -> String {
    let sum = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    let mut s = String::from(":");
    for b in bytes.iter().chain([&sum.wrapping_neg()]) {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// The end-of-file record.
pub const EOF: &str = ":00000001FF";

// ----- Motorola S-record writers ---------------------------------------------------

/// One S-record line: `S`, the type digit, the byte count, `fields` (address
/// and data, as bytes) and the correct checksum.
pub fn srec_line(kind: u8, fields: &[u8]) -> String {
    let count = fields.len() as u8 + 1;
    let sum = fields.iter().fold(count, |a, b| a.wrapping_add(*b));
    let mut s = format!("S{kind}{count:02X}");
    for b in fields.iter().chain([&!sum]) {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// The address width in bytes of S-record data type `kind` (1, 2 or 3).
fn srec_address_len(kind: u8) -> usize {
    usize::from(kind) + 1
}

/// `(address, bytes)` chunks as the S-record text `objcopy -O srec` writes:
/// an S0 header, data records of at most 16 bytes of type `kind` (1, 2 or
/// 3: 16-, 24- or 32-bit addresses), an S5 record count and the matching
/// termination record (S9, S8 or S7) with start address 0. Lines end in
/// `\n`.
pub fn srec_text_with(chunks: &[(u64, Vec<u8>)], kind: u8) -> String {
    assert!((1..=3).contains(&kind), "S{kind} is not a data record type");
    let width = srec_address_len(kind);
    let mut lines = vec![srec_line(0, b"\0\0dextlink")];
    let mut records = 0u32;
    for (address, data) in chunks {
        for (i, part) in data.chunks(16).enumerate() {
            let at = address + 16 * i as u64;
            let mut fields = at.to_be_bytes()[8 - width..].to_vec();
            fields.extend_from_slice(part);
            lines.push(srec_line(kind, &fields));
            records += 1;
        }
    }
    // A count record as srec_cat writes it: S5 while the count fits 16 bits,
    // S6 while it fits 24, none beyond.
    if records <= 0xFFFF {
        lines.push(srec_line(5, &(records as u16).to_be_bytes()));
    } else if records <= 0xFF_FFFF {
        lines.push(srec_line(6, &records.to_be_bytes()[1..]));
    }
    lines.push(srec_line(10 - kind, &vec![0; width]));
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// [`srec_text_with`] using the narrowest data records that hold every
/// address, as objcopy chooses them.
pub fn srec_text(chunks: &[(u64, Vec<u8>)]) -> String {
    let top = chunks.iter().map(|(a, d)| a + d.len() as u64).max().unwrap_or(0);
    let kind = if top <= 0x1_0000 {
        1
    } else if top <= 0x100_0000 {
        2
    } else {
        3
    };
    srec_text_with(chunks, kind)
}

// ----- UF2 writer -----------------------------------------------------------------

/// The UF2 family ID the writers use (RP2040's).
pub const FAMILY: u32 = 0xe48b_ff56;

/// One UF2 block, before encoding.
#[derive(Debug, Clone)]
pub struct Block {
    pub flags: u32,
    pub address: u32,
    pub payload: Vec<u8>,
    pub number: u32,
    pub count: u32,
    pub family: u32,
}

impl Block {
    pub fn new(address: u32, payload: Vec<u8>, number: u32, count: u32) -> Block {
        Block { flags: 0x2000, address, payload, number, count, family: FAMILY }
    }

    pub fn bytes(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        let fields = [
            0x0A32_4655,
            0x9E5D_5157,
            self.flags,
            self.address,
            self.payload.len() as u32,
            self.number,
            self.count,
            self.family,
        ];
        for (i, f) in fields.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&f.to_le_bytes());
        }
        let n = self.payload.len().min(476);
        b[32..32 + n].copy_from_slice(&self.payload[..n]);
        b[508..].copy_from_slice(&0x0AB1_6F30u32.to_le_bytes());
        b
    }
}

/// The blocks encoded, in order.
pub fn uf2(blocks: &[Block]) -> Vec<u8> {
    blocks.iter().flat_map(|b| b.bytes()).collect()
}

/// Blocks of 256 bytes for `chunks`, numbered in order.
pub fn uf2_blocks(chunks: &[(u64, Vec<u8>)]) -> Vec<Block> {
    let mut blocks = Vec::new();
    for (address, data) in chunks {
        for (i, part) in data.chunks(256).enumerate() {
            blocks.push(Block::new(*address as u32 + 256 * i as u32, part.to_vec(), 0, 0));
        }
    }
    let count = blocks.len() as u32;
    for (i, b) in blocks.iter_mut().enumerate() {
        b.number = i as u32;
        b.count = count;
    }
    blocks
}

// ----- ELF writer -----------------------------------------------------------------

pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;

/// One program header and its segment's file data.
#[derive(Debug, Clone)]
pub struct Phdr {
    pub kind: u32,
    pub vaddr: u64,
    pub paddr: u64,
    pub data: Vec<u8>,
    /// Bytes of `.bss` beyond the file data.
    pub bss: u64,
}

impl Phdr {
    /// A loadable segment at `paddr` (= `vaddr`).
    pub fn load(paddr: u64, data: Vec<u8>) -> Phdr {
        Phdr { kind: PT_LOAD, vaddr: paddr, paddr, data, bss: 0 }
    }
}

/// A minimal ELF executable: header, program headers, then each segment's
/// data in order (16-byte aligned). Returns the file and each segment's offset.
pub fn elf(is64: bool, big_endian: bool, phdrs: &[Phdr]) -> (Vec<u8>, Vec<u64>) {
    let (ehsize, phentsize) = if is64 { (64u64, 56u64) } else { (52, 32) };
    let mut offsets = Vec::new();
    let mut at = ehsize + phentsize * phdrs.len() as u64;
    for p in phdrs {
        at = at.next_multiple_of(16);
        offsets.push(at);
        at += p.data.len() as u64;
    }
    let mut out = Vec::new();
    let put = |out: &mut Vec<u8>, value: u64, size: usize| {
        let bytes = if big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
        if big_endian {
            out.extend_from_slice(&bytes[8 - size..]);
        } else {
            out.extend_from_slice(&bytes[..size]);
        }
    };
    let word = if is64 { 8 } else { 4 };
    out.extend_from_slice(b"\x7fELF");
    out.extend_from_slice(&[if is64 { 2 } else { 1 }, if big_endian { 2 } else { 1 }, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    put(&mut out, 2, 2); // e_type: ET_EXEC
    put(&mut out, 40, 2); // e_machine: ARM
    put(&mut out, 1, 4); // e_version
    put(&mut out, 0x0800_0101, word); // e_entry
    put(&mut out, ehsize, word); // e_phoff
    put(&mut out, 0, word); // e_shoff
    put(&mut out, 0, 4); // e_flags
    put(&mut out, ehsize, 2);
    put(&mut out, phentsize, 2);
    put(&mut out, phdrs.len() as u64, 2);
    put(&mut out, if is64 { 64 } else { 40 }, 2); // e_shentsize
    put(&mut out, 0, 2); // e_shnum
    put(&mut out, 0, 2); // e_shstrndx
    for (p, &offset) in phdrs.iter().zip(&offsets) {
        let filesz = p.data.len() as u64;
        if is64 {
            put(&mut out, p.kind.into(), 4);
            put(&mut out, 5, 4); // p_flags
            put(&mut out, offset, 8);
            put(&mut out, p.vaddr, 8);
            put(&mut out, p.paddr, 8);
            put(&mut out, filesz, 8);
            put(&mut out, filesz + p.bss, 8);
            put(&mut out, 16, 8);
        } else {
            put(&mut out, p.kind.into(), 4);
            put(&mut out, offset, 4);
            put(&mut out, p.vaddr, 4);
            put(&mut out, p.paddr, 4);
            put(&mut out, filesz, 4);
            put(&mut out, filesz + p.bss, 4);
            put(&mut out, 5, 4); // p_flags
            put(&mut out, 16, 4);
        }
    }
    for (p, &offset) in phdrs.iter().zip(&offsets) {
        out.resize(offset as usize, 0);
        out.extend_from_slice(&p.data);
    }
    (out, offsets)
}
