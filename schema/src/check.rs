//! From syntax tree to validated model. Every rule the schema language has
//! lives here, and every violation becomes a diagnostic that says where it
//! is and what to write instead. Checking goes on after an error where it
//! can, so that one run reports every mistake.

use std::collections::HashMap;

use syn::{Expr, Type};

use crate::diag::{Diagnostic, Span};
use crate::model::*;
use crate::names;
use crate::syntax::{self, Attrs, Item, Name, span};
use crate::{eval, fingerprint};

/// Checks a parsed file; returns the model and any warnings, or every error
/// (with the warnings) when there is at least one.
pub fn check(file: &syntax::File) -> (Option<Interface>, Vec<Diagnostic>) {
    let mut cx = Checker::default();
    let interface = cx.interface(file);
    let has_errors = cx.diags.iter().any(Diagnostic::is_error);
    (if has_errors { None } else { Some(interface) }, cx.diags)
}

#[derive(Default)]
struct Checker {
    diags: Vec<Diagnostic>,
    /// Constants so far; `None` for one whose own error was reported.
    consts: HashMap<String, Option<i128>>,
    /// Type and constant names share one namespace in the generated code.
    globals: HashMap<String, Span>,
    enum_index: HashMap<String, usize>,
    struct_index: HashMap<String, usize>,
}

/// What computing struct layouts works on: the structs (sizes filled in as
/// they are laid out), per struct a visit state (0 new, 1 in progress, 2 done)
/// for cycle detection, and whether it is broken (an unresolved field or a
/// cycle), whose padding errors would only echo the first error.
struct Layouts<'a> {
    structs: Vec<Struct>,
    state: Vec<u8>,
    broken: Vec<bool>,
    enums: &'a [Enum],
    fields: &'a [Vec<(Field, Span)>],
    items: &'a [&'a syntax::Struct],
}

#[derive(Clone, Copy)]
enum Case {
    UpperCamel,
    Snake,
    Screaming,
}

impl Case {
    /// `name` rewritten in this case (for suggestions).
    fn fix(self, name: &str) -> String {
        let name = name.trim_start_matches('_');
        match self {
            Case::UpperCamel => names::upper_camel(name),
            Case::Snake => names::snake(name),
            Case::Screaming => names::screaming(name),
        }
    }
}

impl Checker {
    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Rejects names the generated code cannot carry, and names in the wrong
    /// case (the generated Rust would not be warning-free).
    fn name(&mut self, name: &Name, what: &str, case: Case) -> bool {
        if !name.text.is_ascii() {
            self.error(
                Diagnostic::error(name.span, format!("`{}` is not an ASCII name", name.text))
                    .label(format!("this {what} name must be ASCII in the generated C and C++"))
                    .help(format!(
                        "use letters a-z, A-Z, digits and `_`, e.g. `{}`",
                        case.fix("renamed")
                    )),
            );
            return false;
        }
        if let Some(by) = names::reserved_by(&name.text) {
            self.error(
                Diagnostic::error(name.span, format!("`{}` is {by}", name.text))
                    .label(format!("this {what} name cannot be used in the generated code"))
                    .help(format!(
                        "rename it, e.g. `{}`",
                        case.fix(&format!("{}_value", name.text))
                    )),
            );
            return false;
        }
        let (ok, fixed, style) = match case {
            Case::UpperCamel => (
                names::is_upper_camel(&name.text),
                names::upper_camel(&name.text),
                "UpperCamelCase",
            ),
            Case::Snake => (names::is_snake(&name.text), names::snake(&name.text), "snake_case"),
            Case::Screaming => (
                names::is_screaming(&name.text),
                names::screaming(&name.text),
                "SCREAMING_SNAKE_CASE",
            ),
        };
        if !ok {
            self.error(
                Diagnostic::error(name.span, format!("{what} names are written in {style}"))
                    .label(format!("`{}` is not {style}", name.text))
                    .help(format!("write `{fixed}`")),
            );
            return false;
        }
        true
    }

    /// Claims a name in the shared type/constant namespace.
    fn global(&mut self, name: &Name, what: &str, case: Case) {
        if names::GENERATED_NAMES.contains(&name.text.as_str()) {
            self.error(
                Diagnostic::error(
                    name.span,
                    format!("`{}` collides with a name the generated code defines", name.text),
                )
                .label(format!("this {what} would clash in the generated header or module"))
                .help(format!(
                    "rename it, e.g. `{}`",
                    match case {
                        Case::Screaming => format!("{}_INFO", name.text),
                        _ => format!("{}Info", name.text),
                    }
                )),
            );
            return;
        }
        if let Some(first) = self.globals.get(&name.text) {
            let first = *first;
            self.error(
                Diagnostic::error(name.span, format!("the name `{}` is defined twice", name.text))
                    .label(format!("second definition, as a {what}"))
                    .related(first, "first defined here")
                    .help("types and constants share one namespace; give one of them another name"),
            );
            return;
        }
        self.globals.insert(name.text.clone(), name.span);
    }

