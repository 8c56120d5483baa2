//! The NullDriver dext's C++ under AddressSanitizer and
//! UndefinedBehaviorSanitizer: built with clang++ and the sanitizers, loaded
//! by `nulldriver-client` with the sanitizer runtime preloaded, every button
//! pressed; the run must succeed and report nothing.
#![cfg(target_os = "linux")] // the C++ dext runs in dextlink-sim's Linux DriverKit runtime
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Missing: under CI=true the test fails (CI installs clang); elsewhere it
/// says so and the caller returns.
fn available(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        let why = format!("{tool} is not installed, so the dext cannot be built with sanitizers");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why} (CI=true: it must be)");
        eprintln!("NOT RUN: {why}");
    }
    found
}

/// The headers build.rs generated beside the library it built.
fn generated_dir() -> PathBuf {
    null_driver::cpp::library().with_file_name("generated")
}

#[test]
fn every_button_runs_clean_under_asan_and_ubsan() {
    if !available("clang++") || !available("clang") {
        return;
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("null-driver-asan-{}.so", std::process::id()));
    let dext = manifest().join("dext");
    let generated = generated_dir();
    let mut compile = Command::new("clang++");
    compile
        .args(["-std=c++17", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror"])
        .args(["-fsanitize=address,undefined", "-fno-sanitize-recover=all"])
        .args(["-fno-omit-frame-pointer", "-g"])
        .arg(format!("-I{}", manifest().join("../../runtime/sim/driverkit/include").display()))
        .arg(format!("-I{}", generated.display()))
        .arg(format!("-I{}", dext.display()))
        .arg(dext.join("NullDriver.cpp"))
        .arg(dext.join("NullDriverUserClient.cpp"))
        .arg(generated.join("NullDriver.iig.cpp"))
        .arg(generated.join("NullDriverUserClient.iig.cpp"))
        .arg("-o")
        .arg(&out);
    let built = compile.output().expect("run clang++");
    assert!(
        built.status.success(),
        "clang++ could not build the dext with sanitizers:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let runtime = dextlink_tests::clang_asan_runtime();

    let run = Command::new(env!("CARGO_BIN_EXE_nulldriver-client"))
        .args(["--dext", "cpp", "--sim", "in-process", "--library"])
        .arg(&out)
        .arg("--plist")
        .arg(dext.join("Info.plist"))
        .env("LD_PRELOAD", &runtime)
        // Leaks are the runtime's leak report's business (the sample's user
        // client and its actions reference each other until free).
        .env("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        .output()
        .expect("run nulldriver-client");
    let _ = std::fs::remove_file(&out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "status {}\n{stdout}\n{stderr}", run.status);
    for report in ["AddressSanitizer", "runtime error:"] {
        assert!(!stderr.contains(report), "{report} reported:\n{stderr}");
    }
    for line in [
        "got 4104 bytes starting { foo: 2, bar: 12 }, rest zeroed: yes",
        "  event: type 2, foo 101, bar 210",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
}
