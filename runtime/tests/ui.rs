//! What users see when a schema is wrong: compiler errors that name the
//! schema file, line and column, with the help text (trybuild ui tests).
//! `TRYBUILD=overwrite cargo test -p dextlink --test ui` regenerates the
//! expected output; review the diff before committing it.

#[test]
fn invalid_schemas_are_compiler_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
