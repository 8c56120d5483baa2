//! Checked-in generated files: compare them with what the schema generates,
//! show a unified diff when they are stale, and rewrite them when asked.
//! Used by `dextlink check` and by tests (golden files, users' own CI).

use std::fmt;
use std::path::{Path, PathBuf};

/// What `check_file` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The file already holds exactly the expected text.
    Fresh,
    /// It did not, and was rewritten (whole, atomically).
    Rewritten,
}

/// A stale or unreadable generated file.
#[derive(Debug)]
pub enum StaleError {
    /// The file differs; `diff` is a unified diff from the file to the expected text.
    Stale {
        path: PathBuf,
        diff: String,
    },
    Missing {
        path: PathBuf,
    },
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for StaleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaleError::Stale { path, diff } => {
                write!(
                    f,
                    "{diff}{} is stale: it differs from what the schema generates",
                    path.display()
                )
            }
            StaleError::Missing { path } => write!(f, "{} does not exist", path.display()),
            StaleError::Io { path, error } => {
                write!(f, "cannot access {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for StaleError {}

/// Compares `path` with `expected`. With `rewrite`, a stale or missing file is
/// rewritten instead of reported.
pub fn check_file(path: &Path, expected: &str, rewrite: bool) -> Result<Freshness, StaleError> {
    let actual = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(StaleError::Io { path: path.to_path_buf(), error }),
    };
    if actual.as_deref() == Some(expected) {
        return Ok(Freshness::Fresh);
    }
    if rewrite {
        write_atomically(path, expected)
            .map_err(|error| StaleError::Io { path: path.to_path_buf(), error })?;
        return Ok(Freshness::Rewritten);
    }
    match actual {
        None => Err(StaleError::Missing { path: path.to_path_buf() }),
        Some(actual) => Err(StaleError::Stale {
            path: path.to_path_buf(),
            diff: unified_diff(path, &actual, expected),
        }),
    }
}

/// A unified diff from `actual` (the file) to `expected` (what is generated).
pub fn unified_diff(path: &Path, actual: &str, expected: &str) -> String {
    let shown = path.display().to_string();
    similar::TextDiff::from_lines(actual, expected)
        .unified_diff()
        .context_radius(3)
        .header(&shown, &format!("{shown} (generated)"))
        .to_string()
}

/// Writes a file whole or not at all: into a temporary file beside it, then
/// renamed over it, so that an interrupted write never leaves half a header.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_rewrites_and_accepts() {
        // Removed when dropped, also if an assertion below fails.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.h");
        assert!(matches!(check_file(&path, "a\nb\n", false), Err(StaleError::Missing { .. })));
        std::fs::write(&path, "a\nc\n").unwrap();
        match check_file(&path, "a\nb\n", false) {
            Err(StaleError::Stale { diff, .. }) => {
                assert!(diff.contains("-c\n") && diff.contains("+b\n"), "{diff}");
            }
            other => panic!("expected stale, got {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nc\n", "a check must not write");
        assert_eq!(check_file(&path, "a\nb\n", true).unwrap(), Freshness::Rewritten);
        assert_eq!(check_file(&path, "a\nb\n", false).unwrap(), Freshness::Fresh);
    }
}
