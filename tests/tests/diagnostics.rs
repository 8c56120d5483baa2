//! One test per schema diagnostic.
//!
//! Each test writes a small schema inline, with a marker `/*@*/` right before
//! the token the diagnostic must point at. The helper removes the markers,
//! remembers the byte offset where each stood, parses the text and checks
//! (a) the message, (b) that the primary span starts exactly at the marker
//! (so the `line:col` is exact), (c) that a `help` exists and says what to
//! write instead, and (d) how many errors the run reported, so that a rule
//! which cascades into follow-up errors is noticed.

use std::panic::{AssertUnwindSafe, catch_unwind};

use dextlink_schema::{Diagnostic, Diagnostics, Severity, parse_str};

const PATH: &str = "t.dextlink";
const MARK: &str = "/*@*/";

/// A minimal valid interface around `items`; the items start on line 4.
fn schema(items: &str) -> String {
    format!("interface T {{\n    service \"s\";\n    version 1;\n{items}\n}}\n")
}

/// Removes every marker and returns the text with the byte offset at which
/// each marker stood.
fn unmark(marked: &str) -> (String, Vec<usize>) {
    let mut text = String::with_capacity(marked.len());
    let mut marks = Vec::new();
    let mut rest = marked;
    while let Some(i) = rest.find(MARK) {
        text.push_str(&rest[..i]);
        marks.push(text.len());
        rest = &rest[i + MARK.len()..];
    }
    text.push_str(rest);
    (text, marks)
}

