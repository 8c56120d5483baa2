//! The Rust module `dextlink::interface!` expands to, as `dextlink gen --rust`
//! prints it: formatted as rustfmt formats it, valid Rust, with the C++
//! header embedded byte for byte.

use std::path::{Path, PathBuf};
use std::process::Command;

use dextlink_schema::emit::{cpp, rust};
use dextlink_tests::{Scratch, tools};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The example schemas: (short name, path).
fn schemas() -> Vec<(&'static str, PathBuf)> {
    let root = root();
    vec![
        ("fwloader", root.join("examples/fwloader/fwloader.dextlink")),
        ("null_driver", root.join("examples/null_driver/null_driver.dextlink")),
        ("shapes", root.join("tests/schemas/shapes.dextlink")),
    ]
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// The module as the CLI writes it (no `include_bytes!` tracking).
fn module(path: &Path) -> String {
    let schema = dextlink_schema::load(path).unwrap_or_else(|e| panic!("{e}"));
    let options = rust::Options { schema_name: file_name(path), track_path: None };
    rust::emit(&schema.interface, &options)
}

/// The module as the macro expands it, tracking the schema file.
fn macro_module(path: &Path) -> String {
    let schema = dextlink_schema::load(path).unwrap_or_else(|e| panic!("{e}"));
    let options = rust::Options {
        schema_name: file_name(path),
        track_path: Some(path.display().to_string()),
    };
    rust::emit(&schema.interface, &options)
}

#[test]
fn generated_modules_are_formatted_as_rustfmt_formats_them() {
    if !tools::require("rustfmt", "the formatting check") {
        return;
    }
    let dir = Scratch::new("rust-output");
    // rustfmt's default configuration, whatever a parent directory says.
    std::fs::write(dir.join("rustfmt.toml"), "").unwrap();
    let mut files = Vec::new();
    for (name, path) in schemas() {
        for (suffix, text) in [("cli", module(&path)), ("macro", macro_module(&path))] {
            let file = dir.join(format!("{name}_{suffix}.rs"));
            std::fs::write(&file, text).unwrap();
            files.push(file);
        }
    }
    let out = Command::new("rustfmt")
        .args(["--edition", "2024", "--check"])
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rustfmt would reformat the generated modules ({}):\n{}{}",
        dir.keep_hint(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generated_modules_parse_as_rust() {
    for (name, path) in schemas() {
        for text in [module(&path), macro_module(&path)] {
            if let Err(e) = syn::parse_file(&text) {
                panic!("the module for {name} does not parse: {e} at {:?}", e.span().start());
            }
        }
    }
}

#[test]
fn cpp_header_constant_holds_the_header_exactly() {
    for (name, path) in schemas() {
        let schema = dextlink_schema::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let header = cpp::emit(&schema.interface, &cpp::Options { schema_name: file_name(&path) });
        let file = syn::parse_file(&module(&path)).unwrap();
        let [syn::Item::Mod(module)] = file.items.as_slice() else {
            panic!("{name}: expected one module");
        };
        let items = &module.content.as_ref().unwrap().1;
        let literal = items
            .iter()
            .find_map(|item| match item {
                syn::Item::Const(c) if c.ident == "CPP_HEADER" => Some(&*c.expr),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name}: no CPP_HEADER"));
        let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(literal), .. }) = literal else {
            panic!("{name}: CPP_HEADER is not a string literal");
        };
        assert!(literal.value() == header, "{name}: CPP_HEADER differs from the C++ header");
        // Readable: a raw string, one header line a line.
        assert!(literal.token().to_string().starts_with("r#\""), "{name}: not a raw string");
    }
}

/// Layouts are cached by the shape of a statement, within a module and
/// between modules on one thread; the text must not depend on what was
/// generated before.
#[test]
fn output_does_not_depend_on_earlier_modules() {
    let fresh: Vec<String> = schemas()
        .into_iter()
        .map(|(_, path)| std::thread::spawn(move || module(&path)).join().unwrap())
        .collect();
    for _ in 0..2 {
        for ((_, path), fresh) in schemas().into_iter().zip(&fresh) {
            assert!(module(&path) == *fresh);
        }
    }
}

#[test]
fn module_items_read_as_written_by_hand() {
    let text = module(&schemas()[0].1);
    // Items are separated by blank lines; doc comments are `///` lines.
    assert!(
        text.contains("\n\n    /// What the device is doing with the image.\n    #[repr(u32)]\n")
    );
    assert!(text.contains("    pub const SLOT_COUNT: u32 = 8u32;\n"));
    assert!(!text.contains("#[doc"));
    assert!(!text.contains("\n\n\n"));
    assert!(text.lines().all(|l| l.len() == l.trim_end().len()), "trailing whitespace");
    // The cold error helpers and the crate's zerocopy path.
    assert!(text.contains("::dextlink::__private::short_reply("));
    assert!(text.contains("#[zerocopy(crate = \"::dextlink::__private::zerocopy\")]"));
    assert!(text.contains("        #[inline]\n        pub fn finish("));
    // `STRUCTS` holds what rustc measured, not the model's numbers, so that
    // dextlink-tablecheck compares two compilers.
    assert!(text.contains("offset: ::core::mem::offset_of!(SlotHeader, crc32),\n"));
    assert!(text.contains("size: ::core::mem::size_of::<SlotHeader>(),\n"));
    assert!(text.contains("    pub const INTERFACE: ::dextlink::server::InterfaceInfo = "));
}
