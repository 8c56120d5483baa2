//! The USB test dext built with clang++ (and blocks), on the simulated device.
#![cfg(target_os = "linux")]
mod usb_common;

usb_dext_tests!(|| usb_common::compiler_available("clang++").then(|| usb_common::build_usb_dext(
    "clang++",
    &["-fblocks", "-lBlocksRuntime"],
    "usb-dext-clang"
)));
