//! Property test: random valid schemas (random enums, nested structs with
//! arrays, every method shape) must parse, and their C++ headers must compile
//! with every `static_assert` holding, i.e. the schema crate's C layout is the
//! one the C++ compiler computes.

use std::fmt::Write;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use dextlink_tests::{compile_cpp, cpp_header, cxx_compilers, scratch_dir};

const INTS: [(&str, u64); 8] =
    [("u8", 1), ("u16", 2), ("u32", 4), ("u64", 8), ("i8", 1), ("i16", 2), ("i32", 4), ("i64", 8)];

/// A field type: an integer, bool, an enum, an earlier struct, or an array of one.
#[derive(Debug, Clone)]
enum Ty {
    Int(usize),
    Bool,
    Enum(usize),
    Struct(usize),
    Array(Box<Ty>, u64),
}

#[derive(Debug, Clone)]
struct Spec {
    enums: Vec<(usize, Vec<i64>)>,
    structs: Vec<Vec<Ty>>,
    methods: Vec<MethodSpec>,
}

#[derive(Debug, Clone)]
struct MethodSpec {
    is_async: bool,
    scalars_in: Vec<(usize, Option<(i64, i64)>)>,
    struct_in: Option<usize>, // 0..structs: struct; else byte shapes
    scalars_out: Vec<usize>,
    struct_out: Option<usize>,
    completion: Vec<usize>,
}

fn ty_strategy(n_enums: usize, n_structs: usize) -> impl Strategy<Value = Ty> {
    let leaf = prop_oneof![
        (0..INTS.len()).prop_map(Ty::Int),
        Just(Ty::Bool),
        (0..n_enums.max(1)).prop_map(move |i| if n_enums == 0 { Ty::Bool } else { Ty::Enum(i) }),
        (0..n_structs.max(1)).prop_map(move |i| if n_structs == 0 {
            Ty::Int(3)
        } else {
            Ty::Struct(i)
        }),
    ];
    leaf.prop_recursive(2, 4, 1, |inner| {
        (inner, 1u64..4).prop_map(|(t, n)| Ty::Array(Box::new(t), n))
    })
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    let enums = prop::collection::vec(
        ((0..INTS.len()), prop::collection::btree_set(-3i64..100, 1..5)),
        0..3,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(r, vals)| (r, vals.into_iter().collect()))
            .collect::<Vec<(usize, Vec<i64>)>>()
    });
    enums.prop_flat_map(|enums| {
        let n_enums = enums.len();
        // Struct i may only contain structs < i: build them one by one.
        let structs = (1usize..4).prop_flat_map(move |n| {
            (0..n)
                .map(|i| prop::collection::vec(ty_strategy(n_enums, i), 1..6).boxed())
                .collect::<Vec<_>>()
        });
        (Just(enums), structs).prop_flat_map(|(enums, structs)| {
            let n_structs = structs.len();
            let n_enums = enums.len();
            let scalar = 0..(INTS.len() + 1 + n_enums); // ints, bool, enums
            let method = (
                any::<bool>(),
                prop::collection::vec(
                    (scalar.clone(), prop::option::of((0i64..50, 0i64..50))),
                    0..17,
                ),
                prop::option::of(0..(n_structs + 2)),
                prop::collection::vec(scalar.clone(), 0..17),
                prop::option::of(0..(n_structs + 3)),
                prop::collection::vec(scalar, 0..17),
            )
                .prop_map(
                    |(is_async, scalars_in, struct_in, scalars_out, struct_out, completion)| {
                        MethodSpec {
                            is_async,
                            scalars_in,
                            struct_in,
                            scalars_out,
                            struct_out,
                            completion: if is_async { completion } else { Vec::new() },
                        }
                    },
                );
            (Just(enums), Just(structs), prop::collection::vec(method, 1..6))
                .prop_map(|(enums, structs, methods)| Spec { enums, structs, methods })
        })
    })
}

