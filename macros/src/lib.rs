//! `dextlink::interface!("path/to/schema.dextlink")`: generates the typed
//! Rust side of a schema. A thin front end: all parsing, validation and
//! generation is `dextlink-schema`'s, shared with the `dextlink` CLI, so the
//! module here and the C++ header the CLI writes cannot disagree.

use std::path::{Path, PathBuf};

use proc_macro::TokenStream;
use quote::quote_spanned;
use syn::{LitStr, parse_macro_input};

/// Generates the module of a schema file. The path is relative to the calling
/// crate's manifest directory (`CARGO_MANIFEST_DIR`); when no file is there,
/// it is tried relative to the file that invokes the macro. Editing the
/// schema rebuilds the crate. Schema errors are compiler errors naming the
/// schema's file, line and column.
#[proc_macro]
pub fn interface(input: TokenStream) -> TokenStream {
    let literal = parse_macro_input!(input as LitStr);
    expand(&literal).unwrap_or_else(|message| {
        let span = literal.span();
        quote_spanned!(span=> ::core::compile_error!(#message);).into()
    })
}

fn expand(literal: &LitStr) -> Result<TokenStream, String> {
    let written = literal.value();
    let path = locate(&written)?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read schema {}: {e}", path.display()))?;

    // Spans that know their line and column are only available from
    // proc-macro2's own lexer, so the schema is lexed with it.
    proc_macro2::fallback::force();
    let parsed = dextlink_schema::parse_str(&written, &text);
    proc_macro2::fallback::unforce();

    let schema = parsed.map_err(|diagnostics| {
        // One message per error, each `file:line:col: error: …` with its help.
        let lines: Vec<String> = diagnostics
            .summary_lines()
            .into_iter()
            .zip(&diagnostics.items)
            .filter(|(_, d)| d.is_error())
            .map(|(line, _)| line)
            .collect();
        format!("invalid schema\n{}", lines.join("\n"))
    })?;
    let options = dextlink_schema::emit::rust::Options {
        schema_name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        track_path: Some(path.display().to_string()),
    };
    // The module is generated as source text (what `dextlink gen --rust`
    // prints) and lexed by the compiler; every token spans the call site.
    let module = dextlink_schema::emit::rust::emit(&schema.interface, &options);
    module.parse::<TokenStream>().map_err(|error| {
        format!(
            "dextlink bug: the generated module for {} does not lex as Rust ({error}); \
             please report it with the schema (`dextlink gen --rust` prints the module)",
            path.display()
        )
    })
}

/// Resolves the schema path: relative to the manifest directory, else to the
/// invoking source file (which is where trybuild's test crates find theirs).
fn locate(written: &str) -> Result<PathBuf, String> {
    let written_path = Path::new(written);
    if written_path.is_absolute() {
        return Ok(written_path.to_path_buf());
    }
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_default();
    let candidate = manifest.join(written_path);
    if candidate.exists() {
        return Ok(candidate);
    }
    if let Some(file) = proc_macro::Span::call_site().local_file()
        && let Some(beside) = file.parent().map(|dir| dir.join(written_path))
        && beside.exists()
    {
        return Ok(beside);
    }
    // Names where it looked without printing the directories themselves:
    // the span already points at the path, and an absolute directory would
    // make the message depend on where the crate (or its build) lives.
    Err(format!(
        "cannot find schema {written:?}: a relative path is looked up in the crate's \
         directory (beside its Cargo.toml) and beside the file that invokes `interface!`"
    ))
}
