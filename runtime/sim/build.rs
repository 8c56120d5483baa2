//! Compiles the C++ DriverKit runtime into a static library linked whole,
//! and exports the executables' symbols, so that a dext loaded with dlopen
//! (built with its DriverKit symbols undefined) binds to this one copy.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=driverkit");
    // The runtime is Linux's stand-in for DriverKit (memfds, ELF, dlopen
    // binding to the executable); on a Mac the real DriverKit runs the dext,
    // and the crate builds without it (.ci/check-apple type-checks it).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let root = Path::new("driverkit");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .include(root.join("include"))
        .flag("-Wall")
        .flag("-Wextra")
        .warnings_into_errors(true)
        .pic(true)
        .link_lib_modifier("+whole-archive");
    let mut sources: Vec<_> = std::fs::read_dir(root.join("src"))
        .expect("driverkit/src is part of the crate")
        .map(|entry| entry.expect("read driverkit/src").path())
        .filter(|path| path.extension().is_some_and(|e| e == "cpp"))
        .collect();
    sources.sort();
    build.files(&sources);
    build.compile("dextlink_driverkit");
    println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic");
    println!("cargo:rustc-link-arg-tests=-Wl,--export-dynamic");
}
