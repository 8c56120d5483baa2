//! What a test that needs a missing tool does, end to end: this test binary
//! run again as a child with clang++ hidden (`DEXTLINK_TEST_HIDE_TOOLS`)
//! passes with a note on a developer's machine and fails under `CI=true`.
//! And a child-process helper run on its own fails instead of passing.

use std::process::Output;

use dextlink_tests::{child, cxx_compilers, tools};

const HELPER: &str = "compilers_when_asked";

/// Child-process helper: prints the compilers the tests would use.
#[test]
#[ignore = "a child-process helper of the tests in this file"]
fn compilers_when_asked() {
    child::enter(HELPER);
    println!("compilers: {:?}", cxx_compilers());
}

fn run_helper(ci: Option<&str>) -> Output {
    let mut command = child::command(HELPER);
    command.env(tools::HIDE_ENV, "clang++");
    match ci {
        Some(value) => command.env("CI", value),
        None => command.env_remove("CI"),
    };
    command.output().expect("running the helper")
}

fn text(output: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_missing_clang_is_a_note_locally() {
    let output = run_helper(None);
    let text = text(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains(r#"compilers: ["g++"]"#), "{text}");
    assert!(
        text.contains(
            "note: compilers_when_asked: skipping its clang++ part: \
             `clang++` is hidden by DEXTLINK_TEST_HIDE_TOOLS (under CI=true this fails)"
        ),
        "{text}"
    );
}

#[test]
fn a_missing_clang_fails_under_ci() {
    let output = run_helper(Some("true"));
    let text = text(&output);
    assert!(!output.status.success(), "the helper passed under CI=true without clang++:\n{text}");
    assert!(!text.contains("compilers: "), "{text}");
    assert!(
        text.contains(
            "compilers_when_asked: its clang++ part cannot run: \
             `clang++` is hidden by DEXTLINK_TEST_HIDE_TOOLS"
        ),
        "{text}"
    );
    assert!(text.contains("CI=true requires it"), "{text}");
    // The failure points at the test that needed the tool.
    assert!(text.contains("panicked at tests/tests/tools.rs:"), "{text}");
}

#[test]
fn a_helper_run_on_its_own_fails() {
    let output = child::command(HELPER).env_remove(child::CHILD_ENV).output().unwrap();
    let text = text(&output);
    assert!(!output.status.success(), "the helper passed on its own:\n{text}");
    assert!(text.contains("`compilers_when_asked` is a child-process helper"), "{text}");
    assert!(text.contains("1 failed"), "{text}");
}
