//! The example schemas expand and compile.

dextlink::interface!("../examples/fwloader/fwloader.dextlink");
dextlink::interface!("../examples/null_driver/null_driver.dextlink");
dextlink::interface!("../tests/schemas/shapes.dextlink");

#[test]
fn constants_match_the_schema() {
    assert_eq!(fw_loader::SLOT_COUNT, 8);
    assert_eq!(fw_loader::METHODS.len(), 5);
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
/// rules of driverkit-facts §2.2 on the NullDriver port.
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
