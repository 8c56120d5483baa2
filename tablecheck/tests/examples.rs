//! Every example schema's generated C++ header, compiled by g++ and clang++,
//! agrees with its generated Rust module.

use dextlink::server::InterfaceInfo;
use dextlink_tablecheck::{Options, verify, verify_with};
use dextlink_tests::cxx_compilers;

dextlink::interface!("../examples/null_driver/null_driver.dextlink");
dextlink::interface!("../examples/fwloader/fwloader.dextlink");
dextlink::interface!("../tests/schemas/shapes.dextlink");

const EXAMPLES: [&InterfaceInfo; 3] =
    [&null_driver::INTERFACE, &fw_loader::INTERFACE, &shapes::INTERFACE];

#[test]
fn every_example_agrees_with_every_compiler() {
    // Every compiler and example runs before anything is reported, so that
    // one report shows whether a failure depends on the compiler.
    let mut failures = Vec::new();
    // g++ always; clang++ skipped with a note when missing, a failure under CI.
    for compiler in cxx_compilers() {
        for iface in EXAMPLES {
            match verify_with(iface, &Options::compiler(compiler)) {
                Ok(report) => {
                    println!("{report}");
                    assert_eq!(report.compiler, compiler);
                    assert_eq!(report.methods, iface.methods.len());
                    assert_eq!(report.entries, iface.selector_count as usize);
                    assert_eq!(report.structs, iface.structs.len());
                }
                Err(e) => failures.push(format!("{} with {compiler}: {e}", iface.name)),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn default_options_find_a_compiler() {
    // `$CXX` or the first default that runs; CI has at least g++.
    let report = verify(&null_driver::INTERFACE).unwrap_or_else(|e| panic!("{e}"));
    assert!(!report.compiler.is_empty());
    assert_eq!(report.interface, "NullDriver");
}
