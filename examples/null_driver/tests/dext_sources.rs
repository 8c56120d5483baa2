//! The dext side of the NullDriver port, compiled and run off-device.
//!
//! `dext/NullDriverUserClient.cpp` is the sample's user client written
//! against the header dextlink generates from `null_driver.dextlink`;
//! `dext/SampleChecks.h` holds the sample's hand-written `externalMethodChecks`
//! and `static_assert`s that the generated `kDispatchTable` equals it field for
//! field. These tests generate the header into a scratch directory and compile
//! the sources against the DriverKit shim (`schema/shim`, with
//! `dext/shim/NullDriverUserClient.h` standing in for iig's output) with every
//! C++ compiler available and the workspace's strict warning flags; prove that
//! the table comparison fails when a generated entry drifts; and run
//! `tests/cpp/null_driver_dispatch.cpp`, which drives the user client through
//! every selector, under AddressSanitizer and UndefinedBehaviorSanitizer.

use std::path::{Path, PathBuf};

use dextlink_tests::{
    SANITIZERS, Scratch, compile_cpp, cpp_header, cxx_compilers, load, run_test_program,
    sanitizers_work, scratch_dir,
};

fn example_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dext_dir() -> PathBuf {
    example_dir().join("dext")
}

/// The directory of the stand-in for iig's `NullDriverUserClient.h`.
fn iig_stand_in_dir() -> PathBuf {
    dext_dir().join("shim")
}

/// `NullDriver.h` exactly as `dextlink gen null_driver.dextlink --cpp` writes it.
fn generated_header() -> String {
    cpp_header(&load(&example_dir().join("null_driver.dextlink")))
}

/// A scratch directory holding the generated header as `NullDriver.h`.
fn scratch_with_header(name: &str, header: &str) -> Scratch {
    let dir = scratch_dir(name);
    std::fs::write(dir.join("NullDriver.h"), header).expect("write NullDriver.h");
    dir
}

/// `-I` for the iig stand-in and for `dext/` (SampleChecks.h), as strings.
fn include_args() -> Vec<String> {
    vec![
        "-I".to_owned(),
        iig_stand_in_dir().display().to_string(),
        "-I".to_owned(),
        dext_dir().display().to_string(),
    ]
}

fn include_line(path: &Path) -> String {
    assert!(path.is_file(), "missing {}", path.display());
    format!("#include \"{}\"\n", path.display())
}

