//! The USB test dext under AddressSanitizer and UndefinedBehaviorSanitizer:
//! this test binary runs itself again (its ignored test `sanitizer_child`)
//! with the sanitizer runtime preloaded, and that child runs every USB
//! check against the instrumented dext. A clean run reports nothing.
#![cfg(target_os = "linux")]

mod usb_common;

use std::path::PathBuf;
use std::process::Command;

const DEXT_ENV: &str = "DEXTLINK_USB_SANITIZER_DEXT";

#[test]
fn the_usb_checks_under_sanitizers_report_nothing() {
    if !usb_common::compiler_available("clang++") || !usb_common::compiler_available("clang") {
        return;
    }
    let dext = usb_common::build_usb_dext(
        "clang++",
        &[
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer",
            "-g",
        ],
        "usb-dext-asan",
    );
    let output = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--ignored", "--exact", "sanitizer_child", "--nocapture", "--test-threads=1"])
        .env(DEXT_ENV, &dext)
        .env("LD_PRELOAD", dextlink_tests::clang_asan_runtime())
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        .output()
        .expect("run the sanitizer child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success()
            && stdout.contains("every USB check passed")
            && !stderr.contains("Sanitizer")
            && !stderr.contains("runtime error"),
        "status {}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        output.status
    );
}

#[test]
#[ignore = "the child process of the_usb_checks_under_sanitizers_report_nothing"]
fn sanitizer_child() {
    let dext = std::env::var_os(DEXT_ENV)
        .unwrap_or_else(|| panic!("{DEXT_ENV} must name the instrumented USB test dext"));
    usb_common::load_once(|| PathBuf::from(dext));
    let _serial = usb_common::serial();
    usb_common::everything();
    println!("every USB check passed");
}