/// Renders a spec as schema text, inserting the explicit padding the schema
/// language requires (so the schema is valid by construction).
fn render(spec: &Spec, name: &str) -> String {
    let mut s =
        format!("interface {name} {{\n    service \"com.example.{name}\";\n    version 1;\n");
    for (i, (repr, values)) in spec.enums.iter().enumerate() {
        let (rname, size) = INTS[*repr];
        let signed = rname.starts_with('i');
        let max = if size == 8 { i64::MAX } else { (1i64 << (size * 8 - u64::from(signed))) - 1 };
        let vals: Vec<String> = values
            .iter()
            .filter(|v| (signed || **v >= 0) && **v <= max)
            .enumerate()
            .map(|(k, v)| format!("V{k} = {v}"))
            .collect();
        let vals = if vals.is_empty() { vec!["V0 = 0".to_string()] } else { vals };
        let _ = writeln!(s, "    /// Enum {i}.\n    enum E{i}: {rname} {{ {} }}", vals.join(", "));
    }
    let mut layouts: Vec<(u64, u64)> = Vec::new();
    for (i, fields) in spec.structs.iter().enumerate() {
        let mut text = Vec::new();
        let (mut offset, mut align, mut pad) = (0u64, 1u64, 0);
        for (k, ty) in fields.iter().enumerate() {
            let (size, a) = layout(spec, &layouts, ty);
            let aligned = offset.div_ceil(a) * a;
            if aligned > offset {
                text.push(format!("_pad{pad}: [u8; {}]", aligned - offset));
                pad += 1;
            }
            text.push(format!("f{k}: {}", ty_text(ty)));
            offset = aligned + size;
            align = align.max(a);
        }
        let size = offset.div_ceil(align) * align;
        if size > offset {
            text.push(format!("_pad{pad}: [u8; {}]", size - offset));
        }
        layouts.push((size, align));
        let _ = writeln!(s, "    struct S{i} {{ {} }}", text.join(", "));
    }
    let scalar_text = |k: usize| -> String {
        if k < INTS.len() {
            INTS[k].0.to_string()
        } else if k == INTS.len() {
            "bool".to_string()
        } else {
            format!("E{}", k - INTS.len() - 1)
        }
    };
    for (sel, m) in spec.methods.iter().enumerate() {
        let mut ins = Vec::new();
        for (k, (t, range)) in m.scalars_in.iter().enumerate() {
            let mut p = format!("a{k}: {}", scalar_text(*t));
            if let (true, Some((lo, len))) = (*t < INTS.len(), range) {
                let hi = lo + len;
                let max = INTS[*t].1;
                if max >= 8 || hi < (1 << (max * 8 - 1)) {
                    let _ = write!(p, " in {lo}..={hi}");
                }
            }
            ins.push(p);
        }
        let n = spec.structs.len();
        match m.struct_in {
            Some(i) if i < n => ins.push(format!("input: &S{i}")),
            Some(i) if i == n => ins.push("input: &[u8; 24]".to_string()),
            Some(_) => ins.push("input: &[u8; 1..=8192]".to_string()),
            None => {}
        }
        let mut outs: Vec<String> = m
            .scalars_out
            .iter()
            .enumerate()
            .map(|(k, t)| format!("r{k}: {}", scalar_text(*t)))
            .collect();
        match m.struct_out {
            Some(i) if i < n => outs.push(format!("output: S{i}")),
            Some(i) if i == n => outs.push("output: [u8; 5000]".to_string()),
            Some(i) if i == n + 1 => outs.push("output: [u8; ..=64]".to_string()),
            // Async calls have no var-output form; a bounded output instead.
            Some(_) if m.is_async => outs.push("output: [u8; ..=128]".to_string()),
            Some(_) => outs.push("output: [u8]".to_string()),
            None => {}
        }
        let kw = if m.is_async { "async fn" } else { "fn" };
        let mut line =
            format!("    /// Method {sel}.\n    {sel} => {kw} m{sel}({})", ins.join(", "));
        if !outs.is_empty() {
            let _ = write!(line, " -> ({})", outs.join(", "));
        }
        if m.is_async && !m.completion.is_empty() {
            let vals: Vec<String> = m
                .completion
                .iter()
                .enumerate()
                .map(|(k, t)| format!("c{k}: {}", scalar_text(*t)))
                .collect();
            let _ = write!(line, " completes ({})", vals.join(", "));
        }
        line.push_str(";\n");
        s.push_str(&line);
    }
    s.push_str("}\n");
    s
}

fn layout(spec: &Spec, structs: &[(u64, u64)], ty: &Ty) -> (u64, u64) {
    match ty {
        Ty::Int(i) => (INTS[*i].1, INTS[*i].1),
        Ty::Bool => (1, 1),
        Ty::Enum(e) => {
            let size = INTS[spec.enums[*e].0].1;
            (size, size)
        }
        Ty::Struct(i) => structs[*i],
        Ty::Array(t, n) => {
            let (size, align) = layout(spec, structs, t);
            (size * n, align)
        }
    }
}

fn ty_text(ty: &Ty) -> String {
    match ty {
        Ty::Int(i) => INTS[*i].0.to_string(),
        Ty::Bool => "bool".to_string(),
        Ty::Enum(e) => format!("E{e}"),
        Ty::Struct(i) => format!("S{i}"),
        Ty::Array(t, n) => format!("[{}; {n}]", ty_text(t)),
    }
}

#[test]
fn random_valid_schemas_compile_with_their_layout_asserts() {
    const BATCH: usize = 6;
    let mut runner =
        TestRunner::new(Config { cases: 8, failure_persistence: None, ..Config::default() });
    let compilers = cxx_compilers();
    let result = runner.run(&prop::collection::vec(spec_strategy(), BATCH), |specs| {
        let dir = scratch_dir("random");
        let mut main = String::new();
        for (i, spec) in specs.iter().enumerate() {
            let name = format!("Random{i}");
            let text = render(spec, &name);
            if std::env::var_os("DEXTLINK_SHOW_RANDOM").is_some() {
                eprintln!("{text}");
            }
            let schema =
                dextlink_schema::parse_str(format!("{name}.dextlink"), &text).map_err(|d| {
                    TestCaseError::fail(format!("generated schema is invalid:\n{text}\n{d}"))
                })?;
            std::fs::write(dir.join(format!("{name}.h")), cpp_header(&schema)).unwrap();
            let _ = writeln!(main, "#include \"{name}.h\"");
        }
        for compiler in &compilers {
            compile_cpp(compiler, &dir, &main, &[], None).map_err(TestCaseError::fail)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
