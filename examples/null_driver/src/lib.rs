//! Apple's NullDriver sample ("Communicating between a DriverKit extension
//! and a client app"), ported to dextlink: the schema (`null_driver.dextlink`),
//! the dext's own C++ (`dext/`: the NullDriver service and its user client,
//! written against the generated header) built for the simulator and
//! hosted by it ([`cpp`]), the same dext modelled in Rust ([`dext`]: the
//! baseline the C++ dext is measured and cross-checked against),
//! and a client that presses each button of the sample app
//! (`src/bin/nulldriver-client.rs`).

dextlink::interface!("null_driver.dextlink");

#[cfg(target_os = "linux")]
pub mod cpp;
pub mod dext;

pub use crate::null_driver::{DataStruct, NullDriver};

/// The sample's `OversizedDataStruct`: a `DataStruct` followed by 511 more
/// words, 4104 bytes — over the 4096 bytes that travel inline, so the
/// "Large Struct" buttons send and receive it through memory descriptors
/// (docs/driverkit.md §3.1-1, §3.2-5).
pub const OVERSIZED_LEN: usize = 16 + 511 * 8;
