//! The test dext under AddressSanitizer and UndefinedBehaviorSanitizer, in a
//! process of its own (`dextlink-driverkit-run` with the sanitizer runtime
//! preloaded): a clean run reports nothing, leaks included; a planted use
//! after free is reported naming its source file. And the runtime's own leak
//! report names a planted leak, in a process of its own too, since a leak
//! lasts as long as its process.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::process::{Command, Output};

const RUNNER: &str = env!("CARGO_BIN_EXE_dextlink-driverkit-run");

/// Selectors that exercise everything but the test-only ones (10, 11):
/// echo, collections, log formats, queue order, memory, poke, peek.
const CLEAN_RUN: &[&str] = &["0:41/1", "3/1", "4", "5/8", "6/1", "7:5,9", "8:5/1"];

fn run(dext: &Path, preload: Option<&Path>, steps: &[&str]) -> Output {
    let mut command = Command::new(RUNNER);
    command.arg(dext).args(["TestDriver", "TestUserClient"]).args(steps);
    if let Some(runtime) = preload {
        command
            .env("LD_PRELOAD", runtime)
            .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
            .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
    }
    command.output().unwrap_or_else(|e| panic!("cannot run {RUNNER}: {e}"))
}

fn describe(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_clean_run_under_sanitizers_reports_nothing_and_a_use_after_free_is_caught() {
    if !common::compiler_available("clang++") || !common::compiler_available("clang") {
        return;
    }
    let dext = common::build_dext(
        "clang++",
        &[
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer",
            "-g",
        ],
        "test-dext-asan",
    );
    let runtime = dextlink_tests::clang_asan_runtime();

    let clean = run(&dext, Some(&runtime), CLEAN_RUN);
    let stderr = String::from_utf8_lossy(&clean.stderr);
    assert!(
        clean.status.success()
            && !stderr.contains("Sanitizer")
            && !stderr.contains("runtime error"),
        "the clean run must report nothing:\n{}",
        describe(&clean)
    );
    let stdout = String::from_utf8_lossy(&clean.stdout);
    assert!(
        stdout.contains("selector 0: ok [42]") && stdout.contains("no leaks"),
        "{}",
        describe(&clean)
    );

    let bad = run(&dext, Some(&runtime), &["11/1"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "a use after free must fail the run:\n{}", describe(&bad));
    assert!(
        stderr.contains("heap-use-after-free") && stderr.contains("TestUserClient.cpp"),
        "the report must name the bug and its source file:\n{}",
        describe(&bad)
    );
}

#[test]
fn the_leak_report_names_a_planted_leak() {
    if !common::compiler_available("g++") {
        return;
    }
    let dext = common::build_dext("g++", &[], "test-dext-leak");
    let clean = run(&dext, None, CLEAN_RUN);
    assert!(clean.status.success(), "{}", describe(&clean));
    assert!(String::from_utf8_lossy(&clean.stdout).ends_with("no leaks\n"), "{}", describe(&clean));

    let leaky = run(&dext, None, &["10"]);
    let stdout = String::from_utf8_lossy(&leaky.stdout);
    assert_eq!(leaky.status.code(), Some(1), "{}", describe(&leaky));
    assert!(
        stdout
            .contains("leaks:\nOSString: 1 live object\nIOMalloc: 1 block (24 bytes) not freed\n"),
        "{}",
        describe(&leaky)
    );
}
