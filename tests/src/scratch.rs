//! Scratch directories for tests, removed when the test is done with them:
//! also when it fails, since a panic drops them as it unwinds.
//!
//! `DEXTLINK_KEEP_SCRATCH=1` keeps them instead (each kept directory is
//! named on stderr), to look at what a failing test compiled or wrote.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The environment variable that keeps scratch directories.
pub const KEEP_ENV: &str = "DEXTLINK_KEEP_SCRATCH";

/// A fresh directory in the temporary directory, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Scratch {
    /// A new directory named `dextlink-test-{name}-…` (unique, whatever
    /// runs in parallel).
    pub fn new(name: &str) -> Scratch {
        Scratch::new_in(&std::env::temp_dir(), name)
    }

    /// A new directory like [`Scratch::new`], inside `parent`.
    pub fn new_in(parent: &Path, name: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("dextlink-test-{name}-"))
            .tempdir_in(parent)
            .unwrap_or_else(|e| {
                panic!("cannot create a scratch directory in {}: {e}", parent.display())
            });
        let path = dir.path().to_path_buf();
        Scratch { dir: Some(dir), path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How to keep the directory for a look, for failure messages.
    pub fn keep_hint(&self) -> String {
        if keep() {
            format!("kept in {}", self.path.display())
        } else {
            format!("rerun with {KEEP_ENV}=1 to keep {}", self.path.display())
        }
    }
}

fn keep() -> bool {
    std::env::var_os(KEEP_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        if keep() {
            let path = dir.keep();
            // Past the harness's capture, so that it shows for a passing test too.
            let _ = writeln!(std::io::stderr().lock(), "note: kept {}", path.display());
        }
        // Otherwise `dir` removes the directory as it goes out of scope.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_goes_away_on_drop_and_on_panic() {
        let scratch = Scratch::new("scratch-self-test");
        let path = scratch.to_path_buf();
        std::fs::write(scratch.join("file"), "x").unwrap();
        assert!(path.join("file").is_file());
        assert!(
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("dextlink-test-scratch-self-test-")
        );
        drop(scratch);
        assert!(!path.exists() || keep(), "{} is still there", path.display());

        let path = std::thread::spawn(|| {
            let scratch = Scratch::new("scratch-self-test-panic");
            std::panic::panic_any(scratch.to_path_buf());
        })
        .join()
        .unwrap_err()
        .downcast::<PathBuf>()
        .unwrap();
        assert!(!path.exists() || keep(), "{} outlived the panic", path.display());
    }
}
