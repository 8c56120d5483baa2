//! The USB test dext built with g++, on the simulated device.
#![cfg(target_os = "linux")]
mod usb_common;

usb_dext_tests!(|| usb_common::compiler_available("g++").then(|| usb_common::build_usb_dext(
    "g++",
    &[],
    "usb-dext-gxx"
)));
