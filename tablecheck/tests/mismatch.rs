//! The check is not vacuous: every kind of disagreement between the compiled
//! C++ header and the Rust metadata is reported, fact by fact, and nothing
//! else is. Each test starts from a correct interface (NullDriver's, whose
//! `DataStruct` is `{ uint64_t foo; uint64_t bar; }`) and changes one side.

use dextlink::server::{FieldLayout, InterfaceInfo, MemoryInfo, MethodInfo, StructLayout};
use dextlink_tablecheck::{Difference, Error, Item, Options, Value, verify, verify_with};
use dextlink_tests::Scratch;

dextlink::interface!("../examples/null_driver/null_driver.dextlink");
dextlink::interface!("../examples/fwloader/fwloader.dextlink");

/// `InterfaceInfo` holds `'static` slices, as the generated constants are.
fn leak<T>(items: Vec<T>) -> &'static [T] {
    Vec::leak(items)
}

/// The differences of a check expected to find some.
fn differences(result: Result<dextlink_tablecheck::Report, Error>) -> Vec<Difference> {
    match result {
        Err(Error::Mismatch(differences)) => differences,
        Err(e) => panic!("expected a mismatch, got: {e}"),
        Ok(report) => panic!("expected a mismatch, got: {report}"),
    }
}

fn number(item: Item, fact: &str, cpp: u64, rust: u64) -> Difference {
    Difference { item, fact: fact.to_string(), cpp: Value::Number(cpp), rust: Value::Number(rust) }
}

const DATA_STRUCT: Item = Item::Struct("DataStruct");

fn selector(selector: u32, method: Option<&'static str>) -> Item {
    Item::Selector { selector, method }
}

/// NullDriver's header with `DataStruct`'s layout asserts removed and its
/// fields narrowed with `edit`: a header edited by hand that still compiles,
/// in a scratch directory that lives as long as the first value.
fn header_with(dir: &str, edit: impl Fn(String) -> String) -> (Scratch, Options) {
    let text: String = null_driver::CPP_HEADER
        .lines()
        .filter(|l| !(l.starts_with("static_assert(") && l.contains("DataStruct")))
        .map(|l| format!("{l}\n"))
        .collect();
    let scratch = Scratch::new(&format!("tablecheck-{dir}"));
    let path = scratch.join("NullDriver.h");
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit must change the header");
    std::fs::write(&path, edited).unwrap();
    (scratch, Options { header: Some(path), ..Options::default() })
}

#[test]
fn altered_rust_metadata_is_reported_field_by_field() {
    let mut methods = null_driver::METHODS.to_vec();
    methods[3].checks.structure_input_size = 24;
    let mut fields = null_driver::STRUCTS[0].fields.to_vec();
    fields[1].offset = 12;
    let structs = leak(vec![StructLayout { fields: leak(fields), ..null_driver::STRUCTS[0] }]);
    let iface = InterfaceInfo { methods: leak(methods), structs, ..null_driver::INTERFACE };

    let result = verify(&iface);
    let text = result.as_ref().err().map(ToString::to_string).unwrap_or_default();
    assert_eq!(
        differences(result),
        [
            number(selector(3, Some("checked_struct")), "checkStructureInputSize", 16, 24),
            number(DATA_STRUCT, "offset of bar", 8, 12),
        ]
    );
    assert_eq!(
        text,
        "the compiled C++ header disagrees with the Rust metadata:\n  \
         selector 3 (checked_struct): checkStructureInputSize: C++ 16, Rust 24\n  \
         struct DataStruct: offset of bar: C++ 8, Rust 12"
    );
}

#[test]
fn interface_constants_and_memory_types_are_compared() {
    let iface = InterfaceInfo { fingerprint: 0x1234, version: 9, ..null_driver::INTERFACE };
    assert_eq!(
        differences(verify(&iface)),
        [
            Difference {
                item: Item::Interface("NullDriver"),
                fact: "kFingerprint".to_string(),
                cpp: Value::Hash(null_driver::FINGERPRINT),
                rust: Value::Hash(0x1234),
            },
            number(Item::Interface("NullDriver"), "kVersion", 1, 9),
        ]
    );

    let staging = fw_loader::MEMORY_TYPES[0];
    let memory_types = leak(vec![MemoryInfo { id: 3, size: 4096, ..staging }]);
    let iface = InterfaceInfo { memory_types, ..fw_loader::INTERFACE };
    assert_eq!(
        differences(verify(&iface)),
        [
            number(Item::MemoryType("staging"), "MemoryType::Staging", 0, 3),
            number(Item::MemoryType("staging"), "kStagingSize", staging.size, 4096),
        ]
    );
}

/// Selectors without a method and `#[unchecked]` methods must have the
/// zero-filled entry the C++ emitter writes for them.
#[test]
fn entries_without_a_checked_method_must_be_empty() {
    let mut methods: Vec<MethodInfo> =
        null_driver::METHODS.iter().copied().filter(|m| m.selector != 3).collect();
    // checked_scalar, declared #[unchecked] on the Rust side only.
    methods[2].unchecked = true;
    let iface = InterfaceInfo { methods: leak(methods), ..null_driver::INTERFACE };
    let function = |item, cpp, rust| Difference {
        item,
        fact: "function".to_string(),
        cpp: Value::Function(cpp),
        rust: Value::Function(rust),
    };
    let scalars = selector(2, Some("checked_scalar"));
    assert_eq!(
        differences(verify(&iface)),
        [
            function(scalars, true, false),
            number(scalars, "checkScalarInputCount", 16, 0),
            number(scalars, "checkScalarOutputCount", 16, 0),
            function(selector(3, None), true, false),
            number(selector(3, None), "checkStructureInputSize", 16, 0),
            number(selector(3, None), "checkStructureOutputSize", 16, 0),
        ]
    );
}

