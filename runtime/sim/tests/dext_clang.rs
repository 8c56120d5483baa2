//! The test dext built with clang++ and blocks (`-fblocks`, Debian's
//! BlocksRuntime): its queue test dispatches real blocks.
#![cfg(target_os = "linux")]
mod common;

dext_tests!(|| common::compiler_available("clang++").then(|| common::build_dext(
    "clang++",
    &["-fblocks", "-lBlocksRuntime"],
    "test-dext-clang"
)));
