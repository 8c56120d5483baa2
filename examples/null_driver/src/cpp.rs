//! The NullDriver dext's own C++ (`dext/`), compiled by this crate's build
//! script, loaded and started in this process as DriverKit would start it.

use std::path::Path;

use dextlink_sim::{CppDext, CppService, HostError};

/// `libnull_driver_dext.so`, built from `dext/` by `build.rs`.
pub fn library() -> &'static Path {
    Path::new(env!("DEXTLINK_DEXT_NULL_DRIVER"))
}

/// The dext's `Info.plist` (`dext/Info.plist`).
pub fn plist() -> &'static Path {
    Path::new(env!("DEXTLINK_PLIST_NULL_DRIVER"))
}

/// Loads the dext and starts its personality; its service, the IOUserClass
/// `NullDriver` (the schema's `service`), once it registered.
pub fn start() -> Result<(CppDext, CppService), HostError> {
    start_from(library(), plist())
}

/// [`start`] for a build of the dext made elsewhere (with sanitizers, say).
pub fn start_from(library: &Path, plist: &Path) -> Result<(CppDext, CppService), HostError> {
    let dext = CppDext::load(library, plist)?;
    let service = dext.service(crate::null_driver::SERVICE)?;
    Ok((dext, service))
}
