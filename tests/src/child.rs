//! Child-process helpers: `#[ignore]`d tests that another test of the same
//! binary runs in a process of its own (a dext server to kill, a client that
//! dies, a write that must fault).
//!
//! They are ignored so that a normal run does not count them as passed; the
//! parent runs one with [`command`], which selects it alone
//! (`--ignored --exact NAME`) and sets [`CHILD_ENV`] to its name. Run any
//! other way (`cargo test -- --ignored`), a helper fails, saying so.

use std::process::Command;

/// Set by [`command`] to the name of the helper it runs.
pub const CHILD_ENV: &str = "DEXTLINK_TEST_CHILD";

/// This test binary, set to run only the ignored test `name`, as its child.
pub fn command(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the path of the running test binary");
    let mut command = Command::new(exe);
    command.args(["--ignored", "--exact", name, "--nocapture"]);
    command.env(CHILD_ENV, name);
    command
}

/// The first thing a helper does: fails unless [`command`] started it as `name`.
pub fn enter(name: &str) {
    if let Err(message) = check(name, std::env::var(CHILD_ENV).ok().as_deref()) {
        panic!("{message}");
    }
}

fn check(name: &str, value: Option<&str>) -> Result<(), String> {
    match value {
        Some(value) if value == name => Ok(()),
        _ => Err(format!(
            "`{name}` is a child-process helper: it does nothing on its own, and another test \
             of this file runs it (with {CHILD_ENV}={name}); run that test instead"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_runs_only_when_its_parent_asked_for_it() {
        assert_eq!(check("serve", Some("serve")), Ok(()));
        for value in [None, Some(""), Some("other")] {
            let error = check("serve", value).unwrap_err();
            assert!(error.contains("`serve` is a child-process helper"), "{error}");
            assert!(error.contains("DEXTLINK_TEST_CHILD=serve"), "{error}");
        }
    }

    #[test]
    fn the_command_selects_the_helper_alone() {
        let command = command("serve_when_asked");
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args[..3], ["--ignored", "--exact", "serve_when_asked"]);
        let env: Vec<_> = command.get_envs().collect();
        assert_eq!(env, [(CHILD_ENV.as_ref(), Some("serve_when_asked".as_ref()))]);
    }
}
