//! Builds the NullDriver dext (`dext/`) for the simulator, as Xcode builds it
//! for a Mac: iig's class headers from the `.iig` files (through `dextlink
//! iig`'s library), the interface header from the schema (`dextlink gen
//! --cpp NullDriverInterface.h`), then the dext's own C++ into
//! `libnull_driver_dext.so` against `dextlink-sim --print-cflags`.
//!
//! The generated headers are build output, not checked in: Xcode generates
//! iig's at build time too, so the dext's sources stay exactly those of the
//! Xcode project, and nothing can go stale.

use std::path::{Path, PathBuf};

fn main() {
    if let Err(message) = build() {
        // A build script has no other way to fail the build.
        eprintln!("error: building the NullDriver dext: {message}");
        std::process::exit(1);
    }
}

fn build() -> Result<(), String> {
    // The simulator's DriverKit runtime is Linux's; on a Mac, Xcode builds
    // the dext and DriverKit runs it.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return Ok(());
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dext = manifest.join("dext");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let generated = out.join("generated");
    std::fs::create_dir_all(&generated)
        .map_err(|e| format!("cannot create {}: {e}", generated.display()))?;

    let mut sources = Vec::new();
    for iig in ["NullDriver.iig", "NullDriverUserClient.iig"] {
        let path = dext.join(iig);
        println!("cargo:rerun-if-changed={}", path.display());
        let text = read(&path)?;
        let output = dextlink_schema::iig::generate(&path, &text)
            .map_err(|diagnostics| format!("dextlink iig {}:\n{diagnostics}", path.display()))?;
        write(&generated.join(&output.header_name), &output.header)?;
        let source = generated.join(&output.source_name);
        write(&source, &output.source)?;
        sources.push(source);
    }

    let schema_path = manifest.join("null_driver.dextlink");
    println!("cargo:rerun-if-changed={}", schema_path.display());
    let schema = dextlink_schema::load(&schema_path).map_err(|e| e.to_string())?;
    let header = dextlink_schema::emit::cpp::emit(
        &schema.interface,
        &dextlink_schema::emit::cpp::Options { schema_name: "null_driver.dextlink".into() },
    );
    write(&generated.join("NullDriverInterface.h"), &header)?;
    println!("cargo:rerun-if-changed={}", dext.join("SampleChecks.h").display());

    let mut library = dextlink_sim::build::Dext::new("null_driver_dext")
        .include(&generated)
        .include(&dext)
        .flag("-Wall")
        .flag("-Wextra")
        .file(dext.join("NullDriver.cpp"))
        .file(dext.join("NullDriverUserClient.cpp"));
    for source in &sources {
        library = library.file(source);
    }
    let library = library.compile()?;
    dextlink_sim::build::emit_env("null_driver", &library);
    // The dext binds its DriverKit symbols to the runtime linked into the
    // executable that loads it (the crate's binaries and tests).
    println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic");
    println!("cargo:rustc-link-arg-tests=-Wl,--export-dynamic");
    let plist = dext.join("Info.plist");
    println!("cargo:rerun-if-changed={}", plist.display());
    println!("cargo:rustc-env=DEXTLINK_PLIST_NULL_DRIVER={}", plist.display());
    Ok(())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Writes `text` unless the file already holds it: the generated sources are
/// `rerun-if-changed` inputs of the dext's compile, so rewriting them
/// unchanged would rebuild the crate on every build.
fn write(path: &Path, text: &str) -> Result<(), String> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
