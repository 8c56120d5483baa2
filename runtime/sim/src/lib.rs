//! DriverKit on Linux: the simulator side that runs a dext's own compiled C++.
//!
//! The C++ DriverKit runtime (`driverkit/`, headers under Apple's names) is
//! compiled into this crate and linked whole into every executable that
//! depends on it; executables export their symbols, so a dext built as a
//! shared library against `driverkit/include` (its DriverKit symbols left
//! undefined) and loaded with [`driverkit::Library::load`] binds to that one
//! copy. [`driverkit`] is the safe Rust face of the runtime's host ABI
//! (`driverkit/include/dextlink_host.h`); [`rules`] exports the dispatch
//! rules, implemented once in `dextlink::server`, to the C++ side.
//! [`personality`] reads a dext's `Info.plist`, and [`CppDext`] loads a
//! compiled dext and starts its services, each a `dextlink::sim::Driver`
//! (what the `dextlink-sim serve` server runs).

#[cfg(feature = "build")]
pub mod build;
#[cfg(target_os = "linux")]
pub mod dext;
#[cfg(target_os = "linux")]
pub mod driverkit;
pub mod personality;
pub mod rules;
pub mod usb_match;

#[cfg(target_os = "linux")]
pub use dext::{CppDext, CppService, CppUserClient, HostError};
