//! The generated C++ header of every example schema compiles cleanly against
//! the DriverKit shim with every compiler available, and its layout
//! `static_assert`s are live: a struct that drifts from the schema fails to
//! compile with a message naming the schema.

use dextlink_tests::{compile_cpp, cpp_header, cxx_compilers, example_schemas, load, scratch_dir};

#[test]
fn every_example_header_compiles_warning_free() {
    for (name, path) in example_schemas() {
        let dir = scratch_dir(&format!("compile-{name}"));
        let schema = load(&path);
        std::fs::write(dir.join(format!("{name}.h")), cpp_header(&schema)).unwrap();
        let main =
            format!("#include \"{name}.h\"\n#include \"{name}.h\"  // the include guard holds\n");
        for compiler in cxx_compilers() {
            compile_cpp(compiler, &dir, &main, &[], None).unwrap_or_else(|e| panic!("{name}: {e}"));
            compile_cpp(compiler, &dir, &main, &["-std=c++20"], None)
                .unwrap_or_else(|e| panic!("{name} as C++20: {e}"));
        }
    }
}

#[test]
fn headers_of_several_interfaces_coexist_in_one_translation_unit() {
    let dir = scratch_dir("compile-all");
    let mut main = String::new();
    for (name, path) in example_schemas() {
        std::fs::write(dir.join(format!("{name}.h")), cpp_header(&load(&path))).unwrap();
        main.push_str(&format!("#include \"{name}.h\"\n"));
    }
    for compiler in cxx_compilers() {
        compile_cpp(compiler, &dir, &main, &[], None).unwrap();
    }
}

#[test]
fn layout_asserts_fire_when_a_struct_drifts_from_the_schema() {
    let (_, path) = &example_schemas()[0];
    let header = cpp_header(&load(path));
    let cases = [
        // a wider field changes the size and the next offsets
        (
            "    uint32_t crc32;\n",
            "    uint64_t crc32;\n",
            "FwLoader schema: SlotHeader must be 24 bytes",
        ),
        // swapped fields keep the size but move the offsets
        (
            "    uint64_t sequence;\n    /// Where in the image this slot's payload goes.\n    uint64_t image_offset;\n",
            "    uint64_t image_offset;\n    uint64_t sequence;\n",
            "FwLoader schema: SlotHeader.sequence must be at offset 0",
        ),
    ];
    for (from, to, message) in cases {
        assert!(header.contains(from), "the generated header no longer contains {from:?}");
        let dir = scratch_dir("drift");
        std::fs::write(dir.join("fw.h"), header.replacen(from, to, 1)).unwrap();
        let err = compile_cpp("g++", &dir, "#include \"fw.h\"\n", &[], None)
            .expect_err("a drifted struct must not compile");
        assert!(err.contains(message), "expected {message:?} in:\n{err}");
    }
}

#[test]
fn the_driverkit_shim_passes_its_own_tests() {
    let shim_test = dextlink_tests::root().join("schema/shim/test_shim.cpp");
    for compiler in cxx_compilers() {
        let dir = scratch_dir(&format!("shim-{compiler}"));
        let exe = dir.join("test_shim");
        let main = format!("#include \"{}\"\n", shim_test.display());
        compile_cpp(compiler, &dir, &main, &[], Some(&exe)).unwrap();
        let run = std::process::Command::new(&exe).output().unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success() && stdout.contains(" 0 failed"),
            "{compiler}: {stdout}{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
}

#[test]
fn every_example_c_client_header_compiles_as_c11_and_cpp() {
    use dextlink_schema::emit::c_client;
    for (name, path) in example_schemas() {
        let dir = scratch_dir(&format!("c-client-{name}"));
        let header = dir.join(format!("{name}_client.h"));
        std::fs::write(&header, c_client::emit(&load(&path).interface)).unwrap();
        let c_main = dir.join("main.c");
        std::fs::write(
            &c_main,
            format!("#include \"{name}_client.h\"\nint main(void) {{ return 0; }}\n"),
        )
        .unwrap();
        let c = std::process::Command::new("gcc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fsyntax-only"])
            .arg(&c_main)
            .output()
            .unwrap();
        assert!(c.status.success(), "{name} as C11:\n{}", String::from_utf8_lossy(&c.stderr));
        for compiler in cxx_compilers() {
            compile_cpp(compiler, &dir, &format!("#include \"{name}_client.h\"\n"), &[], None)
                .unwrap_or_else(|e| panic!("{name} client header as C++: {e}"));
        }
    }
}
