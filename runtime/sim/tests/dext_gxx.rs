//! The test dext built with g++, loaded and driven through the host ABI.
#![cfg(target_os = "linux")]
mod common;

dext_tests!(|| common::compiler_available("g++").then(|| common::build_dext(
    "g++",
    &[],
    "test-dext-gxx"
)));
