//! The C client header: plain C11 (and C++-compatible) declarations for apps
//! written in C, Objective-C or Swift that call the dext with IOKit directly.
//!
//! It carries what an app author needs besides IOKitLib itself: the service
//! name, fingerprint and version, constants, enums (as fixed-width typedefs,
//! because a C enum has no fixed underlying type before C23), the shared
//! structs with their layout asserted field by field, the selectors, the
//! memory types, and for every method a comment giving the argument order
//! for `IOConnectCallMethod` / `IOConnectCallAsyncMethod`.
//!
//! The header never includes IOKit headers, so that it also compiles where
//! IOKit is absent (CI, the simulator's tests).

use std::fmt::Write;

use crate::model::*;
use crate::names;

/// The header text for `iface`. Deterministic: the same model gives the
/// same bytes.
pub fn emit(iface: &Interface) -> String {
    Emitter::new(iface).run()
}

struct Emitter<'a> {
    iface: &'a Interface,
    /// SCREAMING prefix for macros and enum constants: `FW_LOADER`.
    p: String,
    /// Prefix for types, the interface name as written: `FwLoader`.
    t: String,
    out: String,
}

/// Comment text made safe for a `/* */` block: no `*/` to end it early, no
/// `/*` for `-Wcomment`, no trigraph-looking `??`.
fn comment_safe(line: &str) -> String {
    line.replace("*/", "* /").replace("/*", "/ *").replace("??", "? ?")
}

/// A C string literal.
fn c_string(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'?' => out.push_str("\\?"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
    out
}

/// An integer constant of type `ty` as a C expression of (at least) that
/// type, usable in `#if`.
pub(crate) fn int_literal(ty: IntType, value: i128) -> String {
    match ty {
        IntType::U64 => format!("UINT64_C({value})"),
        IntType::I64 if value == i128::from(i64::MIN) => {
            "(-INT64_C(9223372036854775807) - 1)".to_string()
        }
        IntType::I64 if value < 0 => format!("(-INT64_C({}))", -value),
        IntType::I64 => format!("INT64_C({value})"),
        IntType::U8 | IntType::U16 | IntType::U32 => format!("{value}u"),
        IntType::I32 if value == i128::from(i32::MIN) => "(-2147483647 - 1)".to_string(),
        IntType::I8 | IntType::I16 | IntType::I32 if value < 0 => format!("({value})"),
        IntType::I8 | IntType::I16 | IntType::I32 => value.to_string(),
    }
}

/// An unsigned size or count: `24u`, or `UINT64_C(…)` beyond 32 bits.
fn size_literal(value: u64) -> String {
    if value <= u64::from(u32::MAX) { format!("{value}u") } else { format!("UINT64_C({value})") }
}

fn fits_int(value: i128) -> bool {
    (i128::from(i32::MIN)..=i128::from(i32::MAX)).contains(&value)
}

fn access_text(access: Access) -> &'static str {
    match access {
        Access::ReadOnly => "read-only",
        Access::ReadWrite => "read-write",
    }
}

impl<'a> Emitter<'a> {
    fn new(iface: &'a Interface) -> Self {
        Emitter {
            iface,
            p: names::screaming(&iface.name),
            t: iface.name.clone(),
            out: String::new(),
        }
    }

