//! Helpers shared by the workspace's tests: paths, schema loading, golden
//! files, compiling generated C++ with the system compilers, the tools a
//! test needs ([`tools`]), scratch directories ([`scratch`]) and
//! child-process helpers ([`child`]).

pub mod child;
pub mod images;
pub mod scratch;
pub mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;

use dextlink_schema::emit::cpp;
use dextlink_schema::{Schema, stale};

pub use scratch::Scratch;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The example schemas every output is tested on: (short name, path).
pub fn example_schemas() -> Vec<(&'static str, PathBuf)> {
    let root = root();
    vec![
        ("fwloader", root.join("examples/fwloader/fwloader.dextlink")),
        ("null_driver", root.join("examples/null_driver/null_driver.dextlink")),
        ("shapes", root.join("tests/schemas/shapes.dextlink")),
    ]
}

/// Loads a schema, panicking with the rendered diagnostics if it is invalid.
pub fn load(path: &Path) -> Schema {
    dextlink_schema::load(path).unwrap_or_else(|e| panic!("{e}"))
}

/// The C++ header exactly as `dextlink gen SCHEMA --cpp` writes it.
pub fn cpp_header(schema: &Schema) -> String {
    let name = schema
        .source()
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    cpp::emit(&schema.interface, &cpp::Options { schema_name: name })
}

/// Compares a golden file with freshly generated text, failing with a diff.
/// `DEXTLINK_BLESS=1` rewrites the golden file instead.
pub fn assert_golden(path: &Path, actual: &str) {
    let bless = std::env::var_os("DEXTLINK_BLESS").is_some();
    if let Err(e) = stale::check_file(path, actual, bless) {
        panic!(
            "{e}\n\nIf the change is intended, rerun with DEXTLINK_BLESS=1 and review the diff."
        );
    }
}

/// The C++ compilers to test with: g++ always, and clang++, which is skipped
/// with a note when it is not installed (and fails the test under CI: see
/// [`tools`]).
#[track_caller]
pub fn cxx_compilers() -> Vec<&'static str> {
    let mut compilers = vec!["g++"];
    if tools::require("clang++", "its clang++ part") {
        compilers.push("clang++");
    }
    compilers
}

/// A fresh scratch directory for `name`, removed when dropped (see [`scratch`]).
pub fn scratch_dir(name: &str) -> Scratch {
    Scratch::new(name)
}

/// The number in the environment variable `name` (decimal, or hex with
/// `0x`), if it is set; a value that is not a number fails, naming it.
pub fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={text:?} is not a number (decimal or 0x-hex)")))
}

/// Flags every generated header must compile cleanly with.
pub const STRICT_FLAGS: &[&str] =
    &["-std=c++17", "-Wall", "-Wextra", "-Wpedantic", "-Wshadow", "-Wconversion", "-Werror"];

/// Compiles `main_cpp` (which may `#include` files written into `dir`) against
/// the shim with `compiler` and the strict flags plus `extra`. With
/// `output`, links an executable there; otherwise only checks syntax.
/// Returns the compiler's diagnostics on failure.
pub fn compile_cpp(
    compiler: &str,
    dir: &Path,
    main_cpp: &str,
    extra: &[&str],
    output: Option<&Path>,
) -> Result<(), String> {
    let source = dir.join("main.cpp");
    std::fs::write(&source, main_cpp).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(compiler);
    cmd.args(STRICT_FLAGS)
        .arg("-DDEXTLINK_DRIVERKIT_SHIM")
        .arg("-I")
        .arg(root().join("schema/shim"))
        .arg("-I")
        .arg(dir)
        .args(extra)
        .arg(&source);
    match output {
        Some(out) => cmd.arg("-o").arg(out),
        None => cmd.arg("-fsyntax-only"),
    };
    let result = cmd.output().map_err(|e| format!("cannot run {compiler}: {e}"))?;
    if result.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{compiler} failed ({}):\n{}{}",
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        ))
    }
}

/// Flags that build a C++ test program under AddressSanitizer (leaks included)
/// and UndefinedBehaviorSanitizer, stopping at the first report.
pub const SANITIZERS: &[&str] =
    &["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"];

/// Whether `compiler` can build and run a program with [`SANITIZERS`] here.
/// If not, the sanitized run is skipped with a note (the caller runs the
/// program unsanitized), or under CI the test fails: see [`tools`].
#[track_caller]
pub fn sanitizers_work(compiler: &str) -> bool {
    let dir = scratch_dir(&format!("sanitizer-probe-{compiler}"));
    let exe = dir.join("probe");
    let probe = compile_cpp(compiler, &dir, "int main() { return 0; }\n", SANITIZERS, Some(&exe))
        .and_then(|()| {
            let run = Command::new(&exe).output().map_err(|e| format!("cannot run it: {e}"))?;
            if run.status.success() {
                Ok(())
            } else {
                Err(format!("it fails ({}): {}", run.status, String::from_utf8_lossy(&run.stderr)))
            }
        });
    match probe {
        Ok(()) => true,
        Err(why) => {
            tools::skip(
                &format!("the sanitizers in its {compiler} build (it runs unsanitized)"),
                &format!(
                    "a program built with `{compiler} {}` does not work here: {why}",
                    SANITIZERS.join(" ")
                ),
            );
            false
        }
    }
}

/// Runs a C++ test program built with `compiler` (checks counted with
/// `testing.h`): `None` if it exited 0 and printed `"{tag}: … 0 failed"`,
/// otherwise a report with its output.
pub fn run_test_program(compiler: &str, exe: &Path, tag: &str) -> Option<String> {
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
        && stdout.contains(&format!("{tag}: "))
        && stdout.contains(" 0 failed");
    (!passed).then(|| {
        format!(
            "{} built with {compiler} failed ({}):\n--- stdout\n{stdout}--- stderr\n{stderr}",
            exe.file_name().unwrap_or_default().to_string_lossy(),
            output.status
        )
    })
}

/// clang's ASan runtime for this machine's architecture
/// (`clang -print-file-name`), which carries UBSan's too: what a process that
/// loads a dext built with `-fsanitize=address,undefined` preloads
/// (`LD_PRELOAD`), since the host executable itself is not instrumented.
/// Panics, naming the path looked for, when it is not installed.
pub fn clang_asan_runtime() -> PathBuf {
    let name = format!("libclang_rt.asan-{}.so", std::env::consts::ARCH);
    let output = Command::new("clang")
        .arg(format!("-print-file-name={name}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run clang -print-file-name: {e}"));
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert!(
        path.is_absolute() && path.exists(),
        "clang's ASan runtime {name} is not installed (looked for {})",
        path.display()
    );
    path
}
