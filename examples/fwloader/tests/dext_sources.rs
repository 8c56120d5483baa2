//! The fwloader dext's C++ sources (`dext/`), compiled as the build script
//! compiles them -- the schema's generated `FwLoader.h`, the class headers
//! `dextlink iig` writes from the `.iig` files, the simulator's DriverKit
//! and USBDriverKit headers -- with every C++ compiler available and the
//! workspace's strict warning flags. What the dext does is tested by the
//! uploads through it (tests/upload.rs, tests/fault_matrix.rs,
//! tests/cpp_dext.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

use dextlink_tests::{STRICT_FLAGS, Scratch, cpp_header, cxx_compilers, load, scratch_dir};

fn example_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dext_dir() -> PathBuf {
    example_dir().join("dext")
}

/// A scratch directory with `FwLoader.h` (`header`) and the iig output of
/// every class; returns it and the generated `.iig.cpp` files.
fn generated(name: &str, header: &str) -> (Scratch, Vec<PathBuf>) {
    let dir = scratch_dir(name);
    std::fs::write(dir.join("FwLoader.h"), header).expect("write FwLoader.h");
    let mut sources = Vec::new();
    for class in ["FwLoaderDriver.iig", "FwLoaderUserClient.iig"] {
        let path = dext_dir().join(class);
        let text = std::fs::read_to_string(&path).expect("read the .iig");
        let output = dextlink_schema::iig::generate(&path, &text)
            .unwrap_or_else(|e| panic!("dextlink iig {}: {e}", path.display()));
        std::fs::write(dir.join(&output.header_name), output.header).unwrap();
        std::fs::write(dir.join(&output.source_name), output.source).unwrap();
        sources.push(dir.join(output.source_name));
    }
    (dir, sources)
}

fn compile(compiler: &str, dir: &Path, sources: &[PathBuf], extra: &[&str]) -> Result<(), String> {
    let result = Command::new(compiler)
        .args(STRICT_FLAGS)
        .args(extra)
        .arg("-fsyntax-only")
        .arg("-I")
        .arg(example_dir().join("../../runtime/sim/driverkit/include"))
        .arg("-I")
        .arg(dir)
        .arg("-I")
        .arg(dext_dir())
        .args(sources)
        .output()
        .map_err(|e| format!("cannot run {compiler}: {e}"))?;
    if result.status.success() {
        Ok(())
    } else {
        Err(format!("{compiler} {extra:?}:\n{}", String::from_utf8_lossy(&result.stderr)))
    }
}

fn dext_sources() -> Vec<PathBuf> {
    ["FwLoaderDriver.cpp", "FwLoaderUserClient.cpp"].iter().map(|f| dext_dir().join(f)).collect()
}

#[test]
fn dext_sources_compile_warning_free_with_every_compiler() {
    let header = cpp_header(&load(&example_dir().join("fwloader.dextlink")));
    let mut failures = Vec::new();
    for compiler in cxx_compilers() {
        let (dir, mut sources) = generated(&format!("fwloader-dext-{compiler}"), &header);
        sources.extend(dext_sources());
        for flags in [&[][..], &["-std=c++20"][..]] {
            if let Err(e) = compile(compiler, &dir, &sources, flags) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn dext_sources_follow_the_generated_header() {
    // The dext reaches the schema only through the generated names; a schema
    // whose submit completion lost a value no longer compiles with it.
    let header = cpp_header(&load(&example_dir().join("fwloader.dextlink")));
    let from = "    uint32_t transferred,\n    uint64_t acknowledged)\n";
    assert!(header.contains(from), "the generated header no longer contains {from:?}");
    let drifted = header.replacen(from, "    uint32_t transferred)\n", 1);
    for compiler in cxx_compilers() {
        let (dir, _) = generated(&format!("fwloader-drift-{compiler}"), &drifted);
        let err = compile(compiler, &dir, &dext_sources(), &[])
            .expect_err("the dext must not compile against a drifted header");
        assert!(
            err.contains("CompleteSubmit"),
            "{compiler}: expected an error naming CompleteSubmit, got:\n{err}"
        );
    }
}