    fn line(&mut self, text: &str) {
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn blank(&mut self) {
        if !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    /// A `/** … */` comment from schema docs, indented by `indent` spaces.
    fn docs(&mut self, indent: usize, docs: &[String]) {
        self.comment(indent, docs, true);
    }

    fn comment(&mut self, indent: usize, lines: &[String], doc: bool) {
        if lines.is_empty() {
            return;
        }
        let lines: Vec<String> =
            lines.iter().flat_map(|l| l.split('\n')).map(str::to_string).collect();
        let pad = " ".repeat(indent);
        let open = if doc { "/**" } else { "/*" };
        if lines.len() == 1 {
            let _ = writeln!(self.out, "{pad}{open} {} */", comment_safe(&lines[0]));
            return;
        }
        let _ = writeln!(self.out, "{pad}{open}");
        for l in lines {
            let l = comment_safe(&l);
            if l.is_empty() {
                let _ = writeln!(self.out, "{pad} *");
            } else {
                let _ = writeln!(self.out, "{pad} * {l}");
            }
        }
        let _ = writeln!(self.out, "{pad} */");
    }

    fn section(&mut self, title: &str) {
        self.blank();
        let _ = writeln!(
            self.out,
            "/* ---- {title} {} */",
            "-".repeat(66usize.saturating_sub(title.len()))
        );
        self.out.push('\n');
    }

    fn enum_type(&self, i: usize) -> String {
        format!("{}{}", self.t, self.iface.enums[i].name)
    }

    fn struct_type(&self, i: usize) -> String {
        format!("{}{}", self.t, self.iface.structs[i].name)
    }

    fn data_base(&self, ty: &DataType) -> String {
        match ty {
            DataType::Int(t) => t.c().to_string(),
            DataType::Bool => "bool".to_string(),
            DataType::Enum(i) => self.enum_type(*i),
            DataType::Struct(i) => self.struct_type(*i),
            DataType::Array(elem, _) => self.data_base(elem),
        }
    }

    /// `uint8_t name[32]`, `FwLoaderPoint corners[4]`.
    fn declarator(&self, ty: &DataType, name: &str) -> String {
        let mut dims = String::new();
        let mut t = ty;
        while let DataType::Array(elem, n) = t {
            let _ = write!(dims, "[{n}]");
            t = elem;
        }
        format!("{} {name}{dims}", self.data_base(t))
    }

    fn scalar_type(&self, ty: ScalarType) -> String {
        match ty {
            ScalarType::Int(t) => t.c().to_string(),
            ScalarType::Bool => "bool".to_string(),
            ScalarType::Enum(i) => self.enum_type(i),
        }
    }

    /// `enum { A = 1, … };` when every value fits an `int` (C11 enumeration
    /// constants are `int`), else one `#define` per value.
    fn constants(&mut self, ty: IntType, items: &[(String, i128, Vec<String>)]) {
        if items.iter().all(|(_, v, _)| fits_int(*v)) {
            self.line("enum {");
            for (name, value, docs) in items {
                self.docs(4, docs);
                let _ = writeln!(self.out, "    {name} = {value},");
            }
            self.line("};");
        } else {
            for (name, value, docs) in items {
                self.docs(0, docs);
                let _ = writeln!(self.out, "#define {name} {}", int_literal(ty, *value));
            }
        }
    }

    fn run(mut self) -> String {
        let iface = self.iface;
        let p = self.p.clone();

        let mut head = vec![
            format!("Generated by dextlink from {} — do not edit.", iface.name),
            String::new(),
            format!(
                "Schema fingerprint {:#018x}, version {}. Regenerate with",
                iface.fingerprint, iface.version
            ),
            "    dextlink gen SCHEMA --c-client OUT.h".to_string(),
        ];
        if !iface.docs.is_empty() {
            head.push(String::new());
            head.extend(iface.docs.iter().cloned());
        }
        self.comment(0, &head, false);
        self.blank();
        let _ = writeln!(self.out, "#ifndef {p}_CLIENT_H");
        let _ = writeln!(self.out, "#define {p}_CLIENT_H");
        self.blank();
        self.line("#include <stdbool.h>");
        self.line("#include <stddef.h>");
        self.line("#include <stdint.h>");
        self.blank();
        self.line("#ifdef __cplusplus");
        self.line("extern \"C\" {");
        self.line("#endif");
        self.blank();
        self.line(
            "/* C11 spells these _Static_assert and _Alignof, C++ static_assert and alignof. */",
        );
        self.line("#ifdef __cplusplus");
        let _ = writeln!(
            self.out,
            "#define {p}_STATIC_ASSERT(cond, message) static_assert(cond, message)"
        );
        let _ = writeln!(self.out, "#define {p}_ALIGNOF(type) alignof(type)");
        self.line("#else");
        let _ = writeln!(
            self.out,
            "#define {p}_STATIC_ASSERT(cond, message) _Static_assert(cond, message)"
        );
        let _ = writeln!(self.out, "#define {p}_ALIGNOF(type) _Alignof(type)");
        self.line("#endif");

        self.section("Interface");
        self.docs(
            0,
            &["Stable hash of the schema's ABI; the dext reports it through the handshake."
                .to_string()],
        );
        let _ = writeln!(self.out, "#define {p}_FINGERPRINT UINT64_C({:#018x})", iface.fingerprint);
        self.docs(0, &["Schema version; the dext reports it through the handshake.".to_string()]);
        let _ = writeln!(self.out, "#define {p}_VERSION {}u", iface.version);
        self.docs(0, &["IOService name to match, e.g. with IOServiceNameMatching().".to_string()]);
        let _ = writeln!(self.out, "#define {p}_SERVICE {}", c_string(&iface.service));
        self.docs(
            0,
            &[
                "Fingerprint handshake: a synchronous call with no inputs and two scalar"
                    .to_string(),
                format!(
                    "outputs, the fingerprint and the version. Compare them with {p}_FINGERPRINT"
                ),
                "before any other call.".to_string(),
            ],
        );
        let _ = writeln!(self.out, "#define {p}_HANDSHAKE_SELECTOR {:#X}u", HANDSHAKE_SELECTOR);

        if !iface.consts.is_empty() {
            self.section("Constants");
            for c in &iface.consts {
                self.docs(0, &c.docs);
                let _ = writeln!(
                    self.out,
                    "#define {p}_{} {}",
                    names::screaming(&c.name),
                    int_literal(c.ty, c.value)
                );
            }
        }

        if !iface.enums.is_empty() {
            self.section("Enums");
            for (i, e) in iface.enums.iter().enumerate() {
                self.blank();
                let mut docs = e.docs.clone();
                if !docs.is_empty() {
                    docs.push(String::new());
                }
                let ename = names::screaming(&e.name);
                docs.push(format!(
                    "Schema enum `{}: {}`, values {p}_{ename}_*.",
                    e.name,
                    e.repr.rust()
                ));
                self.docs(0, &docs);
                let _ = writeln!(self.out, "typedef {} {};", e.repr.c(), self.enum_type(i));
                let items: Vec<(String, i128, Vec<String>)> = e
                    .variants
                    .iter()
                    .map(|v| {
                        (
                            format!("{p}_{ename}_{}", names::screaming(&v.name)),
                            v.value,
                            v.docs.clone(),
                        )
                    })
                    .collect();
                self.constants(e.repr, &items);
            }
        }

        if !iface.structs.is_empty() {
            self.section("Shared structs (no padding; layout asserted below each)");
            if iface.structs.iter().any(|s| s.fields.iter().any(|f| self.has_bool(&f.ty))) {
                let _ = writeln!(
                    self.out,
                    "{p}_STATIC_ASSERT(sizeof(bool) == 1, \"{}: bool fields must be one byte\");",
                    iface.name
                );
            }
            for i in self.struct_order() {
                self.strukt(i);
            }
        }

        if !iface.memories.is_empty() {
            self.section("Memory types (IOConnectMapMemory64)");
            for m in &iface.memories {
                self.blank();
                let mut docs = m.docs.clone();
                if !docs.is_empty() {
                    docs.push(String::new());
                }
                let name = names::screaming(&m.name);
                docs.push(format!(
                    "Memory type {}: `{}`, {} bytes, {}.",
                    m.id,
                    m.name,
                    m.size,
                    access_text(m.access)
                ));
                docs.push(format!(
                    "Map it with IOConnectMapMemory64(connection, {p}_MEMORY_{name}, ...)."
                ));
                if m.access == Access::ReadOnly {
                    docs.push("The dext maps it read-only: writing to it faults.".to_string());
                }
                self.docs(0, &docs);
                self.constants(
                    IntType::U32,
                    &[(format!("{p}_MEMORY_{name}"), i128::from(m.id), Vec::new())],
                );
                let _ = writeln!(self.out, "#define {p}_MEMORY_{name}_SIZE UINT64_C({})", m.size);
            }
        }

        self.section("Selectors");
        self.selectors();

        self.section("Methods");
        for m in &iface.methods {
            self.method(m);
        }

        self.blank();
        let _ = writeln!(self.out, "#undef {p}_STATIC_ASSERT");
        let _ = writeln!(self.out, "#undef {p}_ALIGNOF");
        self.blank();
        self.line("#ifdef __cplusplus");
        self.line("} /* extern \"C\" */");
        self.line("#endif");
        self.blank();
        let _ = writeln!(self.out, "#endif /* {p}_CLIENT_H */");
        self.out
    }

    /// The selector enum, with reserved selectors as comments in order.
    fn selectors(&mut self) {
        let iface = self.iface;
        let p = self.p.clone();
        self.docs(
            0,
            &["Method selectors: the `selector` argument of IOConnectCall*Method.".to_string()],
        );
        let mut entries: Vec<(u32, Option<String>, Vec<String>)> = Vec::new();
        for m in &iface.methods {
            entries.push((
                m.selector,
                Some(format!("{p}_SELECTOR_{}", names::screaming(&m.name))),
                Vec::new(),
            ));
        }
        for r in &iface.reserved {
            let why = r.docs.first().map(|d| format!(": {d}")).unwrap_or_default();
            entries.push((r.selector, None, vec![format!("{} is reserved{why}", r.selector)]));
        }
        entries.sort_by_key(|e| e.0);
        let count_doc =
            "Entries in the dext's dispatch table: the highest selector plus one.".to_string();
        let as_enum = entries.iter().all(|e| fits_int(i128::from(e.0)));
        if as_enum {
            self.line("enum {");
        }
        let (indent, pad) = if as_enum { (4, "    ") } else { (0, "") };
        for (sel, name, note) in &entries {
            match name {
                Some(name) if as_enum => {
                    let _ = writeln!(self.out, "{pad}{name} = {sel},");
                }
                Some(name) => {
                    let _ = writeln!(self.out, "#define {name} {sel}u");
                }
                None => self.comment(indent, note, false),
            }
        }
        self.docs(indent, std::slice::from_ref(&count_doc));
        if as_enum {
            let _ = writeln!(self.out, "    {p}_SELECTOR_COUNT = {}", iface.dispatch_len());
            self.line("};");
        } else {
            let _ = writeln!(self.out, "#define {p}_SELECTOR_COUNT {}u", iface.dispatch_len());
        }
    }

    fn has_bool(&self, ty: &DataType) -> bool {
        match ty {
            DataType::Bool => true,
            DataType::Array(elem, _) => self.has_bool(elem),
            _ => false,
        }
    }

    /// Structs in declaration order, each after the structs it contains.
    fn struct_order(&self) -> Vec<usize> {
        fn visit(iface: &Interface, i: usize, done: &mut Vec<bool>, order: &mut Vec<usize>) {
            if done[i] {
                return;
            }
            done[i] = true;
            for f in &iface.structs[i].fields {
                let mut t = &f.ty;
                while let DataType::Array(elem, _) = t {
                    t = elem;
                }
                if let DataType::Struct(j) = t {
                    visit(iface, *j, done, order);
                }
            }
            order.push(i);
        }
        let mut done = vec![false; self.iface.structs.len()];
        let mut order = Vec::new();
        for i in 0..self.iface.structs.len() {
            visit(self.iface, i, &mut done, &mut order);
        }
        order
    }

    fn strukt(&mut self, i: usize) {
        let s = &self.iface.structs[i];
        let p = self.p.clone();
        let ty = self.struct_type(i);
        self.blank();
        let mut docs = s.docs.clone();
        if !docs.is_empty() {
            docs.push(String::new());
        }
        docs.push(format!("Schema struct `{}`: {} bytes, aligned to {}.", s.name, s.size, s.align));
        self.docs(0, &docs);
        let _ = writeln!(self.out, "typedef struct {ty} {{");
        for f in &s.fields {
            self.docs(4, &f.docs);
            let _ = writeln!(self.out, "    {};", self.declarator(&f.ty, &f.name));
        }
        let _ = writeln!(self.out, "}} {ty};");
        let _ = writeln!(
            self.out,
            "{p}_STATIC_ASSERT(sizeof({ty}) == {}, \"{}.{}: size must be {} bytes, as in the schema\");",
            s.size, self.iface.name, s.name, s.size
        );
        let _ = writeln!(
            self.out,
            "{p}_STATIC_ASSERT({p}_ALIGNOF({ty}) == {}, \"{}.{}: alignment must be {}, as in the schema\");",
            s.align, self.iface.name, s.name, s.align
        );
        for f in &s.fields {
            let _ = writeln!(
                self.out,
                "{p}_STATIC_ASSERT(offsetof({ty}, {}) == {}, \"{}.{}.{}: offset must be {}, as in the schema\");",
                f.name, f.offset, self.iface.name, s.name, f.name, f.offset
            );
        }
    }

    fn scalar_lines(&self, scalars: &[Scalar], index: &str, ranged: bool) -> Vec<String> {
        let width = scalars.iter().map(|s| s.name.len()).max().unwrap_or(0);
        let mut lines = Vec::new();
        for (i, s) in scalars.iter().enumerate() {
            let mut line = format!("  {index}[{i}] {:width$}  {}", s.name, self.scalar_type(s.ty));
            match s.ty {
                ScalarType::Int(t) if ranged => match s.range {
                    Some((lo, hi)) => {
                        let _ = write!(line, ", {lo} ..= {hi}");
                    }
                    None => {
                        let _ = write!(line, ", any {}", t.rust());
                    }
                },
                ScalarType::Bool => line.push_str(", 0 or 1"),
                ScalarType::Enum(e) => {
                    let _ = write!(
                        line,
                        ", one of {}_{}_*",
                        self.p,
                        names::screaming(&self.iface.enums[e].name)
                    );
                }
                ScalarType::Int(_) => {}
            }
            lines.push(line.trim_end().to_string());
            for d in &s.docs {
                lines.push(format!("      {d}").trim_end().to_string());
            }
        }
        lines
    }

    fn shape_text(&self, shape: StructShape) -> String {
        let inline = |n: u64| {
            if n > INBAND_STRUCT_MAX { "; over 4096, so IOKit passes it out of line" } else { "" }
        };
        match shape {
            StructShape::Struct(i) => {
                let size = self.iface.structs[i].size;
                format!("{} ({size} bytes{})", self.struct_type(i), inline(size))
            }
            StructShape::Bytes(n) => format!("{n} bytes{}", inline(n)),
            StructShape::Bounded { min, max } => format!(
                "{min} ..= {max} bytes{}",
                if max > INBAND_STRUCT_MAX { "; over 4096 travels out of line" } else { "" }
            ),
            StructShape::Variable => {
                "any length, returned out of line:\n  set *outputStructCnt to kIOConnectMethodVarOutputSize (-3); the buffer\n  comes back through *(void **)outputStruct".to_string()
            }
        }
    }

    fn method(&mut self, m: &Method) {
        let p = self.p.clone();
        let mname = names::screaming(&m.name);
        let sel = format!("{p}_SELECTOR_{mname}");
        let checks = self.iface.dispatch_checks(m);
        let mut doc = Vec::new();
        let call = if m.is_async { "IOConnectCallAsyncMethod" } else { "IOConnectCallMethod" };
        let kind = match (m.is_async, m.completion_check) {
            (false, _) => "synchronous".to_string(),
            (true, CompletionCheck::Any) => {
                "asynchronous; the completion is optional: IOConnectCallAsyncMethod, or IOConnectCallMethod without one".to_string()
            }
            (true, _) => "asynchronous: call it with IOConnectCallAsyncMethod and a wake port".to_string(),
        };
        doc.push(format!("{}: selector {} ({sel}), {kind}.", m.name, m.selector));
        if m.unchecked {
            doc.push("The dext dispatches it by hand: no dispatch-table checks.".to_string());
        }
        if !m.docs.is_empty() {
            doc.push(String::new());
            doc.extend(m.docs.iter().cloned());
        }
        doc.push(String::new());

        let struct_line = |this: &Self, what: &str, arg: &Option<StructArg>| match arg {
            None => format!("{what}: none."),
            Some(a) => format!("{what}: `{}`, {}.", a.name, this.shape_text(a.shape)),
        };
        if m.scalar_inputs.is_empty() {
            doc.push("Scalar inputs: none.".to_string());
        } else {
            doc.push(format!("Scalar inputs ({}), as uint64_t:", m.scalar_inputs.len()));
            doc.extend(self.scalar_lines(&m.scalar_inputs, "input", true));
        }
        doc.push(struct_line(self, "Structure input", &m.struct_input));
        if m.scalar_outputs.is_empty() {
            doc.push("Scalar outputs: none.".to_string());
        } else {
            doc.push(format!("Scalar outputs ({}), as uint64_t:", m.scalar_outputs.len()));
            doc.extend(self.scalar_lines(&m.scalar_outputs, "output", false));
        }
        doc.push(struct_line(self, "Structure output", &m.struct_output));
        if m.is_async {
            if m.completion.is_empty() {
                doc.push("Completion: the IOReturn result only (no arguments).".to_string());
            } else {
                doc.push(format!(
                    "Completion: the IOReturn result, then {} argument{} in args[]:",
                    m.completion.len(),
                    if m.completion.len() == 1 { "" } else { "s" }
                ));
                doc.extend(self.scalar_lines(&m.completion, "args", false));
            }
        }

        // The call, argument by argument.
        doc.push(String::new());
        let mut args = vec![format!("{call}(connection, {sel},")];
        if m.is_async {
            args.push("    wakePort, asyncRef, kIOAsyncCalloutCount,".to_string());
        }
        args.push(if m.scalar_inputs.is_empty() {
            "    NULL, 0,".to_string()
        } else {
            format!("    input, {p}_{mname}_SCALAR_INPUT_COUNT,")
        });
        args.push(match &m.struct_input {
            None => "    NULL, 0,".to_string(),
            Some(a) => match a.shape {
                StructShape::Struct(i) => {
                    format!("    &{}, sizeof({}),", a.name, self.struct_type(i))
                }
                StructShape::Bytes(_) => format!("    {}, {p}_{mname}_STRUCT_INPUT_SIZE,", a.name),
                _ => format!("    {0}, {0}Length,", a.name),
            },
        });
        args.push(if m.scalar_outputs.is_empty() {
            "    NULL, NULL,".to_string()
        } else {
            format!("    output, &outputCount,   // outputCount = {p}_{mname}_SCALAR_OUTPUT_COUNT")
        });
        args.push(match &m.struct_output {
            None => "    NULL, NULL);".to_string(),
            Some(a) => match a.shape {
                StructShape::Struct(i) => {
                    format!(
                        "    &{}, &{}Size);   // {}Size = sizeof({})",
                        a.name,
                        a.name,
                        a.name,
                        self.struct_type(i)
                    )
                }
                StructShape::Bytes(_) => {
                    format!(
                        "    {0}, &{0}Size);   // {0}Size = {p}_{mname}_STRUCT_OUTPUT_SIZE",
                        a.name
                    )
                }
                StructShape::Bounded { .. } => {
                    format!(
                        "    {0}, &{0}Size);   // {0}Size = {p}_{mname}_STRUCT_OUTPUT_MAX_SIZE",
                        a.name
                    )
                }
                StructShape::Variable => format!(
                    "    &{0}, &{0}Size);   // {0}Size = kIOConnectMethodVarOutputSize",
                    a.name
                ),
            },
        });
        doc.extend(args.into_iter().map(|a| format!("  {a}")));
        if !m.unchecked {
            let v = |x: u32| if x == VARIABLE { "-1U".to_string() } else { x.to_string() };
            doc.push(String::new());
            doc.push(format!(
                "Dispatch checks {{ completion, scalar in, struct in, scalar out, struct out }}: {{ {}, {}, {}, {}, {} }}.",
                v(checks.completion_exists),
                v(checks.scalar_input_count),
                v(checks.structure_input_size),
                v(checks.scalar_output_count),
                v(checks.structure_output_size)
            ));
        }

        self.blank();
        self.docs(0, &doc);
        let _ =
            writeln!(self.out, "#define {p}_{mname}_SCALAR_INPUT_COUNT {}u", m.scalar_inputs.len());
        self.struct_defines(&format!("{p}_{mname}_STRUCT_INPUT"), &m.struct_input);
        let _ = writeln!(
            self.out,
            "#define {p}_{mname}_SCALAR_OUTPUT_COUNT {}u",
            m.scalar_outputs.len()
        );
        self.struct_defines(&format!("{p}_{mname}_STRUCT_OUTPUT"), &m.struct_output);
        if m.is_async {
            let _ =
                writeln!(self.out, "#define {p}_{mname}_COMPLETION_COUNT {}u", m.completion.len());
        }
    }

    fn struct_defines(&mut self, prefix: &str, arg: &Option<StructArg>) {
        match arg.as_ref().map(|a| a.shape) {
            None | Some(StructShape::Variable) => {}
            Some(StructShape::Bounded { min, max }) => {
                let _ = writeln!(self.out, "#define {prefix}_MIN_SIZE {}", size_literal(min));
                let _ = writeln!(self.out, "#define {prefix}_MAX_SIZE {}", size_literal(max));
            }
            Some(StructShape::Struct(i)) => {
                let _ = writeln!(self.out, "#define {prefix}_SIZE sizeof({})", self.struct_type(i));
            }
            Some(StructShape::Bytes(n)) => {
                let _ = writeln!(self.out, "#define {prefix}_SIZE {}", size_literal(n));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> Interface {
        crate::parse_str("t.dextlink", src).unwrap_or_else(|d| panic!("{d}")).interface
    }

    fn fwloader() -> Interface {
        load(include_str!("../../../examples/fwloader/fwloader.dextlink"))
    }

    fn examples() -> Vec<(&'static str, Interface)> {
        vec![
            ("fwloader", fwloader()),
            (
                "null_driver",
                load(include_str!("../../../examples/null_driver/null_driver.dextlink")),
            ),
            ("shapes", load(include_str!("../../../tests/schemas/shapes.dextlink"))),
        ]
    }

    #[test]
    fn literals() {
        assert_eq!(
            int_literal(IntType::I64, i128::from(i64::MIN)),
            "(-INT64_C(9223372036854775807) - 1)"
        );
        assert_eq!(int_literal(IntType::I64, -5), "(-INT64_C(5))");
        assert_eq!(
            int_literal(IntType::U64, u128::from(u64::MAX) as i128),
            "UINT64_C(18446744073709551615)"
        );
        assert_eq!(int_literal(IntType::I32, i128::from(i32::MIN)), "(-2147483647 - 1)");
        assert_eq!(int_literal(IntType::I32, -40), "(-40)");
        assert_eq!(int_literal(IntType::U32, 8), "8u");
        assert_eq!(c_string("a\"b\\c\n??="), "\"a\\\"b\\\\c\\012\\?\\?=\"");
        assert_eq!(comment_safe("a */ b /* c ??/"), "a * / b / * c ? ?/");
    }

    #[test]
    fn fwloader_header() {
        let iface = fwloader();
        let h = emit(&iface);
        assert!(
            h.starts_with("/*\n * Generated by dextlink from FwLoader — do not edit.\n"),
            "{h}"
        );
        assert!(h.contains("dextlink gen SCHEMA --c-client OUT.h"));
        assert!(h.contains(&format!("{:#018x}", iface.fingerprint)));
        assert!(h.contains("#ifndef FW_LOADER_CLIENT_H\n#define FW_LOADER_CLIENT_H\n"));
        for inc in ["<stdint.h>", "<stdbool.h>", "<stddef.h>"] {
            assert!(h.contains(&format!("#include {inc}")));
        }
        assert!(h.contains("extern \"C\" {"));
        assert!(h.contains(&format!(
            "#define FW_LOADER_FINGERPRINT UINT64_C({:#018x})",
            iface.fingerprint
        )));
        assert!(h.contains("#define FW_LOADER_VERSION 1u"));
        assert!(h.contains("#define FW_LOADER_SERVICE \"FwLoaderDriver\""));
        assert!(h.contains("#define FW_LOADER_HANDSHAKE_SELECTOR 0x44584C4Bu"));
        assert!(h.contains("#define FW_LOADER_SLOT_SIZE 1048576u"));
        assert!(h.contains("typedef uint32_t FwLoaderStatus;\nenum {\n    /** No upload in progress. */\n    FW_LOADER_STATUS_IDLE = 0,"));
        assert!(h.contains("    FW_LOADER_IMAGE_FORMAT_INTEL_HEX = 1,"));
        assert!(h.contains("typedef struct FwLoaderImageInfo {"));
        assert!(h.contains("    FwLoaderImageFormat format;"));
        assert!(h.contains("    uint32_t image_crc32;"));
        assert!(h.contains("FW_LOADER_STATIC_ASSERT(sizeof(FwLoaderSlotHeader) == 24, \"FwLoader.SlotHeader: size must be 24 bytes, as in the schema\");"));
        assert!(h.contains("FW_LOADER_STATIC_ASSERT(offsetof(FwLoaderSlotHeader, crc32) == 20,"));
        assert!(h.contains("FW_LOADER_STATIC_ASSERT(FW_LOADER_ALIGNOF(FwLoaderImageInfo) == 8,"));
        assert!(h.contains("    FW_LOADER_SELECTOR_BEGIN = 0,"));
        assert!(h.contains("    FW_LOADER_SELECTOR_ABORT = 4,"));
        assert!(h.contains("    FW_LOADER_SELECTOR_COUNT = 6\n};"));
        assert!(h.contains("FW_LOADER_MEMORY_STAGING = 0,"));
        assert!(h.contains("#define FW_LOADER_MEMORY_STAGING_SIZE UINT64_C(8388608)"));
        // The submit comment lists arguments in call order, with ranges.
        assert!(h.contains("  input[0] slot  uint32_t, 0 ..= 7"), "{h}");
        assert!(h.contains("  input[1] len   uint32_t, 1 ..= 1048576"));
        assert!(h.contains("  args[0] transferred   uint32_t"));
        assert!(h.contains("  args[1] acknowledged  uint64_t"));
        assert!(h.contains("#define FW_LOADER_SUBMIT_COMPLETION_COUNT 2u"));
        assert!(h.contains("#define FW_LOADER_BEGIN_STRUCT_INPUT_SIZE sizeof(FwLoaderImageInfo)"));
        assert!(h.contains("{ 1, 2, 0, 0, 0 }"));
        assert!(h.trim_end().ends_with("#endif /* FW_LOADER_CLIENT_H */"));
        // Deterministic.
        assert_eq!(h, emit(&fwloader()));
    }

    #[test]
    fn shapes_header() {
        let iface = load(include_str!("../../../tests/schemas/shapes.dextlink"));
        let h = emit(&iface);
        assert!(h.contains("#define SHAPES_MIN_TEMP (-40)"));
        assert!(h.contains("typedef uint8_t ShapesMode;"));
        assert!(h.contains("SHAPES_MODE_AUTO = 255,"));
        assert!(h.contains("SHAPES_TRIM_DOWN = -1,"));
        assert!(h.contains("    ShapesPoint corners[4];"));
        assert!(h.contains("    bool enabled;"));
        assert!(h.contains("SHAPES_STATIC_ASSERT(sizeof(bool) == 1,"));
        assert!(h.contains("    SHAPES_SELECTOR_START = 13,\n    /* 14 is reserved: Retired: took a `u32` that no longer means anything. */\n    SHAPES_SELECTOR_RAW = 15,"), "{h}");
        assert!(h.contains("SHAPES_SELECTOR_COUNT = 17"));
        assert!(h.contains("#define SHAPES_WRITE_BLOB_STRUCT_INPUT_MAX_SIZE 65536u"));
        assert!(h.contains("kIOConnectMethodVarOutputSize"));
        assert!(h.contains("The dext maps it read-only"));
        assert!(h.contains("{ -1U, 1, 0, 0, 0 }"));
    }

    #[test]
    fn wide_values_fall_back_to_defines() {
        let iface = load(
            "interface Wide { service \"w\"; version 1;
               const BIG: u64 = 0xffffffffffffffff;
               const LOW: i64 = -9223372036854775808;
               enum Huge: u64 { Small = 1, Large = 0x100000000 }
               struct S { h: Huge, n: [[u8; 4]; 2] }
               0 => fn a(h: Huge, s: &S); }",
        );
        let h = emit(&iface);
        assert!(h.contains("#define WIDE_BIG UINT64_C(18446744073709551615)"));
        assert!(h.contains("#define WIDE_LOW (-INT64_C(9223372036854775807) - 1)"));
        assert!(h.contains("#define WIDE_HUGE_LARGE UINT64_C(4294967296)"));
        assert!(h.contains("    uint8_t n[2][4];"));
    }

    /// Compiles each example header with the system C and C++ compilers (a
    /// missing one is skipped with a note, or fails under CI: see
    /// `dextlink_tests::tools`).
    #[test]
    fn headers_compile() {
        use std::process::Command;
        let dir = tempfile::tempdir().unwrap();
        let runs: [(&str, &[&str]); 2] = [
            (
                "gcc",
                &[
                    "-std=c11",
                    "-Wall",
                    "-Wextra",
                    "-Wpedantic",
                    "-Werror",
                    "-fsyntax-only",
                    "-x",
                    "c",
                ],
            ),
            ("g++", &["-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-x", "c++"]),
        ];
        let runs: Vec<_> = runs
            .into_iter()
            .filter(|(cc, _)| dextlink_tests::tools::require(cc, &format!("compiling with {cc}")))
            .collect();
        for (name, iface) in examples() {
            let path = dir.path().join(format!("{name}_client.h"));
            std::fs::write(&path, emit(&iface)).unwrap();
            for (cc, flags) in &runs {
                let out = Command::new(cc).args(*flags).arg(&path).output().unwrap();
                assert!(
                    out.status.success(),
                    "{cc} rejects {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}
