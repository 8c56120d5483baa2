//! Builds the fwloader dext for the simulator: generates `FwLoader.h` from
//! the schema and the class headers from the `.iig` files (what Xcode's
//! build does with `dextlink gen` and iig), and compiles `dext/*.cpp` into a
//! shared library against the simulator's DriverKit headers, with the
//! flags `dextlink-sim --print-cflags` and `--print-libs` print. The crate
//! reads its path as `env!("FWLOADER_DEXT")` ("" when no C++ compiler was
//! found outside CI: the C++ dext then reports that it was not built).

use std::path::{Path, PathBuf};
use std::process::Command;

const CLASSES: [&str; 2] = ["FwLoaderDriver.iig", "FwLoaderUserClient.iig"];
const SOURCES: [&str; 2] = ["FwLoaderDriver.cpp", "FwLoaderUserClient.cpp"];

fn main() {
    let crate_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let dext = crate_dir.join("dext");
    println!("cargo:rerun-if-changed=fwloader.dextlink");
    println!("cargo:rerun-if-changed=dext");
    println!("cargo:rerun-if-env-changed=CXX");
    println!("cargo:rerun-if-env-changed=CI");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        // On a Mac Xcode builds the dext; the simulator's runtime is Linux's.
        println!("cargo:rustc-env=FWLOADER_DEXT=");
        return;
    }
    let schema_path = crate_dir.join("fwloader.dextlink");
    let schema = dextlink_schema::load(&schema_path).unwrap_or_else(|e| panic!("{e}"));
    let options = dextlink_schema::emit::cpp::Options { schema_name: "fwloader.dextlink".into() };
    write(&out.join("FwLoader.h"), &dextlink_schema::emit::cpp::emit(&schema.interface, &options));
    let mut sources: Vec<PathBuf> = SOURCES.iter().map(|s| dext.join(s)).collect();
    for class in CLASSES {
        let path = dext.join(class);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let generated = dextlink_schema::iig::generate(&path, &text)
            .unwrap_or_else(|e| panic!("dextlink iig {}: {e}", path.display()));
        write(&out.join(&generated.header_name), &generated.header);
        write(&out.join(&generated.source_name), &generated.source);
        sources.push(out.join(generated.source_name));
    }
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "g++".to_string());
    if Command::new(&compiler).arg("--version").output().is_err() {
        let why = format!("{compiler} is not installed, so the C++ fwloader dext cannot be built");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why} (CI=true: the C++ dext must be built)");
        }
        println!("cargo:warning={why}; `--dext cpp` will report it");
        println!("cargo:rustc-env=FWLOADER_DEXT=");
        return;
    }
    let include = crate_dir.join("../../runtime/sim/driverkit/include");
    let library = out.join("libfwloader_dext.so");
    let result = Command::new(&compiler)
        .args(["-std=c++17", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(&include)
        .arg("-I")
        .arg(&out)
        .arg("-I")
        .arg(&dext)
        .args(&sources)
        .arg("-o")
        .arg(&library)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    if !result.status.success() {
        panic!(
            "{compiler} could not build the fwloader dext:\n{}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
    }
    println!("cargo:rustc-env=FWLOADER_DEXT={}", library.display());
    // A dext's DriverKit symbols bind to the executable's copy of the
    // runtime at load time (runtime/sim/driverkit/README.md).
    println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic");
    println!("cargo:rustc-link-arg-tests=-Wl,--export-dynamic");
}

fn write(path: &Path, text: &str) {
    // Unchanged files keep their timestamps, so nothing rebuilds for nothing.
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