#[test]
fn dext_sources_compile_warning_free_with_every_compiler() {
    let header = generated_header();
    let user_client = include_line(&dext_dir().join("NullDriverUserClient.cpp"));
    let sample_checks =
        "#include \"SampleChecks.h\"\n#include \"SampleChecks.h\"  // the guard holds\n";
    let includes = include_args();

    let mut failures = Vec::new();
    for compiler in cxx_compilers() {
        let dir = scratch_with_header(&format!("null-driver-dext-{compiler}"), &header);
        let mut variants: Vec<(&str, &str, Vec<&str>)> = vec![
            ("NullDriverUserClient.cpp", user_client.as_str(), vec![]),
            ("NullDriverUserClient.cpp as C++20", user_client.as_str(), vec!["-std=c++20"]),
            ("SampleChecks.h on its own", sample_checks, vec![]),
        ];
        if compiler == "clang++" {
            // Blocks select Stop's on-device branch (the sample's cancel
            // handlers); clang type-checks it against the shim.
            variants.push((
                "NullDriverUserClient.cpp with blocks",
                user_client.as_str(),
                vec!["-fblocks"],
            ));
        }
        for (what, main, flags) in variants {
            let mut extra: Vec<&str> = includes.iter().map(String::as_str).collect();
            extra.extend(flags);
            if let Err(e) = compile_cpp(compiler, &dir, main, &extra, None) {
                failures.push(format!("{what}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Rewrites the value of `field` in the generated table entry that starts at
/// the comment `entry` (for example `// 3: checked_struct`).
fn edit_entry(header: &str, entry: &str, field: &str, value: &str) -> String {
    let start = header.find(entry).unwrap_or_else(|| panic!("no entry {entry:?} in the header"));
    let marker = format!("// {field}");
    let field_at = start
        + header[start..]
            .find(&marker)
            .unwrap_or_else(|| panic!("no {field} after {entry:?} in the header"));
    assert!(!header[start..field_at].contains("\n    },"), "{field} is not inside {entry:?}");
    let line_start = header[..field_at].rfind('\n').map_or(0, |i| i + 1);
    let line = &header[line_start..field_at];
    let indent = line.len() - line.trim_start().len();
    format!("{}{}{value}, {}", &header[..line_start], &line[..indent], &header[field_at..])
}

#[test]
fn sample_table_comparison_fails_when_a_generated_entry_drifts() {
    let header = generated_header();
    let unchecked_from = "    // 1: structure (#[unchecked]: dispatched by hand in ExternalMethod)\n    {nullptr, 0, 0, 0, 0, 0},\n";
    assert!(
        header.contains(unchecked_from),
        "the generated header no longer contains {unchecked_from:?}"
    );
    let cases = [
        (
            edit_entry(&header, "// 2: checked_scalar", "checkScalarInputCount", "15"),
            "kDispatchTable[CheckedScalar] differs from the sample's externalMethodChecks",
        ),
        (
            edit_entry(&header, "// 2: checked_scalar", "checkStructureInputSize", "8"),
            "kDispatchTable[CheckedScalar] differs from the sample's externalMethodChecks",
        ),
        (
            edit_entry(&header, "// 3: checked_struct", "checkStructureOutputSize", "32"),
            "kDispatchTable[CheckedStruct] differs from the sample's externalMethodChecks",
        ),
        (
            edit_entry(&header, "// 4: register_async_callback", "checkCompletionExists", "0xffffffffU"),
            "kDispatchTable[RegisterAsyncCallback] differs from the sample's",
        ),
        (
            edit_entry(&header, "// 5: async_request", "checkCompletionExists", "1"),
            "kDispatchTable[AsyncRequest] differs from the sample's externalMethodChecks",
        ),
        (
            edit_entry(&header, "// 5: async_request", "checkScalarOutputCount", "1"),
            "kDispatchTable[AsyncRequest] differs from the sample's externalMethodChecks",
        ),
        (
            header.replacen(
                unchecked_from,
                "    // 1: structure\n    {nullptr, 0, 0, sizeof(DataStruct), 0, sizeof(DataStruct)},\n",
                1,
            ),
            "kDispatchTable[Struct] must be the zero-filled unchecked entry",
        ),
    ];

    let main = "#include \"SampleChecks.h\"\n";
    let includes = include_args();
    let extra: Vec<&str> = includes.iter().map(String::as_str).collect();
    for compiler in cxx_compilers() {
        // The unedited header passes: the failures below are the edits'.
        let dir = scratch_with_header(&format!("null-driver-drift-ok-{compiler}"), &header);
        compile_cpp(compiler, &dir, main, &extra, None)
            .unwrap_or_else(|e| panic!("the generated table no longer matches the sample: {e}"));

        for (i, (drifted, message)) in cases.iter().enumerate() {
            assert_ne!(drifted, &header, "case {i} did not change the header");
            let dir = scratch_with_header(&format!("null-driver-drift-{i}-{compiler}"), drifted);
            let err = compile_cpp(compiler, &dir, main, &extra, None)
                .expect_err("a drifted dispatch table must not compile");
            assert!(
                err.contains(message)
                    && (err.contains("static assert") || err.contains("static_assert")),
                "{compiler}, case {i}: expected a static_assert naming {message:?}, got:\n{err}"
            );
        }
    }
}

#[test]
fn user_client_answers_every_selector_like_the_sample() {
    let header = generated_header();
    let driver = include_line(&example_dir().join("tests/cpp/null_driver_dispatch.cpp"));
    let user_client = dext_dir().join("NullDriverUserClient.cpp");
    assert!(user_client.is_file(), "missing {}", user_client.display());
    let user_client = user_client.display().to_string();
    let includes = include_args();

    // Every compiler runs before anything is reported, so that one report
    // shows whether a failure depends on the compiler.
    let mut failures = Vec::new();
    for compiler in cxx_compilers() {
        let sanitize = sanitizers_work(compiler);
        let dir = scratch_with_header(&format!("null-driver-dispatch-{compiler}"), &header);
        let exe = dir.join("null_driver_dispatch");
        // The user client is its own translation unit, as in the dext.
        let mut extra: Vec<&str> = includes.iter().map(String::as_str).collect();
        extra.push(&user_client);
        if sanitize {
            extra.extend(SANITIZERS);
        }
        match compile_cpp(compiler, &dir, &driver, &extra, Some(&exe)) {
            Ok(()) => failures.extend(run_test_program(compiler, &exe, "null-driver-dispatch")),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
