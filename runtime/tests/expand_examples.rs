//! The example schemas expand and compile.

dextlink::interface!("../examples/fwloader/fwloader.dextlink");
dextlink::interface!("../examples/null_driver/null_driver.dextlink");
dextlink::interface!("../tests/schemas/shapes.dextlink");

#[test]
fn constants_match_the_schema() {
    assert_eq!(fw_loader::SLOT_COUNT, 8);
    assert_eq!(fw_loader::METHODS.len(), 6);
    assert_eq!(null_driver::METHODS[2].checks.scalar_input_count, 16);
    assert_eq!(shapes::Mode::from_wire(0xff), Ok(shapes::Mode::Auto));
}

/// The macro's `CPP_HEADER` is byte for byte the checked-in golden header,
/// which `schema/tests/cli.rs` shows is what `dextlink gen --cpp` writes.
#[test]
fn cpp_header_is_byte_identical_to_the_cli_output() {
    let golden = |name: &str| {
        std::fs::read_to_string(format!("{}/../tests/golden/{name}.h", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
    };
    assert_eq!(fw_loader::CPP_HEADER, golden("fwloader"));
    assert_eq!(null_driver::CPP_HEADER, golden("null_driver"));
    assert_eq!(shapes::CPP_HEADER, golden("shapes"));
}

/// `METHODS` carries the same check values as the C++ table; spot-check the
/// rules of docs/driverkit.md §2.2 on the NullDriver port.
#[test]
fn methods_metadata_matches_the_dispatch_rules() {
    const VARIABLE: u32 = 0xffff_ffff;
    let m = null_driver::METHODS;
    assert!(m[0].unchecked && m[1].unchecked);
    assert_eq!(m[0].checks.scalar_input_count, 0, "unchecked entries are zero-filled");
    assert_eq!((m[3].checks.structure_input_size, m[3].checks.structure_output_size), (16, 16));
    assert_eq!(m[4].checks.completion_exists, 1);
    assert_eq!(m[5].checks.completion_exists, VARIABLE, "#[completion(any)] is -1U");
    let s = shapes::METHODS;
    let by_name = |n: &str| s.iter().find(|m| m.name == n).unwrap();
    assert_eq!(by_name("write_blob").checks.structure_input_size, VARIABLE);
    assert_eq!(by_name("read_name").checks.structure_output_size, 32);
    assert_eq!(by_name("read_log").checks.structure_output_size, VARIABLE);
    assert_eq!(by_name("sample").completion_values, 16);
}

/// `STRUCTS` is what rustc laid out, and it is the schema's C layout: a bool
/// or enum field is stored as its integer, with the C++ field's size.
#[test]
fn struct_layouts_are_measured_by_rustc() {
    use dextlink::server::FieldLayout;
    let config = shapes::STRUCTS.iter().find(|s| s.name == "Config").unwrap();
    assert_eq!((config.size, config.align), (size_of::<shapes::Config>(), 8));
    let field = |name: &str| *config.fields.iter().find(|f| f.name == name).unwrap();
    assert_eq!(field("corners"), FieldLayout { name: "corners", offset: 8, size: 32 });
    assert_eq!(field("mode"), FieldLayout { name: "mode", offset: 72, size: 1 });
    assert_eq!(field("enabled"), FieldLayout { name: "enabled", offset: 73, size: 1 });
    assert_eq!(field("trim"), FieldLayout { name: "trim", offset: 74, size: 2 });
    let names: Vec<&str> = fw_loader::STRUCTS.iter().map(|s| s.name).collect();
    assert_eq!(names, ["SlotHeader", "ImageInfo", "UploadState"]);
    assert_eq!(fw_loader::STRUCTS[0].size, fw_loader::SLOT_HEADER_SIZE as usize);
}

/// `INTERFACE` bundles the module's metadata for `dextlink-tablecheck`.
#[test]
fn interface_info_bundles_the_metadata() {
    let i = fw_loader::INTERFACE;
    assert_eq!((i.name, i.cpp_namespace), ("FwLoader", "fw_loader"));
    assert_eq!(i.cpp_header, fw_loader::CPP_HEADER);
    assert_eq!((i.fingerprint, i.version), (fw_loader::FINGERPRINT, fw_loader::VERSION));
    assert_eq!(i.selector_count, fw_loader::SELECTOR_COUNT);
    assert_eq!((i.methods, i.memory_types), (fw_loader::METHODS, fw_loader::MEMORY_TYPES));
    assert_eq!(i.structs, fw_loader::STRUCTS);
    assert_eq!(null_driver::INTERFACE.structs[0].fields.len(), 2);
}
