//! The external tools the tests use (C++ compilers, rustfmt, sanitizer and
//! libFuzzer runtimes), and what happens when one is missing.
//!
//! On a developer's machine a missing tool skips the part of a test that
//! needs it, with a note on stderr saying what was skipped and why. Under
//! `CI=true` (what `.ci/run` sets, after installing every tool) the same
//! situation fails the test instead, so that CI never passes a check it did
//! not run.
//!
//! `DEXTLINK_TEST_HIDE_TOOLS=clang++,rustfmt` makes the listed tools count as
//! missing, to see what a machine without them gets.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;
use std::sync::Mutex;

/// The environment variable that names tools to treat as missing.
pub const HIDE_ENV: &str = "DEXTLINK_TEST_HIDE_TOOLS";

/// What to do about missing tools, read from the environment.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Under CI: a missing tool fails the test.
    pub ci: bool,
    /// Tools to treat as missing even when installed.
    pub hidden: Vec<String>,
}

impl Policy {
    /// `CI` (set to anything but empty, `0` or `false`) and
    /// [`HIDE_ENV`] (a comma-separated list).
    pub fn from_env() -> Policy {
        let ci = std::env::var("CI").is_ok_and(|v| is_set(&v));
        let hidden = std::env::var(HIDE_ENV)
            .map(|v| {
                v.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect()
            })
            .unwrap_or_default();
        Policy { ci, hidden }
    }

    /// Whether `tool` runs here: not hidden, and `tool --version` exits 0.
    pub fn available(&self, tool: &str) -> bool {
        self.missing(tool).is_none()
    }

    /// Why `tool` counts as missing, if it does.
    pub fn missing(&self, tool: &str) -> Option<String> {
        if self.hidden.iter().any(|h| h == tool) {
            return Some(format!("`{tool}` is hidden by {HIDE_ENV}"));
        }
        match Command::new(tool).arg("--version").output() {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!("`{tool} --version` failed ({})", out.status)),
            Err(e) => Some(format!("`{tool}` is not installed ({e})")),
        }
    }

    /// What skipping `what` because of `why` comes to: `Ok(note)` to print
    /// and carry on without it, or `Err(message)` to fail with under CI.
    pub fn skip_message(&self, what: &str, why: &str) -> Result<String, String> {
        let test = current_test();
        if self.ci {
            Err(format!(
                "{test}: {what} cannot run: {why}. CI=true requires it: install what is \
                 missing (as .ci/run does), or unset CI to skip it with a note"
            ))
        } else {
            Ok(format!("note: {test}: skipping {what}: {why} (under CI=true this fails)"))
        }
    }
}

fn is_set(value: &str) -> bool {
    let value = value.trim();
    !(value.is_empty() || value == "0" || value.eq_ignore_ascii_case("false"))
}

/// The running test's name (libtest names each test's thread after it).
fn current_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "this test".to_string(),
    }
}

/// Whether `tool` runs here (see [`Policy::available`]).
pub fn available(tool: &str) -> bool {
    Policy::from_env().available(tool)
}

/// Skips `what` because of `why`: a note on stderr, or under CI a panic.
#[track_caller]
pub fn skip(what: &str, why: &str) {
    match Policy::from_env().skip_message(what, why) {
        // Straight to the process's stderr, past the test harness's capture:
        // a skip is shown even when the test passes.
        // Once per test and skip, however often the test asks.
        Ok(note) => {
            static NOTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
            let first = NOTED.lock().unwrap_or_else(|e| e.into_inner()).insert(note.clone());
            if first {
                let _ = writeln!(std::io::stderr().lock(), "{note}");
            }
        }
        Err(message) => panic!("{message}"),
    }
}

/// Whether `tool` runs here; if not, skips `what` (see [`skip`]).
#[track_caller]
pub fn require(tool: &str, what: &str) -> bool {
    match Policy::from_env().missing(tool) {
        None => true,
        Some(why) => {
            skip(what, &why);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_values() {
        for (value, ci) in [("true", true), ("1", true), ("yes", true), ("", false), ("0", false)] {
            assert_eq!(is_set(value), ci, "CI={value:?}");
        }
        assert!(!is_set("FALSE"));
    }

    #[test]
    fn a_skip_is_a_note_outside_ci_and_a_failure_under_it() {
        let local = Policy { ci: false, hidden: Vec::new() };
        let note = local.skip_message("its clang++ part", "`clang++` is not installed").unwrap();
        assert!(note.starts_with("note: "), "{note}");
        assert!(note.contains("skipping its clang++ part: `clang++` is not installed"), "{note}");
        assert!(note.contains("CI=true"), "{note}");

        let ci = Policy { ci: true, hidden: Vec::new() };
        let error = ci.skip_message("its clang++ part", "`clang++` is not installed").unwrap_err();
        assert!(
            error.contains("its clang++ part cannot run: `clang++` is not installed"),
            "{error}"
        );
        assert!(error.contains("CI=true requires it"), "{error}");
        // The test's name, from its thread.
        assert!(error.contains("a_skip_is_a_note_outside_ci_and_a_failure_under_it"), "{error}");
    }

    #[test]
    fn a_hidden_tool_is_missing_and_a_present_one_is_found() {
        // g++ is the one compiler every test here needs.
        assert!(Policy::default().available("g++"));
        let hiding = Policy { ci: false, hidden: vec!["g++".into()] };
        assert_eq!(hiding.missing("g++").unwrap(), "`g++` is hidden by DEXTLINK_TEST_HIDE_TOOLS");
        let why = Policy::default().missing("dextlink-no-such-tool").unwrap();
        assert!(why.starts_with("`dextlink-no-such-tool` is not installed ("), "{why}");
    }
}
