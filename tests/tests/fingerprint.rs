//! The fingerprint ignores what cannot break a call and changes with
//! everything that can.

use dextlink_schema::parse_str;

const BASE: &str = r#"
/// Docs.
interface F {
    service "com.example.F";
    version 1;
    const N: u32 = 4;
    enum Mode: u8 { Off = 0, On = 1 }
    struct P { x: u32, y: u32 }
    memory 0 ring: [u8; 4096], read_write;
    0 => fn a(v: u32 in 0..N, p: &P) -> (out: u64);
    1 => async fn b(m: Mode) completes (done: u32);
    2 => reserved;
}
"#;

fn fingerprint(text: &str) -> u64 {
    parse_str("f.dextlink", text).unwrap_or_else(|d| panic!("{d}")).interface.fingerprint
}

#[test]
fn ignores_comments_formatting_order_names_and_version() {
    let base = fingerprint(BASE);
    let variants = [
        // comments and formatting
        BASE.replace("/// Docs.", "// nothing\n/// Other docs.").replace("    ", "\t"),
        // declaration order of items without ABI order
        BASE.replace("    memory 0 ring: [u8; 4096], read_write;\n", "")
            .replace("    2 => reserved;\n", "    2 => reserved;\n    memory 0 ring: [u8; 4096], read_write;\n"),
        BASE.replace(
            "    0 => fn a(v: u32 in 0..N, p: &P) -> (out: u64);\n    1 => async fn b(m: Mode) completes (done: u32);\n",
            "    1 => async fn b(m: Mode) completes (done: u32);\n    0 => fn a(v: u32 in 0..N, p: &P) -> (out: u64);\n",
        ),
        // names of methods, parameters, fields, types, constants
        BASE.replace("fn a(", "fn alpha(").replace("(done:", "(finished:").replace("{ x: u32", "{ px: u32"),
        BASE.replace("const N: u32 = 4;", "const COUNT: u32 = 4;").replace("0..N", "0..COUNT"),
        BASE.replace("in 0..N", "in 0..=3"),
        // version and service are reported separately
        BASE.replace("version 1;", "version 2;").replace("com.example.F", "com.example.G"),
    ];
    for v in &variants {
        assert_eq!(fingerprint(v), base, "fingerprint changed for:\n{v}");
    }
}

#[test]
fn changes_with_every_abi_fact() {
    let base = fingerprint(BASE);
    let variants = [
        BASE.replace("0 => fn a", "3 => fn a"),           // selector
        BASE.replace("in 0..N", "in 0..5"),               // range
        BASE.replace("v: u32 in 0..N", "v: u64 in 0..N"), // scalar type
        BASE.replace("-> (out: u64)", "-> (out: u64, more: u8)"), // output count
        BASE.replace("{ x: u32, y: u32 }", "{ y: u32, _p: [u8; 4], x: u64 }"), // layout
        BASE.replace("Off = 0, On = 1", "Off = 0, On = 2"), // enum values
        BASE.replace("Mode: u8", "Mode: u16"),            // enum repr
        BASE.replace("1 => async fn", "1 => fn").replace(" completes (done: u32)", ""), // sync/async
        BASE.replace("(done: u32)", "(done: u64)"), // completion payload
        BASE.replace("2 => reserved;", ""),         // reserved
        BASE.replace("[u8; 4096], read_write", "[u8; 8192], read_write"), // memory size
        BASE.replace("read_write", "read_only"),    // memory access
        BASE.replace("memory 0", "memory 1"),       // memory id
        BASE.replace("0 => fn a(", "#[completion(any)]\n    0 => fn a("), // completion check
    ];
    for v in &variants {
        assert_ne!(fingerprint(v), base, "fingerprint did not change for:\n{v}");
    }
}
