//! The generated dext header works end to end: `tests/cpp/shapes_dispatch.cpp`
//! implements every handler of `tests/schemas/shapes.dextlink`, drives every
//! method through the DriverKit shim's `CallBuilder` (the kernel's side of a
//! call), and checks round trips, refusals, completions and client memory.
//! It is built with AddressSanitizer and UndefinedBehaviorSanitizer, with
//! every compiler available, so that the generated thunks are also checked
//! for out-of-bounds access, leaks and invalid `bool`/enum loads.

use std::path::Path;
use std::process::Command;

use dextlink_tests::{compile_cpp, cpp_header, cxx_compilers, load, root, scratch_dir};

const SANITIZERS: &[&str] = &["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"];

#[test]
fn shapes_header_dispatches_every_method_end_to_end() {
    let schema = load(&root().join("tests/schemas/shapes.dextlink"));
    let source = root().join("tests/cpp/shapes_dispatch.cpp");
    assert!(source.is_file(), "missing {}", source.display());
    // The .cpp includes "Shapes.h": written into the scratch dir, which is on
    // the include path (the .cpp's own directory has no Shapes.h).
    let main = format!("#include \"{}\"\n", source.display());

    // Every compiler runs before anything is reported, so that one report
    // shows whether a failure depends on the compiler.
    let mut failures = Vec::new();
    for compiler in cxx_compilers() {
        let dir = scratch_dir(&format!("cpp-dispatch-{compiler}"));
        std::fs::write(dir.join("Shapes.h"), cpp_header(&schema)).unwrap();
        let exe = dir.join("shapes_dispatch");
        match compile_cpp(compiler, &dir, &main, SANITIZERS, Some(&exe)) {
            Ok(()) => failures.extend(run(compiler, &exe)),
            Err(e) => failures.push(e),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Runs the test program; `Some(report)` unless it exited 0 with "0 failed".
fn run(compiler: &str, exe: &Path) -> Option<String> {
    let output = Command::new(exe)
        // Leak checking is on by default with ASan on Linux; say so explicitly,
        // and make UBSan print where it stopped.
        .env("ASAN_OPTIONS", "detect_leaks=1")
        .env("UBSAN_OPTIONS", "print_stacktrace=1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let passed = output.status.success()
        && stdout.contains("shapes-dispatch: ")
        && stdout.contains(" 0 failed");
    (!passed).then(|| {
        format!(
            "shapes_dispatch built with {compiler} failed ({}):\n--- stdout\n{stdout}--- stderr\n{stderr}",
            output.status
        )
    })
}
