//! `dextlink iig`: the contract's reference outputs reproduced byte for byte,
//! each unsupported construct refused with its file:line:col, the command's
//! exit codes and whole-or-nothing writes, and the generated C++ compiled with
//! g++ and clang++ against dextlink's DriverKit runtime.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dextlink_schema::iig;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn reference_dir() -> PathBuf {
    root().join("runtime/sim/tests/dext")
}

fn dextlink(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dextlink")).args(args).output().expect("run dextlink")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch directory, removed when the test is done (also when it fails).
fn scratch(name: &str) -> dextlink_tests::Scratch {
    dextlink_tests::Scratch::new(&format!("iig-{name}"))
}

fn generate(path: &Path) -> iig::Output {
    let source = std::fs::read_to_string(path).unwrap();
    iig::generate(path, &source).unwrap_or_else(|e| panic!("{e}"))
}

/// The reference files' first line says they were written by hand; the
/// generator's says what wrote it. Both name the contract and the .iig; every
/// other byte must be equal.
fn assert_matches_reference(generated: &str, reference_path: &Path, iig_name: &str) {
    let reference = std::fs::read_to_string(reference_path).unwrap();
    let (reference_first, reference_rest) = reference.split_once('\n').unwrap();
    let (generated_first, generated_rest) = generated.split_once('\n').unwrap();
    let prefix = format!("/* Generated per dextlink's iig contract (IIG.md) from {iig_name}");
    for first in [reference_first, generated_first] {
        assert!(first.starts_with(&prefix) && first.ends_with(" */"), "first line: {first}");
    }
    if generated_rest != reference_rest {
        let diff = similar::TextDiff::from_lines(reference_rest, generated_rest)
            .unified_diff()
            .header("reference", "generated")
            .to_string();
        panic!("{} differs from what dextlink iig generates:\n{diff}", reference_path.display());
    }
}

#[test]
fn the_contracts_reference_files_are_reproduced() {
    for class in ["TestDriver", "TestUserClient"] {
        let iig_name = format!("{class}.iig");
        let output = generate(&reference_dir().join(&iig_name));
        assert_eq!(output.header_name, format!("{class}.h"));
        assert_eq!(output.source_name, format!("{class}.iig.cpp"));
        assert_matches_reference(
            &output.header,
            &reference_dir().join(&output.header_name),
            &iig_name,
        );
        assert_matches_reference(
            &output.source,
            &reference_dir().join(&output.source_name),
            &iig_name,
        );
    }
}

#[test]
fn the_usb_test_dexts_reference_files_are_reproduced() {
    let dir = root().join("runtime/sim/tests/usbdext");
    for class in ["UsbTestDriver", "UsbTestClient"] {
        let iig_name = format!("{class}.iig");
        let output = generate(&dir.join(&iig_name));
        assert_matches_reference(&output.header, &dir.join(&output.header_name), &iig_name);
        assert_matches_reference(&output.source, &dir.join(&output.source_name), &iig_name);
    }
}

#[test]
fn the_runtime_table_matches_the_runtimes_headers() {
    use iig::runtime::{CLASSES, Kind};
    let include = root().join("runtime/sim/driverkit/include/DriverKit");
    let usb_include = root().join("runtime/sim/driverkit/include/USBDriverKit");
    for class in CLASSES {
        let header = std::fs::read_to_string(include.join(format!("{}.h", class.name)))
            .or_else(|_| std::fs::read_to_string(usb_include.join(format!("{}.h", class.name))))
            .or_else(|_| std::fs::read_to_string(include.join("OSCollection.h")))
            .unwrap();
        assert!(
            header.contains(&format!(
                "class {} : public {}",
                class.name,
                class.superclass.unwrap_or("OSMetaClassBase")
            )),
            "{}: superclass",
            class.name
        );
        for method in class.methods {
            match method.kind {
                Kind::Virtual => assert!(
                    header.contains(&format!(" {}(", method.name)) && header.contains("virtual"),
                    "{}::{} is not declared in the header",
                    class.name,
                    method.name
                ),
                Kind::Dispatched { impl_virtual } => {
                    let id = format!("#define {}_{}_ID ", class.name, method.name);
                    assert!(header.contains(&id), "{id} missing");
                    let invocation = format!("struct {}_{}_Invocation {{", class.name, method.name);
                    let start =
                        header.find(&invocation).unwrap_or_else(|| panic!("{invocation} missing"));
                    let body = &header[start..start + header[start..].find("};").unwrap()];
                    for param in method.params {
                        assert!(
                            body.contains(&format!("{param};")),
                            "{invocation} has no member {param}"
                        );
                    }
                    let impl_decl = format!("virtual kern_return_t {}_Impl(", method.name);
                    assert_eq!(
                        header.contains(&impl_decl),
                        impl_virtual,
                        "{}::{}_Impl",
                        class.name,
                        method.name
                    );
                }
                Kind::Action => {
                    let id = format!("#define {}_{}_ID ", class.name, method.name);
                    assert!(header.contains(&id), "{id} missing");
                }
            }
        }
    }
}

/// A `.iig` with `body` inside `class Foo : public IOService { public: … };`.
fn in_class(body: &str) -> String {
    format!(
        "#include <DriverKit/IOService.iig>\n\nclass Foo : public IOService\n{{\npublic:\n{body}\n}};\n"
    )
}

#[test]
fn each_unsupported_construct_is_an_error_at_its_place() {
    // (source, line:col, words the message must contain)
    let cases: Vec<(String, &str, &str)> = vec![
        (in_class("    uint32_t count;"), "6:5", "member variable `count`"),
        (in_class("    virtual bool init() override { return true; }"), "6:34", "inline body"),
        (in_class("    template <typename T> void f(T t);"), "6:5", "template"),
        (in_class("    enum Mode { A, B };"), "6:5", "enum"),
        (in_class("    typedef int X;"), "6:5", "typedef"),
        (in_class("    FOO_MACRO(x);"), "6:5", "without a return type"),
        (
            in_class("    virtual kern_return_t Start(IOService* provider) override WEIRD;"),
            "6:63",
            "unknown macro or attribute `WEIRD`",
        ),
        (
            in_class("    virtual kern_return_t Frobnicate(uint32_t x) override;"),
            "6:27",
            "has no method `Frobnicate`",
        ),
        (in_class("    virtual bool Ready(uint32_t x);"), "6:18", "returns `bool`"),
        (in_class("    virtual kern_return_t Go(uint32_t);"), "6:30", "without a name"),
        (
            in_class("    virtual kern_return_t Start(IOService* provider, int extra) override;"),
            "6:27",
            "overrides takes 1",
        ),
        (
            in_class(
                "    virtual void Tick(OSAction* action) TYPE(IOTimerDispatchSource::TimerOccurred);",
            ),
            "6:18",
            "takes 2",
        ),
        (
            in_class(
                "    virtual void Tick(OSAction* a, uint64_t t) TYPE(IOTimerDispatchSource::Nope);",
            ),
            "6:53",
            "no action type `Nope`",
        ),
        (in_class("    virtual void f(void (*callback)(int));"), "6:25", "function pointer"),
        (in_class("    ~Foo();"), "6:5", "destructor"),
        (
            in_class("#if FOO\n    virtual bool init() override;\n#endif"),
            "6:1",
            "directive `#if` inside a class",
        ),
        ("#if 0\n#endif\n".to_string(), "1:1", "`#if`"),
        ("#define FOO 1\n".to_string(), "1:1", "macro definition `#define FOO 1`"),
        ("#ifndef A\n#define B\n#endif\n".to_string(), "1:1", "not an include guard"),
        ("#pragma once\nclass Foo : public IOService {};\n".to_string(), "1:1", "`#pragma`"),
        ("namespace x {}\n".to_string(), "1:1", "namespace"),
        ("template <class T> class X;\n".to_string(), "1:1", "template"),
        ("struct Point { int x; };\n".to_string(), "1:1", "definition of struct `Point`"),
        ("class Foo : public IOWidget {\n};\n".to_string(), "1:20", "no class `IOWidget`"),
        ("class Foo : private IOService {\n};\n".to_string(), "1:13", "must derive `public`"),
        ("// nothing but a comment\n".to_string(), "2:1", "declares no class"),
        (
            "class Foo : public IOService {\npublic:\n    virtual bool init() override;\n"
                .to_string(),
            "1:7",
            "no closing",
        ),
        (
            "/* unterminated\nclass Foo : public IOService {};\n".to_string(),
            "1:1",
            "unterminated `/*`",
        ),
        ("class Foo : public IOService { @ };\n".to_string(), "1:32", "unexpected character `@`"),
    ];
    let dir = scratch("errors");
    let mut failures = Vec::new();
    for (index, (source, at, words)) in cases.iter().enumerate() {
        let path = dir.join(format!("Case{index}.iig"));
        std::fs::write(&path, source).unwrap();
        let out = dir.join(format!("out{index}"));
        let run = dextlink(&["iig", path.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let stderr = text(&run.stderr);
        let location = format!("{}:{at}", path.display());
        if run.status.code() != Some(3)
            || !stderr.contains(&location)
            || !stderr.starts_with("error: ")
            || !stderr.contains(words)
            || out.exists()
        {
            failures.push(format!(
                "case {index}: expected exit 3, {location}, `{words}` and no output; got {:?}:\n{source}\n{stderr}",
                run.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn accepted_constructs_shape_the_output() {
    let source = "\
// A service with everything the subset allows.
#ifndef Widget_h
#define Widget_h
#include <Availability.h>
#include <DriverKit/IOService.iig>
#include \"Helper.iig\"

struct WidgetState;

class Widget: public IOService
{
    OSDeclareDefaultStructors(Widget);
public:
    virtual bool init(void) APPLE_KEXT_OVERRIDE;
    virtual kern_return_t Start(IOService * provider) override LOCAL QUEUENAME(Default);
    virtual kern_return_t Configure(uint32_t mode, const IOUserClientAsyncArgumentsArray values,
                                    uint8_t tag[4], OSAction * done TARGET, uint64_t timeout = 0) LOCAL;
    virtual kern_return_t RegisterService() override KERNEL;
    static kern_return_t Helper(uint32_t x) LOCALONLY;
    virtual uint32_t Count() const LOCALONLY __attribute__((availability(driverkit,introduced=20.0)));
protected:
    virtual void Ping() = 0;
};

#endif /* Widget_h */
";
    let output =
        iig::generate(Path::new("dir/Widget.iig"), source).unwrap_or_else(|e| panic!("{e}"));
    let h = &output.header;
    let expected_lines = [
        "#ifndef _WIDGET_H",
        "#include <DriverKit/IOService.h>\n#include \"Helper.h\"\n",
        "struct WidgetState;",
        // The id of a new method: FNV-1a 64 of `Widget::Configure`.
        &format!("#define Widget_Configure_ID 0x{:016x}ULL", fnv1a("Widget::Configure")),
        "struct Widget_Configure_Invocation {\n    uint32_t mode;\n    const uint64_t* values;\n    uint8_t* tag;\n    \
         OSAction * done;\n    uint64_t timeout;\n};",
        "#define Widget_Configure_Args \\\n    uint32_t mode, const IOUserClientAsyncArgumentsArray values, uint8_t tag[4], \
         OSAction * done, uint64_t timeout",
        "#define Widget_Start_Args IOService_Start_Args",
        "#define Widget_RegisterService_Args IOService_RegisterService_Args",
        "    bool init(void) override;",
        "    static kern_return_t Helper(uint32_t x);",
        "    virtual uint32_t Count() const;",
        "    kern_return_t Configure(uint32_t mode, const IOUserClientAsyncArgumentsArray values, uint8_t tag[4],\n                            OSAction * done, uint64_t timeout = 0, OSDispatchMethod supermethod = nullptr);",
        "\nprotected:\n    void Ping(OSDispatchMethod supermethod = nullptr);\n\n    kern_return_t Start_Impl(Widget_Start_Args);",
        "    virtual void Ping_Impl(Widget_Ping_Args) = 0;",
    ];
    for line in expected_lines {
        assert!(h.contains(line), "expected\n{line}\nin\n{h}");
    }
    assert!(!h.contains("Availability"), "{h}");
    assert!(!h.contains("TARGET"), "{h}");
    let cpp = &output.source;
    for line in [
        "OSDefineMetaClassAndAbstractStructors(Widget, IOService)",
        "    case IOService_RegisterService_ID: {\n        return object->Widget::RegisterService_Impl();\n    }",
        "        return object->Widget::Configure_Impl(a->mode, a->values, a->tag, a->done, a->timeout);",
        "kern_return_t Widget::Configure(uint32_t mode, const IOUserClientAsyncArgumentsArray values, uint8_t tag[4],\n                                OSAction * done, uint64_t timeout, OSDispatchMethod supermethod)\n{",
        "    Widget_Configure_Invocation a = {mode, values, tag, done, timeout};\n    return OSObjectDispatchInvocation(this, supermethod, Widget_Configure_ID, &a);",
    ] {
        assert!(cpp.contains(line), "expected\n{line}\nin\n{cpp}");
    }
    // The pure method has no case: a subclass implements it.
    assert!(!cpp.contains("case Widget_Ping_ID"), "{cpp}");
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
    })
}

#[test]
fn the_command_writes_both_files_into_a_new_directory() {
    let dir = scratch("out");
    let out = dir.join("nested/include");
    let iig = reference_dir().join("TestUserClient.iig");
    let run = dextlink(&["iig", iig.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let expected = generate(&iig);
    assert_eq!(std::fs::read_to_string(out.join("TestUserClient.h")).unwrap(), expected.header);
    assert_eq!(
        std::fs::read_to_string(out.join("TestUserClient.iig.cpp")).unwrap(),
        expected.source
    );
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["TestUserClient.h", "TestUserClient.iig.cpp"], "no temp files left behind");
}

#[test]
fn the_command_exit_codes() {
    let dir = scratch("codes");
    let iig = reference_dir().join("TestDriver.iig");
    // 2: usage (no --out).
    let run = dextlink(&["iig", iig.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    assert!(text(&run.stderr).contains("--out"), "{}", text(&run.stderr));
    // 4: the .iig cannot be read.
    let missing = dir.join("Missing.iig");
    let run = dextlink(&["iig", missing.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(4), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains(&format!("cannot read {}", missing.display())),
        "{}",
        text(&run.stderr)
    );
    // 4: --out is a file, so the directory cannot be made.
    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let run = dextlink(&["iig", iig.to_str().unwrap(), "--out", file.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(4), "{}", text(&run.stderr));
    assert!(text(&run.stderr).contains("cannot create"), "{}", text(&run.stderr));
}

#[test]
fn several_files_are_generated_together_or_not_at_all() {
    let dir = scratch("several");
    let (driver, client) =
        (reference_dir().join("TestDriver.iig"), reference_dir().join("TestUserClient.iig"));
    let out = dir.join("gen");
    let run = dextlink(&[
        "iig",
        driver.to_str().unwrap(),
        client.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    for (iig, stem) in [(&driver, "TestDriver"), (&client, "TestUserClient")] {
        let expected = generate(iig);
        assert_eq!(
            std::fs::read_to_string(out.join(format!("{stem}.h"))).unwrap(),
            expected.header
        );
        let source = std::fs::read_to_string(out.join(format!("{stem}.iig.cpp"))).unwrap();
        assert_eq!(source, expected.source);
    }

    // One refused file: nothing is written, and the message names it.
    let bad = dir.join("Broken.iig");
    std::fs::write(&bad, "class Broken : public IOService {\n    int member;\n};\n").unwrap();
    let fresh = dir.join("fresh");
    let run = dextlink(&[
        "iig",
        driver.to_str().unwrap(),
        bad.to_str().unwrap(),
        "--out",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(3), "{}", text(&run.stderr));
    assert!(text(&run.stderr).contains("Broken.iig"), "{}", text(&run.stderr));
    assert!(!fresh.join("TestDriver.h").exists(), "nothing written when one file is refused");

    // Two files of one stem would overwrite each other's outputs: refused.
    let twin = dir.join("twin");
    std::fs::create_dir_all(&twin).unwrap();
    std::fs::copy(&driver, twin.join("TestDriver.iig")).unwrap();
    let twin_iig = twin.join("TestDriver.iig");
    let run = dextlink(&[
        "iig",
        driver.to_str().unwrap(),
        twin_iig.to_str().unwrap(),
        "--out",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    assert!(text(&run.stderr).contains("both write"), "{}", text(&run.stderr));
    assert!(!fresh.join("TestDriver.h").exists());
}

#[test]
fn a_failed_write_leaves_neither_file() {
    let dir = scratch("half");
    // The companion's name is taken by a directory: it cannot be written, so
    // the header must not be written either.
    std::fs::create_dir_all(dir.join("TestDriver.iig.cpp/inside")).unwrap();
    let iig = reference_dir().join("TestDriver.iig");
    let run = dextlink(&["iig", iig.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(4), "{}", text(&run.stderr));
    assert!(text(&run.stderr).contains("TestDriver.iig.cpp"), "{}", text(&run.stderr));
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["TestDriver.iig.cpp"], "nothing else written, no temp files");
}

/// The compilers the generated C++ must pass: both under CI, else those installed (loudly).
fn compilers() -> Vec<&'static str> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut found = Vec::new();
    for compiler in ["g++", "clang++"] {
        if Command::new(compiler).arg("--version").output().is_ok_and(|o| o.status.success()) {
            found.push(compiler);
        } else if ci {
            panic!(
                "{compiler} is not installed; CI compiles the generated C++ with g++ and clang++"
            );
        } else {
            eprintln!(
                "warning: {compiler} is not installed: the generated C++ is not compiled with it"
            );
        }
    }
    assert!(!found.is_empty(), "neither g++ nor clang++ is installed");
    found
}

fn compile(compiler: &str, file: &Path, includes: &[&Path]) -> Output {
    let mut command = Command::new(compiler);
    command.args(["-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-std=c++17", "-x", "c++"]);
    command.arg("-I").arg(root().join("runtime/sim/driverkit/include"));
    for dir in includes {
        command.arg("-I").arg(dir);
    }
    command.arg(file).output().expect("run the compiler")
}

#[test]
fn the_generated_cpp_compiles_against_the_runtime() {
    let dir = scratch("compile");
    // fwloader's .iig includes USBDriverKit headers, which the runtime lacks; a
    // test-only stand-in declares what its generated class names.
    let usb = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/iig/usbdriverkit");
    let sources = [
        reference_dir().join("TestDriver.iig"),
        reference_dir().join("TestUserClient.iig"),
        root().join("examples/null_driver/dext/NullDriverUserClient.iig"),
        root().join("examples/fwloader/dext/FwLoaderUserClient.iig"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/iig/Widget.iig"),
    ];
    for compiler in compilers() {
        for iig in &sources {
            let output = generate(iig);
            std::fs::write(dir.join(&output.header_name), &output.header).unwrap();
            std::fs::write(dir.join(&output.source_name), &output.source).unwrap();
            for name in [&output.header_name, &output.source_name] {
                let run = compile(compiler, &dir.join(name), &[&dir, &usb]);
                let stderr = text(&run.stderr);
                assert!(run.status.success(), "{compiler} {name}:\n{stderr}");
            }
        }
    }
}

#[test]
fn every_prefix_of_a_valid_file_is_generated_or_refused_without_a_panic() {
    let path = root().join("examples/fwloader/dext/FwLoaderUserClient.iig");
    let source = std::fs::read_to_string(&path).unwrap();
    let mut refused = 0;
    for end in (0..source.len()).filter(|&i| source.is_char_boundary(i)) {
        let prefix = &source[..end];
        match std::panic::catch_unwind(|| iig::generate(&path, prefix)) {
            Ok(Ok(_)) => {}
            Ok(Err(diagnostics)) => {
                refused += 1;
                let error = &diagnostics.items[0];
                assert!(error.span.end <= prefix.len(), "span outside the text at {end}");
                assert!(!diagnostics.render(false).is_empty());
            }
            Err(_) => {
                panic!("dextlink iig panicked on the first {end} bytes of {}", path.display())
            }
        }
    }
    // A cut inside the class leaves it unclosed: most prefixes are refused.
    assert!(refused > source.len() / 2, "only {refused} of {} prefixes refused", source.len());
}
