//! The fwloader dext's C++ sources, compiled and run off-device.
//!
//! `dext/FwLoaderUserClient.cpp` is the user client written against the header
//! dextlink generates from `fwloader.dextlink`, with the bootloader's vendor
//! protocol in `dext/FwLoaderDeviceProtocol.h`. These tests generate the header
//! into a scratch directory and compile the sources against the DriverKit and
//! USBDriverKit shims (`schema/shim`, with `dext/shim/FwLoaderUserClient.h`
//! standing in for iig's output) with every C++ compiler available and the
//! workspace's strict warning flags; and run `tests/cpp/fwloader_dispatch.cpp`,
//! which drives the user client through the generated dispatch against a fake
//! USB interface, pipe and bootloader, under AddressSanitizer (with leak
//! detection) and UndefinedBehaviorSanitizer.

use std::path::{Path, PathBuf};

use dextlink_tests::{
    SANITIZERS, Scratch, compile_cpp, cpp_header, cxx_compilers, load, run_test_program,
    sanitizers_work, scratch_dir,
};

fn example_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dext_dir() -> PathBuf {
    example_dir().join("dext")
}

/// The directory of the stand-in for iig's `FwLoaderUserClient.h`.
fn iig_stand_in_dir() -> PathBuf {
    dext_dir().join("shim")
}

/// `FwLoader.h` exactly as `dextlink gen fwloader.dextlink --cpp` writes it.
fn generated_header() -> String {
    cpp_header(&load(&example_dir().join("fwloader.dextlink")))
}

/// A scratch directory holding the generated header as `FwLoader.h`.
fn scratch_with_header(name: &str, header: &str) -> Scratch {
    let dir = scratch_dir(name);
    std::fs::write(dir.join("FwLoader.h"), header).expect("write FwLoader.h");
    dir
}

/// `-I` for the iig stand-in and for `dext/` (FwLoaderDeviceProtocol.h).
fn include_args() -> Vec<String> {
    vec![
        "-I".to_owned(),
        iig_stand_in_dir().display().to_string(),
        "-I".to_owned(),
        dext_dir().display().to_string(),
    ]
}

fn include_line(path: &Path) -> String {
    assert!(path.is_file(), "missing {}", path.display());
    format!("#include \"{}\"\n", path.display())
}

#[test]
fn dext_sources_compile_warning_free_with_every_compiler() {
    let header = generated_header();
    let user_client = include_line(&dext_dir().join("FwLoaderUserClient.cpp"));
    let protocol = "#include \"FwLoaderDeviceProtocol.h\"\n#include \"FwLoaderDeviceProtocol.h\"  // the guard holds\n";
    let usb_shim = "#include <dextlink/usbdriverkit_shim.h>\n#include <dextlink/usbdriverkit_shim.h>  // the guard holds\n";
    let usb_shim_second = "#include <dextlink/driverkit_shim.h>\n#include <dextlink/usbdriverkit_shim.h>\n#include \"FwLoader.h\"\n";
    let usb_shim_first = "#include <dextlink/usbdriverkit_shim.h>\n#include \"FwLoader.h\"\n#include <dextlink/driverkit_shim.h>\n";
    let includes = include_args();

    let mut failures = Vec::new();
    for compiler in cxx_compilers() {
        let dir = scratch_with_header(&format!("fwloader-dext-{compiler}"), &header);
        let mut variants: Vec<(&str, &str, Vec<&str>)> = vec![
            ("FwLoaderUserClient.cpp", user_client.as_str(), vec![]),
            ("FwLoaderUserClient.cpp as C++20", user_client.as_str(), vec!["-std=c++20"]),
            ("FwLoaderDeviceProtocol.h on its own", protocol, vec![]),
            ("usbdriverkit_shim.h on its own", usb_shim, vec![]),
            ("usbdriverkit_shim.h after driverkit_shim.h", usb_shim_second, vec![]),
            ("usbdriverkit_shim.h before driverkit_shim.h", usb_shim_first, vec![]),
        ];
        if compiler == "clang++" {
            // Blocks select Stop's on-device branch (cancel handlers that
            // pass Stop on to super); clang type-checks it against the shim.
            variants.push((
                "FwLoaderUserClient.cpp with blocks",
                user_client.as_str(),
                vec!["-fblocks"],
            ));
        }
        for (what, main, flags) in variants {
            let mut extra: Vec<&str> = includes.iter().map(String::as_str).collect();
            extra.extend(flags);
            if let Err(e) = compile_cpp(compiler, &dir, main, &extra, None) {
                failures.push(format!("{what}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn dext_sources_follow_the_generated_header() {
    // The dext reaches the schema only through the generated names; a schema
    // whose submit completion lost a value no longer compiles with it.
    let header = generated_header();
    let from = "    uint32_t transferred,\n    uint64_t acknowledged)\n";
    assert!(header.contains(from), "the generated header no longer contains {from:?}");
    let drifted = header.replacen(from, "    uint32_t transferred)\n", 1);
    let user_client = include_line(&dext_dir().join("FwLoaderUserClient.cpp"));
    let includes = include_args();
    let extra: Vec<&str> = includes.iter().map(String::as_str).collect();
    for compiler in cxx_compilers() {
        let dir = scratch_with_header(&format!("fwloader-drift-{compiler}"), &drifted);
        let err = compile_cpp(compiler, &dir, &user_client, &extra, None)
            .expect_err("the dext must not compile against a drifted header");
        assert!(
            err.contains("CompleteSubmit"),
            "{compiler}: expected an error naming CompleteSubmit, got:\n{err}"
        );
    }
}

#[test]
fn user_client_uploads_through_the_generated_dispatch() {
    let header = generated_header();
    let driver = include_line(&example_dir().join("tests/cpp/fwloader_dispatch.cpp"));
    let user_client = dext_dir().join("FwLoaderUserClient.cpp");
    assert!(user_client.is_file(), "missing {}", user_client.display());
    let user_client = user_client.display().to_string();
    let includes = include_args();

    // Every compiler runs before anything is reported, so that one report
    // shows whether a failure depends on the compiler.
    let mut failures = Vec::new();
    for compiler in cxx_compilers() {
        let sanitize = sanitizers_work(compiler);
        let dir = scratch_with_header(&format!("fwloader-dispatch-{compiler}"), &header);
        let exe = dir.join("fwloader_dispatch");
        // The user client is its own translation unit, as in the dext.
        let mut extra: Vec<&str> = includes.iter().map(String::as_str).collect();
        extra.push(&user_client);
        if sanitize {
            extra.extend(SANITIZERS);
        }
        match compile_cpp(compiler, &dir, &driver, &extra, Some(&exe)) {
            Ok(()) => failures.extend(run_test_program(compiler, &exe, "fwloader-dispatch")),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