/// `n` scalar parameters `{prefix}0: u32, …`, with a marker before number `mark`.
fn scalars(prefix: &str, n: usize, mark: usize) -> String {
    (0..n)
        .map(|i| format!("{}{prefix}{i}: u32", if i == mark { MARK } else { "" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The outcome of parsing a marked schema.
struct Run {
    text: String,
    marks: Vec<usize>,
    result: Result<dextlink_schema::Schema, Diagnostics>,
}

impl Run {
    fn file(marked: &str) -> Run {
        let (text, marks) = unmark(marked);
        let result = parse_str(PATH, &text);
        Run { text, marks, result }
    }

    fn items(items: &str) -> Run {
        Run::file(&schema(items))
    }

    /// The diagnostics, errors and warnings, whether the parse failed or not.
    fn diags(&self) -> &Diagnostics {
        match &self.result {
            Ok(schema) => &schema.warnings,
            Err(d) => d,
        }
    }

    /// Every diagnostic, one line each, for failure messages.
    fn listing(&self) -> String {
        format!(
            "--- schema ---\n{}\n--- diagnostics ---\n{}",
            self.text,
            self.diags().summary_lines().join("\n")
        )
    }

    fn mark(&self, i: usize) -> usize {
        *self
            .marks
            .get(i)
            .unwrap_or_else(|| panic!("the schema has no marker #{i}\n{}", self.listing()))
    }

    /// Asserts that the schema was rejected with exactly `n` errors.
    fn errors(&self, n: usize) -> &Run {
        assert!(self.result.is_err(), "expected the schema to be rejected\n{}", self.listing());
        assert_eq!(self.diags().errors().count(), n, "wrong number of errors\n{}", self.listing());
        self
    }

    /// Asserts that the schema was rejected with at least `n` errors.
    fn at_least(&self, n: usize) -> &Run {
        assert!(self.result.is_err(), "expected the schema to be rejected\n{}", self.listing());
        assert!(
            self.diags().errors().count() >= n,
            "expected at least {n} errors\n{}",
            self.listing()
        );
        self
    }

    fn find(&self, severity: Severity, mark: usize, message: &str) -> &Diagnostic {
        let offset = self.mark(mark);
        self.diags()
            .items
            .iter()
            .find(|d| d.severity == severity && d.message.contains(message) && d.span.start == offset)
            .unwrap_or_else(|| {
                let (line, col) = self.diags().file.line_col(offset);
                panic!(
                    "no {severity:?} containing {message:?} at marker #{mark} ({PATH}:{line}:{col})\n{}",
                    self.listing()
                )
            })
    }

    /// The error whose message contains `message` and whose primary span
    /// starts at marker `mark`; its help must contain `help`.
    fn at(&self, mark: usize, message: &str, help: &str) -> &Diagnostic {
        let d = self.find(Severity::Error, mark, message);
        self.assert_help(d, help);
        d
    }

    /// Like `at`, for a diagnostic that today has no help (see the ignored
    /// `*_have_help` tests).
    fn at_without_help(&self, mark: usize, message: &str) -> &Diagnostic {
        self.find(Severity::Error, mark, message)
    }

    fn warning_at(&self, mark: usize, message: &str, help: &str) -> &Diagnostic {
        let d = self.find(Severity::Warning, mark, message);
        self.assert_help(d, help);
        d
    }

    fn assert_help(&self, d: &Diagnostic, help: &str) {
        let Some(text) = &d.help else {
            panic!("`{}` has no help\n{}", d.message, self.listing());
        };
        assert!(
            text.contains(help),
            "help of `{}` is {text:?}, expected it to contain {help:?}\n{}",
            d.message,
            self.listing()
        );
    }

    /// `path:line:col` of a diagnostic, as users see it.
    fn location(&self, d: &Diagnostic) -> String {
        self.diags().location(d)
    }

    /// Asserts that the secondary label `i` of `d` starts at marker `mark`.
    fn related_at(&self, d: &Diagnostic, i: usize, mark: usize) {
        let offset = self.mark(mark);
        let related = d.related.get(i).unwrap_or_else(|| {
            panic!("`{}` has no related span #{i}\n{}", d.message, self.listing())
        });
        assert_eq!(related.0.start, offset, "related span of `{}`\n{}", d.message, self.listing());
    }
}

// ---------------------------------------------------------------------------
// Selectors

#[test]
fn duplicate_selector() {
    let run = Run::items("    /*@*/0 => fn a();\n    /*@*/0 => fn b();");
    let d = run.errors(1).at(1, "selector 0 is used twice", "pick an unused one");
    assert_eq!(run.location(d), "t.dextlink:5:5");
    run.related_at(d, 0, 0);
    assert_eq!(d.related[0].1, "first used here");
}

#[test]
fn reserved_selector_reused() {
    let run = Run::items("    /*@*/3 => reserved;\n    /*@*/3 => fn a();");
    let d = run.errors(1).at(
        1,
        "selector 3 is reserved and may never be reused",
        "give `a` a new selector",
    );
    assert_eq!(run.location(d), "t.dextlink:5:5");
    run.related_at(d, 0, 0);
}

#[test]
fn selector_reserved_twice() {
    Run::items("    3 => reserved;\n    /*@*/3 => reserved;\n    0 => fn a();").errors(1).at(
        0,
        "selector 3 is reserved twice",
        "remove one of them",
    );
}

#[test]
fn selector_does_not_fit_u32() {
    let run = Run::items("    /*@*/4294967296 => fn a();");
    let d = run.errors(1).at(
        0,
        "selector 4294967296 does not fit DriverKit's selector type",
        "number methods from 0 upwards",
    );
    assert_eq!(run.location(d), "t.dextlink:4:5");
    // The largest u32 is fine.
    assert!(parse_str(PATH, &schema("    4294967295 => fn a();")).is_ok());
}

#[test]
fn handshake_selector_is_reserved() {
    let run = Run::items("    0 => fn a();\n    /*@*/0x44584c4b => fn b();");
    let d = run.errors(1).at(
        0,
        "selector 0x44584c4b is reserved for dextlink's fingerprint handshake",
        "number methods from 0 upwards",
    );
    assert_eq!(run.location(d), "t.dextlink:5:5");
    // Also in decimal, and as a `reserved` item.
    Run::items("    0 => fn a();\n    /*@*/1146637387 => fn b();").errors(1).at(
        0,
        "fingerprint handshake",
        "from 0 upwards",
    );
    Run::items("    0 => fn a();\n    /*@*/1146637387 => reserved;").errors(1).at(
        0,
        "fingerprint handshake",
        "from 0 upwards",
    );
}

#[test]
fn selector_with_suffix() {
    Run::items("    /*@*/1u8 => fn a();").errors(1).at(
        0,
        "a selector is a plain non-negative integer",
        "write e.g. `3 => fn …;`",
    );
}

#[test]
fn sparse_selector_warns_about_table_size() {
    let run = Run::items("    5000 => fn /*@*/far();");
    assert!(run.result.is_ok(), "{}", run.listing());
    let d = run.warning_at(
        0,
        "the dispatch table will have 5001 entries",
        "number methods densely from 0",
    );
    assert_eq!(run.location(d), "t.dextlink:4:16");
}

// ---------------------------------------------------------------------------
// Names: duplicates

#[test]
fn duplicate_name_type_and_const() {
    let run = Run::items(
        "    struct /*@*/FOO { a: u32 }\n    const /*@*/FOO: u32 = 1;\n    0 => fn a();",
    );
    let d = run.errors(1).at(1, "the name `FOO` is defined twice", "give one of them another name");
    assert_eq!(run.location(d), "t.dextlink:5:11");
    assert_eq!(d.label, "second definition, as a constant");
    run.related_at(d, 0, 0);
}

#[test]
fn duplicate_name_struct_and_enum() {
    let run = Run::items(
        "    struct /*@*/Mode { a: u32 }\n    enum /*@*/Mode: u32 { On = 1 }\n    0 => fn a();",
    );
    let d = run.errors(1).at(1, "the name `Mode` is defined twice", "another name");
    run.related_at(d, 0, 0);
}

#[test]
fn duplicate_name_type_and_interface() {
    Run::items("    struct /*@*/T { a: u32 }\n    0 => fn a();").errors(1).at(
        0,
        "the name `T` is defined twice",
        "another name",
    );
}

#[test]
fn duplicate_method_name() {
    let run = Run::items("    0 => fn /*@*/go();\n    1 => fn /*@*/go();");
    let d =
        run.errors(1).at(1, "the method name `go` is used twice", "give one of them another name");
    assert_eq!(run.location(d), "t.dextlink:5:13");
    run.related_at(d, 0, 0);
}

#[test]
fn method_names_collide_in_cpp() {
    let run = Run::items("    0 => fn /*@*/crc32();\n    1 => fn /*@*/crc_32();");
    let d = run.errors(1).at(1, "both become", "give one of them another name");
    assert_eq!(d.message, "methods `crc32` and `crc_32` both become `Crc32` in C++");
    run.related_at(d, 0, 0);
}

#[test]
fn duplicate_memory_id() {
    let run = Run::items(
        "    memory /*@*/0 a: [u8; 16], read_only;\n    memory /*@*/0 b: [u8; 16], read_only;\n    0 => fn f();",
    );
    let d = run.errors(1).at(1, "memory type 0 is declared twice", "its own id");
    assert_eq!(run.location(d), "t.dextlink:5:12");
    run.related_at(d, 0, 0);
}

#[test]
fn duplicate_memory_name() {
    let run = Run::items(
        "    memory 0 /*@*/a: [u8; 16], read_only;\n    memory 1 /*@*/a: [u8; 16], read_write;\n    0 => fn f();",
    );
    let d = run.errors(1).at(1, "memory type `a` is declared twice", "rename one of them");
    run.related_at(d, 0, 0);
}

#[test]
fn duplicate_field() {
    Run::items("    struct P { a: u32, /*@*/a: u32 }\n    0 => fn f(p: &P);").errors(1).at(
        0,
        "field `a` is defined twice in `P`",
        "rename one of them",
    );
}

#[test]
fn duplicate_parameter_output_and_completion_value() {
    let run = Run::items(
        "    0 => fn f(x: u32, /*@*/x: u32) -> (y: u32, /*@*/y: u32);\n    1 => async fn g() completes (z: u32, /*@*/z: u32);",
    );
    run.errors(3);
    run.at(0, "parameter `x` is named twice", "rename one of them");
    run.at(1, "output `y` is named twice", "rename one of them");
    run.at(2, "completion value `z` is named twice", "rename one of them");
}

#[test]
fn duplicate_variant() {
    Run::items("    enum E: u8 { A = 0, /*@*/A = 1 }\n    0 => fn f(e: E);").errors(1).at(
        0,
        "variant `A` is defined twice",
        "rename or remove one",
    );
}

// ---------------------------------------------------------------------------
// Names: reserved words and case

#[test]
fn cpp_keyword_name() {
    let run = Run::items("    struct P { /*@*/class: u32 }\n    0 => fn f(p: &P);");
    let d = run.errors(1).at(0, "`class` is a C++ keyword", "rename it, e.g. `class_value`");
    assert_eq!(run.location(d), "t.dextlink:4:16");
}

#[test]
fn cpp_keyword_method_and_parameter() {
    let run = Run::items("    0 => fn /*@*/delete(/*@*/new: u32);");
    run.errors(2);
    run.at(0, "`delete` is a C++ keyword", "`delete_value`");
    run.at(1, "`new` is a C++ keyword", "`new_value`");
}

#[test]
fn rust_keyword_name() {
    let run = Run::items("    struct P { /*@*/type: u32, /*@*/fn: u32 }\n    0 => fn f(p: &P);");
    run.errors(2);
    run.at(0, "`type` is a Rust keyword", "rename it, e.g. `type_value`");
    run.at(1, "`fn` is a Rust keyword", "rename it, e.g. `fn_value`");
}

#[test]
fn keyword_of_both_languages() {
    Run::items("    0 => fn f(/*@*/struct: u32);").errors(1).at(
        0,
        "`struct` is a C++ and Rust keyword",
        "`struct_value`",
    );
}

#[test]
fn raw_identifier_is_still_a_keyword() {
    // `r#type` is the same name as `type` in the generated code.
    Run::items("    struct P { /*@*/r#type: u32 }\n    0 => fn f(p: &P);").errors(1).at(
        0,
        "`type` is a Rust keyword",
        "`type_value`",
    );
}

#[test]
fn cpp_reserved_identifier() {
    let run = Run::items("    struct P { /*@*/__x: u32, /*@*/a__b: u32 }\n    0 => fn f(p: &P);");
    run.errors(2);
    run.at(0, "`__x` is reserved for the implementation in C and C++", "rename it, e.g. `x_value`");
    run.at(1, "`a__b` is reserved for the implementation", "rename it");
}

#[test]
fn generated_name_collision() {
    let run = Run::items("    struct /*@*/Selector { a: u32 }\n    0 => fn f();");
    let d = run.errors(1).at(
        0,
        "`Selector` collides with a name the generated code defines",
        "rename it, e.g. `SelectorInfo`",
    );
    assert_eq!(run.location(d), "t.dextlink:4:12");
    Run::items("    enum /*@*/Error: u32 { A = 0 }\n    0 => fn f();").errors(1).at(
        0,
        "`Error` collides",
        "`ErrorInfo`",
    );
    Run::items("    struct /*@*/IOService { a: u32 }\n    0 => fn f();").errors(1).at(
        0,
        "`IOService` collides",
        "`IOServiceInfo`",
    );
    // The Rust module's layout metadata, which dextlink-tablecheck reads.
    for name in ["STRUCTS", "INTERFACE"] {
        Run::items(&format!("    const /*@*/{name}: u32 = 1;\n    0 => fn f();")).errors(1).at(
            0,
            &format!("`{name}` collides"),
            &format!("`{name}_INFO`"),
        );
    }
}

#[test]
fn generated_parameter_name() {
    let run = Run::items(
        "    0 => async fn f(/*@*/target: u32) -> (/*@*/ret: u32) completes (/*@*/result: u32);",
    );
    run.errors(3);
    let d = run.at(
        0,
        "`target` is a parameter name the generated C++ uses itself",
        "rename it, e.g. `target_value`",
    );
    assert_eq!(run.location(d), "t.dextlink:4:21");
    run.at(1, "`ret` is a parameter name the generated C++ uses itself", "`ret_value`");
    run.at(2, "`result` is a parameter name the generated C++ uses itself", "`result_value`");
}

#[test]
fn memory_names_collide_in_cpp() {
    Run::items("    memory 0 crc32: [u8; 16], read_only;\n    memory 1 /*@*/crc_32: [u8; 16], read_only;\n    0 => fn f();")
        .errors(1)
        .at(0, "`crc_32`", "another name");
}

#[test]
fn length_parameter_of_bounded_argument_collides_in_cpp() {
    let run = Run::items(
        "    0 => fn f(/*@*/data_length: u32, data: &[u8; ..=16]);\n    1 => fn g() -> (out: [u8; ..=16], /*@*/out_length: u32);",
    );
    run.errors(2);
    run.at(0, "`data_length`", "rename");
    run.at(1, "`out_length`", "rename");
}

#[test]
fn type_collides_with_generated_function() {
    let run = Run::items(
        "    struct /*@*/HandleGo { a: u32 }\n    struct /*@*/StaticHandleGo { a: u32 }\n    enum /*@*/CompleteGo: u32 { A = 0 }\n    0 => async fn go(a: &StaticHandleGo, c: CompleteGo) -> (h: HandleGo);",
    );
    run.errors(3);
    run.at(0, "`HandleGo`", "rename");
    run.at(1, "`StaticHandleGo`", "rename");
    run.at(2, "`CompleteGo`", "rename");
}

#[test]
fn struct_name_case() {
    let run = Run::items("    struct /*@*/image_info { a: u32 }\n    0 => fn f();");
    let d = run.errors(1).at(0, "struct names are written in UpperCamelCase", "write `ImageInfo`");
    assert_eq!(d.label, "`image_info` is not UpperCamelCase");
    assert_eq!(run.location(d), "t.dextlink:4:12");
}

#[test]
fn method_name_case() {
    let run = Run::items("    0 => fn /*@*/Begin();");
    let d = run.errors(1).at(0, "method names are written in snake_case", "write `begin`");
    assert_eq!(run.location(d), "t.dextlink:4:13");
    Run::items("    0 => fn /*@*/writeBlob();").errors(1).at(0, "snake_case", "write `write_blob`");
}

#[test]
fn const_name_case() {
    Run::items("    const /*@*/slotCount: u32 = 8;\n    0 => fn f();").errors(1).at(
        0,
        "constant names are written in SCREAMING_SNAKE_CASE",
        "write `SLOT_COUNT`",
    );
}

#[test]
fn enum_and_variant_name_case() {
    let run = Run::items("    enum /*@*/status: u32 { /*@*/idle = 0 }\n    0 => fn f();");
    run.errors(2);
    run.at(0, "enum names are written in UpperCamelCase", "write `Status`");
    run.at(1, "variant names are written in UpperCamelCase", "write `Idle`");
}

#[test]
fn field_parameter_and_memory_name_case() {
    let run = Run::items(
        "    struct P { /*@*/totalLen: u32 }\n    memory 0 /*@*/Ring: [u8; 4], read_only;\n    0 => fn f(/*@*/Info: &P) -> (/*@*/OutLen: u32);",
    );
    run.errors(4);
    run.at(0, "field names are written in snake_case", "write `total_len`");
    run.at(1, "memory type names are written in snake_case", "write `ring`");
    run.at(2, "parameter names are written in snake_case", "write `info`");
    run.at(3, "output names are written in snake_case", "write `out_len`");
}

#[test]
fn interface_name_case() {
    let run = Run::file(
        "interface /*@*/fw_loader {\n    service \"s\";\n    version 1;\n    0 => fn f();\n}\n",
    );
    let d =
        run.errors(1).at(0, "interface names are written in UpperCamelCase", "write `FwLoader`");
    assert_eq!(run.location(d), "t.dextlink:1:11");
}

// ---------------------------------------------------------------------------
// Interface settings

#[test]
fn empty_interface() {
    let run = Run::file("/*@*/interface T {\n    service \"s\";\n    version 1;\n}\n");
    let d = run.errors(1).at(0, "interface `T` declares no methods", "`0 => fn ping();`");
    assert_eq!(run.location(d), "t.dextlink:1:1");
}

#[test]
fn missing_service_and_version() {
    let run = Run::file("/// Docs.\n/*@*/interface T {\n    0 => fn f();\n}\n");
    run.errors(2);
    let service = run.at(
        0,
        "interface `T` has no service name",
        "add `service \"com.example.driver.UserClient\";`",
    );
    assert_eq!(run.location(service), "t.dextlink:2:1");
    run.at(0, "interface `T` has no version", "add `version 1;`");
}

#[test]
fn duplicate_service() {
    let run = Run::file(
        "interface T {\n    /*@*/service \"a\";\n    /*@*/service \"b\";\n    version 1;\n    0 => fn f();\n}\n",
    );
    let d = run.errors(1).at(1, "the service name is given twice", "keep one `service \"…\";`");
    assert_eq!(run.location(d), "t.dextlink:3:5");
    run.related_at(d, 0, 0);
}

#[test]
fn empty_service() {
    Run::file("interface T {\n    /*@*/service \"\";\n    version 1;\n    0 => fn f();\n}\n")
        .at_least(1)
        .at(0, "the service name is empty", "write the IOService name");
}

#[test]
fn empty_service_is_one_error() {
    Run::file("interface T {\n    /*@*/service \"\";\n    version 1;\n    0 => fn f();\n}\n")
        .errors(1)
        .at(0, "the service name is empty", "write the IOService name");
}

#[test]
fn duplicate_version() {
    let run = Run::file(
        "interface T {\n    service \"s\";\n    version /*@*/1;\n    version /*@*/2;\n    0 => fn f();\n}\n",
    );
    let d = run.errors(1).at(1, "the version is given twice", "keep one `version N;`");
    run.related_at(d, 0, 0);
}

#[test]
fn version_not_u32() {
    Run::file(
        "interface T {\n    service \"s\";\n    version /*@*/4294967296;\n    0 => fn f();\n}\n",
    )
    .at_least(1)
    .at(0, "the version must be an integer from 0 to 4294967295", "write e.g. `version 1;`");
    Run::file("interface T {\n    service \"s\";\n    version /*@*/-1;\n    0 => fn f();\n}\n")
        .at_least(1)
        .at(0, "the version must be an integer", "`version 1;`");
}

#[test]
fn version_not_u32_is_one_error() {
    Run::file(
        "interface T {\n    service \"s\";\n    version /*@*/4294967296;\n    0 => fn f();\n}\n",
    )
    .errors(1)
    .at(0, "the version must be an integer from 0 to 4294967295", "write e.g. `version 1;`");
}

// ---------------------------------------------------------------------------
// Scalars and structure arguments

#[test]
fn too_many_scalar_inputs() {
    let run = Run::items(&format!("    0 => fn f({});", scalars("a", 17, 16)));
    let d = run.errors(1).at(
        0,
        "`f` has 17 scalar inputs, more than 16",
        "move some into a structure input",
    );
    assert_eq!(d.label, "the 17th");
    // Sixteen are fine.
    assert!(parse_str(PATH, &schema(&format!("    0 => fn f({});", scalars("a", 16, 99)))).is_ok());
}

#[test]
fn too_many_scalar_outputs() {
    Run::items(&format!("    0 => fn f() -> ({});", scalars("r", 17, 16))).errors(1).at(
        0,
        "`f` has 17 scalar outputs, more than 16",
        "return a struct instead",
    );
}

#[test]
fn too_many_completion_values() {
    Run::items(&format!("    0 => async fn f() completes ({});", scalars("v", 20, 16)))
        .errors(1)
        .at(0, "`f` has 20 completion values, more than 16", "send the rest through a memory type");
}

#[test]
fn second_structure_input() {
    let run = Run::items("    struct P { a: u32 }\n    0 => fn f(/*@*/x: &P, /*@*/y: &[u8; 4]);");
    let d = run.errors(1).at(1, "`f` has a second structure input", "put both in one struct");
    run.related_at(d, 0, 0);
}

#[test]
fn second_structure_output() {
    let run = Run::items("    struct P { a: u32 }\n    0 => fn f() -> (/*@*/x: P, /*@*/y: [u8]);");
    let d = run.errors(1).at(1, "`f` has a second structure output", "put both in one struct");
    run.related_at(d, 0, 0);
}

#[test]
fn struct_input_by_value() {
    let run = Run::items("    struct P { a: u32 }\n    0 => fn f(p: /*@*/P);");
    let d =
        run.errors(1).at(0, "the structure input `p` must be passed by reference", "write `p: &P`");
    assert_eq!(run.location(d), "t.dextlink:5:18");
    Run::items("    0 => fn f(key: /*@*/[u8; 16]);").errors(1).at(
        0,
        "passed by reference",
        "write `key: &[u8; 16]`",
    );
}

#[test]
fn mutable_struct_input() {
    Run::items("    struct P { a: u32 }\n    0 => fn f(p: /*@*/&mut P);").errors(1).at(
        0,
        "structure inputs are read-only",
        "write `&`",
    );
}

#[test]
fn reference_in_output() {
    Run::items("    struct P { a: u32 }\n    0 => fn f() -> (p: /*@*/&P);").errors(1).at(
        0,
        "outputs are written without `&`",
        "write `p: P`",
    );
}

#[test]
fn scalar_input_by_reference() {
    // Today this schema parses, and method `f` has no inputs at all.
    let run = Run::items(
        "    enum E: u8 { A = 0 }\n    0 => fn f(a: /*@*/&u32, b: /*@*/&E, c: /*@*/&bool);",
    );
    run.errors(3);
    run.at(0, "", "write `a: u32`");
    run.at(1, "", "write `b: E`");
    run.at(2, "", "write `c: bool`");
}

#[test]
fn unbounded_byte_input() {
    let run = Run::items("    0 => fn f(data: &/*@*/[u8]);");
    let d =
        run.errors(1).at(0, "the structure input `data` has no bound", "write `&[u8; ..=65536]`");
    assert_eq!(run.location(d), "t.dextlink:4:22");
}

#[test]
fn bounded_output_over_4096() {
    Run::items("    0 => fn f() -> (log: /*@*/[u8; ..=4097]);").errors(1).at(
        0,
        "the bounded output `log` can exceed 4096 bytes",
        "write `[u8]` for a variable output",
    );
    // The limit itself is fine.
    assert!(parse_str(PATH, &schema("    0 => fn f() -> (log: [u8; ..=4096]);")).is_ok());
}

#[test]
fn bounded_input_over_4096_is_a_warning() {
    let run = Run::items("    0 => fn f(data: &/*@*/[u8; ..=4097]);");
    let schema = run
        .result
        .as_ref()
        .unwrap_or_else(|_| panic!("a warning must not fail the parse\n{}", run.listing()));
    assert_eq!(schema.warnings.items.len(), 1, "{}", run.listing());
    assert_eq!(schema.warnings.errors().count(), 0);
    let d = run.warning_at(
        0,
        "calls with more than 4096 bytes of `data` travel out of line",
        "memory descriptor",
    );
    assert_eq!(run.location(d), "t.dextlink:4:22");
    assert!(schema.warnings.render(false).contains("warning: calls with more than 4096 bytes"));
}

#[test]
fn empty_fixed_byte_input() {
    Run::items("    0 => fn f(key: &[u8; /*@*/0]);").errors(1).at(
        0,
        "the structure input `key` is empty",
        "give at least one byte",
    );
    Run::items("    0 => fn f() -> (key: [u8; /*@*/0]);").errors(1).at(
        0,
        "the structure output `key` is empty",
        "at least one byte",
    );
}

#[test]
fn empty_byte_bounds() {
    Run::items("    0 => fn f(data: &[u8; /*@*/5..=1]);").errors(1).at(
        0,
        "the length bounds of `data` are empty",
        "write e.g. `[u8; ..=4096]`",
    );
}

#[test]
fn byte_bounds_without_upper_bound() {
    Run::items("    0 => fn f(data: &[u8; /*@*/1..]);").errors(1).at(
        0,
        "the structure input `data` has no upper bound",
        "write `[u8; ..=N]`",
    );
}

#[test]
fn byte_bound_too_large() {
    Run::items("    0 => fn f(data: &[u8; /*@*/..=4294967295]);").errors(1).at(
        0,
        "the bound 4294967295 of `data` is too large for DriverKit",
        "keep the bound below 4294967295",
    );
}

#[test]
fn fixed_byte_input_too_large() {
    Run::items("    0 => fn f(data: &/*@*/[u8; 4294967295]);").errors(1).at(
        0,
        "the structure input `data` is 4294967295 bytes",
        "share it through a memory type",
    );
}

#[test]
fn struct_argument_array_of_other_type() {
    let run = Run::items("    0 => fn f(a: &/*@*/[u32; 4]) -> (b: /*@*/[u16; 2]);");
    run.errors(2);
    run.at(
        0,
        "a structure input is a struct or a byte array",
        "use `[u8; N]`, or wrap the array in a struct",
    );
    run.at(1, "a structure output is a struct or a byte array", "wrap the array in a struct");
}

#[test]
fn completion_on_sync_method() {
    let run = Run::items("    2 => fn done() /*@*/completes (x: u32);");
    let d = run.errors(1).at(
        0,
        "`done` is synchronous but declares a completion",
        "write `2 => async fn done(…)`",
    );
    assert_eq!(run.location(d), "t.dextlink:4:20");
}

#[test]
fn completion_carries_scalars_only() {
    let run = Run::items(
        "    struct P { a: u32 }\n    0 => async fn f() completes (p: /*@*/P, q: /*@*/&P, r: /*@*/[u8; 4]);",
    );
    run.errors(3);
    for mark in 0..3 {
        run.at(mark, "completions carry scalars only", "through a memory type");
    }
}

// ---------------------------------------------------------------------------
// Ranges

#[test]
fn range_bound_unknown_constant() {
    Run::items("    0 => fn f(slot: u32 in 0../*@*/SLOTS);").errors(1).at(
        0,
        "unknown constant `SLOTS`",
        "define it first: `const SLOTS: u32 = …;`",
    );
}

#[test]
fn range_bound_defined_later_is_unknown() {
    // Constants are evaluated in order; methods see them all, but a constant
    // cannot use one defined below it.
    Run::items("    const A: u32 = /*@*/B;\n    const B: u32 = 1;\n    0 => fn f();").errors(1).at(
        0,
        "unknown constant `B`",
        "define it first",
    );
}

#[test]
fn empty_range() {
    let run = Run::items("    0 => fn f(a: u32 in /*@*/5..5, b: u32 in /*@*/3..=1);");
    run.errors(2);
    let d = run.at(0, "the range of `a` is empty", "the lower bound must not exceed the upper one");
    assert_eq!(d.label, "no value lies in 5..=4");
    run.at(1, "the range of `b` is empty", "`A..B` excludes B");
}

#[test]
fn range_outside_parameter_type() {
    let run = Run::items("    0 => fn f(a: u8 in /*@*/0..=256, b: i8 in /*@*/-200..0);");
    run.errors(2);
    let d = run.at(
        0,
        "the range 0..=256 does not fit `u8`, the type of `a`",
        "narrow the range or widen the parameter's type",
    );
    assert_eq!(d.label, "`u8` holds 0..=255");
    run.at(1, "the range -200..=-1 does not fit `i8`", "widen the parameter's type");
}

#[test]
fn range_on_output_and_completion() {
    let run = Run::items(
        "    0 => async fn f() -> (a: u32 in /*@*/0..4) completes (b: u32 in /*@*/0..4);",
    );
    run.errors(2);
    run.at(0, "ranges apply to scalar inputs only", "remove `in …`");
    run.at(1, "ranges apply to scalar inputs only", "remove `in …`");
}

#[test]
fn range_on_structure_input() {
    Run::items("    0 => fn f(key: &[u8; 4] in /*@*/0..4);").errors(1).at(
        0,
        "ranges apply to scalar inputs only",
        "remove `in …`",
    );
}

#[test]
fn range_on_bool_and_enum() {
    let run = Run::items(
        "    enum E: u8 { A = 0 }\n    0 => fn f(on: bool in /*@*/0..1, e: E in /*@*/0..1);",
    );
    run.errors(2);
    run.at(0, "only integer scalars take a range", "remove `in …`");
    run.at(1, "only integer scalars take a range", "remove `in …`");
}

#[test]
fn range_that_is_not_a_range() {
    Run::items("    0 => fn f(a: u32 in /*@*/5);").errors(1).at(
        0,
        "expected a range",
        "write e.g. `in 0..SLOT_COUNT`",
    );
}

#[test]
fn range_end_at_i128_min_does_not_panic() {
    let text = schema(
        "    0 => fn f(x: i64 in /*@*/0..(-170141183460469231731687303715884105727 - 1)/*@*/);",
    );
    let run = catch_unwind(|| Run::file(&text)).expect("parse_str panicked");
    run.errors(1);
    let d = run.diags().errors().next().unwrap();
    assert!(run.mark(0) <= d.span.start && d.span.end <= run.mark(1), "{}", run.listing());
    assert!(d.help.is_some(), "{}", run.listing());
}

#[test]
fn byte_bound_at_i128_min_does_not_panic() {
    let text = schema(
        "    0 => fn f(x: &[u8; /*@*/..(-170141183460469231731687303715884105727 - 1)/*@*/]);",
    );
    let run = catch_unwind(|| Run::file(&text)).expect("parse_str panicked");
    run.errors(1);
    let d = run.diags().errors().next().unwrap();
    assert!(run.mark(0) <= d.span.start && d.span.end <= run.mark(1), "{}", run.listing());
}

// ---------------------------------------------------------------------------
// Types

#[test]
fn unknown_type() {
    let run = Run::items("    struct P { a: /*@*/Missing }\n    0 => fn f(p: &P);");
    let d = run.errors(1).at(
        0,
        "unknown type `Missing`",
        "declare it (`struct Missing { … }` or `enum Missing: u32 { … }`)",
    );
    assert_eq!(run.location(d), "t.dextlink:4:19");
}

#[test]
fn unknown_type_hints() {
    let run = Run::items(
        "    struct P { a: /*@*/usize, b: /*@*/f32, c: /*@*/u128, d: /*@*/char }\n    0 => fn f(p: &P, n: /*@*/isize, x: /*@*/f64);",
    );
    run.errors(6);
    run.at(0, "unknown type `usize`", "use a fixed-width integer: `u64` or `i64`");
    run.at(1, "unknown type `f32`", "use a fixed-point integer");
    run.at(2, "unknown type `u128`", "use `[u64; 2]`");
    run.at(3, "unknown type `char`", "use a byte array, e.g. `[u8; 32]`");
    run.at(4, "unknown type `isize`", "`u64` or `i64`");
    run.at(5, "unknown type `f64`", "fixed-point integer");
}

#[test]
fn unknown_field_type_does_not_cascade_into_padding() {
    Run::items("    struct P { a: u8, b: /*@*/Missing, c: u32 }\n    0 => fn f(p: &P);")
        .errors(1)
        .at(0, "unknown type `Missing`", "declare it");
}

#[test]
fn not_a_schema_type() {
    Run::items("    struct P { a: /*@*/fn() }\n    0 => fn f(p: &P);").errors(1).at(
        0,
        "this is not a schema type",
        "use an integer, bool, enum, struct or `[T; N]`",
    );
}

#[test]
fn reference_in_field() {
    Run::items("    struct P { a: /*@*/&u32 }\n    0 => fn f(p: &P);").errors(1).at(
        0,
        "references are only for a method's structure input",
        "remove the `&`",
    );
}

#[test]
fn unsized_array_in_field() {
    Run::items("    struct P { a: /*@*/[u8] }\n    0 => fn f(p: &P);").errors(1).at(
        0,
        "unsized arrays are only for a method's structure output",
        "give a length, e.g. `[u8; 64]`",
    );
}

#[test]
fn bounded_array_in_field() {
    Run::items("    struct P { a: [u8; /*@*/..=4] }\n    0 => fn f(p: &P);").errors(1).at(
        0,
        "only a method's structure input or output may have a variable length",
        "give a length, e.g. `[u8; 64]`",
    );
}

#[test]
fn constant_type_not_integer() {
    Run::items("    const A: /*@*/bool = 1;\n    0 => fn f();").errors(1).at(
        0,
        "a constant must have an integer type",
        "write e.g. `u32`",
    );
}

// ---------------------------------------------------------------------------
// Struct layout

#[test]
fn implicit_padding() {
    let run = Run::items("    struct P { a: u8, /*@*/b: u32 }\n    0 => fn f(p: &P);");
    let d = run.errors(1).at(
        0,
        "struct `P` has 3 bytes of implicit padding before `b`",
        "add `_pad0: [u8; 3],` before `b`",
    );
    assert_eq!(d.label, "`b` needs 4-byte alignment, but would start at offset 1");
    assert_eq!(run.location(d), "t.dextlink:4:23");
}

#[test]
fn implicit_padding_numbers_the_pads() {
    let run = Run::items(
        "    struct R { a: u8, /*@*/b: u16, c: u8, /*@*/d: u64 }\n    0 => fn f(r: &R);",
    );
    run.errors(2);
    run.at(0, "1 byte of implicit padding before `b`", "add `_pad0: [u8; 1],` before `b`");
    run.at(1, "3 bytes of implicit padding before `d`", "add `_pad1: [u8; 3],` before `d`");
}

#[test]
fn tail_padding() {
    let run = Run::items("    struct /*@*/Q { a: u32, b: u8 }\n    0 => fn f() -> (q: Q);");
    let d = run.errors(1).at(
        0,
        "struct `Q` has 3 bytes of implicit padding at the end",
        "add `_pad0: [u8; 3],` as the last field",
    );
    assert_eq!(d.label, "its size 5 is not a multiple of its alignment 4");
}

#[test]
fn padding_through_nested_struct() {
    // `Inner` is 8-aligned, so `inner` after a u32 leaves a 4-byte hole.
    Run::items("    struct Inner { x: u64 }\n    struct Outer { a: u32, /*@*/inner: Inner }\n    0 => fn f(o: &Outer);")
        .errors(1)
        .at(0, "4 bytes of implicit padding before `inner`", "`_pad0: [u8; 4],`");
}

#[test]
fn empty_struct() {
    Run::items("    struct E /*@*/{}\n    0 => fn f();").errors(1).at(
        0,
        "struct `E` has no fields",
        "add a field",
    );
}

#[test]
fn recursive_struct_cycle() {
    // A cycle through two structs is reported once, at the first of them.
    Run::items("    struct /*@*/A { b: B }\n    struct B { a: A }\n    0 => fn f();").errors(1).at(
        0,
        "struct `A` contains itself",
        "break the cycle",
    );
}

#[test]
fn recursive_struct() {
    let run = Run::items("    struct /*@*/R { a: u32, r: R }\n    0 => fn f();");
    run.errors(1).at(
        0,
        "struct `R` contains itself",
        "break the cycle with an index or offset field",
    );
}

#[test]
fn struct_too_large() {
    Run::items("    struct /*@*/P { c: [u8; 0x1_0000_0000] }\n    0 => fn f();").errors(1).at(
        0,
        "struct `P` is 4294967296 bytes, too large to share",
        "structure sizes are 32-bit",
    );
}

#[test]
fn huge_struct_does_not_panic() {
    let text = schema("    struct /*@*/P { c: [u64; 0x7fff_ffff_ffff_ffff] }\n    0 => fn f();");
    let run = catch_unwind(|| Run::file(&text)).expect("parse_str panicked");
    run.errors(1).at(0, "too large to share", "32-bit");
}

// ---------------------------------------------------------------------------
// Constants and array lengths

#[test]
fn array_length_unknown_constant() {
    let run = Run::items("    struct P { a: [u8; /*@*/LEN] }\n    0 => fn f(p: &P);");
    let d = run.errors(1).at(0, "unknown constant `LEN`", "define it first: `const LEN: u32 = …;`");
    assert_eq!(run.location(d), "t.dextlink:4:24");
}

#[test]
fn array_length_overflows() {
    // 2^64 * 2^64 does not fit the 128-bit evaluator.
    Run::items("    const BIG: u64 = 0xffff_ffff_ffff_ffff;\n    struct P { a: [u8; /*@*/BIG * BIG * 2] }\n    0 => fn f(p: &P);")
        .errors(1)
        .at_without_help(0, "this constant expression overflows");
}

#[test]
fn array_length_exceeds_u64() {
    Run::items("    struct P { a: [u8; /*@*/0x1_0000_0000_0000_0000] }\n    0 => fn f(p: &P);")
        .errors(1)
        .at_without_help(0, "array length overflows");
}

#[test]
fn constant_exceeds_its_type() {
    let run = Run::items(
        "    const A: u32 = 0x1_0000;\n    const N: u32 = /*@*/A * A;\n    0 => fn f();",
    );
    let d = run.errors(1).at(
        0,
        "4294967296 does not fit the constant's type `u32`",
        "give the constant a wider type, e.g. `u64`",
    );
    assert_eq!(d.label, "outside 0..=4294967295");
    Run::items("    const N: u8 = /*@*/-1;\n    0 => fn f();").errors(1).at(
        0,
        "-1 does not fit the constant's type `u8`",
        "wider type",
    );
}

#[test]
fn bad_constant_does_not_cascade() {
    Run::items("    const N: u8 = /*@*/256;\n    struct P { a: [u8; N] }\n    0 => fn f(x: u32 in 0..N, p: &P);")
        .errors(1)
        .at(0, "256 does not fit the constant's type `u8`", "wider type");
}

#[test]
fn empty_array() {
    Run::items("    struct P { x: u32, a: [u8; /*@*/0] }\n    0 => fn f(p: &P);").errors(1).at(
        0,
        "array length 0 is empty",
        "at least one element",
    );
    Run::items("    struct P { a: [u32; /*@*/-1] }\n    0 => fn f(p: &P);").errors(1).at(
        0,
        "array length -1 is empty",
        "at least one element",
    );
}

#[test]
fn integer_literal_with_suffix() {
    Run::items("    const A: u32 = /*@*/1u32;\n    0 => fn f();").errors(1).at(
        0,
        "integer literals take no type suffix here",
        "write `1`",
    );
}

#[test]
fn non_integer_literal() {
    Run::items("    const A: u32 = /*@*/\"x\";\n    0 => fn f();").errors(1).at(
        0,
        "expected an integer",
        "constant expressions like `SLOT_COUNT * 4`",
    );
}

#[test]
fn unsupported_constant_expression() {
    let run = Run::items(
        "    const A: u32 = /*@*/f(1);\n    const B: u32 = /*@*/u32::MAX;\n    0 => fn f();",
    );
    run.errors(2);
    run.at(0, "this is not a constant expression", "use integer literals, constants and");
    run.at(1, "this is not a constant expression", "use integer literals");
}

#[test]
fn division_by_zero() {
    Run::items("    const A: u32 = /*@*/1 / (2 - 2);\n    0 => fn f();")
        .errors(1)
        .at_without_help(0, "division by zero in a constant expression");
}

#[test]
fn integer_literal_too_large() {
    Run::items(
        "    const A: u64 = /*@*/340282366920938463463374607431768211456;\n    0 => fn f();",
    )
    .errors(1)
    .at_without_help(0, "this integer is too large to evaluate");
}

#[test]
fn evaluation_errors_have_help() {
    for (items, message) in [
        (
            "    const BIG: u64 = 0xffff_ffff_ffff_ffff;\n    const X: u64 = /*@*/BIG * BIG;\n    0 => fn f();",
            "overflows",
        ),
        (
            "    const A: u64 = /*@*/340282366920938463463374607431768211456;\n    0 => fn f();",
            "too large to evaluate",
        ),
        ("    const A: u32 = /*@*/1 % 0;\n    0 => fn f();", "division by zero"),
        (
            "    struct P { a: [u8; /*@*/0x1_0000_0000_0000_0000] }\n    0 => fn f(p: &P);",
            "array length overflows",
        ),
    ] {
        let run = Run::items(items);
        let d = run.errors(1).at_without_help(0, message);
        assert!(d.help.is_some(), "`{}` has no help\n{}", d.message, run.listing());
    }
}

// ---------------------------------------------------------------------------
// Enums

#[test]
fn enum_without_repr() {
    let run = Run::items("    enum /*@*/Status { Idle = 0 }\n    0 => fn f(s: Status);");
    let d = run.errors(1).at(
        0,
        "enum `Status` has no integer representation",
        "write `enum Status: u32 { … }`",
    );
    assert_eq!(run.location(d), "t.dextlink:4:10");
}

#[test]
fn enum_repr_not_integer() {
    Run::items("    enum E: /*@*/f32 { A = 0 }\n    0 => fn f(e: E);").errors(1).at(
        0,
        "an enum's representation must have an integer type",
        "write e.g. `u32`",
    );
}

#[test]
fn variant_without_value() {
    Run::items("    enum E: u8 { A = 0, /*@*/B }\n    0 => fn f(e: E);").errors(1).at(
        0,
        "variant `B` has no explicit value",
        "write `B = 1`",
    );
}

#[test]
fn duplicate_variant_value() {
    let run = Run::items("    enum E: u8 { A = /*@*/1, B = /*@*/1 }\n    0 => fn f(e: E);");
    let d = run.errors(1).at(
        1,
        "variants `A` and `B` have the same value 1",
        "every variant needs its own value",
    );
    run.related_at(d, 0, 0);
}

#[test]
fn variant_value_outside_repr() {
    let run = Run::items("    enum E: u8 { A = /*@*/256, B = /*@*/-1 }\n    0 => fn f(e: E);");
    run.errors(2);
    let d = run.at(0, "256 does not fit `u8`, the representation of `E`", "a wider representation");
    assert_eq!(d.label, "outside 0..=255");
    run.at(1, "-1 does not fit `u8`", "a wider representation");
}

#[test]
fn empty_enum() {
    Run::items("    enum E: u32 /*@*/{}\n    0 => fn f();").errors(1).at(
        0,
        "enum `E` has no variants",
        "add at least one variant",
    );
}

// ---------------------------------------------------------------------------
// Memory types

#[test]
fn memory_not_a_byte_array() {
    let run = Run::items(
        "    memory 0 a: /*@*/[u32; 4], read_only;\n    memory 1 b: /*@*/[u8; ..=4], read_only;\n    0 => fn f();",
    );
    run.errors(2);
    run.at(
        0,
        "a memory type is a byte array of fixed size",
        "write e.g. `[u8; SLOT_COUNT * SLOT_SIZE]`",
    );
    run.at(1, "a memory type is a byte array of fixed size", "`[u8; SLOT_COUNT * SLOT_SIZE]`");
}

#[test]
fn memory_size_zero() {
    Run::items("    memory 0 a: [u8; /*@*/0], read_only;\n    0 => fn f();").errors(1).at(
        0,
        "memory type size 0 is empty",
        "give the size in bytes, e.g. `[u8; 4096]`",
    );
}

#[test]
fn memory_unknown_access() {
    Run::items("    memory 0 a: [u8; 4], /*@*/writable;\n    0 => fn f();").errors(1).at(
        0,
        "unknown memory access `writable`",
        "write `read_only` or `read_write`",
    );
}

#[test]
fn memory_id_not_u32() {
    Run::items("    memory /*@*/4294967296 a: [u8; 4], read_only;\n    0 => fn f();").errors(1).at(
        0,
        "a memory type id is an integer from 0 to 4294967295",
        "write e.g. `memory 0 staging: …`",
    );
}

// ---------------------------------------------------------------------------
// Attributes

#[test]
fn unknown_attribute() {
    let run = Run::items(
        "    /*@*/#[foo]\n    struct P { a: u32 }\n    /*@*/#[inline]\n    0 => fn f(/*@*/#[bar] x: u32, p: &P);",
    );
    run.errors(3);
    let d = run.at(0, "unknown attribute `#[foo]`", "only `///` doc comments may stand here");
    assert_eq!(run.location(d), "t.dextlink:4:5");
    run.at(1, "unknown attribute `#[inline]`", "`#[unchecked]`");
    run.at(2, "unknown attribute `#[bar]`", "only `///` doc comments");
}

#[test]
fn unknown_attribute_on_interface() {
    Run::file("/*@*/#[derive(Debug)]\ninterface T {\n    service \"s\";\n    version 1;\n    0 => fn f();\n}\n")
        .errors(1)
        .at(0, "unknown attribute `#[derive]`", "only `///` doc comments");
}

#[test]
fn unknown_method_attribute_suggests_valid_forms() {
    Run::items("    /*@*/#[inline]\n    0 => fn f();").errors(1).at(
        0,
        "unknown attribute `#[inline]`",
        "`#[completion(any)]`",
    );
}

#[test]
fn completion_attribute_unknown_form() {
    let run = Run::items(
        "    /*@*/#[completion(sometimes)]\n    0 => async fn f();\n    /*@*/#[completion]\n    1 => async fn g();",
    );
    run.errors(2);
    run.at(0, "the completion check is either implied or `any`", "write `#[completion(any)]`");
    run.at(1, "the completion check is either implied or `any`", "write `#[completion(any)]`");
}

#[test]
fn unchecked_with_arguments() {
    Run::items("    /*@*/#[unchecked(yes)]\n    0 => fn f();").errors(1).at(
        0,
        "`#[unchecked]` takes no arguments",
        "write `#[unchecked]`",
    );
}

#[test]
fn attribute_with_value() {
    // A syntax error: parsing stops here.
    Run::items("    #[/*@*/completion = \"any\"]\n    0 => fn f();")
        .errors(1)
        .at_without_help(0, "write `#[completion(…)]`, not `#[completion = …]`");
}

#[test]
fn doc_attribute_that_is_not_a_string() {
    Run::items("    /*@*/#[doc = 1]\n    0 => fn f();")
        .errors(1)
        .at_without_help(0, "write documentation as `///` comments");
}

// ---------------------------------------------------------------------------
// Syntax and lexing

#[test]
fn missing_semicolon() {
    let run = Run::file("interface T {\n    service \"s\"\n    version 1;\n    0 => fn f();\n}\n");
    run.errors(1);
    assert_eq!(run.diags().items[0].message, "expected `;`");
}

#[test]
fn missing_semicolon_points_after_previous_token() {
    let run =
        Run::file("interface T {\n    service \"s\"/*@*/\n    version 1;\n    0 => fn f();\n}\n");
    let d = run.errors(1).at(0, "expected `;`", "`;`");
    assert_eq!(run.location(d), "t.dextlink:2:16");
}

#[test]
fn method_without_selector() {
    let run = Run::items("    /*@*/fn a();");
    let d = run.errors(1).at(0, "expected one of", "`N => fn …;`");
    assert_eq!(run.location(d), "t.dextlink:4:5");
}

#[test]
fn method_without_fat_arrow() {
    Run::items("    0 /*@*/fn a();").errors(1).at(
        0,
        "expected `=>`",
        "methods start with their selector: `0 => fn name(…);`",
    );
}

#[test]
fn outputs_without_parentheses() {
    Run::items("    0 => fn f() -> /*@*/u32;")
        .errors(1)
        .at_without_help(0, "outputs are a list of named values: write `-> (name: Type, …)`");
}

#[test]
fn two_interfaces() {
    let run = Run::file(
        "interface T {\n    service \"s\";\n    version 1;\n    0 => fn f();\n}\n/*@*/interface U {}\n",
    );
    let d = run
        .errors(1)
        .at_without_help(0, "a schema holds exactly one interface; nothing may follow it");
    assert_eq!(run.location(d), "t.dextlink:6:1");
}

#[test]
fn syntax_errors_have_help() {
    for text in [
        "interface T {\n    service \"s\"\n    version 1;\n    0 => fn f();\n}\n",
        "interface T {\n    service \"s\";\n    version 1;\n    0 => fn f();\n}\ninterface U {}\n",
        &schema("    0 => fn f() -> u32;"),
        &schema("    #[completion = \"any\"]\n    0 => fn f();"),
        &schema("    #[doc = 1]\n    0 => fn f();"),
    ] {
        let run = Run::file(text);
        let d = &run.errors(1).diags().items[0];
        assert!(d.help.is_some(), "`{}` has no help\n{}", d.message, run.listing());
    }
}

#[test]
fn not_an_interface() {
    let run = Run::file("/*@*/struct A { a: u32 }\n");
    let d =
        run.errors(1).at(0, "expected `interface`", "a schema is one `interface Name { … }` block");
    assert_eq!(run.location(d), "t.dextlink:1:1");
}

#[test]
fn empty_file() {
    let run = Run::file("");
    let d = &run.errors(1).diags().items[0];
    assert!(d.message.contains("unexpected end of input"), "{}", run.listing());
    assert_eq!(run.location(d), "t.dextlink:1:1");
    assert!(
        d.help.as_deref().unwrap_or("").contains("`interface Name { … }`"),
        "{}",
        run.listing()
    );
}

#[test]
fn unclosed_string() {
    let run =
        Run::file("interface T {\n    service /*@*/\"s;\n    version 1;\n    0 => fn f();\n}\n");
    let d = run.errors(1).at(0, "this is not valid schema syntax", "check for an unclosed string");
    assert_eq!(run.location(d), "t.dextlink:2:13");
}

#[test]
fn unclosed_brace() {
    let run =
        Run::file("interface T /*@*/{\n    service \"s\";\n    version 1;\n    0 => fn f();\n");
    let d = run.errors(1).at(0, "this is not valid schema syntax", "bracket");
    assert_eq!(run.location(d), "t.dextlink:1:13");
}

#[test]
fn unclosed_comment() {
    Run::file("interface T {\n    service \"s\";\n    /*@*//* version 1;\n    0 => fn f();\n}\n")
        .errors(1)
        .at(0, "this is not valid schema syntax", "`/*` comment");
}

#[test]
fn mismatched_bracket() {
    // `(` never closed: reported at the `}` that does not match it.
    let run =
        Run::file("interface T {\n    service \"s\";\n    version 1;\n    0 => fn f(;\n/*@*/}\n");
    let d = run.errors(1).at(0, "this is not valid schema syntax", "bracket");
    assert_eq!(run.location(d), "t.dextlink:5:1");
}

// ---------------------------------------------------------------------------
// Names outside ASCII

#[test]
fn non_ascii_names() {
    let run =
        Run::items("    struct /*@*/Über { /*@*/grö: u8 }\n    0 => fn f(x: &Über, /*@*/é: u32);");
    run.errors(3);
    for mark in 0..3 {
        let d = run.at(mark, "ASCII", "");
        assert!(!d.help.as_deref().unwrap_or("").contains("`Über`"), "{}", run.listing());
    }
}

#[test]
fn rename_hints_follow_the_case_rule() {
    Run::items("    struct /*@*/Self { a: u32 }\n    0 => fn f();").errors(1).at(
        0,
        "`Self` is a Rust keyword",
        "`SelfValue`",
    );
    Run::items("    const /*@*/VERSION: u32 = 2;\n    0 => fn f();").errors(1).at(
        0,
        "`VERSION` collides",
        "`VERSION_INFO`",
    );
    Run::items("    struct P { /*@*/_Y: u32 }\n    0 => fn f(p: &P);").errors(1).at(
        0,
        "`_Y` is reserved",
        "`y_value`",
    );
}

// ---------------------------------------------------------------------------
// Whole runs

#[test]
fn every_error_is_reported_in_one_run() {
    let run = Run::items(
        "    const /*@*/slotCount: u32 = 8;\n    struct P { a: u8, /*@*/b: u32 }\n    enum /*@*/E { A = 0 }\n    0 => fn f(p: &P, e: E);\n    /*@*/0 => fn g(x: u8 in /*@*/0..=300);\n    1 => fn h() -> (log: /*@*/[u8; ..=8192]);",
    );
    run.errors(6);
    run.at(0, "SCREAMING_SNAKE_CASE", "write `SLOT_COUNT`");
    run.at(1, "implicit padding", "`_pad0: [u8; 3],`");
    run.at(2, "no integer representation", "`enum E: u32 { … }`");
    run.at(3, "selector 0 is used twice", "pick an unused one");
    run.at(4, "does not fit `u8`", "narrow the range");
    run.at(5, "can exceed 4096 bytes", "`[u8]`");
    // Diagnostics come out in source order within each pass; every location is distinct.
    let mut locations: Vec<String> = run.diags().errors().map(|d| run.location(d)).collect();
    locations.dedup();
    assert_eq!(locations.len(), 6, "{}", run.listing());
}

#[test]
fn rendering_shows_source_line_caret_and_help() {
    let run = Run::items("    struct P { a: u8, b: u32 }\n    0 => fn f(p: &P);\n    0 => fn g();");
    run.errors(2);
    let text = run.diags().render(false);
    assert!(
        text.contains("error: struct `P` has 3 bytes of implicit padding before `b`"),
        "{text}"
    );
    assert!(text.contains("error: selector 0 is used twice"), "{text}");
    assert!(text.contains("t.dextlink:4:23"), "{text}");
    assert!(text.contains("t.dextlink:6:5"), "{text}");
    // The offending source lines are quoted…
    assert!(text.contains("4 │     struct P { a: u8, b: u32 }"), "{text}");
    assert!(text.contains("6 │     0 => fn g();"), "{text}");
    // …with a caret under the token and the label after it…
    let caret = text
        .lines()
        .find(|l| l.contains('^') && l.contains("needs 4-byte alignment"))
        .unwrap_or_else(|| panic!("no caret line:\n{text}"));
    let (line, col) = (caret.find('│').unwrap(), caret.find('^').unwrap());
    let source = text.lines().find(|l| l.contains("struct P { a: u8, b: u32 }")).unwrap();
    assert_eq!(
        col - line,
        source.find("b: u32").unwrap() - source.find('│').unwrap(),
        "caret not under `b`:\n{text}"
    );
    // …the first definition of the duplicate as a secondary label, and the help.
    assert!(text.contains("first used here"), "{text}");
    assert!(text.contains("= help: shared structs carry no hidden bytes"), "{text}");
    // No colour codes unless asked.
    assert!(!text.contains('\x1b'));
    assert!(run.diags().render(true).contains('\x1b'));
}

#[test]
fn summary_lines_give_location_and_help() {
    let run = Run::items("    0 => fn /*@*/Begin();");
    run.errors(1);
    let lines = run.diags().summary_lines();
    assert_eq!(
        lines,
        vec!["t.dextlink:4:13: error: method names are written in snake_case: `Begin` is not snake_case\n  help: write `begin`".to_string()]
    );
}

#[test]
fn valid_examples_have_no_errors() {
    for (name, text) in EXAMPLES {
        let schema =
            parse_str(*name, text).unwrap_or_else(|d| panic!("{name}:\n{}", d.render(false)));
        // Only NullDriver's schema names a C++ dext's IOUserClass; the
        // others name their Rust models' services in reverse-DNS style,
        // which the checker rightly warns about.
        let warnings: Vec<&str> = schema
            .warnings
            .items
            .iter()
            .map(|d| d.message.as_str())
            .filter(|m| {
                *name == "null_driver.dextlink" || !m.contains("cannot be a C++ class name")
            })
            .collect();
        if *name == "shapes.dextlink" {
            // `write_blob` takes up to 64 KiB on purpose.
            assert_eq!(
                warnings,
                ["calls with more than 4096 bytes of `data` travel out of line"],
                "{name}"
            );
        } else {
            assert!(warnings.is_empty(), "{name}:\n{}", schema.warnings.render(false));
        }
    }
}

// ---------------------------------------------------------------------------
// Robustness: damaged schemas never panic and every span is in the text

const EXAMPLES: &[(&str, &str)] = &[
    ("fwloader.dextlink", include_str!("../../examples/fwloader/fwloader.dextlink")),
    ("null_driver.dextlink", include_str!("../../examples/null_driver/null_driver.dextlink")),
    ("shapes.dextlink", include_str!("../schemas/shapes.dextlink")),
];

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The char boundary at or before `i`.
fn floor_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Parses `text` and checks that nothing panics and every diagnostic points
/// into the text; returns a description of the problem, if any.
fn robust(text: &str) -> Result<(), String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let diags = match parse_str(PATH, text) {
            Ok(schema) => schema.warnings,
            Err(d) => {
                assert!(d.has_errors(), "rejected without an error");
                d
            }
        };
        for d in &diags.items {
            let span = d.span;
            assert!(
                span.start <= span.end && span.end <= text.len(),
                "span {span:?} of `{}` outside the text ({} bytes)",
                d.message,
                text.len()
            );
            assert!(
                text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
                "span {span:?} of `{}` splits a character",
                d.message
            );
            for (related, _) in &d.related {
                assert!(
                    related.start <= related.end && related.end <= text.len(),
                    "related span {related:?} of `{}` outside the text",
                    d.message
                );
            }
            let _ = diags.location(d);
        }
        let _ = diags.render(false);
        let _ = diags.summary_lines();
    }));
    outcome.map_err(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("{what}\n--- input ---\n{text}")
    })
}

