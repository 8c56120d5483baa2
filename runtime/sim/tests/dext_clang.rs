//! The test dext built with clang++ and blocks (`-fblocks`, Debian's
//! BlocksRuntime): its queue test dispatches real blocks.
mod common;

dext_tests!(|| common::compiler_available("clang++").then(|| common::build_dext(
    "clang++",
    &["-fblocks", "-lBlocksRuntime"],
    "test-dext-clang"
)));
