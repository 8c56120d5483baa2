//! `dextlink iig`: what Xcode's iig writes for a dext's `.iig` class
//! declarations, for dextlink's DriverKit runtime (the contract is
//! `runtime/sim/driverkit/IIG.md`): the class header `<Stem>.h` and its
//! companion `<Stem>.iig.cpp` with the dispatch glue and the class's
//! registration by name.
//!
//! ```text
//! text ──lex──▶ tokens ──parse──▶ parse::File ──emit (with runtime::CLASSES)──▶ Output
//! ```
//!
//! This front end is independent of the schema language; it shares only the
//! diagnostics (`crate::diag`), so that errors look the same.

mod emit;
mod lex;
mod parse;
pub mod runtime;

use crate::diag::{Diagnostic, Diagnostics, SourceFile, Span};

/// The two generated files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// `<Stem>.h`.
    pub header_name: String,
    pub header: String,
    /// `<Stem>.iig.cpp`.
    pub source_name: String,
    pub source: String,
}

/// Generates the class header and its companion from a `.iig` file's text.
/// `path` names the file in the output's first line and in diagnostics; its
/// file name without `.iig` names the outputs.
pub fn generate(path: &std::path::Path, text: &str) -> Result<Output, Diagnostics> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = file_name.strip_suffix(".iig").unwrap_or(&file_name).to_string();
    let fail = |diagnostic: Diagnostic| Diagnostics {
        file: SourceFile::new(path, text),
        items: vec![diagnostic],
    };
    let tokens = lex::lex(text).map_err(fail)?;
    let file = parse::parse(text, &tokens).map_err(fail)?;
    if file.classes.is_empty() {
        let end = text.len();
        return Err(fail(
            Diagnostic::error(Span::new(end..end), "the file declares no class")
                .label("expected `class NAME : public SUPER { … };`"),
        ));
    }
    let (header, source) = emit::emit(&file_name, &stem, &file).map_err(fail)?;
    Ok(Output {
        header_name: format!("{stem}.h"),
        header,
        source_name: format!("{stem}.iig.cpp"),
        source,
    })
}
