//! Helpers shared by the workspace-level tests: paths, schema loading,
//! golden files, and compiling generated C++ with the system compiler.

pub mod images;

use std::path::{Path, PathBuf};
use std::process::Command;

use dextlink_schema::emit::cpp;
use dextlink_schema::{Schema, stale};

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

/// The C++ compilers to test with: g++ always, clang++ when installed.
pub fn cxx_compilers() -> Vec<&'static str> {
    let mut compilers = vec!["g++"];
    if Command::new("clang++").arg("--version").output().is_ok_and(|o| o.status.success()) {
        compilers.push("clang++");
    }
    compilers
}

/// A scratch directory unique to this process and `name`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dextlink-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
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
pub fn sanitizers_work(compiler: &str) -> bool {
    let dir = scratch_dir(&format!("sanitizer-probe-{compiler}"));
    let exe = dir.join("probe");
    let works = compile_cpp(compiler, &dir, "int main() { return 0; }\n", SANITIZERS, Some(&exe))
        .is_ok()
        && Command::new(&exe).output().is_ok_and(|o| o.status.success());
    let _ = std::fs::remove_dir_all(&dir);
    works
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
