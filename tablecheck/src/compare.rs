//! The comparison of what the C++ compiler made of the header with the Rust
//! side's metadata.

use dextlink::server::{DispatchChecks, InterfaceInfo};
use dextlink_schema::names::upper_camel;

use crate::probe::{Compiled, Entry};
use crate::{Difference, Item, Value};

/// The zero-filled entry of a selector without a method, and of an
/// `#[unchecked]` one: the C++ emitter writes `{nullptr, 0, 0, 0, 0, 0}` for
/// both (such selectors are dispatched by hand, or refused, before DriverKit
/// sees the table).
const EMPTY: Entry = Entry { function: false, checks: [0; 5] };

/// The table's fields after `function`, in declaration order, as the shim
/// (and DriverKit's `IOUserClientMethodDispatch`) names them.
const CHECK_NAMES: [&str; 5] = [
    "checkCompletionExists",
    "checkScalarInputCount",
    "checkStructureInputSize",
    "checkScalarOutputCount",
    "checkStructureOutputSize",
];

fn checks(c: &DispatchChecks) -> [u64; 5] {
    [
        c.completion_exists,
        c.scalar_input_count,
        c.structure_input_size,
        c.scalar_output_count,
        c.structure_output_size,
    ]
    .map(u64::from)
}

/// Every difference, in a stable order: the interface's constants, the
/// table by selector, the structs and their fields in schema order, then the
/// memory types.
pub(crate) fn compare(iface: &InterfaceInfo, c: &Compiled) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut diff = |item: Item, fact: String, cpp: Value, rust: Value| {
        if cpp != rust {
            out.push(Difference { item, fact, cpp, rust });
        }
    };

    let item = Item::Interface(iface.name);
    diff(item, "kFingerprint".into(), Value::Hash(c.fingerprint), Value::Hash(iface.fingerprint));
    let version = u64::from(iface.version);
    diff(item, "kVersion".into(), Value::Number(c.version), Value::Number(version));
    let count = u64::from(iface.selector_count);
    diff(item, "kSelectorCount".into(), Value::Number(c.selector_count), Value::Number(count));

    for (selector, cpp) in c.entries.iter().enumerate() {
        // The probe lists at most `MAX_PROBED_SELECTORS` entries.
        let selector = selector as u32;
        // `METHODS` is sorted by selector and has one method a selector;
        // should a hand-made one not, the first one counts.
        let method = iface.methods.iter().find(|m| m.selector == selector);
        let rust = match method {
            Some(m) if m.unchecked => Some(EMPTY),
            Some(m) => Some(Entry { function: true, checks: checks(&m.checks) }),
            None if selector < iface.selector_count => Some(EMPTY),
            None => None,
        };
        let item = Item::Selector { selector, method: method.map(|m| m.name) };
        match (cpp, rust) {
            (None, None) => {}
            (Some(cpp), Some(rust)) => {
                diff(
                    item,
                    "function".into(),
                    Value::Function(cpp.function),
                    Value::Function(rust.function),
                );
                for ((name, c), r) in CHECK_NAMES.iter().zip(cpp.checks).zip(rust.checks) {
                    diff(item, (*name).into(), Value::Number(c), Value::Number(r));
                }
            }
            (cpp, rust) => diff(
                item,
                "entry".into(),
                Value::Present(cpp.is_some()),
                Value::Present(rust.is_some()),
            ),
        }
    }

    for ((s, &(size, align)), fields) in iface.structs.iter().zip(&c.structs).zip(&c.fields) {
        let item = Item::Struct(s.name);
        diff(item, "size".into(), Value::Number(size), Value::Number(s.size as u64));
        diff(item, "alignment".into(), Value::Number(align), Value::Number(s.align as u64));
        for (f, &(offset, size)) in s.fields.iter().zip(fields) {
            let (o, z) = (format!("offset of {}", f.name), format!("size of {}", f.name));
            diff(item, o, Value::Number(offset), Value::Number(f.offset as u64));
            diff(item, z, Value::Number(size), Value::Number(f.size as u64));
        }
    }

    for (m, &(id, size)) in iface.memory_types.iter().zip(&c.memories) {
        let item = Item::MemoryType(m.name);
        let camel = upper_camel(m.name);
        let (id_name, size_name) = (format!("MemoryType::{camel}"), format!("k{camel}Size"));
        diff(item, id_name, Value::Number(id), Value::Number(u64::from(m.id)));
        diff(item, size_name, Value::Number(size), Value::Number(m.size));
    }
    out
}
