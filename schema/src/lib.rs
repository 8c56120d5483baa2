//! dextlink's schema language: one file of DriverKit external methods from
//! which both sides of the user-client boundary are generated.
//!
//! One parser and one validated model serve every output, so that the Rust
//! client (through the `dextlink-macros` proc macro), the C++ dext header and
//! the C client header cannot drift apart:
//!
//! ```text
//! text ──proc-macro2/syn──▶ syntax ──check──▶ model::Interface ──▶ emit::{cpp, c_client, explain}
//!                                                    └──────────▶ fingerprint, compat
//! ```
//!
//! The language is described in `schema/LANGUAGE.md`.

mod check;
pub mod compat;
pub mod diag;
pub mod emit;
mod eval;
pub mod fingerprint;
pub mod iig;
pub mod model;
pub mod names;
pub mod stale;
pub mod syntax;

use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Diagnostics, Severity, SourceFile, Span};
pub use model::Interface;

/// A valid schema, with the warnings checking produced.
#[derive(Debug, Clone)]
pub struct Schema {
    pub interface: Interface,
    /// Warnings only (an error would have failed the parse), and the source
    /// they point into.
    pub warnings: Diagnostics,
}

impl Schema {
    pub fn source(&self) -> &SourceFile {
        &self.warnings.file
    }
}

/// Parses and checks schema text. `path` is only used in diagnostics.
pub fn parse_str(path: impl Into<PathBuf>, text: &str) -> Result<Schema, Diagnostics> {
    let file = SourceFile::new(path, text);
    let tree = match syntax::parse(text) {
        Ok(tree) => tree,
        Err(d) => return Err(Diagnostics { file, items: vec![d] }),
    };
    let (interface, items) = check::check(&tree);
    let diagnostics = Diagnostics { file, items };
    match interface {
        Some(interface) => Ok(Schema { interface, warnings: diagnostics }),
        None => Err(diagnostics),
    }
}

/// Why a schema file could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    Io { path: PathBuf, error: std::io::Error },
    Invalid(Diagnostics),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Io { path, error } => {
                write!(f, "cannot read schema {}: {error}", path.display())
            }
            LoadError::Invalid(d) => d.fmt(f),
        }
    }
}

impl std::error::Error for LoadError {}

/// Reads, parses and checks a schema file.
pub fn load(path: impl AsRef<Path>) -> Result<Schema, LoadError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|error| LoadError::Io { path: path.to_path_buf(), error })?;
    parse_str(path, &text).map_err(LoadError::Invalid)
}
