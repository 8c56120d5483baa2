//! The schema fingerprint: a stable 64-bit hash of the interface's ABI.
//!
//! It is FNV-1a (64-bit) over a canonical text of every fact that decides
//! whether an app and a dext can talk:
//!
//! - each method's selector, sync/async, `#[unchecked]`, completion check,
//!   the types and order of its scalar inputs, outputs and completion values,
//!   input ranges, and the shape of its structure input and output;
//! - struct layouts, as size, alignment and each field's offset and type
//!   (recursively), wherever a struct appears;
//! - enums, as their representation and set of values;
//! - reserved selectors;
//! - memory types: id, size and access.
//!
//! It deliberately leaves out what cannot break a call: comments, formatting,
//! the order of declarations (methods are keyed by selector, memory types by
//! id), the names of methods, parameters, fields, types and constants (only
//! the values constants produce count), the service name and the version
//! number (the handshake reports the version beside the fingerprint).
//! Renaming a field therefore keeps the fingerprint; moving it does not.

use std::fmt::Write;

use crate::model::*;

/// The canonical ABI text the fingerprint hashes; `dextlink fingerprint
/// --canonical` prints it, so a user can see why two fingerprints differ.
pub fn canonical(iface: &Interface) -> String {
    let mut out = String::from("dextlink-abi 1\n");
    for m in &iface.methods {
        let _ = writeln!(
            out,
            "method {} async={} unchecked={} completion={}",
            m.selector,
            m.is_async as u8,
            m.unchecked as u8,
            match m.completion_check {
                CompletionCheck::Forbidden => "none",
                CompletionCheck::Required => "required",
                CompletionCheck::Any => "any",
            }
        );
        for s in &m.scalar_inputs {
            let _ = write!(out, "  in {}", scalar(iface, s.ty));
            if let Some((lo, hi)) = s.range {
                let _ = write!(out, " {lo}..={hi}");
            }
            out.push('\n');
        }
        if let Some(a) = &m.struct_input {
            let _ = writeln!(out, "  struct-in {}", shape(iface, a.shape));
        }
        for s in &m.scalar_outputs {
            let _ = writeln!(out, "  out {}", scalar(iface, s.ty));
        }
        if let Some(a) = &m.struct_output {
            let _ = writeln!(out, "  struct-out {}", shape(iface, a.shape));
        }
        for s in &m.completion {
            let _ = writeln!(out, "  completes {}", scalar(iface, s.ty));
        }
    }
    for r in &iface.reserved {
        let _ = writeln!(out, "reserved {}", r.selector);
    }
    for mem in &iface.memories {
        let access = match mem.access {
            Access::ReadOnly => "read-only",
            Access::ReadWrite => "read-write",
        };
        let _ = writeln!(out, "memory {} {} {access}", mem.id, mem.size);
    }
    out
}

fn scalar(iface: &Interface, ty: ScalarType) -> String {
    match ty {
        ScalarType::Int(t) => t.rust().to_string(),
        ScalarType::Bool => "bool".to_string(),
        ScalarType::Enum(i) => enum_text(&iface.enums[i]),
    }
}

fn enum_text(e: &Enum) -> String {
    let mut values: Vec<i128> = e.variants.iter().map(|v| v.value).collect();
    values.sort_unstable();
    let values: Vec<String> = values.iter().map(i128::to_string).collect();
    format!("enum:{}{{{}}}", e.repr.rust(), values.join(","))
}

fn data(iface: &Interface, ty: &DataType) -> String {
    match ty {
        DataType::Int(t) => t.rust().to_string(),
        DataType::Bool => "bool".to_string(),
        DataType::Enum(i) => enum_text(&iface.enums[*i]),
        DataType::Struct(i) => {
            let s = &iface.structs[*i];
            let fields: Vec<String> =
                s.fields.iter().map(|f| format!("{}:{}", f.offset, data(iface, &f.ty))).collect();
            format!("struct:{}/{}{{{}}}", s.size, s.align, fields.join(";"))
        }
        DataType::Array(elem, n) => format!("[{};{n}]", data(iface, elem)),
    }
}

fn shape(iface: &Interface, shape: StructShape) -> String {
    match shape {
        StructShape::Struct(i) => data(iface, &DataType::Struct(i)),
        StructShape::Bytes(n) => format!("bytes:{n}"),
        StructShape::Bounded { min, max } => format!("bytes:{min}..={max}"),
        StructShape::Variable => "bytes:*".to_string(),
    }
}

/// FNV-1a, 64-bit: tiny, stable across platforms and releases, and good
/// enough to tell schemas apart (this is not a security boundary).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

pub fn fingerprint(iface: &Interface) -> u64 {
    fnv1a64(canonical(iface).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::fnv1a64;

    #[test]
    fn fnv_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }
}
