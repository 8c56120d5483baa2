//! `dext/SampleChecks.h` holds the sample's hand-written
//! `externalMethodChecks` and `static_assert`s that the generated
//! `kDispatchTable` equals it field for field. Every build of the dext
//! re-proves the match; this proves the comparison bites: each drifted
//! entry of the generated header fails to compile, naming its selector.
//! (A header-only check: compiled against the schema's DriverKit shim.)

use std::path::Path;

use dextlink_tests::{Scratch, compile_cpp, cpp_header, cxx_compilers, load, scratch_dir};

fn example_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `NullDriverInterface.h` exactly as
/// `dextlink gen null_driver.dextlink --cpp NullDriverInterface.h` writes it.
fn generated_header() -> String {
    cpp_header(&load(&example_dir().join("null_driver.dextlink")))
}

fn scratch_with_header(name: &str, header: &str) -> Scratch {
    let dir = scratch_dir(name);
    std::fs::write(dir.join("NullDriverInterface.h"), header).expect("write NullDriverInterface.h");
    dir
}

fn include_args() -> Vec<String> {
    vec!["-I".to_owned(), example_dir().join("dext").display().to_string()]
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
