//! Loading refuses what is not a dext with errors that say why, and the
//! runtime and its headers compile without a warning under both compilers
//! (g++ builds the crate; clang++ is checked here), with and without blocks.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::process::Command;

use dextlink_sim::driverkit::{Library, LoadError};

#[test]
fn a_file_that_is_not_a_shared_library_is_refused_by_kind() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let text = dir.join(format!("not-a-dext-{}.so", std::process::id()));
    std::fs::write(&text, "just text\n").unwrap();
    match Library::load(&text) {
        Err(LoadError::NotASharedLibrary { found, .. }) => assert_eq!(found, "no ELF header"),
        other => panic!("expected NotASharedLibrary, got {other:?}"),
    }
    let missing = dir.join("no-such-dext.so");
    let error = Library::load(&missing).unwrap_err();
    assert!(matches!(error, LoadError::Unreadable { .. }), "{error:?}");
    assert!(error.to_string().contains("no-such-dext.so"), "{error}");
}

#[test]
fn an_object_file_is_not_a_dext() {
    if !common::compiler_available("g++") {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let source = dir.join(format!("object-{}.cpp", std::process::id()));
    let object = source.with_extension("o");
    std::fs::write(&source, "int dextlink_probe() { return 1; }\n").unwrap();
    let status =
        Command::new("g++").arg("-c").arg(&source).arg("-o").arg(&object).status().unwrap();
    assert!(status.success());
    let error = Library::load(&object).unwrap_err();
    assert!(
        error.to_string().contains("not a shared library (found an object file (ET_REL))"),
        "{error}"
    );
}

#[test]
fn a_dext_using_api_the_runtime_lacks_names_the_symbols() {
    if !common::compiler_available("g++") {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let source = dir.join(format!("needs-more-{}.cpp", std::process::id()));
    let library = source.with_extension("so");
    std::fs::write(
        &source,
        "extern \"C\" int IOServiceWaitForMatchingResourceNotInThisRuntime(void);\n\
         int dextlink_probe() { return IOServiceWaitForMatchingResourceNotInThisRuntime(); }\n",
    )
    .unwrap();
    let status = Command::new("g++")
        .args(["-shared", "-fPIC"])
        .arg(&source)
        .arg("-o")
        .arg(&library)
        .status()
        .unwrap();
    assert!(status.success());
    match Library::load(&library) {
        Err(LoadError::MissingSymbols { symbols, .. }) => {
            assert_eq!(symbols, vec!["IOServiceWaitForMatchingResourceNotInThisRuntime".to_owned()])
        }
        other => panic!("expected MissingSymbols, got {other:?}"),
    }
}

fn syntax_check(compiler: &str, extra: &[&str], source: &Path) -> Result<(), String> {
    let include = common::crate_dir().join("driverkit/include");
    let output = Command::new(compiler)
        .args(common::STRICT)
        .args(extra)
        .arg("-fsyntax-only")
        .arg("-I")
        .arg(&include)
        .arg(source)
        .output()
        .map_err(|e| format!("cannot run {compiler}: {e}"))?;
    if output.status.success() && output.stderr.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{compiler} {extra:?} {}:\n{}",
            source.display(),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[test]
fn the_runtime_and_the_test_dext_compile_without_warnings_under_clang() {
    if !common::compiler_available("clang++") {
        return;
    }
    let root = common::crate_dir();
    let mut sources: Vec<_> = std::fs::read_dir(root.join("driverkit/src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cpp"))
        .collect();
    sources.sort();
    assert!(sources.len() >= 8, "the runtime's sources: {sources:?}");
    let mut failures = Vec::new();
    for source in &sources {
        failures.extend(syntax_check("clang++", &[], source).err());
    }
    // The dext without blocks, with clang as well (the blocks build is dext_clang).
    for name in
        ["TestDriver.cpp", "TestDriver.iig.cpp", "TestUserClient.cpp", "TestUserClient.iig.cpp"]
    {
        failures.extend(syntax_check("clang++", &[], &root.join("tests/dext").join(name)).err());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_header_compiles_on_its_own_with_both_compilers_and_with_blocks() {
    let include = common::crate_dir().join("driverkit/include");
    let mut headers: Vec<_> = std::fs::read_dir(include.join("DriverKit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "h" || e == "iig"))
        .collect();
    headers.push(include.join("os/log.h"));
    headers.push(include.join("dextlink_host.h"));
    headers.sort();
    let mut builds: Vec<(&str, &[&str])> = Vec::new();
    if common::compiler_available("g++") {
        builds.push(("g++", &["-x", "c++"]));
    }
    if common::compiler_available("clang++") {
        builds.push(("clang++", &["-x", "c++"]));
        builds.push(("clang++", &["-x", "c++", "-fblocks"]));
    }
    let mut failures = Vec::new();
    for (compiler, flags) in &builds {
        for header in &headers {
            failures.extend(syntax_check(compiler, flags, header).err());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
