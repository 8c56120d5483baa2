//! The `dextlink` command as users run it: outputs, exit codes, stale-file
//! diffs, compatibility checks, and error messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dextlink_tests::Scratch;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn fwloader() -> PathBuf {
    root().join("examples/fwloader/fwloader.dextlink")
}

fn dextlink(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dextlink")).args(args).output().expect("run dextlink")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh directory for one test, removed when the test is done (passed or not).
fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("cli-{name}"))
}

#[test]
fn gen_writes_the_same_header_to_a_file_and_to_stdout() {
    let dir = scratch("gen");
    let out = dir.join("FwLoader.h");
    let schema = fwloader();
    let run = dextlink(&["gen", schema.to_str().unwrap(), "--cpp", out.to_str().unwrap()]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stdout = dextlink(&["gen", schema.to_str().unwrap(), "--cpp", "-"]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text(&stdout.stdout));
    assert!(text(&stdout.stdout).contains("namespace fw_loader {"));
    // Nothing but the header was left behind (the write went through a temp file).
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn check_reports_a_stale_header_with_a_diff_and_rewrites_it_when_asked() {
    let dir = scratch("check");
    let out = dir.join("FwLoader.h");
    let schema = fwloader();
    let (schema, out_s) = (schema.to_str().unwrap(), out.to_str().unwrap());
    assert!(dextlink(&["gen", schema, "--cpp", out_s]).status.success());
    assert!(dextlink(&["check", schema, "--cpp", out_s]).status.success(), "fresh header");

    let fresh = std::fs::read_to_string(&out).unwrap();
    std::fs::write(
        &out,
        fresh.replace("constexpr uint32_t kVersion = 1;", "constexpr uint32_t kVersion = 7;"),
    )
    .unwrap();
    let stale = dextlink(&["check", schema, "--cpp", out_s]);
    assert_eq!(stale.status.code(), Some(1));
    let diff = text(&stale.stdout);
    assert!(diff.contains("-constexpr uint32_t kVersion = 7;"), "{diff}");
    assert!(diff.contains("+constexpr uint32_t kVersion = 1;"), "{diff}");
    assert!(text(&stale.stderr).contains("is stale"), "{}", text(&stale.stderr));

    let rewrite = dextlink(&["check", schema, "--cpp", out_s, "--write"]);
    assert!(rewrite.status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), fresh);

    let missing = dextlink(&["check", schema, "--c-client", dir.join("none.h").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("does not exist"));
}

#[test]
fn check_against_fails_on_breaking_changes_and_passes_additive_ones() {
    let dir = scratch("against");
    let old = fwloader();
    let original = std::fs::read_to_string(&old).unwrap();
    let additive = dir.join("additive.dextlink");
    std::fs::write(
        &additive,
        original.replace("    4 => fn abort();", "    4 => fn abort();\n    6 => fn ping();"),
    )
    .unwrap();
    let breaking = dir.join("breaking.dextlink");
    let abort = original.find("    /// Stops the upload").unwrap();
    let end = original.find("    4 => fn abort();\n").unwrap() + "    4 => fn abort();\n".len();
    let removed = format!("{}{}", &original[..abort], &original[end..]);
    assert_ne!(removed, original);
    std::fs::write(&breaking, removed).unwrap();

    let ok = dextlink(&["check", "--against", old.to_str().unwrap(), additive.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stderr).contains("additive"), "{}", text(&ok.stderr));

    let bad = dextlink(&["check", "--against", old.to_str().unwrap(), breaking.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = text(&bad.stderr);
    assert!(stderr.contains("breaking") && stderr.contains("4 => reserved;"), "{stderr}");
}

#[test]
fn invalid_schemas_and_bad_arguments_get_distinct_exit_codes() {
    let dir = scratch("errors");
    let bad = dir.join("bad.dextlink");
    std::fs::write(
        &bad,
        "interface Bad {\n    service \"s\";\n    version 1;\n    0 => fn f(x: u8 in 0..300);\n}\n",
    )
    .unwrap();
    let invalid = dextlink(&["check", bad.to_str().unwrap()]);
    assert_eq!(invalid.status.code(), Some(3));
    let stderr = text(&invalid.stderr);
    assert!(stderr.contains("bad.dextlink:4:24"), "{stderr}");
    assert!(stderr.contains("does not fit `u8`"), "{stderr}");

    let missing = dextlink(&["fingerprint", dir.join("missing.dextlink").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(4));
    assert!(text(&missing.stderr).contains("cannot read schema"));

    let usage = dextlink(&["gen", fwloader().to_str().unwrap()]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(text(&usage.stderr).contains("--cpp"));

    assert_eq!(dextlink(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn fingerprint_explain_and_shim() {
    let schema = fwloader();
    let fp = dextlink(&["fingerprint", schema.to_str().unwrap()]);
    let printed = text(&fp.stdout);
    assert!(printed.trim().starts_with("0x") && printed.trim().len() == 18, "{printed}");
    let canonical =
        text(&dextlink(&["fingerprint", schema.to_str().unwrap(), "--canonical"]).stdout);
    assert!(canonical.starts_with("dextlink-abi 1\n") && canonical.contains("method 1 async=1"));

    let explain = text(&dextlink(&["explain", schema.to_str().unwrap()]).stdout);
    assert!(explain.contains("submit") && explain.contains("0..=7"), "{explain}");
    let markdown = text(&dextlink(&["explain", schema.to_str().unwrap(), "--markdown"]).stdout);
    assert!(
        markdown.contains("| 1 |") || markdown.contains("| 1  |") || markdown.contains("|1|"),
        "{markdown}"
    );

    let dir = scratch("shim");
    assert!(dextlink(&["shim", "--out", dir.to_str().unwrap()]).status.success());
    let shim = std::fs::read_to_string(dir.join("dextlink/driverkit_shim.h")).unwrap();
    assert!(shim.contains("struct IOUserClientMethodDispatch"));
}

#[test]
fn gen_writes_exactly_the_golden_headers() {
    for (schema, golden) in [
        ("examples/fwloader/fwloader.dextlink", "fwloader"),
        ("examples/null_driver/null_driver.dextlink", "null_driver"),
        ("tests/schemas/shapes.dextlink", "shapes"),
    ] {
        let schema = root().join(schema);
        let cpp = dextlink(&["gen", schema.to_str().unwrap(), "--cpp", "-"]);
        let expected =
            std::fs::read_to_string(root().join(format!("tests/golden/{golden}.h"))).unwrap();
        assert!(
            text(&cpp.stdout) == expected,
            "dextlink gen --cpp differs from tests/golden/{golden}.h"
        );
        let c = dextlink(&["gen", schema.to_str().unwrap(), "--c-client", "-"]);
        let expected =
            std::fs::read_to_string(root().join(format!("tests/golden/{golden}_client.h")))
                .unwrap();
        assert!(
            text(&c.stdout) == expected,
            "dextlink gen --c-client differs from tests/golden/{golden}_client.h"
        );
    }
}

#[test]
fn gen_rust_writes_the_client_module_and_check_finds_it_stale() {
    let dir = scratch("rust");
    let out = dir.join("fw_loader.rs");
    let schema = fwloader();
    let (schema, out_s) = (schema.to_str().unwrap(), out.to_str().unwrap());
    let run = dextlink(&["gen", schema, "--rust", out_s]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let module = std::fs::read_to_string(&out).unwrap();
    let stdout = dextlink(&["gen", schema, "--rust", "-"]);
    assert_eq!(module, text(&stdout.stdout));
    assert!(module.starts_with("/// "), "{module}");
    assert!(module.contains("pub mod fw_loader {\n"));
    assert!(module.contains("pub const CPP_HEADER: &str = r#\"// FwLoader.h"));
    assert!(module.contains("    impl<T: ::dextlink::Transport> FwLoader<T> {\n"));
    // The CLI's module does not track the schema file as the macro's does.
    assert!(!module.contains("include_bytes!"));

    assert!(dextlink(&["check", schema, "--rust", out_s]).status.success(), "fresh module");
    std::fs::write(
        &out,
        module.replace("pub const VERSION: u32 = 1u32;", "pub const VERSION: u32 = 2u32;"),
    )
    .unwrap();
    let stale = dextlink(&["check", schema, "--rust", out_s]);
    assert_eq!(stale.status.code(), Some(1));
    let diff = text(&stale.stdout);
    assert!(diff.contains("+    pub const VERSION: u32 = 1u32;"), "{diff}");
    assert!(text(&stale.stderr).contains("--rust"), "{}", text(&stale.stderr));
    assert!(dextlink(&["check", schema, "--rust", out_s, "--write"]).status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), module);

    let usage = dextlink(&["gen", schema]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(text(&usage.stderr).contains("--rust OUT.rs"), "{}", text(&usage.stderr));
}
