//! Firmware loader over DriverKit: the schema (`fwloader.dextlink`), the
//! dext's C++ sources written against the generated header (`dext/`), the
//! same dext modelled in Rust for the simulator, a simulated USB bootloader
//! with a two-bank flash, and the `fwupload` tool.

dextlink::interface!("fwloader.dextlink");

pub use crate::fw_loader::{FwLoader, ImageInfo, SlotHeader, Status, UploadState};
