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
