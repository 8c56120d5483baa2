//! The NullDriver figures load the dext's C++ library, whose DriverKit
//! symbols bind to the runtime linked into this executable: export them.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic");
    }
}