#[test]
fn a_longer_table_on_one_side_is_reported() {
    let iface = InterfaceInfo { selector_count: 7, ..null_driver::INTERFACE };
    let result = verify(&iface);
    let text = result.as_ref().err().map(ToString::to_string).unwrap_or_default();
    assert_eq!(
        differences(result),
        [
            number(Item::Interface("NullDriver"), "kSelectorCount", 6, 7),
            Difference {
                item: selector(6, None),
                fact: "entry".to_string(),
                cpp: Value::Present(false),
                rust: Value::Present(true),
            },
        ]
    );
    assert!(text.ends_with("\n  selector 6: entry: C++ no entry, Rust an entry"), "{text}");
}

/// A header whose struct was edited but whose own layout asserts were kept
/// does not compile: the error names the assert.
#[test]
fn an_edited_struct_fails_the_headers_own_asserts() {
    let header = null_driver::CPP_HEADER.replace("    uint64_t bar;\n", "    uint64_t bar[2];\n");
    assert_ne!(header, null_driver::CPP_HEADER);
    let header: &'static str = String::leak(header);
    match verify(&InterfaceInfo { cpp_header: header, ..null_driver::INTERFACE }) {
        Err(Error::Compile { compiler, stderr }) => {
            assert!(!compiler.is_empty());
            assert!(stderr.contains("DataStruct must be 16 bytes"), "{stderr}");
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}

/// An edit the header's own asserts cannot see: `bar` narrowed to four
/// bytes leaves padding where its other half was, so size, alignment and
/// offsets all still hold. Only the field's size tells.
#[test]
fn an_edit_that_keeps_the_asserted_numbers_is_found() {
    let header = null_driver::CPP_HEADER.replace("    uint64_t bar;\n", "    uint32_t bar;\n");
    assert_ne!(header, null_driver::CPP_HEADER);
    let header: &'static str = String::leak(header);
    let iface = InterfaceInfo { cpp_header: header, ..null_driver::INTERFACE };
    assert_eq!(differences(verify(&iface)), [number(DATA_STRUCT, "size of bar", 4, 8)]);
}

/// A header edited past its asserts (`Options::header`): the struct's layout
/// and every table entry whose check is `sizeof(DataStruct)` differ.
#[test]
fn an_edited_header_is_compared_fact_by_fact() {
    let (_scratch, options) = header_with("narrow", |h| {
        h.replace(
            "    uint64_t foo;\n    uint64_t bar;\n",
            "    uint32_t foo;\n    uint32_t bar;\n",
        )
    });
    let result = verify_with(&null_driver::INTERFACE, &options);
    let checked = selector(3, Some("checked_struct"));
    let register = selector(4, Some("register_async_callback"));
    let request = selector(5, Some("async_request"));
    assert_eq!(
        differences(result),
        [
            number(checked, "checkStructureInputSize", 8, 16),
            number(checked, "checkStructureOutputSize", 8, 16),
            number(register, "checkStructureInputSize", 8, 16),
            number(register, "checkStructureOutputSize", 8, 16),
            number(request, "checkStructureInputSize", 8, 16),
            number(DATA_STRUCT, "size", 8, 16),
            number(DATA_STRUCT, "alignment", 4, 8),
            number(DATA_STRUCT, "size of foo", 4, 8),
            number(DATA_STRUCT, "offset of bar", 4, 8),
            number(DATA_STRUCT, "size of bar", 4, 8),
        ]
    );
}

#[test]
fn an_edited_dispatch_entry_is_reported() {
    let (_scratch, options) = header_with("entry", |h| {
        // checked_scalar's entry: the first `16,` is its scalar input count.
        h.replacen("        16,   ", "        15,   ", 1)
    });
    let result = verify_with(&null_driver::INTERFACE, &options);
    assert_eq!(
        differences(result),
        [number(selector(2, Some("checked_scalar")), "checkScalarInputCount", 15, 16)]
    );
}

/// Something the Rust side has that the header lacks is a compile error.
#[test]
fn a_struct_missing_from_the_header_does_not_compile() {
    let structs = leak(vec![
        null_driver::STRUCTS[0],
        StructLayout {
            name: "Missing",
            size: 8,
            align: 8,
            fields: &[FieldLayout { name: "x", offset: 0, size: 8 }],
        },
    ]);
    match verify(&InterfaceInfo { structs, ..null_driver::INTERFACE }) {
        Err(Error::Compile { stderr, .. }) => assert!(stderr.contains("Missing"), "{stderr}"),
        other => panic!("expected a compile error, got {other:?}"),
    }
}

#[test]
fn names_that_are_not_identifiers_are_refused() {
    let iface = InterfaceInfo { cpp_namespace: "null-driver", ..null_driver::INTERFACE };
    match verify(&iface) {
        Err(Error::InvalidInterface(why)) => assert!(why.contains("`null-driver`"), "{why}"),
        other => panic!("expected InvalidInterface, got {other:?}"),
    }
}

#[test]
fn a_missing_compiler_is_reported() {
    let options = Options::compiler("/nonexistent/dextlink-c++");
    match verify_with(&null_driver::INTERFACE, &options) {
        Err(e @ Error::NoCompiler { .. }) => {
            assert!(e.to_string().contains("/nonexistent/dextlink-c++"), "{e}")
        }
        other => panic!("expected NoCompiler, got {other:?}"),
    }
}