    fn docs(attrs: &Attrs) -> Vec<String> {
        attrs
            .docs
            .iter()
            .flat_map(|d| d.split('\n'))
            .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end().to_string())
            .collect()
    }

    /// Reports every attribute that this position does not take.
    fn no_attrs(&mut self, attrs: &Attrs, allowed: &[&str]) {
        for attr in &attrs.attrs {
            if !allowed.contains(&attr.name.as_str()) {
                let help = if allowed.is_empty() {
                    "only `///` doc comments may stand here".to_string()
                } else {
                    format!(
                        "attributes here: {}",
                        allowed
                            .iter()
                            .map(|a| format!("`#[{}]`", attr_form(a)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                self.error(
                    Diagnostic::error(attr.span, format!("unknown attribute `#[{}]`", attr.name))
                        .label("not an attribute the schema language knows here")
                        .help(help),
                );
            }
        }
    }

    fn eval(&mut self, expr: &Expr) -> Option<i128> {
        match eval::eval(expr, &self.consts) {
            Ok(v) => Some(v),
            Err(d) => {
                self.diags.extend(d);
                None
            }
        }
    }

    fn selector(&mut self, lit: &syn::LitInt) -> Option<u32> {
        let here = span(lit);
        let value = match lit.base10_parse::<u128>() {
            Ok(v) if lit.suffix().is_empty() => v,
            _ => {
                self.error(
                    Diagnostic::error(here, "a selector is a plain non-negative integer")
                        .label("here")
                        .help("write e.g. `3 => fn …;`"),
                );
                return None;
            }
        };
        let Ok(value) = u32::try_from(value) else {
            self.error(
                Diagnostic::error(here, format!("selector {value} does not fit DriverKit's selector type"))
                    .label("larger than 4294967295")
                    .help("IOConnectCallMethod takes a `uint32_t` selector; number methods from 0 upwards"),
            );
            return None;
        };
        if value == HANDSHAKE_SELECTOR {
            self.error(
                Diagnostic::error(
                    here,
                    format!("selector {value:#x} is reserved for dextlink's fingerprint handshake"),
                )
                .label("reserved by dextlink")
                .help("number methods from 0 upwards"),
            );
            return None;
        }
        Some(value)
    }

    fn int_type(&mut self, ty: &Type, what: &str) -> Option<IntType> {
        if let Type::Path(p) = ty
            && let Some(t) = p.path.get_ident().and_then(|i| IntType::from_name(&i.to_string()))
        {
            return Some(t);
        }
        self.error(
            Diagnostic::error(span(ty), format!("{what} must have an integer type"))
                .label("not one of u8, u16, u32, u64, i8, i16, i32, i64")
                .help("write e.g. `u32`"),
        );
        None
    }

    fn interface(&mut self, file: &syntax::File) -> Interface {
        self.no_attrs(&file.attrs, &[]);
        self.name(&file.name, "interface", Case::UpperCamel);
        self.global(&file.name, "interface", Case::UpperCamel);

        let mut service: Option<(String, Span)> = None;
        let mut version: Option<(u32, Span)> = None;
        let mut consts = Vec::new();

        // Pass 1: interface settings, constants (in order: a constant may use
        // the ones above it), and the names of enums and structs, so that
        // fields and parameters may refer to types declared anywhere.
        let (mut n_enums, mut n_structs) = (0, 0);
        for item in &file.items {
            match item {
                Item::Service { value, span } => {
                    if let Some((_, first)) = &service {
                        self.error(
                            Diagnostic::error(*span, "the service name is given twice")
                                .label("second")
                                .related(*first, "first")
                                .help("keep one `service \"…\";`"),
                        );
                    } else if value.is_empty() {
                        self.error(Diagnostic::error(*span, "the service name is empty").label("empty").help("write the IOService name the client matches, e.g. `service \"com.example.driver.UserClient\";`"));
                        service = Some((String::new(), *span));
                    } else {
                        if let Some(why) = crate::names::not_a_cpp_class_name(value) {
                            // Not an error: a Mac finds a service by its
                            // IOUserClass, but nothing stops a schema from
                            // naming another registry property.
                            self.diags.push(
                                Diagnostic::warning(*span, format!("the service name {value:?} cannot be a C++ class name: {why}"))
                                    .label("names the dext's IOUserClass")
                                    .help("a client finds a dext's service by its IOUserClass, the C++ class in Info.plist; name that class, e.g. `service \"NullDriver\";`"),
                            );
                        }
                        service = Some((value.clone(), *span));
                    }
                }
                Item::Version { value } => {
                    let here = span(value);
                    if let Some((_, first)) = &version {
                        self.error(
                            Diagnostic::error(here, "the version is given twice")
                                .label("second")
                                .related(*first, "first")
                                .help("keep one `version N;`"),
                        );
                    } else if let Ok(v) = value.base10_parse::<u32>() {
                        version = Some((v, here));
                    } else {
                        self.error(
                            Diagnostic::error(
                                here,
                                "the version must be an integer from 0 to 4294967295",
                            )
                            .label("not a u32")
                            .help("write e.g. `version 1;`"),
                        );
                        version = Some((0, here));
                    }
                }
                Item::Const(c) => {
                    self.no_attrs(&c.attrs, &[]);
                    let named = self.name(&c.name, "constant", Case::Screaming);
                    self.global(&c.name, "constant", Case::Screaming);
                    let ty = self.int_type(&c.ty, "a constant");
                    let value = self.eval(&c.value);
                    // Until proven good, later uses of the name fail silently:
                    // its own error is the one worth reading.
                    self.consts.entry(c.name.text.clone()).or_insert(None);
                    if let (Some(ty), Some(value), true) = (ty, value, named) {
                        if !ty.contains(value) {
                            self.error(
                                Diagnostic::error(
                                    span(&c.value),
                                    format!(
                                        "{value} does not fit the constant's type `{}`",
                                        ty.rust()
                                    ),
                                )
                                .label(format!("outside {}..={}", ty.min(), ty.max()))
                                .help("give the constant a wider type, e.g. `u64`"),
                            );
                        } else {
                            self.consts.insert(c.name.text.clone(), Some(value));
                            consts.push(Const {
                                name: c.name.text.clone(),
                                docs: Self::docs(&c.attrs),
                                ty,
                                value,
                                span: c.name.span,
                            });
                        }
                    }
                }
                Item::Enum(e) => {
                    self.name(&e.name, "enum", Case::UpperCamel);
                    self.global(&e.name, "enum", Case::UpperCamel);
                    self.enum_index.entry(e.name.text.clone()).or_insert(n_enums);
                    n_enums += 1;
                }
                Item::Struct(s) => {
                    self.name(&s.name, "struct", Case::UpperCamel);
                    self.global(&s.name, "struct", Case::UpperCamel);
                    self.struct_index.entry(s.name.text.clone()).or_insert(n_structs);
                    n_structs += 1;
                }
                _ => {}
            }
        }
        if service.is_none() {
            self.error(
                Diagnostic::error(file.head, format!("interface `{}` has no service name", file.name.text))
                    .label("needs `service \"…\";`")
                    .help("add `service \"com.example.driver.UserClient\";`: the IOService name the client matches"),
            );
        }
        if version.is_none() {
            self.error(
                Diagnostic::error(
                    file.head,
                    format!("interface `{}` has no version", file.name.text),
                )
                .label("needs `version N;`")
                .help("add `version 1;`"),
            );
        }

        // Pass 2: enums, then struct fields, then layouts.
        let enums: Vec<Enum> = file
            .items
            .iter()
            .filter_map(|i| if let Item::Enum(e) = i { Some(self.enum_(e)) } else { None })
            .collect();
        let (fields, complete): (Vec<Vec<(Field, Span)>>, Vec<bool>) = file
            .items
            .iter()
            .filter_map(|i| if let Item::Struct(s) = i { Some(self.fields(s)) } else { None })
            .unzip();
        let struct_items: Vec<&syntax::Struct> = file
            .items
            .iter()
            .filter_map(|i| if let Item::Struct(s) = i { Some(s) } else { None })
            .collect();
        let structs: Vec<Struct> = struct_items
            .iter()
            .zip(&fields)
            .map(|(s, f)| Struct {
                name: s.name.text.clone(),
                docs: Self::docs(&s.attrs),
                fields: f.iter().map(|(f, _)| f.clone()).collect(),
                size: 0,
                align: 1,
                span: s.name.span,
            })
            .collect();
        let mut lx = Layouts {
            state: vec![0u8; structs.len()],
            broken: complete.iter().map(|c| !c).collect(),
            structs,
            enums: &enums,
            fields: &fields,
            items: &struct_items,
        };
        for i in 0..lx.structs.len() {
            self.layout(i, &mut lx);
        }
        let structs = lx.structs;

        let mut iface = Interface {
            name: file.name.text.clone(),
            docs: Self::docs(&file.attrs),
            service: service.map(|s| s.0).unwrap_or_default(),
            version: version.map_or(0, |v| v.0),
            consts,
            enums,
            structs,
            memories: Vec::new(),
            methods: Vec::new(),
            reserved: Vec::new(),
            fingerprint: 0,
        };

        // Pass 3: memory types, reserved selectors, methods.
        let mut selectors: HashMap<u32, (Span, bool)> = HashMap::new();
        for item in &file.items {
            if let Item::Reserved { attrs, selector } = item {
                self.no_attrs(attrs, &[]);
                let here = span(selector);
                if let Some(sel) = self.selector(selector) {
                    if let Some((first, _)) = selectors.get(&sel) {
                        self.error(
                            Diagnostic::error(here, format!("selector {sel} is reserved twice"))
                                .label("second")
                                .related(*first, "first")
                                .help("remove one of them"),
                        );
                    } else {
                        selectors.insert(sel, (here, true));
                        iface.reserved.push(Reserved {
                            selector: sel,
                            docs: Self::docs(attrs),
                            span: here,
                        });
                    }
                }
            }
        }
        let mut memory_ids: HashMap<u32, Span> = HashMap::new();
        let mut memory_names: HashMap<String, (Span, String)> = HashMap::new();
        let mut method_names: HashMap<String, (Span, String)> = HashMap::new();
        for item in &file.items {
            match item {
                Item::Memory(m) => {
                    if let Some(memory) = self.memory(m, &mut memory_ids, &mut memory_names) {
                        iface.memories.push(memory);
                    }
                }
                Item::Method(m) => {
                    let selector = self.selector(&m.selector);
                    if let Some(sel) = selector {
                        match selectors.get(&sel) {
                            Some((first, true)) => {
                                let first = *first;
                                self.error(
                                    Diagnostic::error(span(&m.selector), format!("selector {sel} is reserved and may never be reused"))
                                        .label("reuses a retired selector")
                                        .related(first, "retired here")
                                        .help(format!("shipped apps may still send {sel} with the old arguments; give `{}` a new selector", m.name.text)),
                                );
                            }
                            Some((first, false)) => {
                                let first = *first;
                                self.error(
                                    Diagnostic::error(span(&m.selector), format!("selector {sel} is used twice"))
                                        .label("second use")
                                        .related(first, "first used here")
                                        .help("every method needs its own selector; selectors are stable, so pick an unused one"),
                                );
                            }
                            None => {
                                selectors.insert(sel, (span(&m.selector), false));
                            }
                        }
                    }
                    if self.name(&m.name, "method", Case::Snake) {
                        let cpp = names::upper_camel(&m.name.text);
                        if let Some((first, other)) = method_names.get(&cpp) {
                            let (first, other) = (*first, other.clone());
                            let msg = if other == m.name.text {
                                format!("the method name `{}` is used twice", m.name.text)
                            } else {
                                format!(
                                    "methods `{other}` and `{}` both become `{cpp}` in C++",
                                    m.name.text
                                )
                            };
                            self.error(
                                Diagnostic::error(m.name.span, msg)
                                    .label("second")
                                    .related(first, "first")
                                    .help("give one of them another name"),
                            );
                        } else {
                            method_names.insert(cpp, (m.name.span, m.name.text.clone()));
                        }
                    }
                    if let Some(method) = self.method(m, selector.unwrap_or(0), &iface)
                        && selector.is_some()
                    {
                        iface.methods.push(method);
                    }
                }
                _ => {}
            }
        }
        if iface.methods.is_empty() && !self.diags.iter().any(Diagnostic::is_error) {
            self.error(
                Diagnostic::error(
                    file.head,
                    format!("interface `{}` declares no methods", file.name.text),
                )
                .label("empty interface")
                .help("declare at least one external method, e.g. `0 => fn ping();`"),
            );
        }
        // The C++ header defines a handler, a thunk and maybe a completion
        // sender per method, and the Rust module output, completion and
        // completer types, next to the schema's types.
        for m in &iface.methods {
            let camel = names::upper_camel(&m.name);
            let mut generated = vec![
                (format!("Handle{camel}"), "handler"),
                (format!("StaticHandle{camel}"), "thunk"),
                (format!("{camel}Output"), "output struct"),
            ];
            if m.is_async {
                generated.push((format!("Complete{camel}"), "completion sender"));
                generated.push((format!("{camel}Completion"), "completion struct"));
                generated.push((format!("{camel}Completer"), "completer"));
            }
            for (name, what) in generated {
                if let Some(&at) = self.globals.get(&name) {
                    self.error(
                        Diagnostic::error(at, format!("`{name}` collides with the {what} the C++ header generates for `{}`", m.name))
                            .label("defined by the generated header too")
                            .related(m.span, "the method")
                            .help(format!("rename it, e.g. `{name}Info`")),
                    );
                }
            }
        }
        iface.methods.sort_by_key(|m| m.selector);
        iface.reserved.sort_by_key(|r| r.selector);
        iface.memories.sort_by_key(|m| m.id);
        if let Some(last) = iface.methods.last()
            && last.selector >= 1024
        {
            self.diags.push(
                    Diagnostic::warning(last.span, format!("the dispatch table will have {} entries", last.selector as u64 + 1))
                        .label("the highest selector sizes the table")
                        .help("DriverKit dispatch tables are arrays indexed by selector; number methods densely from 0"),
                );
        }
        iface.fingerprint = fingerprint::fingerprint(&iface);
        iface
    }

    fn enum_(&mut self, e: &syntax::Enum) -> Enum {
        self.no_attrs(&e.attrs, &[]);
        let repr = match &e.repr {
            Some(ty) => self.int_type(ty, "an enum's representation").unwrap_or(IntType::U32),
            None => {
                self.error(
                    Diagnostic::error(
                        e.name.span,
                        format!("enum `{}` has no integer representation", e.name.text),
                    )
                    .label("needs `: u32` (or another integer type)")
                    .help(format!("write `enum {}: u32 {{ … }}`", e.name.text)),
                );
                IntType::U32
            }
        };
        if e.variants.is_empty() {
            self.error(
                Diagnostic::error(e.brace, format!("enum `{}` has no variants", e.name.text))
                    .label("empty")
                    .help("add at least one variant: `Idle = 0`"),
            );
        }
        let mut seen_names: HashMap<String, Span> = HashMap::new();
        let mut seen_values: HashMap<i128, (Span, String)> = HashMap::new();
        let mut variants = Vec::new();
        for v in &e.variants {
            self.no_attrs(&v.attrs, &[]);
            self.name(&v.name, "variant", Case::UpperCamel);
            if let Some(first) = seen_names.insert(v.name.text.clone(), v.name.span) {
                self.error(
                    Diagnostic::error(
                        v.name.span,
                        format!("variant `{}` is defined twice", v.name.text),
                    )
                    .label("second")
                    .related(first, "first")
                    .help("rename or remove one"),
                );
            }
            let Some(expr) = &v.value else {
                self.error(
                    Diagnostic::error(
                        v.name.span,
                        format!("variant `{}` has no explicit value", v.name.text),
                    )
                    .label("needs `= N`")
                    .help(format!(
                        "values cross the wire, so they are always explicit: write `{} = {}`",
                        v.name.text,
                        variants.len()
                    )),
                );
                continue;
            };
            let Some(value) = self.eval(expr) else { continue };
            if !repr.contains(value) {
                self.error(
                    Diagnostic::error(
                        span(expr),
                        format!(
                            "{value} does not fit `{}`, the representation of `{}`",
                            repr.rust(),
                            e.name.text
                        ),
                    )
                    .label(format!("outside {}..={}", repr.min(), repr.max()))
                    .help("pick a value in range or a wider representation"),
                );
                continue;
            }
            if let Some((first, other)) = seen_values.get(&value) {
                let first = *first;
                self.error(
                    Diagnostic::error(
                        span(expr),
                        format!(
                            "variants `{other}` and `{}` have the same value {value}",
                            v.name.text
                        ),
                    )
                    .label("duplicate value")
                    .related(first, "first")
                    .help("every variant needs its own value"),
                );
                continue;
            }
            seen_values.insert(value, (span(expr), v.name.text.clone()));
            variants.push(Variant { name: v.name.text.clone(), docs: Self::docs(&v.attrs), value });
        }
        Enum {
            name: e.name.text.clone(),
            docs: Self::docs(&e.attrs),
            repr,
            variants,
            span: e.name.span,
        }
    }

    /// Resolves a field, element or payload type.
    fn data_type(&mut self, ty: &Type) -> Option<DataType> {
        match ty {
            Type::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
                let name = p.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
                if let Some(t) = IntType::from_name(&name) {
                    Some(DataType::Int(t))
                } else if name == "bool" {
                    Some(DataType::Bool)
                } else if let Some(&i) = self.enum_index.get(&name) {
                    Some(DataType::Enum(i))
                } else if let Some(&i) = self.struct_index.get(&name) {
                    Some(DataType::Struct(i))
                } else {
                    let help = match name.as_str() {
                        "usize" | "isize" => "use a fixed-width integer: `u64` or `i64`".to_string(),
                        "f32" | "f64" => "floating point does not cross the DriverKit boundary; use a fixed-point integer".to_string(),
                        "u128" | "i128" => "the widest integer is 64 bits; use `[u64; 2]`".to_string(),
                        "char" | "String" | "str" => "use a byte array, e.g. `[u8; 32]`".to_string(),
                        _ => format!("declare it (`struct {name} {{ … }}` or `enum {name}: u32 {{ … }}`) or use u8…u64, i8…i64, bool"),
                    };
                    self.error(
                        Diagnostic::error(span(ty), format!("unknown type `{name}`"))
                            .label("not a schema type")
                            .help(help),
                    );
                    None
                }
            }
            Type::Array(a) => {
                let elem = self.data_type(&a.elem);
                if let Expr::Range(_) = &a.len {
                    self.error(
                        Diagnostic::error(
                            span(&a.len),
                            "only a method's structure input or output may have a variable length",
                        )
                        .label("bounded length")
                        .help("struct fields are fixed: give a length, e.g. `[u8; 64]`"),
                    );
                    return None;
                }
                let len = self.eval(&a.len)?;
                if len <= 0 {
                    self.error(
                        Diagnostic::error(span(&a.len), format!("array length {len} is empty"))
                            .label("must be at least 1")
                            .help("arrays have at least one element"),
                    );
                    return None;
                }
                let Ok(len) = u64::try_from(len) else {
                    self.error(
                        Diagnostic::error(span(&a.len), "array length overflows")
                            .label("more than 2^64 elements")
                            .help("shrink the array; a shared struct is smaller than 4 GiB"),
                    );
                    return None;
                };
                Some(DataType::Array(Box::new(elem?), len))
            }
            Type::Paren(p) => self.data_type(&p.elem),
            Type::Reference(_) => {
                self.error(
                    Diagnostic::error(
                        span(ty),
                        "references are only for a method's structure input",
                    )
                    .label("not allowed here")
                    .help("remove the `&`"),
                );
                None
            }
            Type::Slice(_) => {
                self.error(
                    Diagnostic::error(
                        span(ty),
                        "unsized arrays are only for a method's structure output",
                    )
                    .label("not allowed here")
                    .help("give a length, e.g. `[u8; 64]`"),
                );
                None
            }
            _ => {
                self.error(
                    Diagnostic::error(span(ty), "this is not a schema type")
                        .label("unsupported")
                        .help("use an integer, bool, enum, struct or `[T; N]`"),
                );
                None
            }
        }
    }

    /// A struct's fields with resolved types; the flag says whether every
    /// field resolved (if not, its layout errors would only be echoes).
    fn fields(&mut self, s: &syntax::Struct) -> (Vec<(Field, Span)>, bool) {
        self.no_attrs(&s.attrs, &[]);
        let mut seen: HashMap<String, Span> = HashMap::new();
        let mut out = Vec::new();
        for f in &s.fields {
            self.no_attrs(&f.attrs, &[]);
            self.name(&f.name, "field", Case::Snake);
            if let Some(first) = seen.insert(f.name.text.clone(), f.name.span) {
                self.error(
                    Diagnostic::error(
                        f.name.span,
                        format!("field `{}` is defined twice in `{}`", f.name.text, s.name.text),
                    )
                    .label("second")
                    .related(first, "first")
                    .help("rename one of them"),
                );
                continue;
            }
            if let Some(ty) = self.data_type(&f.ty) {
                out.push((
                    Field { name: f.name.text.clone(), docs: Self::docs(&f.attrs), ty, offset: 0 },
                    f.name.span,
                ));
            }
        }
        if s.fields.is_empty() {
            self.error(
                Diagnostic::error(s.brace, format!("struct `{}` has no fields", s.name.text))
                    .label("empty")
                    .help("C and C++ disagree on empty structs; add a field"),
            );
        }
        let complete = out.len() == s.fields.len();
        (out, complete)
    }

    /// Computes the C layout of struct `i` (and of the structs it contains),
    /// reporting implicit padding and cycles.
    fn layout(&mut self, i: usize, lx: &mut Layouts<'_>) {
        let (enums, fields, items) = (lx.enums, lx.fields, lx.items);
        match lx.state[i] {
            2 => return,
            1 => {
                lx.broken[i] = true;
                self.error(
                    Diagnostic::error(items[i].name.span, format!("struct `{}` contains itself", items[i].name.text))
                        .label("recursive")
                        .help("a shared struct has a fixed size; break the cycle with an index or offset field"),
                );
                lx.structs[i].size = 1;
                lx.state[i] = 2;
                return;
            }
            _ => lx.state[i] = 1,
        }
        fn contained(ty: &DataType) -> Option<usize> {
            match ty {
                DataType::Struct(j) => Some(*j),
                DataType::Array(e, _) => contained(e),
                _ => None,
            }
        }
        for (f, _) in &fields[i] {
            if let Some(j) = contained(&f.ty) {
                self.layout(j, lx);
                lx.broken[i] |= lx.broken[j];
            }
        }
        let layout_of = |ty: &DataType| -> (u64, u64) {
            fn go(ty: &DataType, structs: &[Struct], enums: &[Enum]) -> (u64, u64) {
                match ty {
                    DataType::Int(t) => (t.size(), t.size()),
                    DataType::Bool => (1, 1),
                    DataType::Enum(e) => (enums[*e].repr.size(), enums[*e].repr.size()),
                    DataType::Struct(s) => (structs[*s].size, structs[*s].align),
                    DataType::Array(e, n) => {
                        let (size, align) = go(e, structs, enums);
                        (size.saturating_mul(*n), align)
                    }
                }
            }
            go(ty, &lx.structs, enums)
        };
        let mut offset: u64 = 0;
        let mut align: u64 = 1;
        let mut pad_index = 0;
        let mut laid = Vec::new();
        for (f, fspan) in &fields[i] {
            let (size, falign) = layout_of(&f.ty);
            let aligned = align_up(offset, falign);
            if aligned != offset && !lx.broken[i] {
                let gap = aligned - offset;
                self.error(
                    Diagnostic::error(*fspan, format!("struct `{}` has {gap} byte{} of implicit padding before `{}`", items[i].name.text, if gap == 1 { "" } else { "s" }, f.name))
                        .label(format!("`{}` needs {falign}-byte alignment, but would start at offset {offset}", f.name))
                        .help(format!("shared structs carry no hidden bytes; add `_pad{pad_index}: [u8; {gap}],` before `{}`, or reorder the fields", f.name)),
                );
                pad_index += 1;
            }
            align = align.max(falign);
            let mut f = f.clone();
            f.offset = aligned;
            laid.push(f);
            offset = aligned.saturating_add(size);
        }
        let size = align_up(offset, align);
        if size != offset && !fields[i].is_empty() && !lx.broken[i] {
            let gap = size - offset;
            self.error(
                Diagnostic::error(
                    items[i].name.span,
                    format!(
                        "struct `{}` has {gap} byte{} of implicit padding at the end",
                        items[i].name.text,
                        if gap == 1 { "" } else { "s" }
                    ),
                )
                .label(format!("its size {offset} is not a multiple of its alignment {align}"))
                .help(format!("add `_pad{pad_index}: [u8; {gap}],` as the last field")),
            );
        }
        if size >= u64::from(u32::MAX) && !lx.broken[i] {
            self.error(
                Diagnostic::error(
                    items[i].name.span,
                    format!("struct `{}` is {size} bytes, too large to share", items[i].name.text),
                )
                .label("4 GiB or more")
                .help("DriverKit's structure sizes are 32-bit"),
            );
        }
        lx.structs[i].fields = laid;
        lx.structs[i].size = size.max(1);
        lx.structs[i].align = align;
        lx.state[i] = 2;
    }

    fn memory(
        &mut self,
        m: &syntax::Memory,
        ids: &mut HashMap<u32, Span>,
        names_seen: &mut HashMap<String, (Span, String)>,
    ) -> Option<Memory> {
        self.no_attrs(&m.attrs, &[]);
        let id_span = span(&m.id);
        let id = match m.id.base10_parse::<u32>() {
            Ok(id) if m.id.suffix().is_empty() => Some(id),
            _ => {
                self.error(Diagnostic::error(id_span, "a memory type id is an integer from 0 to 4294967295").label("not a u32").help("IOConnectMapMemory64 takes a `uint32_t` memoryType: write e.g. `memory 0 staging: …`"));
                None
            }
        };
        if let Some(id) = id
            && let Some(first) = ids.insert(id, id_span)
        {
            self.error(
                Diagnostic::error(id_span, format!("memory type {id} is declared twice"))
                    .label("second")
                    .related(first, "first")
                    .help("give each memory type its own id"),
            );
        }
        let named = self.name(&m.name, "memory type", Case::Snake);
        if named {
            // Keyed by the C++ name, which `crc32` and `crc_32` share.
            let cpp = names::upper_camel(&m.name.text);
            if let Some((first, other)) = names_seen.get(&cpp).cloned() {
                let msg = if other == m.name.text {
                    (
                        format!("memory type `{}` is declared twice", m.name.text),
                        "rename one of them",
                    )
                } else {
                    (
                        format!(
                            "memory types `{other}` and `{}` both become `{cpp}` in C++",
                            m.name.text
                        ),
                        "give one of them another name",
                    )
                };
                self.error(
                    Diagnostic::error(m.name.span, msg.0)
                        .label("second")
                        .related(first, "first")
                        .help(msg.1),
                );
            } else {
                names_seen.insert(cpp, (m.name.span, m.name.text.clone()));
            }
        }
        let access = match m.access.text.as_str() {
            "read_only" => Some(Access::ReadOnly),
            "read_write" => Some(Access::ReadWrite),
            other => {
                self.error(
                    Diagnostic::error(m.access.span, format!("unknown memory access `{other}`"))
                        .label("not an access mode")
                        .help("write `read_only` or `read_write`"),
                );
                None
            }
        };
        let size = match &m.ty {
            Type::Array(a)
                if matches!(&*a.elem, Type::Path(p) if p.path.is_ident("u8"))
                    && !matches!(a.len, Expr::Range(_)) =>
            {
                let len = self.eval(&a.len)?;
                if len <= 0 {
                    self.error(
                        Diagnostic::error(span(&a.len), format!("memory type size {len} is empty"))
                            .label("must be at least 1 byte")
                            .help("give the size in bytes, e.g. `[u8; 4096]`"),
                    );
                    return None;
                }
                u64::try_from(len).ok()
            }
            other => {
                self.error(Diagnostic::error(span(other), "a memory type is a byte array of fixed size").label("not `[u8; N]`").help("write e.g. `[u8; SLOT_COUNT * SLOT_SIZE]`; views of structs at offsets come from the client's mapping"));
                None
            }
        };
        Some(Memory {
            id: id?,
            name: m.name.text.clone(),
            docs: Self::docs(&m.attrs),
            size: size?,
            access: access?,
            span: m.name.span,
        })
    }

    fn scalar_type(&mut self, ty: &Type) -> Option<ScalarType> {
        match self.data_type(ty)? {
            DataType::Int(t) => Some(ScalarType::Int(t)),
            DataType::Bool => Some(ScalarType::Bool),
            DataType::Enum(i) => Some(ScalarType::Enum(i)),
            DataType::Struct(_) | DataType::Array(..) => None,
        }
    }

    /// A scalar parameter, output or completion value.
    fn scalar(&mut self, p: &syntax::Param, allow_range: bool) -> Option<Scalar> {
        self.no_attrs(&p.attrs, &[]);
        let ty = self.scalar_type(&p.ty)?;
        let range = match (&p.range, allow_range) {
            (None, _) => None,
            (Some(expr), false) => {
                self.error(Diagnostic::error(span(expr), "ranges apply to scalar inputs only").label("not checked here").help("remove `in …`; outputs and completion values are whatever the dext sends"));
                None
            }
            (Some(expr), true) => self.range(p, expr, ty),
        };
        Some(Scalar {
            name: p.name.text.clone(),
            docs: Self::docs(&p.attrs),
            ty,
            range,
            span: p.name.span,
        })
    }

    fn range(&mut self, p: &syntax::Param, expr: &Expr, ty: ScalarType) -> Option<(i128, i128)> {
        let ScalarType::Int(int) = ty else {
            self.error(
                Diagnostic::error(span(expr), "only integer scalars take a range")
                    .label("bool and enum values are checked against their type")
                    .help("remove `in …`"),
            );
            return None;
        };
        let Expr::Range(r) = expr else {
            self.error(
                Diagnostic::error(span(expr), "expected a range")
                    .label("not `A..B` or `A..=B`")
                    .help("write e.g. `in 0..SLOT_COUNT` or `in 1..=SLOT_SIZE`"),
            );
            return None;
        };
        let inclusive = matches!(r.limits, syn::RangeLimits::Closed(_));
        let lo = match &r.start {
            Some(e) => self.eval(e)?,
            None => int.min(),
        };
        let hi = match &r.end {
            Some(e) => {
                let v = self.eval(e)?;
                if inclusive {
                    v
                } else {
                    let Some(v) = v.checked_sub(1) else {
                        self.error(
                            Diagnostic::error(
                                span(expr),
                                format!("the range of `{}` is empty", p.name.text),
                            )
                            .label("nothing lies below its end")
                            .help("raise the end of the range"),
                        );
                        return None;
                    };
                    v
                }
            }
            None => int.max(),
        };
        if lo > hi {
            self.error(
                Diagnostic::error(span(expr), format!("the range of `{}` is empty", p.name.text))
                    .label(format!("no value lies in {lo}..={hi}"))
                    .help("the lower bound must not exceed the upper one (`A..B` excludes B)"),
            );
            return None;
        }
        if !int.contains(lo) || !int.contains(hi) {
            self.error(
                Diagnostic::error(
                    span(expr),
                    format!(
                        "the range {lo}..={hi} does not fit `{}`, the type of `{}`",
                        int.rust(),
                        p.name.text
                    ),
                )
                .label(format!("`{}` holds {}..={}", int.rust(), int.min(), int.max()))
                .help("narrow the range or widen the parameter's type"),
            );
            return None;
        }
        // A range that admits every value of the type checks nothing: store none,
        // so that `x: u8` and `x: u8 in 0..=255` are the same ABI.
        if (lo, hi) == (int.min(), int.max()) {
            return None;
        }
        Some((lo, hi))
    }

    /// A structure input (`&T`) or output (`T`).
    fn struct_arg(&mut self, p: &syntax::Param, ty: &Type, output: bool) -> Option<StructArg> {
        self.no_attrs(&p.attrs, &[]);
        let what = if output { "output" } else { "input" };
        if let Some(expr) = &p.range {
            self.error(
                Diagnostic::error(span(expr), "ranges apply to scalar inputs only")
                    .label("not checked here")
                    .help("remove `in …`"),
            );
        }
        let too_big = |size: u64| size >= u64::from(VARIABLE);
        let shape = match ty {
            Type::Path(_) => match self.data_type(ty)? {
                DataType::Struct(i) => StructShape::Struct(i),
                _ if output => return None,
                _ => {
                    self.error(
                        Diagnostic::error(
                            span(&p.ty),
                            format!(
                                "`{}` is a scalar, and scalars are passed by value",
                                p.name.text
                            ),
                        )
                        .label("behind `&`")
                        .help(format!(
                            "write `{}: {}`",
                            p.name.text,
                            type_text(ty)
                        )),
                    );
                    return None;
                }
            },
            Type::Array(a) if matches!(&*a.elem, Type::Path(e) if e.path.is_ident("u8")) => {
                match &a.len {
                    Expr::Range(r) => {
                        let inclusive = matches!(r.limits, syn::RangeLimits::Closed(_));
                        let min = match &r.start {
                            Some(e) => self.eval(e)?,
                            None => 0,
                        };
                        let Some(end) = &r.end else {
                            self.error(
                                Diagnostic::error(
                                    span(&a.len),
                                    format!(
                                        "the structure {what} `{}` has no upper bound",
                                        p.name.text
                                    ),
                                )
                                .label("unbounded")
                                .help("write `[u8; ..=N]`"),
                            );
                            return None;
                        };
                        let Some(max) = self.eval(end)?.checked_sub(if inclusive { 0 } else { 1 })
                        else {
                            self.error(
                                Diagnostic::error(
                                    span(&a.len),
                                    format!("the length bounds of `{}` are empty", p.name.text),
                                )
                                .label("nothing lies below its end")
                                .help("write e.g. `[u8; ..=4096]`"),
                            );
                            return None;
                        };
                        if min < 0 || min > max {
                            self.error(
                                Diagnostic::error(
                                    span(&a.len),
                                    format!("the length bounds of `{}` are empty", p.name.text),
                                )
                                .label(format!("no length lies in {min}..={max}"))
                                .help("write e.g. `[u8; ..=4096]` or `[u8; 1..=4096]`"),
                            );
                            return None;
                        }
                        if too_big(max as u64) || max > i128::from(u32::MAX) {
                            self.error(
                            Diagnostic::error(span(&a.len), format!("the bound {max} of `{}` is too large for DriverKit", p.name.text))
                                .label("4 GiB or more")
                                .help("structure sizes are 32-bit and 0xffffffff means \"variable\": keep the bound below 4294967295"),
                        );
                            return None;
                        }
                        StructShape::Bounded { min: min as u64, max: max as u64 }
                    }
                    len => {
                        let n = self.eval(len)?;
                        if n <= 0 {
                            self.error(
                                Diagnostic::error(
                                    span(len),
                                    format!("the structure {what} `{}` is empty", p.name.text),
                                )
                                .label(format!("length {n}"))
                                .help("give at least one byte, or drop the parameter"),
                            );
                            return None;
                        }
                        StructShape::Bytes(u64::try_from(n).unwrap_or(u64::MAX))
                    }
                }
            }
            Type::Array(_) => {
                self.error(
                    Diagnostic::error(
                        span(ty),
                        format!("a structure {what} is a struct or a byte array"),
                    )
                    .label("array of another type")
                    .help("use `[u8; N]`, or wrap the array in a struct"),
                );
                return None;
            }
            Type::Slice(s) if matches!(&*s.elem, Type::Path(e) if e.path.is_ident("u8")) => {
                if output {
                    StructShape::Variable
                } else {
                    self.error(
                        Diagnostic::error(span(ty), format!("the structure input `{}` has no bound", p.name.text))
                            .label("unbounded input")
                            .help("every input arriving at the dext is bounded: write `&[u8; ..=65536]` (any length up to 65536)"),
                    );
                    return None;
                }
            }
            _ => {
                self.error(
                    Diagnostic::error(span(ty), format!("this is not a structure {what} type"))
                        .label("unsupported")
                        .help("use a struct name, `[u8; N]`, `[u8; ..=N]` or, for outputs, `[u8]`"),
                );
                return None;
            }
        };
        // A struct's size is checked in `method`, once layouts are known.
        if let StructShape::Bytes(size) = shape
            && too_big(size)
        {
            self.error(
                    Diagnostic::error(span(ty), format!("the structure {what} `{}` is {size} bytes, more than DriverKit can take", p.name.text))
                        .label("4 GiB or more")
                        .help("dispatch checks are 32-bit and 0xffffffff means \"variable\" (docs/driverkit.md §1, §2.2-7); share it through a memory type instead"),
                );
            return None;
        }
        if let StructShape::Bounded { max, .. } = shape {
            if output && max > INBAND_STRUCT_MAX {
                self.error(
                    Diagnostic::error(span(ty), format!("the bounded output `{}` can exceed 4096 bytes, and DriverKit cannot return a shorter length out of line", p.name.text))
                        .label(format!("up to {max} bytes"))
                        .help("outputs over 4096 bytes go through a descriptor whose length always comes back in full (docs/driverkit.md §3.3-2): write `[u8]` for a variable output, a fixed `[u8; N]`, or keep the bound at 4096"),
                );
                return None;
            }
            if !output && max > INBAND_STRUCT_MAX {
                self.diags.push(
                    Diagnostic::warning(span(ty), format!("calls with more than 4096 bytes of `{}` travel out of line", p.name.text))
                        .label(format!("up to {max} bytes"))
                        .help("inputs over 4096 bytes reach the dext as a memory descriptor it must map (docs/driverkit.md §3.1-1, §3.2-5); the generated thunk does this, at the cost of a mapping per call"),
                );
            }
        }
        Some(StructArg {
            name: p.name.text.clone(),
            docs: Self::docs(&p.attrs),
            shape,
            span: p.name.span,
        })
    }

    fn method(&mut self, m: &syntax::Method, selector: u32, iface: &Interface) -> Option<Method> {
        self.no_attrs(&m.attrs, &["unchecked", "completion"]);
        let mut unchecked = false;
        let mut completion_check = if m.is_async.is_some() {
            CompletionCheck::Required
        } else {
            CompletionCheck::Forbidden
        };
        for attr in &m.attrs.attrs {
            match (attr.name.as_str(), attr.args.as_deref()) {
                ("unchecked", None) => unchecked = true,
                ("completion", Some("any")) => completion_check = CompletionCheck::Any,
                ("unchecked", Some(_)) => self.error(Diagnostic::error(attr.span, "`#[unchecked]` takes no arguments").label("here").help("write `#[unchecked]`")),
                ("completion", _) => self.error(Diagnostic::error(attr.span, "the completion check is either implied or `any`").label("unknown form").help("write `#[completion(any)]` to accept calls with or without a completion (checkCompletionExists = -1U)")),
                _ => {}
            }
        }
        if let (Some((cspan, _)), None) = (&m.completion, m.is_async) {
            self.error(
                Diagnostic::error(
                    *cspan,
                    format!("`{}` is synchronous but declares a completion", m.name.text),
                )
                .label("only async methods complete later")
                .help(format!("write `{selector} => async fn {}(…)`", m.name.text)),
            );
        }

        let mut scalar_inputs = Vec::new();
        let mut struct_input: Option<StructArg> = None;
        let mut seen: HashMap<String, Span> = HashMap::new();
        for p in &m.inputs {
            self.param_name(p, &mut seen, "parameter");
            match &p.ty {
                Type::Reference(r) => {
                    if r.mutability.is_some() {
                        self.error(
                            Diagnostic::error(span(&p.ty), "structure inputs are read-only")
                                .label("`&mut`")
                                .help("write `&` (outputs go after `->`)"),
                        );
                        continue;
                    }
                    let Some(arg) = self.struct_arg(p, &r.elem, false) else { continue };
                    if let Some(first) = &struct_input {
                        self.error(
                            Diagnostic::error(p.name.span, format!("`{}` has a second structure input", m.name.text))
                                .label("second")
                                .related(first.span, "first")
                                .help("DriverKit carries one structure input per call: put both in one struct"),
                        );
                    } else {
                        struct_input = Some(arg);
                    }
                }
                ty if self.is_struct_like(ty) => {
                    self.error(
                        Diagnostic::error(
                            span(ty),
                            format!(
                                "the structure input `{}` must be passed by reference",
                                p.name.text
                            ),
                        )
                        .label("by value")
                        .help(format!(
                            "write `{}: &{}`",
                            p.name.text,
                            type_text(ty)
                        )),
                    );
                }
                _ => {
                    if let Some(s) = self.scalar(p, true) {
                        scalar_inputs.push(s);
                    }
                }
            }
        }
        let mut scalar_outputs = Vec::new();
        let mut struct_output: Option<StructArg> = None;
        // Inputs and outputs are parameters of one C++ handler: one namespace.
        for p in &m.outputs {
            self.param_name(p, &mut seen, "output");
            match &p.ty {
                Type::Reference(r) => {
                    self.error(
                        Diagnostic::error(span(&p.ty), "outputs are written without `&`")
                            .label("reference")
                            .help(format!("write `{}: {}`", p.name.text, type_text(&r.elem))),
                    );
                }
                ty if self.is_struct_like(ty) => {
                    let Some(arg) = self.struct_arg(p, ty, true) else { continue };
                    if let Some(first) = &struct_output {
                        self.error(
                            Diagnostic::error(p.name.span, format!("`{}` has a second structure output", m.name.text))
                                .label("second")
                                .related(first.span, "first")
                                .help("DriverKit returns one structure output per call: put both in one struct"),
                        );
                    } else {
                        struct_output = Some(arg);
                    }
                }
                _ => {
                    if let Some(s) = self.scalar(p, false) {
                        scalar_outputs.push(s);
                    }
                }
            }
        }
        // A bounded argument `x` brings a `x_length` parameter to the handler.
        for arg in [&struct_input, &struct_output].into_iter().flatten() {
            if !matches!(arg.shape, StructShape::Bounded { .. }) {
                continue;
            }
            let length = format!("{}_length", arg.name);
            if let Some(&at) = seen.get(&length) {
                self.error(
                    Diagnostic::error(
                        at,
                        format!(
                            "`{length}` collides with the length of the bounded argument `{}`",
                            arg.name
                        ),
                    )
                    .label("the C++ handler already has this parameter")
                    .related(arg.span, "its length is passed as `{length}`")
                    .help(format!("rename it, e.g. `{}_size`", arg.name)),
                );
            }
        }
        // IOConnectCallAsyncMethod has no var-output form (IOKitLib.c
        // 1904-1982 offers only inline and out-of-line buffers).
        if let (Some(_), Some(arg)) = (m.is_async, &struct_output)
            && arg.shape == StructShape::Variable
        {
            self.error(
                Diagnostic::error(arg.span, format!("the async method `{}` cannot return a variable-size output", m.name.text))
                    .label("`[u8]` output on an async method")
                    .help("IOConnectCallAsyncMethod has no variable-output form: give it a bound (`[u8; ..=4096]`), or return the data from a synchronous method"),
            );
        }
        let mut completion = Vec::new();
        if let Some((_, params)) = &m.completion {
            let mut seen: HashMap<String, Span> = HashMap::new();
            for p in params {
                self.param_name(p, &mut seen, "completion value");
                if self.is_struct_like(&p.ty) || matches!(p.ty, Type::Reference(_)) {
                    self.error(
                        Diagnostic::error(span(&p.ty), "completions carry scalars only")
                            .label("not a scalar")
                            .help("AsyncCompletion sends up to 16 64-bit values (docs/driverkit.md §4.1); return large data through a memory type"),
                    );
                    continue;
                }
                if let Some(s) = self.scalar(p, false) {
                    completion.push(s);
                }
            }
        }
        for (list, what, limit_help) in [
            (
                &scalar_inputs,
                "scalar inputs",
                "DriverKit carries at most 16 scalars in (docs/driverkit.md §1, limit 2): move some into a structure input",
            ),
            (
                &scalar_outputs,
                "scalar outputs",
                "DriverKit carries at most 16 scalars out (docs/driverkit.md §1, limit 2): return a struct instead",
            ),
            (
                &completion,
                "completion values",
                "AsyncCompletion carries at most 16 values; more are silently dropped (docs/driverkit.md §4.1-3): send the rest through a memory type",
            ),
        ] {
            if list.len() > SCALAR_MAX {
                let extra = &list[SCALAR_MAX];
                self.error(
                    Diagnostic::error(
                        extra.span,
                        format!("`{}` has {} {what}, more than 16", m.name.text, list.len()),
                    )
                    .label("the 17th")
                    .help(limit_help),
                );
            }
        }
        // Fixed struct sizes were unknown inside `struct_arg`; check them now.
        for (arg, what) in [(&struct_input, "input"), (&struct_output, "output")] {
            if let Some(StructArg { shape: StructShape::Struct(i), span, name, .. }) = arg {
                let size = iface.structs[*i].size;
                if size >= u64::from(VARIABLE) {
                    self.error(Diagnostic::error(*span, format!("the structure {what} `{name}` is {size} bytes, more than DriverKit can take")).label("4 GiB or more").help("share it through a memory type instead"));
                }
            }
        }
        Some(Method {
            selector,
            name: m.name.text.clone(),
            docs: Self::docs(&m.attrs),
            is_async: m.is_async.is_some(),
            unchecked,
            completion_check,
            scalar_inputs,
            struct_input,
            scalar_outputs,
            struct_output,
            completion,
            span: m.name.span,
        })
    }

    fn param_name(&mut self, p: &syntax::Param, seen: &mut HashMap<String, Span>, what: &str) {
        if names::GENERATED_PARAMS.contains(&p.name.text.as_str()) {
            self.error(
                Diagnostic::error(
                    p.name.span,
                    format!("`{}` is a parameter name the generated C++ uses itself", p.name.text),
                )
                .label("would clash in the dext's handler or completion signature")
                .help(format!(
                    "rename it, e.g. `{}_value`; reserved: {}",
                    p.name.text,
                    names::GENERATED_PARAMS.join(", ")
                )),
            );
            return;
        }
        if self.name(&p.name, what, Case::Snake)
            && let Some(first) = seen.insert(p.name.text.clone(), p.name.span)
        {
            self.error(
                Diagnostic::error(p.name.span, format!("{what} `{}` is named twice", p.name.text))
                    .label("second")
                    .related(first, "first")
                    .help("rename one of them"),
            );
        }
    }

    /// Whether a type is (or names) a struct or an array, as opposed to a scalar.
    fn is_struct_like(&self, ty: &Type) -> bool {
        match ty {
            Type::Array(_) | Type::Slice(_) => true,
            Type::Path(p) => {
                p.path.get_ident().is_some_and(|i| self.struct_index.contains_key(&i.to_string()))
            }
            Type::Paren(p) => self.is_struct_like(&p.elem),
            _ => false,
        }
    }
}

/// `offset` rounded up to a multiple of `align`, saturating: a struct that
/// large is reported as too large rather than overflowing.
fn align_up(offset: u64, align: u64) -> u64 {
    offset.checked_next_multiple_of(align.max(1)).unwrap_or(u64::MAX)
}

/// How an attribute is written in full, for hints.
fn attr_form(name: &str) -> &str {
    match name {
        "completion" => "completion(any)",
        other => other,
    }
}

/// A type as the user would write it (`[u8; 4]`, `ImageInfo`), for hints.
fn type_text(ty: &Type) -> String {
    use quote::ToTokens;
    let raw = ty.to_token_stream().to_string();
    raw.replace(" ;", ";").replace("[ ", "[").replace(" ]", "]").replace("& ", "&")
}
