//! The generated dext header works end to end: `tests/cpp/shapes_dispatch.cpp`
//! implements every handler of `tests/schemas/shapes.dextlink`, drives every
//! method through the DriverKit shim's `CallBuilder` (the kernel's side of a
//! call), and checks round trips, refusals, completions and client memory.
//! It is built with AddressSanitizer and UndefinedBehaviorSanitizer, with
//! every compiler available, so that the generated thunks are also checked
//! for out-of-bounds access, leaks and invalid `bool`/enum loads.

use dextlink_tests::{
    SANITIZERS, compile_cpp, cpp_header, cxx_compilers, load, root, run_test_program, scratch_dir,
};

#[test]
fn shapes_header_dispatches_every_method_end_to_end() {
    let schema = load(&root().join("tests/schemas/shapes.dextlink"));
    let source = root().join("tests/cpp/shapes_dispatch.cpp");
    assert!(source.is_file(), "missing {}", source.display());
    // The .cpp includes "Shapes.h": written into the scratch dir, which is on
    // the include path (the .cpp's own directory has no Shapes.h).
    let main = format!("#include \"{}\"\n", source.display());

    // Every compiler runs before anything is reported, so that one report
    // shows whether a failure depends on the compiler.
    let mut failures = Vec::new();
    for compiler in cxx_compilers() {
        let dir = scratch_dir(&format!("cpp-dispatch-{compiler}"));
        std::fs::write(dir.join("Shapes.h"), cpp_header(&schema)).unwrap();
        let exe = dir.join("shapes_dispatch");
        match compile_cpp(compiler, &dir, &main, SANITIZERS, Some(&exe)) {
            Ok(()) => failures.extend(run_test_program(compiler, &exe, "shapes-dispatch")),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
