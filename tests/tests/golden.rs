//! Golden output: the C++ and C headers of every example schema are checked
//! in under `tests/golden/` and must match byte for byte. They were read as a
//! reviewer would before being blessed; a change shows up as a diff here.
//! `DEXTLINK_BLESS=1 cargo test --test golden` rewrites them.

use dextlink_schema::emit::c_client;
use dextlink_tests::{assert_golden, cpp_header, example_schemas, load, root};

#[test]
fn cpp_headers_match_golden_files() {
    for (name, path) in example_schemas() {
        let schema = load(&path);
        assert_golden(&root().join(format!("tests/golden/{name}.h")), &cpp_header(&schema));
    }
}

#[test]
fn c_client_headers_match_golden_files() {
    for (name, path) in example_schemas() {
        let schema = load(&path);
        assert_golden(
            &root().join(format!("tests/golden/{name}_client.h")),
            &c_client::emit(&schema.interface),
        );
    }
}

#[test]
fn generation_is_deterministic() {
    for (_, path) in example_schemas() {
        let (a, b) = (load(&path), load(&path));
        assert_eq!(cpp_header(&a), cpp_header(&b));
        assert_eq!(c_client::emit(&a.interface), c_client::emit(&b.interface));
        assert_eq!(a.interface.fingerprint, b.interface.fingerprint);
    }
}