fn run_robustness(inputs: impl IntoIterator<Item = String>) {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    let mut count = 0;
    for text in inputs {
        count += 1;
        if let Err(e) = robust(&text) {
            failures.push(e);
        }
    }
    std::panic::set_hook(hook);
    assert!(count > 0);
    assert!(
        failures.is_empty(),
        "{} of {count} inputs failed; first:\n{}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn truncated_examples_never_panic() {
    let mut inputs = Vec::new();
    for (_, text) in EXAMPLES {
        // About 250 cut points per file, spread evenly, plus every cut in the
        // first and last 40 bytes.
        let step = (text.len() / 250).max(1);
        let cuts = (0..text.len())
            .step_by(step)
            .chain(0..40)
            .chain(text.len().saturating_sub(40)..=text.len());
        for cut in cuts {
            inputs.push(text[..floor_boundary(text, cut)].to_string());
        }
    }
    assert!(inputs.len() >= 600);
    run_robustness(inputs);
}

#[test]
fn damaged_examples_never_panic() {
    const SNIPPETS: &[&str] = &[
        "}",
        "{",
        ";",
        ",",
        "(",
        ")",
        "[",
        "]",
        "=>",
        "..=",
        "&",
        "\"",
        "/*",
        "é",
        "0",
        "-1",
        "_",
        "#[x]",
        "fn",
        "u8",
        "0xffffffffffffffff",
    ];
    let mut rng = Rng(0x5eed_d3c7_11ae_0001);
    let mut inputs = Vec::new();
    // `DEXTLINK_FUZZ_ROUNDS=20000` (and `DEXTLINK_FUZZ_SEED`) for a longer local run.
    let rounds = dextlink_tests::env_number("DEXTLINK_FUZZ_ROUNDS").unwrap_or(200) as usize;
    if let Some(seed) = dextlink_tests::env_number("DEXTLINK_FUZZ_SEED") {
        rng = Rng(seed | 1);
    }
    for (_, text) in EXAMPLES {
        for round in 0..rounds {
            let mut t = text.to_string();
            // One to four edits: delete a run of bytes, or insert a snippet.
            for _ in 0..=round % 4 {
                let at = floor_boundary(&t, rng.below(t.len() + 1));
                if rng.below(3) == 0 {
                    let snippet = SNIPPETS[rng.below(SNIPPETS.len())];
                    t.insert_str(at, snippet);
                } else {
                    let max_run = if rng.below(4) == 0 { 64 } else { 4 };
                    let end = floor_boundary(&t, at + 1 + rng.below(max_run));
                    let end = if end == at {
                        (at + 1..=t.len()).find(|&i| t.is_char_boundary(i)).unwrap_or(at)
                    } else {
                        end
                    };
                    t.replace_range(at..end, "");
                }
            }
            inputs.push(t);
        }
    }
    run_robustness(inputs);
}

#[test]
fn doc_comment_without_an_item() {
    let run = Run::items("    0 => fn f();\n    /*@*//// Describes nothing.");
    let d = run.errors(1).at(0, "not followed by the item it describes", "remove it");
    assert_eq!(run.location(d), "t.dextlink:5:5");
}

#[test]
fn type_collides_with_generated_rust_types() {
    let run = Run::items(
        "    struct /*@*/GoOutput { a: u32 }\n    struct /*@*/GoCompleter { a: u32 }\n    0 => async fn go(a: &GoOutput, b: &GoCompleter) -> (x: u32, y: u32);",
    );
    // Two struct inputs are an error too; the collisions are what this checks.
    let _ = run.at(0, "`GoOutput` collides with the output struct", "rename");
    let _ = run.at(1, "`GoCompleter` collides with the completer", "rename");
}

#[test]
fn async_method_with_variable_output() {
    let run = Run::items("    0 => async fn f() -> (/*@*/log: [u8]);");
    run.errors(1).at(0, "cannot return a variable-size output", "`[u8; ..=4096]`");
}

#[test]
fn a_service_that_cannot_be_a_cpp_class_name_is_a_warning() {
    let cases = [
        ("com.example.Driver", "not a C++ identifier"),
        ("9Lives", "not a C++ identifier"),
        ("class", "a C++ keyword"),
        ("My__Driver", "reserved for the implementation"),
    ];
    for (service, why) in cases {
        let run = Run::file(&format!(
            "interface T {{\n    /*@*/service \"{service}\";\n    version 1;\n    0 => fn f();\n}}\n"
        ));
        let schema = run
            .result
            .as_ref()
            .unwrap_or_else(|_| panic!("a warning must not fail the parse\n{}", run.listing()));
        assert_eq!(schema.warnings.items.len(), 1, "{service}: {}", run.listing());
        let d = run.warning_at(0, "cannot be a C++ class name", "IOUserClass");
        assert!(d.message.contains(why), "{service}: {}", d.message);
        assert_eq!(run.location(d), "t.dextlink:2:5");
    }
    for service in ["NullDriver", "_driver", "s"] {
        let run = Run::file(&format!(
            "interface T {{\n    service \"{service}\";\n    version 1;\n    0 => fn f();\n}}\n"
        ));
        let schema = run.result.as_ref().unwrap_or_else(|_| panic!("{}", run.listing()));
        assert!(schema.warnings.items.is_empty(), "{service}: {}", run.listing());
    }
}
