//! The benchmark hosts compiled C++ dexts in this executable (the fwloader
//! dext for the upload figures, NullDriver's for the per-call ones): their
//! DriverKit symbols bind to the executable's copy of the runtime at load
//! time, so the executable exports its symbols (runtime/sim/driverkit/README.md).

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic");
    }
}
