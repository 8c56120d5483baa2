//! The schema language front to back: any text gives a model or
//! diagnostics, never a panic, and a model goes through every emitter.
//!
//! Beyond "no panic", it checks what the callers rely on:
//! - a failed parse has at least one error, a successful one none;
//! - every diagnostic's span lies within the text, on character boundaries
//!   (the renderer is given those spans), and rendering never panics;
//! - the Rust module the macro would expand to lexes (the macro lexes it
//!   into tokens) and, when small, parses as a Rust file (names are checked
//!   against keywords, literals must be well-formed);
//! - a schema compared with itself has no changes.

#![no_main]

use dextlink_schema::emit::{c_client, cpp, explain, rust};
use dextlink_schema::{Diagnostics, compat, fingerprint, parse_str};
use libfuzzer_sys::fuzz_target;

/// The largest generated module that is parsed as Rust, not only lexed
/// (a one-method schema gives about 17 KiB).
const MAX_PARSED_MODULE: usize = 48 * 1024;

fuzz_target!(|data: &[u8]| {
    check(data);
    // proc-macro2 (outside a proc macro) keeps every text it lexed for the
    // thread's spans; a fuzzer lexes millions. Nothing holds a span now.
    proc_macro2::extra::invalidate_current_thread_spans();
});

fn check(data: &[u8]) {
    // Invalid UTF-8 is not schema text; lossy decoding still lets the
    // fuzzer reach the parser with whatever it grew.
    let text = String::from_utf8_lossy(data);
    match parse_str("fuzz.dextlink", &text) {
        Ok(schema) => {
            assert!(!schema.warnings.has_errors(), "a valid schema carries errors");
            check_spans(&schema.warnings, &text);
            let _ = schema.warnings.render(false);

            let iface = &schema.interface;
            let options = cpp::Options { schema_name: "fuzz.dextlink".to_string() };
            let header = cpp::emit(iface, &options);
            assert!(!header.is_empty());
            let client = c_client::emit(iface);
            assert!(!client.is_empty());
            let _ = explain::text(iface);
            let _ = explain::markdown(iface);
            let _ = fingerprint::canonical(iface);
            let _ = fingerprint::fingerprint(iface);
            let changes = compat::compare(iface, iface);
            assert!(changes.is_empty(), "a schema differs from itself: {changes:?}");

            let module = rust::emit(
                iface,
                &rust::Options { schema_name: "fuzz.dextlink".to_string(), track_path: None },
            );
            // What the macro does with it: lex it into tokens.
            let tokens = match module.parse::<proc_macro2::TokenStream>() {
                Ok(tokens) => tokens,
                Err(error) => panic!("the generated Rust module does not lex: {error}\n{module}"),
            };
            // A full parse costs ten times the rest together; do it for the
            // small schemas, where fuzzing spends its time anyway.
            if module.len() <= MAX_PARSED_MODULE
                && let Err(error) = syn::parse2::<syn::File>(tokens)
            {
                panic!("the generated Rust module does not parse: {error}\n{module}");
            }
        }
        Err(diagnostics) => {
            assert!(diagnostics.has_errors(), "a failed parse without an error");
            check_spans(&diagnostics, &text);
            let _ = diagnostics.render(false);
            let _ = diagnostics.summary_lines();
        }
    }
}

fn check_spans(diagnostics: &Diagnostics, text: &str) {
    for d in &diagnostics.items {
        let spans = std::iter::once(d.span).chain(d.related.iter().map(|(s, _)| *s));
        for span in spans {
            let range = span.start..span.end;
            assert!(
                range.start <= range.end
                    && text.is_char_boundary(range.start)
                    && text.is_char_boundary(range.end),
                "diagnostic span {range:?} is not a range of the text ({} bytes): {}",
                text.len(),
                d.message
            );
        }
        let _ = diagnostics.location(d);
    }
}
