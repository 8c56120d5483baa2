//! The Rust module the `dextlink::interface!` macro expands to, as source text.
//!
//! It lives here, beside the C++ emitter, so that both sides come from one
//! model (as cxx keeps its macro and its C++ generator on one parser): the
//! check values in `METHODS`, the struct layouts and the range checks are
//! computed once and written twice.
//!
//! Like the C++ emitter it writes text directly: the macro lexes the text
//! into tokens (`str::parse::<TokenStream>`), and `dextlink gen --rust`
//! prints it for people to read. The text is formatted as rustfmt formats it
//! (default configuration, edition 2024): statements and expressions are
//! written on one line and reflowed by the `layout` engine, which applies
//! rustfmt's own rules for the constructs used here. rustfmt's choices depend
//! on widths, not on names, so a statement's layout is found once per shape
//! and reused (see `Writer::form`): a schema's methods repeat the same few
//! statements.
//!
//! Generated code names the runtime as `::dextlink` and reaches zerocopy
//! through `::dextlink::__private`, so a user depends on `dextlink` alone.
//! Locals the generated methods introduce begin with `__`, so that they never
//! clash with the schema's parameter names.

use std::collections::HashMap;
use std::fmt::Write;
use std::hash::{BuildHasherDefault, Hasher};

use crate::emit::cpp;
use crate::model::*;
use crate::names::{snake, upper_camel};

use layout::Fmt;

/// Concatenates string pieces (and numbers): the emitter's templates,
/// several times faster than `format!` for what they do.
macro_rules! cat {
    ($($piece:expr),+ $(,)?) => {{
        let mut s = String::with_capacity(0 $(+ Piece::len_hint(&$piece))+);
        $(Piece::push_to(&$piece, &mut s);)+
        s
    }};
}

/// A piece of [`cat!`].
trait Piece {
    fn len_hint(&self) -> usize;
    fn push_to(&self, out: &mut String);
}

impl Piece for str {
    fn len_hint(&self) -> usize {
        self.len()
    }

    fn push_to(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl Piece for String {
    fn len_hint(&self) -> usize {
        self.len()
    }

    fn push_to(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl<T: Piece + ?Sized> Piece for &T {
    fn len_hint(&self) -> usize {
        (**self).len_hint()
    }

    fn push_to(&self, out: &mut String) {
        (**self).push_to(out);
    }
}

macro_rules! number_piece {
    ($($t:ty),*) => {$(
        impl Piece for $t {
            fn len_hint(&self) -> usize {
                20
            }

            fn push_to(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}

number_piece!(u32, u64, usize, i128);

/// What the macro knows beyond the model.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The schema's file name, as the C++ header mentions it.
    pub schema_name: String,
    /// An absolute path for `include_bytes!`, so that editing the schema rebuilds the crate.
    pub track_path: Option<String>,
}

/// The generated module, as formatted Rust source text.
pub fn emit(iface: &Interface, options: &Options) -> String {
    let mut e = Emitter { iface, w: Writer::default(), d: Derived::new(iface) };
    // Layouts found for earlier modules on this thread (a proc macro's
    // expansions, rust-analyzer's re-expansions) are reused.
    e.w.layouts = LAYOUTS.with(|l| std::mem::take(&mut *l.borrow_mut()));
    if e.w.layouts.len() > MAX_LAYOUTS {
        e.w.layouts.clear();
    }
    // Roughly what a method takes, beside the C++ header.
    e.w.s.reserve(64 * 1024 + 8 * 1024 * (iface.methods.len() + iface.structs.len()));
    e.module(options);
    LAYOUTS.with(|l| *l.borrow_mut() = std::mem::take(&mut e.w.layouts));
    e.w.s
}

type Layouts = HashMap<String, Option<Layout>, BuildHasherDefault<FxHasher>>;

thread_local! {
    /// The layout cache of [`Writer::layouts`], kept between calls.
    static LAYOUTS: std::cell::RefCell<Layouts> = std::cell::RefCell::default();
}

/// Cached layouts past which the cache starts afresh.
const MAX_LAYOUTS: usize = 100_000;

/// Lines at an indentation, with the statement forms whose layout the
/// [`layout`] engine decides.
#[derive(Default)]
struct Writer {
    s: String,
    indent: usize,
    fmt: Fmt,
    /// Layouts by statement form, indentation and the statement with its
    /// names and literals replaced by placeholders of the same width (see
    /// [`normalize`]): rustfmt's choices depend on widths, not on names, and
    /// a schema's methods repeat the same few statements.
    layouts: Layouts,
    /// Scratch space for the key of [`Writer::layouts`].
    key: String,
    /// Scratch space: where the tokens [`normalize`] replaced are.
    tokens: Vec<(u32, u32, u32)>,
}

/// The multiply-rotate hash rustc uses (FxHash): the layout cache's keys
/// are the emitter's own text, so a fast hash is enough.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0xf135_7aea_2e62_a9c5;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(26) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The statement forms the [`layout`] engine lays out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Form {
    /// `let [0] = [1];`
    Let,
    /// `[0];`
    Stmt,
    /// `[0] = [1];`
    Assign,
    /// `[0]` ending a block.
    Tail,
    /// `if let [0] = [1] {`
    IfLet,
    /// `if [0] { return [1]; }`
    ReturnIf,
    /// `match [0] {`
    Match,
    /// `[0] => [1],`
    Arm,
    /// `[0] = [1];` for an item `name: Type`.
    Item,
    /// `[0] [1],` for a struct field.
    Field,
    /// `[0],` in a list laid out one item a line.
    Elem,
    /// `impl[0] [1] {` or `impl[0] [1] for [2] {`.
    Impl,
    /// `[0]([1..n-1]) -> [n-1] {` or, without a body, `;` (the parts in
    /// the order they are written).
    Fn { body: bool },
}

impl Form {
    /// A byte that tells the forms apart in a cache key.
    fn code(self) -> u8 {
        match self {
            Form::Let => b'a',
            Form::Stmt => b'b',
            Form::Assign => b'c',
            Form::Tail => b'd',
            Form::IfLet => b'f',
            Form::ReturnIf => b'o',
            Form::Match => b'g',
            Form::Arm => b'h',
            Form::Item => b'i',
            Form::Field => b'j',
            Form::Elem => b'k',
            Form::Impl => b'l',
            Form::Fn { body: true } => b'm',
            Form::Fn { body: false } => b'n',
        }
    }

    fn layout(self, fmt: &Fmt, parts: &[&str], indent: usize) -> Option<String> {
        match self {
            Form::Let => fmt.let_stmt(parts[0], parts[1], indent),
            Form::Stmt => fmt.expr_stmt(parts[0], indent),
            Form::Assign => fmt.assign_stmt(parts[0], parts[1], indent),
            Form::Tail => fmt.tail(parts[0], indent),
            Form::IfLet => fmt.if_head(Some(parts[0]), parts[1], indent),
            Form::ReturnIf => {
                // What rustfmt cannot lay out it leaves as written, each
                // statement on its own.
                let head = fmt
                    .if_head(None, parts[0], indent)
                    .unwrap_or_else(|| format!("if {} {{", parts[0]));
                let ret = format!("return {}", parts[1]);
                let ret = fmt.expr_stmt(&ret, indent + 4).unwrap_or_else(|| format!("{ret};"));
                let mut out = head;
                out.push('\n');
                layout::spaces(&mut out, indent + 4);
                out.push_str(&ret);
                out.push('\n');
                layout::spaces(&mut out, indent);
                out.push('}');
                Some(out)
            }
            Form::Match => fmt.match_head(parts[0], indent),
            Form::Arm => fmt.arm_stmt(parts[0], parts[1], indent),
            Form::Item => fmt.item(parts[0], &layout::parse(parts[1]), indent),
            Form::Field => fmt.field(parts[0], parts[1], indent),
            Form::Elem => fmt.elem(parts[0], indent),
            Form::Impl => Some(match parts {
                [generics, self_ty] => fmt.impl_head(generics, None, self_ty, indent),
                _ => fmt.impl_head(parts[0], Some(parts[1]), parts[2], indent),
            }),
            Form::Fn { body } => {
                let (ret, params) = parts[1..].split_last()?;
                let ret = if ret.is_empty() { None } else { Some(*ret) };
                Some(fmt.fn_sig(parts[0], params, ret, body, indent))
            }
        }
    }

    /// The text rustfmt leaves when it cannot lay the statement out.
    fn fallback(self, parts: &[&str]) -> String {
        match self {
            Form::Let => format!("let {} = {};", parts[0], parts[1]),
            Form::Stmt => format!("{};", parts[0]),
            Form::Assign | Form::Item => format!("{} = {};", parts[0], parts[1]),
            Form::Tail => parts[0].to_string(),
            Form::IfLet => format!("if let {} = {} {{", parts[0], parts[1]),
            Form::Match => format!("match {} {{", parts[0]),
            Form::Arm => format!("{} => {},", parts[0], parts[1]),
            Form::Field => format!("{} {},", parts[0], parts[1]),
            Form::Elem => format!("{},", parts[0]),
            Form::ReturnIf | Form::Impl | Form::Fn { .. } => unreachable!("always laid out"),
        }
    }
}

/// Words the layout engine reads, kept as they are by [`normalize`].
const KEYWORDS: [&str; 6] = ["as", "return", "match", "mut", "true", "false"];

/// Placeholder characters.
const ZS: &str = "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ";

fn push_zs(out: &mut String, mut n: usize) {
    while n > ZS.len() {
        out.push_str(ZS);
        n -= ZS.len();
    }
    out.push_str(&ZS[..n]);
}

/// Character classes for [`normalize`]: 1 a word character, 2 a quote,
/// 3 not ASCII.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() || b == b'_' {
            t[c] = 1;
        } else if b == b'"' {
            t[c] = 2;
        } else if b >= 0x80 {
            t[c] = 3;
        }
        c += 1;
    }
    t
};

/// Appends `text` to `out` with every name, number and string literal
/// replaced by a placeholder of the same width (names `ZZ…`, numbers `0ZZ…`,
/// strings `"ZZ…"`); keywords and macro names stay. Where the replaced
/// tokens are in `text` is appended to `tokens`, in order. Returns false
/// (and stops) on text that is not ASCII.
fn normalize(text: &str, part: u32, out: &mut String, tokens: &mut Vec<(u32, u32, u32)>) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    let mut plain = 0;
    while i < b.len() {
        let class = CLASS[usize::from(b[i])];
        if class == 0 {
            // An absolute path (`::dextlink::IoReturn::SUCCESS`) is the
            // emitter's own text: it stays, in one go.
            if b[i] == b':'
                && b.get(i + 1) == Some(&b':')
                && b.get(i + 2).is_some_and(|&c| CLASS[usize::from(c)] == 1)
                && (i == 0 || (CLASS[usize::from(b[i - 1])] != 1 && b[i - 1] != b'>'))
            {
                i += 2;
                loop {
                    while i < b.len() && CLASS[usize::from(b[i])] == 1 {
                        i += 1;
                    }
                    if b.get(i) == Some(&b':')
                        && b.get(i + 1) == Some(&b':')
                        && b.get(i + 2).is_some_and(|&c| CLASS[usize::from(c)] == 1)
                    {
                        i += 2;
                    } else {
                        break;
                    }
                }
                continue;
            }
            i += 1;
            continue;
        }
        let start = i;
        if class == 3 {
            return false;
        } else if class == 2 {
            i += 1;
            while b[i] != b'"' {
                if b[i] >= 0x80 {
                    return false;
                }
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str(&text[plain..start]);
            out.push('"');
            push_zs(out, i - start - 2);
            out.push('"');
        } else {
            i += 1;
            while i < b.len() && CLASS[usize::from(b[i])] == 1 {
                i += 1;
            }
            let t = &text[start..i];
            if b[start].is_ascii_digit() {
                out.push_str(&text[plain..start]);
                out.push('0');
                push_zs(out, t.len() - 1);
            } else if KEYWORDS.contains(&t) || b.get(i) == Some(&b'!') {
                continue;
            } else {
                out.push_str(&text[plain..start]);
                push_zs(out, t.len());
            }
        }
        tokens.push((part, start as u32, i as u32));
        plain = i;
    }
    out.push_str(&text[plain..]);
    true
}

/// A layout of normalized text, with where its placeholders are.
struct Layout {
    text: String,
    /// `(start, end)` of each placeholder in `text`, in order.
    holes: Vec<(u32, u32)>,
}

impl Layout {
    fn new(text: String) -> Layout {
        let b = text.as_bytes();
        let mut holes = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let start = i;
            match CLASS[usize::from(b[i])] {
                2 => {
                    i += 1;
                    while b[i] != b'"' {
                        i += 1;
                    }
                    i += 1;
                    holes.push((start as u32, i as u32));
                }
                1 => {
                    while i < b.len() && CLASS[usize::from(b[i])] == 1 {
                        i += 1;
                    }
                    let t = &b[start..i];
                    let rest = if t[0] == b'0' { &t[1..] } else { t };
                    if rest.iter().all(|&x| x == b'Z') {
                        holes.push((start as u32, i as u32));
                    }
                }
                _ => i += 1,
            }
        }
        Layout { text, holes }
    }

    /// Writes the layout with the original tokens (`tokens` in `parts`) in
    /// its placeholders.
    fn write(&self, out: &mut String, parts: &[&str], tokens: &[(u32, u32, u32)]) {
        let mut plain = 0;
        for (&(start, end), &(part, from, to)) in self.holes.iter().zip(tokens) {
            out.push_str(&self.text[plain..start as usize]);
            out.push_str(&parts[part as usize][from as usize..to as usize]);
            plain = end as usize;
        }
        out.push_str(&self.text[plain..]);
    }
}

impl Writer {
    /// One line (or a formatted multi-line piece whose later lines carry
    /// their own indentation) at the current indentation.
    fn line(&mut self, text: &str) {
        if !text.is_empty() {
            layout::spaces(&mut self.s, self.indent);
            self.s.push_str(text);
        }
        self.s.push('\n');
    }

    /// A statement of `form` made of `parts`, laid out.
    fn form(&mut self, form: Form, parts: &[&str]) {
        let mut key = std::mem::take(&mut self.key);
        let mut tokens = std::mem::take(&mut self.tokens);
        key.clear();
        tokens.clear();
        // The form and the indentation, then the normalized parts.
        key.push(char::from(form.code()));
        key.push(char::from_u32(0x100 + self.indent as u32).unwrap_or(char::MAX));
        let prefix = key.len();
        let mut ascii = true;
        for (i, p) in parts.iter().enumerate() {
            ascii = ascii && normalize(p, i as u32, &mut key, &mut tokens);
            key.push('\u{1}');
        }
        if !ascii {
            // Not cached: names and literals beyond ASCII are rare.
            let text = form.layout(&self.fmt, parts, self.indent);
            self.line(&text.unwrap_or_else(|| form.fallback(parts)));
        } else {
            let layout = match self.layouts.get(key.as_str()) {
                Some(layout) => layout,
                None => {
                    let normalized: Vec<&str> = key[prefix..].split_terminator('\u{1}').collect();
                    let layout = form.layout(&self.fmt, &normalized, self.indent).map(Layout::new);
                    assert!(
                        layout.as_ref().is_none_or(|l| l.holes.len() == tokens.len()),
                        "dextlink bug: a layout lost tokens of {normalized:?}"
                    );
                    self.layouts.entry(key.clone()).or_insert(layout)
                }
            };
            match layout {
                Some(layout) => {
                    layout::spaces(&mut self.s, self.indent);
                    layout.write(&mut self.s, parts, &tokens);
                    self.s.push('\n');
                }
                None => {
                    let text = form.fallback(parts);
                    self.line(&text);
                }
            }
        }
        self.key = key;
        self.tokens = tokens;
    }

    fn blank(&mut self) {
        self.s.push('\n');
    }

    /// `head {`, and indents.
    fn open(&mut self, head: &str) {
        layout::spaces(&mut self.s, self.indent);
        self.s.push_str(head);
        self.s.push_str(" {\n");
        self.indent += 4;
    }

    /// Unindents, and `}` followed by `tail`.
    fn close(&mut self, tail: &str) {
        self.indent -= 4;
        layout::spaces(&mut self.s, self.indent);
        self.s.push('}');
        self.s.push_str(tail);
        self.s.push('\n');
    }

    /// `///` doc comments (a line with control characters, which a comment
    /// cannot hold, as `#[doc = "…"]`).
    fn docs(&mut self, lines: &[String]) {
        for l in lines {
            if l.is_empty() {
                self.line("///");
            } else if l.chars().any(|c| c.is_control() && c != '\t') {
                self.line(&cat!("#[doc = ", lit(&cat!(" ", l)), "]"));
            } else {
                layout::spaces(&mut self.s, self.indent);
                self.s.push_str("/// ");
                self.s.push_str(l);
                self.s.push('\n');
            }
        }
    }

    fn doc(&mut self, text: &str) {
        self.docs(std::slice::from_ref(&text.to_string()));
    }

    /// `let pattern = value;`
    fn let_(&mut self, pattern: &str, value: &str) {
        self.form(Form::Let, &[pattern, value]);
    }

    /// `expr;`
    fn stmt(&mut self, expr: &str) {
        self.form(Form::Stmt, &[expr]);
    }

    /// `place = value;`
    fn assign(&mut self, place: &str, value: &str) {
        self.form(Form::Assign, &[place, value]);
    }

    /// The block's final expression.
    fn tail(&mut self, expr: &str) {
        self.form(Form::Tail, &[expr]);
    }

    /// `if let pattern = value {`, and indents.
    fn if_let(&mut self, pattern: &str, value: &str) {
        self.form(Form::IfLet, &[pattern, value]);
        self.indent += 4;
    }

    /// `if cond { return value; }`
    fn return_if(&mut self, cond: &str, value: &str) {
        self.form(Form::ReturnIf, &[cond, value]);
    }

    /// `match scrutinee {`, and indents.
    fn match_(&mut self, scrutinee: &str) {
        self.form(Form::Match, &[scrutinee]);
        self.indent += 4;
    }

    /// `pattern => body,` in a `match`.
    fn arm(&mut self, pattern: &str, body: &str) {
        self.form(Form::Arm, &[pattern, body]);
    }

    /// An item `name: Type = value;` such as a `const`.
    fn item(&mut self, head: &str, value: &str) {
        self.form(Form::Item, &[head, value]);
    }

    /// An item `name: &[T] = &[items];` whose items are struct literals
    /// (which never fit on one line): with two or more, each item is laid
    /// out on its own, one after the other, as rustfmt lays out the list.
    fn array(&mut self, head: &str, items: &[String]) {
        if items.len() < 2 {
            self.item(head, &format!("&[{}]", items.join(", ")));
            return;
        }
        self.line(&format!("{head} = &["));
        self.indent += 4;
        for item in items {
            self.form(Form::Elem, &[item]);
        }
        self.indent -= 4;
        self.line("];");
    }

    /// A struct field `prefix Type,` (`prefix` is `pub name:`).
    fn field(&mut self, prefix: &str, ty: &str) {
        self.form(Form::Field, &[prefix, ty]);
    }

    /// `impl<generics> Trait for Type {` (or without a trait), and indents.
    fn impl_(&mut self, generics: &str, trait_: Option<&str>, self_ty: &str) {
        match trait_ {
            Some(t) => self.form(Form::Impl, &[generics, t, self_ty]),
            None => self.form(Form::Impl, &[generics, self_ty]),
        }
        self.indent += 4;
    }

    /// A function signature, as rustfmt lays it out (`rewrite_fn_base`):
    /// `head(params) -> ret` on one line, or one parameter a line. With a
    /// body the block is opened; without, the declaration ends with `;`.
    fn fn_(&mut self, head: &str, params: &[String], ret: Option<&str>, body: bool) {
        let mut parts = vec![head];
        parts.extend(params.iter().map(String::as_str));
        parts.push(ret.unwrap_or(""));
        self.form(Form::Fn { body }, &parts);
        if body {
            self.indent += 4;
        }
    }
}

struct Emitter<'a> {
    iface: &'a Interface,
    w: Writer,
    d: Derived<'a>,
}

/// What the emitter derives from a method more than once: names and types.
struct Derived<'a> {
    iface: &'a Interface,
    /// By selector.
    methods: HashMap<u32, MethodNames<'a>>,
}

/// The generated names of a method's types, and its outputs.
struct MethodNames<'a> {
    /// The method's name in UpperCamelCase: the `Selector` variant.
    camel: String,
    output_type: String,
    completion_type: String,
    completer: String,
    /// `(name, type)` of every output, scalars first, then the structure output.
    outputs: Vec<(&'a str, &'a str)>,
}

impl<'a> Derived<'a> {
    fn new(iface: &'a Interface) -> Derived<'a> {
        let mut d = Derived { iface, methods: HashMap::new() };
        for m in &iface.methods {
            let camel = upper_camel(&m.name);
            let mut outputs: Vec<(&str, &str)> =
                m.scalar_outputs.iter().map(|s| (s.name.as_str(), d.scalar_ty(s.ty))).collect();
            if let Some(a) = &m.struct_output {
                outputs.push((a.name.as_str(), d.struct_output_ty(a.shape)));
            }
            let names = MethodNames {
                output_type: cat!(camel, "Output"),
                completion_type: cat!(camel, "Completion"),
                completer: cat!(camel, "Completer"),
                camel,
                outputs,
            };
            d.methods.insert(m.selector, names);
        }
        d
    }

    fn scalar_ty(&self, ty: ScalarType) -> &'a str {
        match ty {
            ScalarType::Int(t) => t.rust(),
            ScalarType::Bool => "bool",
            ScalarType::Enum(i) => &self.iface.enums[i].name,
        }
    }

    fn struct_output_ty(&self, shape: StructShape) -> &'a str {
        match shape {
            StructShape::Struct(i) => &self.iface.structs[i].name,
            _ => "::std::vec::Vec<u8>",
        }
    }

    fn names(&self, m: &Method) -> &MethodNames<'a> {
        &self.methods[&m.selector]
    }

    /// `(name, type)` of every output, scalars first, then the structure output.
    fn outputs_of(&self, m: &Method) -> &[(&'a str, &'a str)] {
        &self.names(m).outputs
    }

    fn output_type_name(&self, m: &Method) -> &str {
        &self.names(m).output_type
    }

    fn completion_type_name(&self, m: &Method) -> &str {
        &self.names(m).completion_type
    }

    /// The return type of a method's immediate outputs: `()`, the one
    /// value, or a generated struct.
    fn output_ty(&self, m: &Method) -> &str {
        let outs = self.outputs_of(m);
        match outs.len() {
            0 => "()",
            1 => outs[0].1,
            _ => self.output_type_name(m),
        }
    }

    fn completion_ty(&self, m: &Method) -> &str {
        match m.completion.len() {
            0 => "()",
            1 => self.scalar_ty(m.completion[0].ty),
            _ => self.completion_type_name(m),
        }
    }

    fn completer_name(&self, m: &Method) -> &str {
        &self.names(m).completer
    }
}

/// A Rust string literal with exactly `text`'s characters.
fn lit(text: &str) -> String {
    if text.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\') {
        let mut s = String::with_capacity(text.len() + 2);
        s.push('"');
        s.push_str(text);
        s.push('"');
        return s;
    }
    format!("{text:?}")
}

/// An integer literal with the type's suffix (`8u32`, `-40i32`).
fn int_lit(t: IntType, v: i128) -> String {
    cat!(v, t.rust())
}

/// Writes a raw string literal for `text` (`r#"…"#` with enough `#`s), or
/// an escaped one when `text` holds characters that a raw string cannot
/// hold or should not show (controls other than newline and tab, and the
/// invisible direction and separator marks rustc warns about).
fn raw_lit(out: &mut String, text: &str) {
    if !raw_safe(text) {
        out.push_str(&lit(text));
        return;
    }
    let b = text.as_bytes();
    let mut longest = 0;
    for (i, _) in text.match_indices('"') {
        let run = b[i + 1..].iter().take_while(|&&h| h == b'#').count();
        longest = longest.max(run);
    }
    let hashes = "#".repeat(longest + 1);
    out.push('r');
    out.push_str(&hashes);
    out.push('"');
    out.push_str(text);
    out.push('"');
    out.push_str(&hashes);
}

/// Whether `text` can be written as a raw string literal (see [`raw_lit`]).
fn raw_safe(text: &str) -> bool {
    let b = text.as_bytes();
    // ASCII controls, with a fold (not `any`) so that it is vectorized.
    let ascii_control = b
        .iter()
        .fold(false, |found, &c| found | ((c < 0x20) & (c != b'\n') & (c != b'\t')) | (c == 0x7f));
    if ascii_control {
        return false;
    }
    // Beyond ASCII: skip ASCII sixteen bytes at a time.
    let mut i = 0;
    while i < b.len() {
        if let Some(chunk) = b.get(i..i + 16)
            && chunk.iter().fold(0, |high, &c| high | c) < 0x80
        {
            i += 16;
            continue;
        }
        if b[i] < 0x80 {
            i += 1;
            continue;
        }
        let c = text[i..].chars().next().unwrap_or(' ');
        let hidden = c.is_control()
            || matches!(
                c,
                '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{feff}'
            )
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c);
        if hidden {
            return false;
        }
        i += c.len_utf8();
    }
    true
}

const ZEROCOPY: &str = "::dextlink::__private::zerocopy";
const RESULT: &str = "::core::result::Result";
const OK: &str = "::core::result::Result::Ok";
const ERR: &str = "::core::result::Result::Err";
const SOME: &str = "::core::option::Option::Some";
const NONE: &str = "::core::option::Option::None";

impl Emitter<'_> {
    fn module(&mut self, options: &Options) {
        let iface = self.iface;
        let mut module_docs = iface.docs.clone();
        if !module_docs.is_empty() {
            module_docs.push(String::new());
        }
        module_docs.push(format!(
            "Generated by `dextlink::interface!` from `{}`: the `{}` client, its shared types, \
             and a [`Handler`] trait with [`dispatch`] for dexts modelled in Rust.",
            if options.schema_name.is_empty() { "the schema" } else { &options.schema_name },
            iface.name
        ));
        self.w.docs(&module_docs);
        self.w.open(&format!("pub mod {}", snake(&iface.name)));
        if let Some(path) = &options.track_path {
            self.w.line("// Editing the schema rebuilds the crate.");
            self.w.item("const _: &[u8]", &format!("include_bytes!({})", lit(path)));
            self.w.blank();
        }
        self.identity(options);
        self.consts();
        for i in 0..iface.enums.len() {
            self.enum_(i);
        }
        for i in 0..iface.structs.len() {
            self.struct_(i);
        }
        self.selectors();
        self.metadata();
        self.output_types();
        self.client();
        self.server();
        // No blank line before the closing brace.
        if self.w.s.ends_with("\n\n") {
            self.w.s.pop();
        }
        self.w.close("");
    }

    fn identity(&mut self, options: &Options) {
        let iface = self.iface;
        let w = &mut self.w;
        w.doc("Hash of the schema's ABI; the dext reports its own in the handshake.");
        w.item("pub const FINGERPRINT: u64", &format!("{}u64", iface.fingerprint));
        w.doc("The schema's version number.");
        w.item("pub const VERSION: u32", &format!("{}u32", iface.version));
        w.doc("The IOService name the client matches.");
        w.item("pub const SERVICE: &str", &lit(&iface.service));
        w.doc("The selector of dextlink's fingerprint handshake.");
        w.item("pub const HANDSHAKE_SELECTOR: u32", &format!("{HANDSHAKE_SELECTOR}u32"));
        w.doc("Entries in the dispatch table: the highest selector plus one.");
        w.item("pub const SELECTOR_COUNT: u32", &format!("{}u32", iface.dispatch_len()));
        w.doc("The dext's C++ header, byte for byte what `dextlink gen --cpp` writes.");
        let header = cpp::emit(iface, &cpp::Options { schema_name: options.schema_name.clone() });
        // A string literal stays where it starts, whatever its length
        // (rustfmt leaves raw and one-line strings as they are).
        w.s.reserve(header.len() + 64);
        layout::spaces(&mut w.s, w.indent);
        w.s.push_str("pub const CPP_HEADER: &str = ");
        raw_lit(&mut w.s, &header);
        w.s.push_str(";\n");
        w.blank();
    }

    fn consts(&mut self) {
        for c in &self.iface.consts {
            self.w.docs(&c.docs);
            self.w.item(&format!("pub const {}: {}", c.name, c.ty.rust()), &int_lit(c.ty, c.value));
        }
        if !self.iface.consts.is_empty() {
            self.w.blank();
        }
    }

    fn enum_(&mut self, i: usize) {
        let e = &self.iface.enums[i];
        let (name, repr) = (e.name.as_str(), e.repr.rust());
        let w = &mut self.w;
        w.docs(&e.docs);
        w.line(&format!("#[repr({repr})]"));
        w.line("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]");
        if e.variants.is_empty() {
            w.line(&format!("pub enum {name} {{}}"));
        } else {
            w.open(&format!("pub enum {name}"));
            for v in &e.variants {
                w.docs(&v.docs);
                w.line(&format!("{} = {},", v.name, int_lit(e.repr, v.value)));
            }
            w.close("");
        }
        w.blank();

        w.impl_("", None, name);
        w.doc("Every variant, in declaration order.");
        let all: Vec<String> = e.variants.iter().map(|v| format!("{name}::{}", v.name)).collect();
        w.item(
            &format!("pub const ALL: [{name}; {}usize]", e.variants.len()),
            &format!("[{}]", all.join(", ")),
        );
        w.blank();
        w.doc("The value as a scalar travels: 64 bits, sign-extended.");
        w.fn_("pub fn to_wire", &["self".to_string()], Some("u64"), true);
        w.tail(&format!("self as {repr} as i64 as u64"));
        w.close("");
        w.blank();
        // Scalars travel as u64, signed ones sign-extended.
        let fits = if e.repr.size() == 8 {
            "true".to_string()
        } else if e.repr.signed() {
            format!(
                "(value as i64) >= ({repr}::MIN as i64) && (value as i64) <= ({repr}::MAX as i64)"
            )
        } else {
            format!("value <= ({repr}::MAX as u64)")
        };
        let from_wire = if e.repr.signed() {
            format!("value as i64 as {repr}")
        } else {
            format!("value as {repr}")
        };
        let unknown = format!(
            "{ERR}(::dextlink::UnknownVariant {{ type_name: {}, value: value as i128 }})",
            lit(name)
        );
        w.doc("Decodes a scalar as it travels.");
        let result = format!("{RESULT}<{name}, ::dextlink::UnknownVariant>");
        w.fn_("pub fn from_wire", &["value: u64".to_string()], Some(&result), true);
        w.return_if(&format!("!({fits})"), &unknown);
        w.tail(&format!("{name}::try_from({from_wire})"));
        w.close("");
        w.close("");
        w.blank();

        w.impl_("", Some(&format!("::core::convert::TryFrom<{repr}>")), name);
        w.line("type Error = ::dextlink::UnknownVariant;");
        w.blank();
        w.fn_("fn try_from", &[format!("value: {repr}")], Some(&result), true);
        let mut arms = String::from("match value { ");
        for v in &e.variants {
            let _ = write!(arms, "{} => {OK}({name}::{}), ", int_lit(e.repr, v.value), v.name);
        }
        let _ = write!(arms, "_ => {unknown}, }}");
        w.tail(&arms);
        w.close("");
        w.close("");
        w.blank();

        w.impl_("", Some(&format!("::core::convert::From<{name}>")), repr);
        w.fn_("fn from", &[format!("value: {name}")], Some(repr), true);
        w.tail(&format!("value as {repr}"));
        w.close("");
        w.close("");
        w.blank();
    }

    /// The Rust type of a struct field: enums and bools are stored as their
    /// integer representation (any bit pattern of a shared struct must be a
    /// valid value for zerocopy's `FromBytes`), with typed accessors.
    fn field_ty(&self, ty: &DataType) -> String {
        match ty {
            DataType::Int(t) => t.rust().to_string(),
            DataType::Bool => "u8".to_string(),
            DataType::Enum(i) => self.iface.enums[*i].repr.rust().to_string(),
            DataType::Struct(i) => self.iface.structs[*i].name.clone(),
            DataType::Array(elem, n) => format!("[{}; {n}]", self.field_ty(elem)),
        }
    }

    /// An expression that is true when `value` (of the field's Rust type) is valid.
    fn valid_expr(&self, ty: &DataType, value: &str) -> String {
        match ty {
            DataType::Int(_) => "true".to_string(),
            DataType::Bool => format!("({value} <= 1)"),
            DataType::Enum(i) => {
                format!("{}::try_from({value}).is_ok()", self.iface.enums[*i].name)
            }
            DataType::Struct(_) => format!("{value}.is_valid()"),
            DataType::Array(elem, _) => {
                let inner = self.valid_expr(elem, "(*element)");
                format!("{value}.iter().all(|element| {inner})")
            }
        }
    }

    fn struct_(&mut self, i: usize) {
        let iface = self.iface;
        let s = &iface.structs[i];
        let name = s.name.as_str();
        let checks: Vec<String> = s
            .fields
            .iter()
            .filter(|f| self.iface.needs_validation(&f.ty))
            .map(|f| self.valid_expr(&f.ty, &format!("self.{}", f.name)))
            .collect();
        let field_tys: Vec<String> = s.fields.iter().map(|f| self.field_ty(&f.ty)).collect();
        let w = &mut self.w;
        w.docs(&s.docs);
        w.line("#[repr(C)]");
        w.line("#[derive(");
        for d in ["Debug", "Clone", "Copy", "PartialEq", "Eq", "Hash"] {
            w.line(&format!("    {d},"));
        }
        for d in ["FromBytes", "IntoBytes", "KnownLayout", "Immutable"] {
            w.line(&format!("    {ZEROCOPY}::{d},"));
        }
        w.line(")]");
        w.line(&format!("#[zerocopy(crate = {})]", lit(ZEROCOPY)));
        if s.fields.is_empty() {
            w.line(&format!("pub struct {name} {{}}"));
        } else {
            w.open(&format!("pub struct {name}"));
            for (f, ty) in s.fields.iter().zip(&field_tys) {
                let mut lines = f.docs.clone();
                match &f.ty {
                    DataType::Bool => {
                        lines.push(format!("A `bool` as 0 or 1: see [`{name}::{}`].", f.name))
                    }
                    DataType::Enum(e) => lines.push(format!(
                        "A [`{}`] as its integer value: see [`{name}::{}`].",
                        iface.enums[*e].name, f.name
                    )),
                    _ => {}
                }
                w.docs(&lines);
                w.field(&format!("pub {}:", f.name), ty);
            }
            w.close("");
        }
        w.blank();

        w.impl_("", None, name);
        w.doc("All bytes zero.");
        w.fn_("pub fn zeroed", &[], Some(name), true);
        w.tail(&format!("<{name} as {ZEROCOPY}::FromZeros>::new_zeroed()"));
        w.close("");
        w.blank();
        w.doc("Whether every bool field is 0 or 1 and every enum field a declared value,");
        w.doc("as the dext checks before a handler sees the struct.");
        w.fn_("pub fn is_valid", &["&self".to_string()], Some("bool"), true);
        let mut valid = String::from("true");
        for c in &checks {
            valid.push_str(" && ");
            valid.push_str(c);
        }
        w.tail(&valid);
        w.close("");
        for f in &s.fields {
            let fname = f.name.as_str();
            let setter = format!("pub fn set_{fname}");
            match &f.ty {
                DataType::Bool => {
                    w.blank();
                    w.doc(&format!("`{fname}` as a `bool`; `None` if it holds neither 0 nor 1."));
                    w.fn_(
                        &format!("pub fn {fname}"),
                        &["&self".to_string()],
                        Some("::core::option::Option<bool>"),
                        true,
                    );
                    w.tail(&format!("match self.{fname} {{ 0 => {SOME}(false), 1 => {SOME}(true), _ => {NONE} }}"));
                    w.close("");
                    w.blank();
                    w.doc(&format!("Sets `{fname}`."));
                    w.fn_(
                        &setter,
                        &["&mut self".to_string(), "value: bool".to_string()],
                        None,
                        true,
                    );
                    w.assign(&format!("self.{fname}"), "u8::from(value)");
                    w.close("");
                }
                DataType::Enum(e) => {
                    let ename = iface.enums[*e].name.as_str();
                    w.blank();
                    w.doc(&format!("`{fname}` as a [`{ename}`]."));
                    w.fn_(
                        &format!("pub fn {fname}"),
                        &["&self".to_string()],
                        Some(&format!("{RESULT}<{ename}, ::dextlink::UnknownVariant>")),
                        true,
                    );
                    w.tail(&format!("{ename}::try_from(self.{fname})"));
                    w.close("");
                    w.blank();
                    w.doc(&format!("Sets `{fname}`."));
                    w.fn_(
                        &setter,
                        &["&mut self".to_string(), format!("value: {ename}")],
                        None,
                        true,
                    );
                    w.assign(&format!("self.{fname}"), "value.into()");
                    w.close("");
                }
                _ => {}
            }
        }
        w.close("");
        w.blank();

        w.open("const _: () =");
        w.stmt(&format!(
            "assert!(::core::mem::size_of::<{name}>() == {}, {})",
            s.size,
            lit(&format!("{name} must be {} bytes (the schema's C layout)", s.size))
        ));
        w.stmt(&format!(
            "assert!(::core::mem::align_of::<{name}>() == {}, {})",
            s.align,
            lit(&format!("{name} must be {}-byte aligned (the schema's C layout)", s.align))
        ));
        for f in &s.fields {
            w.stmt(&format!(
                "assert!(::core::mem::offset_of!({name}, {}) == {}, {})",
                f.name,
                f.offset,
                lit(&format!(
                    "{name}.{} must be at offset {} (the schema's C layout)",
                    f.name, f.offset
                ))
            ));
        }
        w.close(";");
        w.blank();
    }

    fn selectors(&mut self) {
        let w = &mut self.w;
        w.doc("External method selectors. Stable: a retired selector is never reused.");
        w.line("#[repr(u32)]");
        w.line("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]");
        if self.iface.methods.is_empty() {
            w.line("pub enum Selector {}");
        } else {
            w.open("pub enum Selector");
            for m in &self.iface.methods {
                w.docs(&m.docs);
                w.line(&cat!(self.d.names(m).camel, " = ", m.selector, "u32,"));
            }
            w.close("");
        }
        w.blank();
    }

    fn metadata(&mut self) {
        let iface = self.iface;
        let methods: Vec<String> = iface
            .methods
            .iter()
            .map(|m| {
                let c = iface.dispatch_checks(m);
                format!(
                    "::dextlink::server::MethodInfo {{ selector: {}u32, name: {}, is_async: {}, \
                     unchecked: {}, checks: ::dextlink::server::DispatchChecks {{ \
                     completion_exists: {}u32, scalar_input_count: {}u32, \
                     structure_input_size: {}u32, scalar_output_count: {}u32, \
                     structure_output_size: {}u32 }}, completion_values: {}u32 }}",
                    m.selector,
                    lit(&m.name),
                    m.is_async,
                    m.unchecked,
                    c.completion_exists,
                    c.scalar_input_count,
                    c.structure_input_size,
                    c.scalar_output_count,
                    c.structure_output_size,
                    m.completion.len()
                )
            })
            .collect();
        let memories: Vec<String> = iface
            .memories
            .iter()
            .map(|m| {
                format!(
                    "::dextlink::server::MemoryInfo {{ id: {}u32, name: {}, size: {}u64, \
                     read_only: {} }}",
                    m.id,
                    lit(&m.name),
                    m.size,
                    m.access == Access::ReadOnly
                )
            })
            .collect();
        // Measured by the Rust compiler, not copied from the model: the C++
        // header asserts the model's numbers, and a check of the compiled
        // header (`dextlink-tablecheck`) compares what both compilers made.
        let structs: Vec<String> = iface
            .structs
            .iter()
            .map(|s| {
                let fields: Vec<String> = s
                    .fields
                    .iter()
                    .map(|f| {
                        // Field names are the same in Rust and C++: the
                        // checker refuses keywords of either language.
                        format!(
                            "::dextlink::server::FieldLayout {{ name: {}, \
                             offset: ::core::mem::offset_of!({}, {}), \
                             size: ::core::mem::size_of::<{}>() }}",
                            lit(&f.name),
                            s.name,
                            f.name,
                            self.field_ty(&f.ty)
                        )
                    })
                    .collect();
                format!(
                    "::dextlink::server::StructLayout {{ name: {}, \
                     size: ::core::mem::size_of::<{1}>(), align: ::core::mem::align_of::<{1}>(), \
                     fields: &[{2}] }}",
                    lit(&s.name),
                    s.name,
                    fields.join(", ")
                )
            })
            .collect();
        let interface = format!(
            "::dextlink::server::InterfaceInfo {{ name: {}, cpp_namespace: {}, \
             cpp_header: CPP_HEADER, fingerprint: FINGERPRINT, version: VERSION, \
             selector_count: SELECTOR_COUNT, methods: METHODS, memory_types: MEMORY_TYPES, \
             structs: STRUCTS }}",
            lit(&iface.name),
            lit(&snake(&iface.name))
        );
        let w = &mut self.w;
        w.doc("Dispatch metadata: the same check values as the C++ `kDispatchTable`");
        w.doc("(zero for `#[unchecked]` methods), sorted by selector.");
        w.array("pub const METHODS: &[::dextlink::server::MethodInfo]", &methods);
        w.blank();
        w.doc("The memory types the dext provides, by id.");
        w.array("pub const MEMORY_TYPES: &[::dextlink::server::MemoryInfo]", &memories);
        w.blank();
        w.doc("The shared structs' size, alignment and field offsets and sizes, as the Rust");
        w.doc("compiler laid them out (C++ field names), in schema order.");
        w.array("pub const STRUCTS: &[::dextlink::server::StructLayout]", &structs);
        w.blank();
        w.doc("This interface's ABI in one value: what `dextlink_tablecheck::verify`");
        w.doc("compares with the compiled C++ header.");
        w.item("pub const INTERFACE: ::dextlink::server::InterfaceInfo", &interface);
        w.blank();
    }

    // ----- outputs -------------------------------------------------------------

    fn output_types(&mut self) {
        for m in &self.iface.methods {
            let outs = self.d.outputs_of(m);
            if outs.len() > 1 {
                self.w.doc(&cat!("The outputs of `", m.name, "`."));
                self.w.line("#[derive(Debug, Clone, PartialEq, Eq)]");
                self.w.open(&cat!("pub struct ", self.d.output_type_name(m)));
                for (n, ty) in outs {
                    self.w.field(&cat!("pub ", n, ":"), ty);
                }
                self.w.close("");
                self.w.blank();
            }
            if m.completion.len() > 1 {
                let fields: Vec<(&str, &str)> = m
                    .completion
                    .iter()
                    .map(|s| (s.name.as_str(), self.d.scalar_ty(s.ty)))
                    .collect();
                self.w.doc(&cat!("The values `", m.name, "` completes with."));
                self.w.line("#[derive(Debug, Clone, Copy, PartialEq, Eq)]");
                self.w.open(&cat!("pub struct ", self.d.completion_type_name(m)));
                for (n, ty) in &fields {
                    self.w.field(&cat!("pub ", n, ":"), ty);
                }
                self.w.close("");
                self.w.blank();
            }
        }
    }

    // ----- client --------------------------------------------------------------

    /// Decodes the wire value `wire` (a u64 expression) into a scalar's type,
    /// or returns a malformed-reply error from the enclosing function.
    fn decode_scalar(&self, ty: ScalarType, wire: &str, method: &str, what: &str) -> String {
        let type_name = match ty {
            ScalarType::Int(t) => t.rust().to_string(),
            ScalarType::Bool => "bool".to_string(),
            ScalarType::Enum(i) => self.iface.enums[i].name.clone(),
        };
        let bad = cat!(
            "::dextlink::__private::invalid_value(",
            lit(method),
            ", ",
            lit(what),
            ", ",
            wire,
            ", ",
            lit(&type_name),
            ")"
        );
        match ty {
            ScalarType::Int(IntType::U64) => wire.to_string(),
            ScalarType::Int(IntType::I64) => cat!(wire, " as i64"),
            ScalarType::Int(t) if t.signed() => {
                cat!("<", t.rust(), ">::try_from(", wire, " as i64).map_err(|_| ", bad, ")?")
            }
            ScalarType::Int(t) => {
                cat!("<", t.rust(), ">::try_from(", wire, ").map_err(|_| ", bad, ")?")
            }
            ScalarType::Bool => {
                cat!("match ", wire, " { 0 => false, 1 => true, _ => return ", ERR, "(", bad, ") }")
            }
            ScalarType::Enum(i) => {
                cat!(self.iface.enums[i].name, "::from_wire(", wire, ").map_err(|_| ", bad, ")?")
            }
        }
    }

    /// Encodes a typed scalar into the u64 that travels.
    fn encode_scalar(ty: ScalarType, value: &str) -> String {
        match ty {
            ScalarType::Int(IntType::U64) => value.to_string(),
            ScalarType::Int(t) if t.signed() => cat!("(", value, " as i64 as u64)"),
            ScalarType::Int(_) | ScalarType::Bool => cat!("u64::from(", value, ")"),
            ScalarType::Enum(_) => cat!(value, ".to_wire()"),
        }
    }

    /// `if !(lo..=hi).contains(&name) { return Err(out_of_range(…)); }`
    fn range_check(&mut self, m: &Method, s: &Scalar) {
        let (ScalarType::Int(t), Some((lo, hi))) = (s.ty, s.range) else { return };
        self.w.return_if(
            &cat!("!(", int_lit(t, lo), "..=", int_lit(t, hi), ").contains(&", s.name, ")"),
            &cat!(
                ERR,
                "(::dextlink::__private::out_of_range(",
                lit(&m.name),
                ", ",
                lit(&s.name),
                ", ",
                s.name,
                ", ",
                lit(&format!("{lo}..={hi}")),
                "))"
            ),
        );
    }

    fn client(&mut self) {
        let iface = self.iface;
        let client = iface.name.as_str();
        let w = &mut self.w;
        w.docs(&iface.docs);
        w.doc(&format!("A connection to a `{client}` user client, over any transport."));
        w.line("#[derive(Debug)]");
        w.open(&format!("pub struct {client}<T>"));
        w.line("transport: T,");
        w.close("");
        w.blank();

        w.impl_("<T: ::dextlink::Transport>", None, &format!("{client}<T>"));
        w.doc("Connects over `transport`, checking with the dext's handshake that");
        w.doc("both sides were built from the same schema.");
        w.fn_(
            "pub fn connect",
            &["transport: T".to_string()],
            Some(&format!("{RESULT}<Self, ::dextlink::Error>")),
            true,
        );
        w.let_("client", &format!("{client} {{ transport }}"));
        w.let_("mut reply", "[0u64; 2]");
        w.let_(
            "result",
            &format!(
                "client.transport.call(::dextlink::Call {{ selector: HANDSHAKE_SELECTOR, \
                 scalar_input: &[], struct_input: &[], scalar_output: &mut reply, \
                 struct_output: ::dextlink::StructOutput::None, completion: {NONE} }})"
            ),
        );
        w.let_(
            "count",
            "result.map_err(|e| e.for_method(\"handshake\", HANDSHAKE_SELECTOR))?.scalar_output_count",
        );
        w.return_if(
            "count != 2 || reply[0] != FINGERPRINT || reply[1] != u64::from(VERSION)",
            &format!(
                "{ERR}(::dextlink::Error::FingerprintMismatch {{ client_fingerprint: FINGERPRINT, \
                 client_version: VERSION, dext_fingerprint: reply[0], dext_version: reply[1] }})"
            ),
        );
        w.tail(&format!("{OK}(client)"));
        w.close("");
        w.blank();
        w.doc("Wraps `transport` without the handshake, for dexts that predate it.");
        w.fn_("pub fn without_handshake", &["transport: T".to_string()], Some("Self"), true);
        w.tail(&format!("{client} {{ transport }}"));
        w.close("");
        w.blank();
        w.doc("The transport this client calls through.");
        w.fn_("pub fn transport", &["&self".to_string()], Some("&T"), true);
        w.tail("&self.transport");
        w.close("");
        w.blank();
        w.doc("Gives the transport back.");
        w.fn_("pub fn into_transport", &["self".to_string()], Some("T"), true);
        w.tail("self.transport");
        w.close("");
        for m in &iface.methods {
            self.w.blank();
            self.client_method(m);
        }
        for mem in &iface.memories {
            let access = match mem.access {
                Access::ReadOnly => "::dextlink::ReadOnly",
                Access::ReadWrite => "::dextlink::ReadWrite",
            };
            let w = &mut self.w;
            w.blank();
            w.docs(&mem.docs);
            w.doc(&format!(
                "Maps memory type {} ({} bytes); unmapped when the mapping is dropped.",
                mem.id, mem.size
            ));
            w.fn_(
                &format!("pub fn {}", mem.name),
                &["&self".to_string()],
                Some(&format!("{RESULT}<::dextlink::Mapping<'_, {access}>, ::dextlink::Error>")),
                true,
            );
            w.tail(&format!(
                "::dextlink::Mapping::map(&self.transport, {}u32, {}u64)",
                mem.id, mem.size
            ));
            w.close("");
        }
        self.w.close("");
        self.w.blank();
    }

    fn client_method(&mut self, m: &Method) {
        let method = lit(&m.name);
        let sel = cat!(m.selector, "u32");
        let mut params = vec!["&self".to_string()];
        for s in &m.scalar_inputs {
            params.push(cat!(s.name, ": ", self.d.scalar_ty(s.ty)));
        }
        let scalars_in: Vec<String> =
            m.scalar_inputs.iter().map(|s| Self::encode_scalar(s.ty, &s.name)).collect();
        // The structure input: its parameter, what is sent, and a length check.
        let mut bytes_check = None;
        let struct_in = match &m.struct_input {
            None => "&[]".to_string(),
            Some(a) => {
                let n = &a.name;
                match a.shape {
                    StructShape::Struct(i) => {
                        params.push(cat!(n, ": &", self.iface.structs[i].name));
                        cat!(ZEROCOPY, "::IntoBytes::as_bytes(", n, ")")
                    }
                    StructShape::Bytes(len) => {
                        params.push(cat!(n, ": &[u8; ", len, "]"));
                        cat!("&", n, "[..]")
                    }
                    StructShape::Bounded { min, max } => {
                        params.push(cat!(n, ": &[u8]"));
                        bytes_check = Some((
                            cat!("!(", min, "..=", max, ").contains(&", n, ".len())"),
                            format!(
                                "{ERR}(::dextlink::__private::out_of_range({method}, {}, \
                                 ::std::format_args!(\"{{}} bytes\", {n}.len()), {}))",
                                lit(n),
                                lit(&format!("{min}..={max} bytes"))
                            ),
                        ));
                        n.clone()
                    }
                    StructShape::Variable => unreachable!("inputs are bounded"),
                }
            }
        };
        let n_out = m.scalar_outputs.len();
        // The structure output: what to offer, and how to finish.
        let mut out_setup = None;
        let mut out_finish = Vec::new();
        let out_arg = match &m.struct_output {
            None => "::dextlink::StructOutput::None".to_string(),
            Some(a) => {
                let n = &a.name;
                match a.shape {
                    StructShape::Struct(i) => {
                        let st = &self.iface.structs[i];
                        out_setup = Some((cat!("mut ", n), cat!(st.name, "::zeroed()")));
                        out_finish.push((
                            cat!("__reply.struct_output_size != ", st.size),
                            format!(
                                "{ERR}(::dextlink::__private::short_reply({method}, \
                                 \"bytes of structure output\", {}, __reply.struct_output_size))",
                                st.size
                            ),
                        ));
                        cat!(
                            "::dextlink::StructOutput::Buffer(",
                            ZEROCOPY,
                            "::IntoBytes::as_mut_bytes(&mut ",
                            n,
                            "))"
                        )
                    }
                    StructShape::Bytes(len) | StructShape::Bounded { max: len, .. } => {
                        let min = match a.shape {
                            StructShape::Bounded { min, .. } => min,
                            _ => len,
                        };
                        out_setup = Some((cat!("mut ", n), cat!("::std::vec![0u8; ", len, "]")));
                        out_finish.push((
                            cat!("!(", min, "..=", len, ").contains(&__reply.struct_output_size)"),
                            format!(
                                "{ERR}(::dextlink::__private::short_reply({method}, \
                                 \"bytes of structure output\", {}, __reply.struct_output_size))",
                                lit(&format!("{min}..={len}"))
                            ),
                        ));
                        cat!("::dextlink::StructOutput::Buffer(&mut ", n, "[..])")
                    }
                    StructShape::Variable => {
                        out_setup = Some((cat!("mut ", n), "::std::vec::Vec::new()".to_string()));
                        cat!("::dextlink::StructOutput::Variable(&mut ", n, ")")
                    }
                }
            }
        };
        let outs = self.d.outputs_of(m);
        let out_value = match outs.len() {
            0 => "()".to_string(),
            1 => outs[0].0.to_string(),
            _ => {
                let names: Vec<&str> = outs.iter().map(|(n, _)| *n).collect();
                cat!(self.d.output_type_name(m), " { ", names.join(", "), " }")
            }
        };
        let out_ty = self.d.output_ty(m);
        let (ret_ty, completion_arg, ret_value) = if m.is_async {
            let c_ty = self.d.completion_ty(m);
            if outs.is_empty() {
                (
                    cat!("::dextlink::Pending<", c_ty, ">"),
                    cat!(SOME, "(__slot)"),
                    "__pending".to_string(),
                )
            } else {
                (
                    cat!("(", out_ty, ", ::dextlink::Pending<", c_ty, ">)"),
                    cat!(SOME, "(__slot)"),
                    cat!("(", out_value, ", __pending)"),
                )
            }
        } else {
            (out_ty.to_string(), NONE.to_string(), out_value)
        };

        self.w.docs(&m.docs);
        if params.len() > 7 {
            self.w.line("#[allow(clippy::too_many_arguments)]");
        }
        self.w.line("#[inline]");
        self.w.fn_(
            &cat!("pub fn ", m.name),
            &params,
            Some(&cat!(RESULT, "<", ret_ty, ", ::dextlink::Error>")),
            true,
        );
        for s in &m.scalar_inputs {
            self.range_check(m, s);
        }
        if let Some((cond, value)) = &bytes_check {
            self.w.return_if(cond, value);
        }
        if let Some((pattern, value)) = &out_setup {
            self.w.let_(pattern, value);
        }
        if m.is_async {
            self.completion_decoder(m);
            self.w.let_(
                "(__pending, __slot)",
                &cat!("::dextlink::Pending::new(", method, ", __decode)"),
            );
        }
        self.w.let_("mut __scalar_output", &cat!("[0u64; ", n_out, "]"));
        self.w.let_(
            "__reply",
            &format!(
                "self.transport.call(::dextlink::Call {{ selector: {sel}, scalar_input: &[{}], \
                 struct_input: {struct_in}, scalar_output: &mut __scalar_output, \
                 struct_output: {out_arg}, completion: {completion_arg} }})\
                 .map_err(|e| e.for_method({method}, {sel}))?",
                scalars_in.join(", ")
            ),
        );
        self.w.return_if(
            &cat!("__reply.scalar_output_count != ", n_out),
            &format!(
                "{ERR}(::dextlink::__private::short_reply({method}, \"scalar outputs\", {n_out}, \
                 __reply.scalar_output_count))"
            ),
        );
        for (cond, value) in &out_finish {
            self.w.return_if(cond, value);
        }
        if let Some(a) = &m.struct_output
            && matches!(a.shape, StructShape::Bytes(_) | StructShape::Bounded { .. })
        {
            self.w.stmt(&cat!(a.name, ".truncate(__reply.struct_output_size)"));
        }
        for (i, s) in m.scalar_outputs.iter().enumerate() {
            let value =
                self.decode_scalar(s.ty, &cat!("__scalar_output[", i, "]"), &m.name, &s.name);
            self.w.let_(&s.name, &value);
        }
        self.w.tail(&cat!(OK, "(", ret_value, ")"));
        self.w.close("");
    }

    /// `fn __decode(Completed) -> Result<T, Error>` for an async method.
    fn completion_decoder(&mut self, m: &Method) {
        let method = lit(&m.name);
        let n = m.completion.len();
        let c_ty = self.d.completion_ty(m);
        let values: Vec<(String, String)> = m
            .completion
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    s.name.clone(),
                    self.decode_scalar(s.ty, &cat!("values[", i, "]"), &m.name, &s.name),
                )
            })
            .collect();
        let value = match n {
            0 => "()".to_string(),
            1 => m.completion[0].name.clone(),
            _ => {
                let names: Vec<&str> = m.completion.iter().map(|s| s.name.as_str()).collect();
                cat!(self.d.completion_type_name(m), " { ", names.join(", "), " }")
            }
        };
        let w = &mut self.w;
        w.fn_(
            "fn __decode",
            &["completed: ::dextlink::Completed".to_string()],
            Some(&cat!(RESULT, "<", c_ty, ", ::dextlink::Error>")),
            true,
        );
        w.return_if(
            "!completed.status.is_success()",
            &format!(
                "{ERR}(::dextlink::Error::Completion {{ method: {method}, selector: {}u32, \
                 code: completed.status }})",
                m.selector
            ),
        );
        w.let_("values", "completed.values()");
        w.return_if(
            &cat!("values.len() < ", n),
            &format!(
                "{ERR}(::dextlink::__private::short_reply({method}, \"completion values\", {n}, \
                 values.len()))"
            ),
        );
        for (name, v) in &values {
            w.let_(name, v);
        }
        w.tail(&cat!(OK, "(", value, ")"));
        w.close("");
    }

    // ----- server --------------------------------------------------------------

    fn server(&mut self) {
        let iface = self.iface;
        self.w.doc(&format!(
            "The dext side of `{}`, for dexts modelled in Rust (e.g. in the simulator): one \
             method per external method, called by [`dispatch`] after every argument has been checked.",
            iface.name
        ));
        self.w.open("pub trait Handler");
        for (i, m) in iface.methods.iter().enumerate() {
            if i > 0 {
                self.w.blank();
            }
            self.handler_method(m);
        }
        self.w.close("");
        self.w.blank();

        for m in iface.methods.iter().filter(|m| m.is_async) {
            self.completer(m);
        }

        let w = &mut self.w;
        w.doc("Routes one external method call to `handler`, as the generated C++");
        w.doc("`ExternalMethod` does: the handshake, selector bounds, `#[unchecked]`");
        w.doc("methods by hand, DriverKit's table checks, then the same validation as");
        w.doc("the C++ thunks before the typed handler runs.");
        w.fn_(
            "pub fn dispatch<H: Handler + ?Sized>",
            &[
                "handler: &mut H".to_string(),
                "selector: u64".to_string(),
                "arguments: &mut ::dextlink::server::Arguments<'_>".to_string(),
            ],
            Some("::dextlink::IoReturn"),
            true,
        );
        w.return_if(
            "selector == u64::from(HANDSHAKE_SELECTOR)",
            "::dextlink::server::handshake(arguments, FINGERPRINT, VERSION)",
        );
        w.line(&cat!("let ", OK, "(selector) = u32::try_from(selector) else {"));
        w.line("    return ::dextlink::IoReturn::UNSUPPORTED;");
        w.line("};");
        w.match_("selector");
        for (idx, m) in iface.methods.iter().enumerate() {
            let sel = cat!(m.selector, "u32");
            if m.unchecked {
                w.arm(&sel, &cat!("handler.", m.name, "(arguments)"));
                continue;
            }
            w.open(&cat!(sel, " =>"));
            w.line("// DriverKit's own checks of the table entry (docs/driverkit.md §2.2).");
            w.if_let(
                &cat!(ERR, "(code)"),
                &cat!(
                    "::dextlink::server::external_method(",
                    SOME,
                    "(&METHODS[",
                    idx,
                    "].checks), arguments)"
                ),
            );
            w.stmt("return code");
            w.close("");
            w.match_(&cat!("thunk_", m.name, "(handler, arguments)"));
            w.arm(&cat!(OK, "(())"), "::dextlink::IoReturn::SUCCESS");
            w.arm(&cat!(ERR, "(code)"), "code");
            w.close("");
            w.close("");
        }
        w.arm("_", "::dextlink::IoReturn::UNSUPPORTED");
        w.close("");
        w.close("");
        w.blank();

        for m in iface.methods.iter().filter(|m| !m.unchecked) {
            self.server_thunk(m);
        }
    }

    fn handler_method(&mut self, m: &Method) {
        let w = &mut self.w;
        w.docs(&m.docs);
        if m.unchecked {
            w.doc("Dispatched by hand (`#[unchecked]`): no checks were applied.");
            w.fn_(
                &cat!("fn ", m.name),
                &[
                    "&mut self".to_string(),
                    "arguments: &mut ::dextlink::server::Arguments<'_>".to_string(),
                ],
                Some("::dextlink::IoReturn"),
                false,
            );
            return;
        }
        let mut params = vec!["&mut self".to_string()];
        for s in &m.scalar_inputs {
            params.push(cat!(s.name, ": ", self.d.scalar_ty(s.ty)));
        }
        if let Some(a) = &m.struct_input {
            let n = &a.name;
            params.push(match a.shape {
                StructShape::Struct(i) => cat!(n, ": &", self.iface.structs[i].name),
                StructShape::Bytes(len) => cat!(n, ": &[u8; ", len, "]"),
                _ => cat!(n, ": &[u8]"),
            });
        }
        if m.is_async {
            let c = self.d.completer_name(m);
            params.push(if m.completion_check == CompletionCheck::Any {
                cat!("completion: ::core::option::Option<", c, ">")
            } else {
                cat!("completion: ", c)
            });
        }
        let out = self.d.output_ty(m);
        let w = &mut self.w;
        if params.len() > 7 {
            w.line("#[allow(clippy::too_many_arguments)]");
        }
        w.fn_(
            &cat!("fn ", m.name),
            &params,
            Some(&cat!(RESULT, "<", out, ", ::dextlink::IoReturn>")),
            false,
        );
    }

    fn completer(&mut self, m: &Method) {
        let c = self.d.completer_name(m);
        let c_ty = self.d.completion_ty(m);
        let encode: Vec<String> = match m.completion.len() {
            0 => Vec::new(),
            1 => vec![Self::encode_scalar(m.completion[0].ty, "values")],
            _ => m
                .completion
                .iter()
                .map(|s| Self::encode_scalar(s.ty, &cat!("values.", s.name)))
                .collect(),
        };
        let values_param = if m.completion.is_empty() {
            "_values: ()".to_string()
        } else {
            cat!("values: ", c_ty)
        };
        let w = &mut self.w;
        w.doc(&cat!("Completes a `", m.name, "` call (retain it to complete later)."));
        w.line("#[derive(Debug, Clone)]");
        let head = cat!("pub struct ", c);
        match w.fmt.tuple_struct(&head, "::dextlink::server::AsyncCompletion", w.indent) {
            Some(s) => w.line(&s),
            None => w.line(&cat!(head, "(::dextlink::server::AsyncCompletion);")),
        }
        w.blank();
        w.impl_("", None, c);
        w.doc("Sends a successful completion with its values.");
        w.fn_("pub fn complete", &["&self".to_string(), values_param], None, true);
        w.stmt(&cat!("self.0.complete(::dextlink::IoReturn::SUCCESS, &[", encode.join(", "), "])"));
        w.close("");
        w.blank();
        w.doc("Sends a failed completion (the values are zero).");
        w.fn_(
            "pub fn fail",
            &["&self".to_string(), "status: ::dextlink::IoReturn".to_string()],
            None,
            true,
        );
        w.stmt(&cat!("self.0.complete(status, &[0u64; ", m.completion.len(), "])"));
        w.close("");
        w.blank();
        w.doc("The untyped action, for sending anything at all (tests of the client).");
        w.fn_(
            "pub fn raw",
            &["&self".to_string()],
            Some("&::dextlink::server::AsyncCompletion"),
            true,
        );
        w.tail("&self.0");
        w.close("");
        w.close("");
        w.blank();
    }

    fn server_thunk(&mut self, m: &Method) {
        let bad = "::dextlink::IoReturn::BAD_ARGUMENT";
        let fail = cat!(ERR, "(", bad, ")");
        let w = &mut self.w;
        w.fn_(
            &cat!("fn thunk_", m.name, "<H: Handler + ?Sized>"),
            &[
                "handler: &mut H".to_string(),
                "arguments: &mut ::dextlink::server::Arguments<'_>".to_string(),
            ],
            Some(&cat!(RESULT, "<(), ::dextlink::IoReturn>")),
            true,
        );
        let mut args = Vec::new();
        for (i, s) in m.scalar_inputs.iter().enumerate() {
            let wire = cat!("arguments.scalar_input.get(", i, ").copied().ok_or(", bad, ")?");
            let decode = match s.ty {
                ScalarType::Int(IntType::U64) => wire,
                ScalarType::Int(IntType::I64) => cat!(wire, " as i64"),
                ScalarType::Int(t) if t.signed() => {
                    cat!("<", t.rust(), ">::try_from(", wire, " as i64).map_err(|_| ", bad, ")?")
                }
                ScalarType::Int(t) => {
                    cat!("<", t.rust(), ">::try_from(", wire, ").map_err(|_| ", bad, ")?")
                }
                ScalarType::Bool => {
                    cat!("match ", wire, " { 0 => false, 1 => true, _ => return ", fail, " }")
                }
                ScalarType::Enum(e) => {
                    cat!(
                        self.iface.enums[e].name,
                        "::from_wire(",
                        wire,
                        ").map_err(|_| ",
                        bad,
                        ")?"
                    )
                }
            };
            w.let_(&s.name, &decode);
            if let (ScalarType::Int(t), Some((lo, hi))) = (s.ty, s.range) {
                w.return_if(
                    &cat!("!(", int_lit(t, lo), "..=", int_lit(t, hi), ").contains(&", s.name, ")"),
                    &fail,
                );
            }
            args.push(s.name.clone());
        }
        if let Some(a) = &m.struct_input {
            let n = &a.name;
            w.let_("__input", "arguments.structure_input.bytes()");
            match a.shape {
                StructShape::Struct(i) => {
                    let t = &self.iface.structs[i].name;
                    w.line(
                        "// A copy: input bytes carry no alignment promise (docs/driverkit.md §3.2).",
                    );
                    w.let_(
                        n,
                        &cat!(
                            "<",
                            t,
                            " as ",
                            ZEROCOPY,
                            "::FromBytes>::read_from_bytes(__input).map_err(|_| ",
                            bad,
                            ")?"
                        ),
                    );
                    w.return_if(&cat!("!", n, ".is_valid()"), &fail);
                    args.push(cat!("&", n));
                }
                StructShape::Bytes(_) => {
                    w.let_(n, &cat!("__input.try_into().map_err(|_| ", bad, ")?"));
                    args.push(n.clone());
                }
                StructShape::Bounded { min, max } => {
                    w.return_if(&cat!("!(", min, "..=", max, ").contains(&__input.len())"), &fail);
                    w.let_(n, "__input");
                    args.push(n.clone());
                }
                StructShape::Variable => {}
            }
        }
        if let Some(a) = &m.struct_output {
            match a.shape {
                StructShape::Bounded { max, .. } => {
                    w.return_if(
                        &cat!("arguments.structure_output_maximum_size < ", max, "u64"),
                        &fail,
                    );
                }
                StructShape::Variable => {
                    w.line("// Only the var-output call takes a result of any size (docs/driverkit.md §3.3-3).");
                    w.return_if(
                        "arguments.structure_output_maximum_size != u64::from(::dextlink::server::VARIABLE)",
                        &fail,
                    );
                }
                _ => {}
            }
        }
        if m.is_async {
            let c = self.d.completer_name(m);
            if m.completion_check == CompletionCheck::Any {
                w.let_("completion", &cat!("arguments.completion.clone().map(", c, ")"));
            } else {
                w.let_("completion", &cat!(c, "(arguments.completion.clone().ok_or(", bad, ")?)"));
            }
            args.push("completion".to_string());
        }
        let n_out = m.scalar_outputs.len();
        if n_out > 0 {
            w.return_if(
                &format!(
                    "arguments.scalar_output.len() < {n_out} || \
                     (arguments.scalar_output_count as usize) < {n_out}"
                ),
                &fail,
            );
        }
        w.let_("__output", &cat!("handler.", m.name, "(", args.join(", "), ")?"));
        let outs = self.d.outputs_of(m);
        let w = &mut self.w;
        match outs.len() {
            0 => w.let_("()", "__output"),
            1 => w.let_(outs[0].0, "__output"),
            _ => {
                let names: Vec<&str> = outs.iter().map(|(n, _)| *n).collect();
                w.let_(
                    &cat!(self.d.output_type_name(m), " { ", names.join(", "), " }"),
                    "__output",
                );
            }
        }
        for (i, s) in m.scalar_outputs.iter().enumerate() {
            w.assign(
                &cat!("arguments.scalar_output[", i, "]"),
                &Self::encode_scalar(s.ty, &s.name),
            );
        }
        if let Some(a) = &m.struct_output {
            let n = &a.name;
            match a.shape {
                StructShape::Struct(_) => w.stmt(&cat!(
                    "::dextlink::server::return_structure(arguments, ",
                    ZEROCOPY,
                    "::IntoBytes::as_bytes(&",
                    n,
                    "))?"
                )),
                StructShape::Bytes(len) => {
                    w.return_if(
                        &cat!(n, ".len() != ", len),
                        &cat!(ERR, "(::dextlink::IoReturn::INTERNAL_ERROR)"),
                    );
                    w.stmt(&cat!("::dextlink::server::return_structure(arguments, &", n, ")?"));
                }
                StructShape::Bounded { min, max } => {
                    w.line("// The handler's promise to stay in bounds is checked, as in C++.");
                    w.return_if(
                        &cat!("!(", min, "..=", max, ").contains(&", n, ".len())"),
                        &cat!(ERR, "(::dextlink::IoReturn::INTERNAL_ERROR)"),
                    );
                    w.stmt(&cat!("::dextlink::server::return_structure(arguments, &", n, ")?"));
                }
                StructShape::Variable => {
                    w.assign("arguments.structure_output", &cat!(SOME, "(", n, ")"));
                }
            }
        }
        w.tail(&cat!(OK, "(())"));
        w.close("");
        w.blank();
    }
}

/// Lays out Rust expressions the way rustfmt (default configuration,
/// edition 2024) does, so that the generated module is already formatted.
///
/// The emitter writes each statement or expression as one line of Rust text;
/// this module parses that text into a small expression tree and reflows it
/// with rustfmt's own rules for the constructs the emitter uses (calls and
/// their overflowing last argument, method chains, struct literals, arrays,
/// binary operators, closures, `match`), with rustfmt's width heuristics. An
/// expression that rustfmt could not format either is left on one line, as
/// rustfmt leaves it.
///
/// The functions follow rustfmt's own (`overflow.rs`, `chains.rs`,
/// `pairs.rs`, `expr.rs`, `matches.rs`, `items.rs`), shape for shape, for
/// block indentation only; `schema/tests/rust_output.rs` checks the result
/// with `rustfmt --check`. Most subexpressions fit on one line, and a node
/// that rustfmt would keep on one line (see `E::flat_ok`) is taken as it
/// was written without the search.
mod layout {
    use std::cell::Cell;

    /// rustfmt's `max_width`.
    pub const MAX_WIDTH: usize = 100;
    const TAB: usize = 4;
    // The `use_small_heuristics = "Default"` widths.
    const FN_CALL_WIDTH: usize = 60;
    const STRUCT_LIT_WIDTH: usize = 18;
    const ARRAY_WIDTH: usize = 60;
    const CHAIN_WIDTH: usize = 60;
    const SHORT_ARRAY_ELEMENT_WIDTH: usize = 10;
    /// Columns to spare before a one-line expression is taken as is.
    const FLAT_MARGIN: usize = 4;

    fn width(s: &str) -> usize {
        if s.is_ascii() { s.len() } else { s.chars().count() }
    }

    fn first_line(s: &str) -> &str {
        s.split('\n').next().unwrap_or("")
    }

    fn last_line(s: &str) -> &str {
        s.rsplit('\n').next().unwrap_or("")
    }

    fn first_line_width(s: &str) -> usize {
        width(first_line(s))
    }

    fn last_line_width(s: &str) -> usize {
        width(last_line(s))
    }

    fn multi(s: &str) -> bool {
        s.contains('\n')
    }

    fn count_newlines(s: &str) -> usize {
        s.bytes().filter(|&b| b == b'\n').count()
    }

    /// Whether the last line holds only closing delimiters (and `?`).
    fn last_line_extendable(s: &str) -> bool {
        if s.ends_with("\"#") {
            return true;
        }
        for c in s.chars().rev() {
            match c {
                '(' | ')' | ']' | '}' | '?' | '>' => continue,
                '\n' => break,
                _ if c.is_whitespace() => continue,
                _ => return false,
            }
        }
        true
    }

    fn first_line_ends_with(s: &str, c: char) -> bool {
        first_line(s).ends_with(c)
    }

    fn prefer_next_line(orig: &str, next: &str) -> bool {
        !multi(next)
            || count_newlines(orig) > count_newlines(next) + 1
            || first_line_ends_with(orig, '(') && !first_line_ends_with(next, '(')
            || first_line_ends_with(orig, '{') && !first_line_ends_with(next, '{')
            || first_line_ends_with(orig, '[') && !first_line_ends_with(next, '[')
    }

    pub fn spaces(out: &mut String, n: usize) {
        const SPACES: &str = "                                                                ";
        let mut n = n;
        while n > SPACES.len() {
            out.push_str(SPACES);
            n -= SPACES.len();
        }
        out.push_str(&SPACES[..n]);
    }

    fn newline_indent(n: usize) -> String {
        let mut s = String::with_capacity(n + 1);
        s.push('\n');
        spaces(&mut s, n);
        s
    }

    /// rustfmt's `Shape`: the width left on the current line, the block
    /// indentation (with visual alignment) and the offset into the line.
    #[derive(Debug, Clone, Copy)]
    pub struct Shape {
        width: usize,
        block: usize,
        align: usize,
        offset: usize,
    }

    impl Shape {
        /// The whole line at block indentation `indent`.
        pub fn indented(indent: usize) -> Shape {
            Shape { width: MAX_WIDTH.saturating_sub(indent), block: indent, align: 0, offset: 0 }
        }

        fn indented_with(block: usize, align: usize) -> Shape {
            Shape { width: MAX_WIDTH.saturating_sub(block + align), block, align, offset: align }
        }

        /// `width` columns at block indentation `indent`.
        pub fn legacy(width: usize, indent: usize) -> Shape {
            Shape { width, block: indent, align: 0, offset: 0 }
        }

        fn indent_width(self) -> usize {
            self.block + self.align
        }

        pub fn offset_left(self, delta: usize) -> Option<Shape> {
            Some(Shape {
                width: self.width.checked_sub(delta)?,
                offset: self.offset + delta,
                ..self
            })
        }

        pub fn sub_width(self, delta: usize) -> Option<Shape> {
            Some(Shape { width: self.width.checked_sub(delta)?, ..self })
        }

        fn shrink_left(self, delta: usize) -> Option<Shape> {
            Some(Shape {
                width: self.width.checked_sub(delta)?,
                align: self.align + delta,
                offset: self.offset + delta,
                ..self
            })
        }

        fn block_indent(self, delta: usize) -> Shape {
            if self.align == 0 {
                Shape { block: self.block + delta, align: 0, offset: 0, ..self }
            } else {
                Shape { align: self.align + delta, offset: self.align + delta, ..self }
            }
        }

        fn block_only(self) -> Shape {
            Shape { align: 0, ..self }
        }

        fn with_max_width(self) -> Shape {
            Shape { width: MAX_WIDTH.saturating_sub(self.indent_width()), ..self }
        }

        fn visual_indent(self, delta: usize) -> Shape {
            let align = self.offset + delta;
            Shape { align, offset: align, ..self }
        }

        fn used_width(self) -> usize {
            self.block + self.offset
        }

        fn rhs_overhead(self) -> usize {
            MAX_WIDTH.saturating_sub(self.used_width() + self.width)
        }

        /// A new line at this shape's indentation.
        fn indent_str(self) -> String {
            newline_indent(self.indent_width())
        }

        /// A new line at this shape's offset (rustfmt's `Shape::to_string_with_newline`).
        fn offset_str(self) -> String {
            newline_indent(self.block + self.offset)
        }
    }

    /// rustfmt's `wrap_str`: whether a rewrite fits the shape.
    fn fits(s: &str, shape: Shape) -> bool {
        if s.is_empty() {
            return true;
        }
        if first_line_width(s) > shape.width {
            return false;
        }
        if !multi(s) {
            return true;
        }
        if s.split('\n').skip(1).any(|line| width(line) > MAX_WIDTH) {
            return false;
        }
        last_line_width(s) <= shape.used_width() + shape.width
    }

    fn wrap(s: String, shape: Shape) -> Option<String> {
        if fits(&s, shape) { Some(s) } else { None }
    }

    // ----- the expression tree -----------------------------------------------

    /// An expression, borrowing its tokens from the text it was parsed from.
    #[derive(Debug)]
    pub struct E<'a> {
        k: K<'a>,
        /// The expression on one line, as the emitter wrote it (which is how
        /// rustfmt writes it on one line).
        text: &'a str,
        /// Whether rustfmt's width heuristics (which depend on the
        /// expression alone) let it stay on one line where it fits.
        flat_ok: bool,
    }

    /// What an expression is.
    #[derive(Debug)]
    pub enum K<'a> {
        /// A literal (number, string, `true`), or a raw string written by the emitter.
        Lit(&'a str),
        /// A path, possibly qualified (`<T as Trait>::f`) or with generics.
        Path(&'a str),
        /// `callee(args)`; a macro's callee ends with `!`.
        Call(&'a str, Vec<E<'a>>),
        /// `mac![elem; len]`.
        VecSemi(&'a str, Box<E<'a>>, Box<E<'a>>),
        /// A parent with `?`s, then `.field`, `.0`, `.method(args)` links.
        Chain(Box<E<'a>>, usize, Vec<Link<'a>>),
        /// `Path { field: value, shorthand }`.
        Struct(&'a str, Vec<(&'a str, Option<E<'a>>)>),
        Array(Vec<E<'a>>),
        Repeat(Box<E<'a>>, Box<E<'a>>),
        Tuple(Vec<E<'a>>),
        Paren(Box<E<'a>>),
        /// `!x`, `*x`, `-x`, `&x`, `&mut x`.
        Unary(&'static str, Box<E<'a>>),
        Binary(&'a str, Box<E<'a>>, Box<E<'a>>),
        Cast(Box<E<'a>>, &'a str),
        Index(Box<E<'a>>, Box<E<'a>>),
        Range(Option<Box<E<'a>>>, &'a str, Option<Box<E<'a>>>),
        /// `|params| body`.
        Closure(&'a str, Box<E<'a>>),
        Ret(Option<Box<E<'a>>>),
        /// `match scrutinee { pattern => body, … }`.
        Match(Box<E<'a>>, Vec<(&'a str, E<'a>)>),
        /// A type `path<args>`.
        TyPath(&'a str, Vec<E<'a>>),
        /// A tuple type.
        TyTuple(Vec<E<'a>>),
    }

    #[derive(Debug)]
    pub struct Link<'a> {
        name: &'a str,
        /// `Some` for a method call.
        args: Option<Vec<E<'a>>>,
        tries: usize,
    }

    impl E<'_> {
        fn is_simple(&self) -> bool {
            match &self.k {
                K::Lit(_) => true,
                K::Path(p) => !p.contains("::") && !p.starts_with('<'),
                K::Unary(_, e) | K::Cast(e, _) => e.is_simple(),
                K::Chain(parent, _, links) => {
                    parent.is_simple() && links.iter().all(|l| l.args.is_none())
                }
                K::Index(a, b) | K::Repeat(a, b) => a.is_simple() && b.is_simple(),
                _ => false,
            }
        }

        fn is_method_call(&self) -> bool {
            match &self.k {
                K::Chain(parent, _, links) => match links.last() {
                    Some(l) => l.args.is_some(),
                    None => parent.is_method_call(),
                },
                K::Unary(_, e) | K::Cast(e, _) => e.is_method_call(),
                _ => false,
            }
        }

        fn is_nested_call(&self) -> bool {
            match &self.k {
                K::Call(..) | K::VecSemi(..) => true,
                K::Unary(_, e) | K::Cast(e, _) => e.is_nested_call(),
                K::Chain(parent, _, links) if links.is_empty() => parent.is_nested_call(),
                _ => false,
            }
        }

        fn can_be_overflowed(&self, len: usize) -> bool {
            match &self.k {
                K::Closure(..) => true,
                K::Array(_) | K::Struct(..) | K::Call(..) | K::VecSemi(..) | K::Tuple(_) => {
                    len == 1
                }
                K::Match(..) => len == 1,
                K::Chain(parent, _, links) => match links.last() {
                    Some(l) => l.args.is_some() && len == 1,
                    None => parent.can_be_overflowed(len),
                },
                K::Unary(_, e) | K::Cast(e, _) => e.can_be_overflowed(len),
                _ => false,
            }
        }

        fn can_be_overflowed_type(&self, len: usize) -> bool {
            match &self.k {
                K::TyTuple(_) => len == 1,
                K::Unary(_, t) => t.can_be_overflowed_type(len),
                _ => false,
            }
        }

        /// rustfmt's `is_block_expr`: whether the rewrite ends in closing delimiters.
        fn is_block_expr(&self, repr: &str) -> bool {
            match &self.k {
                K::Call(..) | K::VecSemi(..) | K::Array(_) | K::Struct(..) | K::Match(..) => {
                    multi(repr)
                }
                K::Chain(parent, _, links) => match links.last() {
                    Some(l) => l.args.is_some() && multi(repr),
                    None => parent.is_block_expr(repr),
                },
                K::Paren(e) | K::Binary(_, _, e) | K::Index(_, e) | K::Unary(_, e) => {
                    e.is_block_expr(repr)
                }
                K::Closure(_, body) => body.is_block_expr(repr),
                K::Lit(_) => multi(repr) && width(last_line(repr).trim()) <= TAB,
                _ => false,
            }
        }

        fn can_flatten_block_around(&self) -> bool {
            match &self.k {
                K::Match(..)
                | K::Closure(..)
                | K::Array(_)
                | K::Call(..)
                | K::VecSemi(..)
                | K::Struct(..)
                | K::Tuple(_) => true,
                K::Chain(parent, _, links) => match links.last() {
                    Some(l) => l.args.is_some(),
                    None => parent.can_flatten_block_around(),
                },
                K::Unary(_, e) | K::Index(e, _) | K::Cast(e, _) => e.can_flatten_block_around(),
                _ => false,
            }
        }

        /// Whether a closure body may span lines without a block around it.
        fn allow_multi_line_closure_body(&self) -> bool {
            match &self.k {
                K::Match(..) | K::Struct(..) => true,
                K::Unary(_, e) | K::Cast(e, _) => e.allow_multi_line_closure_body(),
                // `x?` looks through the `?`; a method call or field does not.
                K::Chain(parent, _, links) if links.is_empty() => {
                    parent.allow_multi_line_closure_body()
                }
                _ => false,
            }
        }
    }

    // ----- parsing -----------------------------------------------------------

    /// Parses the expression subset the emitter writes. Panics on anything
    /// else: the input is the emitter's own, not a user's.
    pub fn parse(text: &str) -> E<'_> {
        let mut p = Parser { s: text, pos: 0 };
        let e = p.expr(true);
        p.end();
        e
    }

    /// Parses a `match` scrutinee (where `name {` opens the arms, not a struct).
    pub fn parse_scrutinee(text: &str) -> E<'_> {
        let mut p = Parser { s: text, pos: 0 };
        let e = p.expr(false);
        p.end();
        e
    }

    /// Parses a type the emitter writes: paths with generic arguments,
    /// tuples, references, arrays.
    pub fn parse_type(text: &str) -> E<'_> {
        let mut p = Parser { s: text, pos: 0 };
        let t = p.ty();
        p.end();
        t
    }

    impl<'a> E<'a> {
        /// A path (or other atom) written as `text`.
        pub fn path(text: &'a str) -> E<'a> {
            E::new(K::Path(text), text)
        }

        fn new(k: K<'a>, text: &'a str) -> E<'a> {
            let flat_ok = !text.contains('\n') && k.flat_ok();
            E { k, text, flat_ok }
        }

        fn width(&self) -> usize {
            width(self.text)
        }
    }

    /// The width of `a, b, c` on one line.
    fn list_width(items: &[E<'_>]) -> usize {
        items.iter().map(E::width).sum::<usize>() + 2 * items.len().saturating_sub(1)
    }

    /// rustfmt's call, array and tuple lists stay on one line when the items
    /// take at most `limit` columns (one item: any width, but a nested call
    /// is given at most `limit`).
    fn list_flat_ok(items: &[E<'_>], limit: usize) -> bool {
        items.iter().all(|i| i.flat_ok)
            && match items {
                [] => true,
                [one] => !one.is_nested_call() || one.width() <= limit,
                _ => list_width(items) <= limit,
            }
    }

    impl K<'_> {
        /// See [`E::flat_ok`]: the heuristics that depend on the expression
        /// alone. Conservative: where unsure, the full layout decides.
        fn flat_ok(&self) -> bool {
            match self {
                K::Lit(_) | K::Path(_) => true,
                K::Call(_, args) => list_flat_ok(args, FN_CALL_WIDTH),
                K::VecSemi(_, a, b) | K::Repeat(a, b) | K::Index(a, b) | K::Binary(_, a, b) => {
                    a.flat_ok && b.flat_ok
                }
                K::Chain(parent, _, links) => {
                    parent.flat_ok
                        && links
                            .iter()
                            .all(|l| l.args.as_ref().is_none_or(|a| list_flat_ok(a, FN_CALL_WIDTH)))
                        && (links.len() <= 1 || {
                            let tries: usize = links.iter().map(|l| l.tries).sum();
                            let w = parent.width()
                                + links
                                    .iter()
                                    .map(|l| {
                                        1 + l.name.len()
                                            + l.args.as_ref().map_or(0, |a| list_width(a) + 2)
                                    })
                                    .sum::<usize>()
                                + tries;
                            w + 2 <= CHAIN_WIDTH
                        })
                }
                K::Struct(_, fields) => {
                    let body: usize = fields
                        .iter()
                        .map(|(name, value)| {
                            name.len() + value.as_ref().map_or(0, |v| 2 + v.width())
                        })
                        .sum::<usize>()
                        + 2 * fields.len().saturating_sub(1);
                    body <= STRUCT_LIT_WIDTH
                        && fields.iter().all(|(_, v)| v.as_ref().is_none_or(|v| v.flat_ok))
                }
                K::Array(items) => list_flat_ok(items, ARRAY_WIDTH),
                K::Tuple(items) | K::TyTuple(items) => list_flat_ok(items, FN_CALL_WIDTH),
                K::Paren(inner) => inner.flat_ok && !matches!(inner.k, K::Paren(_)),
                K::Unary(_, e) | K::Cast(e, _) | K::Closure(_, e) => e.flat_ok,
                K::Range(a, _, b) => {
                    a.as_ref().is_none_or(|a| a.flat_ok) && b.as_ref().is_none_or(|b| b.flat_ok)
                }
                K::Ret(e) => e.as_ref().is_none_or(|e| e.flat_ok),
                K::Match(..) => false,
                K::TyPath(_, args) => args.iter().all(|a| a.flat_ok),
            }
        }
    }

    struct Parser<'a> {
        s: &'a str,
        pos: usize,
    }

    fn is_ident_byte(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_'
    }

    impl<'a> Parser<'a> {
        fn bytes(&self) -> &'a [u8] {
            &self.s.as_bytes()[self.pos..]
        }

        fn end(&mut self) {
            self.ws();
            assert!(self.pos == self.s.len(), "layout: unexpected {:?}", &self.s[self.pos..]);
        }

        fn ws(&mut self) {
            while self.bytes().first().is_some_and(|b| b.is_ascii_whitespace()) {
                self.pos += 1;
            }
        }

        /// The position of the next token.
        fn start(&mut self) -> usize {
            self.ws();
            self.pos
        }

        /// The node `k`, written from `start` to here.
        fn node(&self, k: K<'a>, start: usize) -> E<'a> {
            E::new(k, self.s[start..self.pos].trim_end())
        }

        fn peek(&mut self, token: &str) -> bool {
            self.ws();
            self.bytes().starts_with(token.as_bytes())
        }

        fn eat(&mut self, token: &str) -> bool {
            if self.peek(token) {
                self.pos += token.len();
                true
            } else {
                false
            }
        }

        fn peek_kw(&mut self, kw: &str) -> bool {
            self.peek(kw) && !self.bytes().get(kw.len()).copied().is_some_and(is_ident_byte)
        }

        fn eat_kw(&mut self, kw: &str) -> bool {
            if self.peek_kw(kw) {
                self.pos += kw.len();
                true
            } else {
                false
            }
        }

        fn expect(&mut self, token: &str) {
            assert!(self.eat(token), "layout: expected {token:?} at {:?}", &self.s[self.pos..]);
        }

        fn ident(&mut self) -> &'a str {
            let start = self.start();
            while self.bytes().first().copied().is_some_and(is_ident_byte) {
                self.pos += 1;
            }
            assert!(self.pos > start, "layout: expected a name at {:?}", &self.s[start..]);
            &self.s[start..self.pos]
        }

        /// Skips a balanced `<…>`.
        fn angle(&mut self) {
            let mut depth = 0;
            loop {
                let b = self.bytes()[0];
                self.pos += 1;
                match b {
                    b'<' => depth += 1,
                    b'>' => {
                        depth -= 1;
                        if depth == 0 {
                            return;
                        }
                    }
                    _ => {}
                }
            }
        }

        fn ty(&mut self) -> E<'a> {
            let start = self.start();
            if self.eat("&") {
                let op = if self.eat_kw("mut") { "&mut " } else { "&" };
                let inner = self.ty();
                return self.node(K::Unary(op, Box::new(inner)), start);
            }
            if self.eat("(") {
                let mut items = Vec::new();
                while !self.eat(")") {
                    items.push(self.ty());
                    self.eat(",");
                }
                return self.node(K::TyTuple(items), start);
            }
            if self.eat("[") {
                let elem = self.ty();
                if self.eat("]") {
                    // A slice type.
                    return self.node(K::Path(&self.s[start..self.pos]), start);
                }
                self.expect(";");
                let len = self.expr(true);
                self.expect("]");
                return self.node(K::Repeat(Box::new(elem), Box::new(len)), start);
            }
            if self.eat("'") {
                self.ident();
                return self.node(K::Path(&self.s[start..self.pos]), start);
            }
            self.eat("::");
            loop {
                self.ident();
                if self.bytes().starts_with(b"::") {
                    self.pos += 2;
                } else {
                    break;
                }
            }
            let path = &self.s[start..self.pos];
            if !self.bytes().starts_with(b"<") {
                return self.node(K::Path(path), start);
            }
            self.pos += 1;
            let mut args = Vec::new();
            while !self.eat(">") {
                args.push(self.ty());
                self.eat(",");
            }
            self.node(K::TyPath(path, args), start)
        }

        fn expr(&mut self, structs: bool) -> E<'a> {
            let start = self.start();
            if self.eat("..") {
                return self.node(K::Range(None, "..", None), start);
            }
            let lhs = self.binary(0, structs);
            for op in ["..=", ".."] {
                if self.eat(op) {
                    let rhs = self.binary(0, structs);
                    return self
                        .node(K::Range(Some(Box::new(lhs)), op, Some(Box::new(rhs))), start);
                }
            }
            lhs
        }

        fn binary(&mut self, level: usize, structs: bool) -> E<'a> {
            const LEVELS: [&[&str]; 3] = [&["||"], &["&&"], &["==", "!=", "<=", ">=", "<", ">"]];
            if level == LEVELS.len() {
                return self.cast(structs);
            }
            let start = self.start();
            let mut lhs = self.binary(level + 1, structs);
            'outer: loop {
                for op in LEVELS[level] {
                    if self.peek(op) && !(op.len() == 1 && self.peek("=>")) {
                        self.pos += op.len();
                        let rhs = self.binary(level + 1, structs);
                        lhs = self.node(K::Binary(op, Box::new(lhs), Box::new(rhs)), start);
                        continue 'outer;
                    }
                }
                return lhs;
            }
        }

        fn cast(&mut self, structs: bool) -> E<'a> {
            let start = self.start();
            let mut e = self.unary(structs);
            while self.eat_kw("as") {
                let ty_start = self.start();
                while self.bytes().first().is_some_and(|&b| is_ident_byte(b) || b == b':') {
                    self.pos += 1;
                }
                e = self.node(K::Cast(Box::new(e), &self.s[ty_start..self.pos]), start);
            }
            e
        }

        fn unary(&mut self, structs: bool) -> E<'a> {
            let start = self.start();
            for op in ["!", "*", "-"] {
                if self.eat(op) {
                    let inner = self.unary(structs);
                    return self.node(K::Unary(op, Box::new(inner)), start);
                }
            }
            if self.eat("&") {
                let op = if self.eat_kw("mut") { "&mut " } else { "&" };
                let inner = self.unary(structs);
                return self.node(K::Unary(op, Box::new(inner)), start);
            }
            if self.eat_kw("return") {
                if self.peek(",") || self.peek(")") || self.peek("}") || self.bytes().is_empty() {
                    return self.node(K::Ret(None), start);
                }
                let inner = self.expr(structs);
                return self.node(K::Ret(Some(Box::new(inner))), start);
            }
            if self.eat_kw("match") {
                let scrutinee = self.expr(false);
                self.expect("{");
                let mut arms = Vec::new();
                while !self.eat("}") {
                    let pattern_start = self.start();
                    while !self.bytes().starts_with(b"=>") {
                        self.pos += 1;
                    }
                    let pattern = self.s[pattern_start..self.pos].trim_end();
                    self.pos += 2;
                    let body = self.expr(true);
                    arms.push((pattern, body));
                    self.eat(",");
                }
                return self.node(K::Match(Box::new(scrutinee), arms), start);
            }
            self.postfix(structs)
        }

        fn postfix(&mut self, structs: bool) -> E<'a> {
            let start = self.start();
            let mut e = self.primary(structs);
            loop {
                if self.peek("..") {
                    return e;
                }
                if self.eat(".") {
                    let name = self.ident();
                    let args = if self.peek("(") { Some(self.args("(", ")")) } else { None };
                    let link = Link { name, args, tries: 0 };
                    e = match e.k {
                        K::Chain(parent, tries, mut links) => {
                            links.push(link);
                            self.node(K::Chain(parent, tries, links), start)
                        }
                        _ => self.node(K::Chain(Box::new(e), 0, vec![link]), start),
                    };
                } else if self.eat("?") {
                    e = match e.k {
                        K::Chain(parent, mut tries, mut links) => {
                            match links.last_mut() {
                                Some(l) => l.tries += 1,
                                None => tries += 1,
                            }
                            self.node(K::Chain(parent, tries, links), start)
                        }
                        _ => self.node(K::Chain(Box::new(e), 1, Vec::new()), start),
                    };
                } else if self.eat("[") {
                    let index = self.expr(true);
                    self.expect("]");
                    e = self.node(K::Index(Box::new(e), Box::new(index)), start);
                } else {
                    return e;
                }
            }
        }

        fn args(&mut self, open: &str, close: &str) -> Vec<E<'a>> {
            self.expect(open);
            let mut args = Vec::new();
            while !self.eat(close) {
                args.push(self.expr(true));
                if !self.eat(",") {
                    self.expect(close);
                    break;
                }
            }
            args
        }

        fn primary(&mut self, structs: bool) -> E<'a> {
            let start = self.start();
            let Some(&b) = self.bytes().first() else { panic!("layout: unexpected end") };
            match b {
                b'(' => {
                    let mut items = self.args("(", ")");
                    let text = &self.s[start..self.pos];
                    if items.len() == 1 && !text[..text.len() - 1].trim_end().ends_with(',') {
                        let inner = items.pop().unwrap();
                        self.node(K::Paren(Box::new(inner)), start)
                    } else {
                        self.node(K::Tuple(items), start)
                    }
                }
                b'[' => {
                    self.pos += 1;
                    if self.eat("]") {
                        return self.node(K::Array(Vec::new()), start);
                    }
                    let first = self.expr(true);
                    if self.eat(";") {
                        let len = self.expr(true);
                        self.expect("]");
                        return self.node(K::Repeat(Box::new(first), Box::new(len)), start);
                    }
                    let mut items = vec![first];
                    while self.eat(",") {
                        if self.peek("]") {
                            break;
                        }
                        items.push(self.expr(true));
                    }
                    self.expect("]");
                    self.node(K::Array(items), start)
                }
                b'|' => {
                    self.pos += 1;
                    while self.bytes()[0] != b'|' {
                        self.pos += 1;
                    }
                    self.pos += 1;
                    let params = &self.s[start..self.pos];
                    let body = self.expr(structs);
                    self.node(K::Closure(params, Box::new(body)), start)
                }
                b'"' => {
                    self.pos += 1;
                    loop {
                        match self.bytes()[0] {
                            b'\\' => self.pos += 2,
                            b'"' => break,
                            _ => self.pos += 1,
                        }
                    }
                    self.pos += 1;
                    self.node(K::Lit(&self.s[start..self.pos]), start)
                }
                b'0'..=b'9' => {
                    while self.bytes().first().copied().is_some_and(is_ident_byte) {
                        self.pos += 1;
                    }
                    self.node(K::Lit(&self.s[start..self.pos]), start)
                }
                _ => {
                    if self.eat_kw("true") || self.eat_kw("false") {
                        return self.node(K::Lit(&self.s[start..self.pos]), start);
                    }
                    if self.eat_kw("mut") {
                        // A pattern binding `mut name`.
                        self.ident();
                        return self.node(K::Path(&self.s[start..self.pos]), start);
                    }
                    self.path(start, structs)
                }
            }
        }

        fn path(&mut self, start: usize, structs: bool) -> E<'a> {
            if self.bytes()[0] == b'<' {
                self.angle();
                self.expect("::");
            } else {
                self.eat("::");
            }
            loop {
                self.ident();
                if self.bytes().starts_with(b"::<") {
                    self.pos += 2;
                    self.angle();
                }
                if self.bytes().starts_with(b"::") && !self.bytes().starts_with(b"::<") {
                    self.pos += 2;
                } else {
                    break;
                }
            }
            let path = &self.s[start..self.pos];
            if self.bytes().starts_with(b"!") {
                self.pos += 1;
                let name = &self.s[start..self.pos];
                if self.peek("[") {
                    self.pos += 1;
                    let elem = self.expr(true);
                    self.expect(";");
                    let len = self.expr(true);
                    self.expect("]");
                    return self.node(K::VecSemi(name, Box::new(elem), Box::new(len)), start);
                }
                let args = self.args("(", ")");
                return self.node(K::Call(name, args), start);
            }
            if self.bytes().starts_with(b"(") {
                let args = self.args("(", ")");
                return self.node(K::Call(path, args), start);
            }
            if structs && self.peek("{") {
                self.pos += 1;
                let mut fields = Vec::new();
                while !self.eat("}") {
                    let name = self.ident();
                    let value = if self.eat(":") { Some(self.expr(true)) } else { None };
                    fields.push((name, value));
                    if !self.eat(",") {
                        self.expect("}");
                        break;
                    }
                }
                return self.node(K::Struct(path, fields), start);
            }
            self.node(K::Path(path), start)
        }
    }

    // ----- rewriting ---------------------------------------------------------

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Tactic {
        Horizontal,
        Vertical,
        Mixed,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Trailing {
        Always,
        Never,
        Vertical,
    }

    /// What a list holds: rustfmt treats expressions, macro arguments and
    /// types differently when it lays out a list.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Items {
        Exprs,
        MacroArgs,
        Types,
    }

    /// rustfmt's `definitive_tactic`.
    fn definitive_tactic(items: &[Option<String>], limit: usize) -> Tactic {
        let total: usize = items.iter().map(|i| i.as_deref().map_or(0, width)).sum::<usize>()
            + 2 * items.len().saturating_sub(1);
        if total <= limit && !items.iter().any(|i| i.as_deref().is_some_and(multi)) {
            Tactic::Horizontal
        } else {
            Tactic::Vertical
        }
    }

    /// rustfmt's `write_list` for comma-separated lists without comments.
    fn write_list(
        items: &[Option<String>],
        tactic: Tactic,
        shape: Shape,
        trailing: Trailing,
        ends_with_newline: bool,
    ) -> Option<String> {
        let mut trailing_separator = match trailing {
            Trailing::Always => true,
            Trailing::Vertical => tactic == Tactic::Vertical,
            Trailing::Never => false,
        };
        let indent = shape.indent_str();
        let mut out = String::new();
        let mut line_len = 0;
        let n = items.len();
        for (i, item) in items.iter().enumerate() {
            let item = item.as_deref()?;
            let (first, last) = (i == 0, i + 1 == n);
            let mut separate = !last || trailing_separator;
            match tactic {
                Tactic::Horizontal if !first => out.push(' '),
                Tactic::Vertical if !first && !item.is_empty() && !out.is_empty() => {
                    out.push_str(&indent)
                }
                Tactic::Mixed => {
                    let total = width(item) + usize::from(separate);
                    if line_len > 0 && line_len + 1 + total > shape.width {
                        out.push_str(&indent);
                        line_len = 0;
                        if ends_with_newline {
                            trailing_separator = true;
                        }
                    } else if line_len > 0 {
                        out.push(' ');
                        line_len += 1;
                    }
                    if last && ends_with_newline {
                        separate = trailing != Trailing::Never;
                    }
                    line_len += total;
                }
                _ => {}
            }
            out.push_str(item);
            if separate {
                out.push(',');
            }
        }
        Some(out)
    }

    /// The rewriter: rustfmt's `Rewrite` for [`E`], and its statement forms.
    #[derive(Debug, Default)]
    pub struct Fmt {
        force_one_line_chain: Cell<bool>,
    }

    impl Fmt {
        pub fn rw(&self, e: &E<'_>, shape: Shape) -> Option<String> {
            // What fits on one line and passes rustfmt's width heuristics
            // stays on one line: the common case, without the work below.
            if e.flat_ok && e.width() + FLAT_MARGIN <= shape.width {
                return Some(e.text.to_string());
            }
            match &e.k {
                K::Lit(s) => {
                    // String literals keep their text even when they do not
                    // fit (rustfmt 2024 leaves one-line and raw strings alone).
                    if s.starts_with('"') || s.starts_with("r#") {
                        Some(s.to_string())
                    } else {
                        wrap(s.to_string(), shape)
                    }
                }
                K::Path(s) => wrap(s.to_string(), shape),
                K::Call(callee, args) => {
                    let is_macro = callee.ends_with('!');
                    if !is_macro && width(callee) > shape.width {
                        return None;
                    }
                    self.list_of(
                        callee,
                        args,
                        shape,
                        FN_CALL_WIDTH,
                        if is_macro { Trailing::Never } else { Trailing::Vertical },
                        ("(", ")"),
                        if is_macro { Items::MacroArgs } else { Items::Exprs },
                    )
                }
                K::VecSemi(name, elem, len) => {
                    let nested = shape.offset_left(width(name))?.block_indent(TAB);
                    let lhs = self.rw(elem, nested)?;
                    let rhs = self.rw(len, nested)?;
                    if !multi(&lhs) && !multi(&rhs) && lhs.len() + rhs.len() + 8 <= shape.width {
                        Some(format!("{name}[{lhs}; {rhs}]"))
                    } else {
                        let i = nested.indent_str();
                        Some(format!("{name}[{i}{lhs};{i}{rhs}{}]", shape.indent_str()))
                    }
                }
                K::Tuple(items) => {
                    if items.is_empty() {
                        return wrap("()".to_string(), shape);
                    }
                    let trailing =
                        if items.len() == 1 { Trailing::Always } else { Trailing::Vertical };
                    self.list_of(
                        "",
                        items,
                        shape,
                        FN_CALL_WIDTH,
                        trailing,
                        ("(", ")"),
                        Items::Exprs,
                    )
                }
                K::Array(items) => self.list_of(
                    "",
                    items,
                    shape,
                    ARRAY_WIDTH,
                    Trailing::Vertical,
                    ("[", "]"),
                    Items::Exprs,
                ),
                K::Repeat(elem, len) => self.pair(elem, len, ("[", "; ", "]"), shape, false),
                K::Struct(path, fields) => self.struct_lit(path, fields, shape),
                K::Paren(inner) => {
                    let mut inner = &**inner;
                    while let K::Paren(i) = &inner.k {
                        inner = i;
                    }
                    let s = self.rw(inner, shape.offset_left(1)?.sub_width(1)?)?;
                    Some(format!("({s})"))
                }
                K::Unary(op, inner) => {
                    let s = self.rw(inner, shape.offset_left(op.len())?)?;
                    Some(format!("{op}{s}"))
                }
                K::Binary(..) => self.pairs(e, shape),
                K::Cast(inner, ty) => self.pair(inner, &E::path(ty), ("", " as ", ""), shape, true),
                K::Index(inner, index) => self.index(inner, index, shape),
                K::Range(lhs, op, rhs) => match (lhs, rhs) {
                    (Some(l), Some(r)) => self.pair(l, r, ("", op, ""), shape, true),
                    _ => Some(op.to_string()),
                },
                K::Closure(params, body) => self.closure(params, body, shape),
                K::Ret(None) => Some("return".to_string()),
                K::Ret(Some(inner)) => {
                    let s = self.rw(inner, shape.offset_left(7)?)?;
                    Some(format!("return {s}"))
                }
                K::Match(scrutinee, arms) => self.match_(scrutinee, arms, shape),
                K::Chain(parent, tries, links) => self.chain(parent, *tries, links, shape),
                K::TyPath(path, args) => {
                    let rest = self.list_of(
                        "",
                        args,
                        shape.offset_left(width(path))?,
                        MAX_WIDTH,
                        Trailing::Vertical,
                        ("<", ">"),
                        Items::Types,
                    )?;
                    Some(format!("{path}{rest}"))
                }
                K::TyTuple(items) => {
                    if items.is_empty() {
                        return wrap("()".to_string(), shape);
                    }
                    let trailing =
                        if items.len() == 1 { Trailing::Always } else { Trailing::Vertical };
                    self.list_of(
                        "",
                        items,
                        shape,
                        FN_CALL_WIDTH,
                        trailing,
                        ("(", ")"),
                        Items::Types,
                    )
                }
            }
        }

        /// `format_expr` with `ExprType::Statement`: `return` keeps room for its `;`.
        fn rw_statement(&self, e: &E<'_>, shape: Shape) -> Option<String> {
            match e.k {
                K::Ret(_) => self.rw(e, shape.sub_width(1)?),
                _ => self.rw(e, shape),
            }
        }

        // ----- lists (rustfmt's overflow.rs) ---------------------------------

        #[allow(clippy::too_many_arguments)]
        fn list_of(
            &self,
            ident: &str,
            items: &[E<'_>],
            shape: Shape,
            item_max_width: usize,
            trailing: Trailing,
            (open, close): (&str, &str),
            kind: Items,
        ) -> Option<String> {
            let used_width = width(ident);
            let one_line_width = shape.width.saturating_sub(used_width + 2);
            let one_line_shape = shape
                .offset_left(last_line_width(ident) + 1)
                .and_then(|s| s.sub_width(1))
                .unwrap_or(Shape { width: 0, ..shape });
            let nested = {
                let s = shape.block_only().block_indent(TAB).with_max_width();
                Shape { width: s.width.saturating_sub(1), ..s }
            };
            let n = items.len();
            let mut list: Vec<Option<String>> = items.iter().map(|e| self.rw(e, nested)).collect();
            let mut tactic = Tactic::Horizontal;
            if n > 0 {
                let last = &items[n - 1];
                let combine = n == 1 && kind != Items::Types && ident.len() < TAB;
                let overflow_last = combine
                    || match kind {
                        Items::Types => last.can_be_overflowed_type(n),
                        _ => last.can_be_overflowed(n),
                    };
                let mut placeholder = None;
                if overflow_last {
                    let old = self.force_one_line_chain.get();
                    if !combine && last.is_method_call() {
                        self.force_one_line_chain.set(true);
                    }
                    let arg_shape = if n == 1 && !last.is_nested_call() {
                        Some(one_line_shape)
                    } else {
                        let offset: usize = list[..n - 1]
                            .iter()
                            .map(|i| 2 + i.as_deref().map_or(0, str::len))
                            .sum();
                        Shape { width: item_max_width.min(one_line_shape.width), ..one_line_shape }
                            .offset_left(offset)
                    };
                    placeholder = arg_shape.and_then(|s| self.overflow_last_item(items, s));
                    if let Some(p) = &placeholder {
                        list[n - 1] = Some(first_line(p).to_string());
                    }
                    self.force_one_line_chain.set(old);
                }
                tactic = definitive_tactic(&list, item_max_width.min(one_line_width));
                match (overflow_last, tactic, placeholder) {
                    (true, Tactic::Horizontal, Some(overflowed)) if n == 1 => {
                        list[0] = if count_newlines(&overflowed) == 1 {
                            match self.rw(last, nested) {
                                Some(rw) if !multi(&rw) => Some(rw),
                                _ => Some(overflowed),
                            }
                        } else {
                            Some(overflowed)
                        };
                    }
                    (true, Tactic::Horizontal, Some(overflowed)) => list[n - 1] = Some(overflowed),
                    _ => {
                        list[n - 1] = self.rw(last, nested);
                        let first = list[0].as_deref().unwrap_or("");
                        if n == 1
                            && one_line_width != 0
                            && !multi(first)
                            && width(first) <= one_line_width
                        {
                            tactic = Tactic::Horizontal;
                        } else {
                            tactic = definitive_tactic(&list, item_max_width.min(one_line_width));
                            if tactic == Tactic::Vertical {
                                let special = kind == Items::MacroArgs
                                    && matches!(
                                        ident,
                                        "assert!" | "format_args!" | "write!" | "writeln!"
                                    );
                                if !special
                                    && kind != Items::Types
                                    && items.iter().all(E::is_simple)
                                    && list.iter().all(|i| {
                                        i.as_deref().map_or(0, str::len)
                                            <= SHORT_ARRAY_ELEMENT_WIDTH
                                    })
                                {
                                    tactic = Tactic::Mixed;
                                }
                            }
                        }
                    }
                }
            }
            let items_str =
                write_list(&list, tactic, nested, trailing, tactic != Tactic::Horizontal)?;
            let wrap_width = shape.width.saturating_sub(last_line_width(ident));
            let extend_width =
                if items_str.is_empty() { 2 } else { first_line_width(&items_str) + 1 };
            let mut out = String::with_capacity(ident.len() + items_str.len() + 16);
            out.push_str(ident);
            out.push_str(open);
            if tactic == Tactic::Horizontal && extend_width <= wrap_width {
                out.push_str(&items_str);
            } else {
                if !items_str.is_empty() {
                    out.push_str(&nested.indent_str());
                    out.push_str(&items_str);
                }
                out.push_str(&shape.block_only().indent_str());
            }
            out.push_str(close);
            Some(out)
        }

        fn overflow_last_item(&self, items: &[E<'_>], shape: Shape) -> Option<String> {
            let last = items.last()?;
            match &last.k {
                K::Closure(params, body) => {
                    if items.iter().filter(|e| matches!(e.k, K::Closure(..))).count() > 1 {
                        return None;
                    }
                    let (prefix, _) = self.closure_decl(params, shape)?;
                    if multi(&prefix) {
                        return None;
                    }
                    self.closure(params, body, shape)
                }
                _ => self.rw(last, shape),
            }
        }

        // ----- closures ------------------------------------------------------

        fn closure_decl(&self, params: &str, shape: Shape) -> Option<(String, usize)> {
            let nested = shape.shrink_left(0)?.sub_width(4)?;
            let param_shape = nested.offset_left(1)?.visual_indent(0);
            let inner = params[1..params.len() - 1].trim();
            if width(inner) > param_shape.width {
                return None;
            }
            let prefix = format!("|{inner}|");
            let extra = prefix.len() + 1;
            Some((prefix, extra))
        }

        fn closure(&self, params: &str, body: &E<'_>, shape: Shape) -> Option<String> {
            let (prefix, extra) = self.closure_decl(params, shape)?;
            let body_shape = shape.offset_left(extra)?;
            let veto_multiline = !body.allow_multi_line_closure_body();
            if let Some(rw) = self.rw(body, body_shape)
                && !(veto_multiline && multi(&rw))
            {
                return Some(format!("{prefix} {rw}"));
            }
            // The body goes into a block of its own.
            let inner = Shape::indented_with(body_shape.block + TAB, body_shape.align);
            let stmt = self.rw(body, inner).unwrap_or_else(|| body.text.to_string());
            Some(format!("{prefix} {{{}{stmt}{}}}", inner.indent_str(), body_shape.indent_str()))
        }

        // ----- chains (rustfmt's chains.rs) ----------------------------------

        fn link(&self, link: &Link<'_>, shape: Shape) -> Option<String> {
            let shape = shape.sub_width(link.tries)?;
            let mut s = match &link.args {
                Some(args) => {
                    let callee = format!(".{}", link.name);
                    self.list_of(
                        &callee,
                        args,
                        shape,
                        FN_CALL_WIDTH,
                        Trailing::Vertical,
                        ("(", ")"),
                        Items::Exprs,
                    )?
                }
                None => format!(".{}", link.name),
            };
            for _ in 0..link.tries {
                s.push('?');
            }
            Some(s)
        }

        fn chain(
            &self,
            parent: &E<'_>,
            parent_tries: usize,
            links: &[Link<'_>],
            shape: Shape,
        ) -> Option<String> {
            let mut root = self.rw(parent, shape.sub_width(parent_tries)?)?;
            for _ in 0..parent_tries {
                root.push('?');
            }
            if links.is_empty() {
                return Some(root);
            }
            let mut root_ends_with_block = parent.is_block_expr(&root);
            let tab_width = TAB.saturating_sub(shape.offset);
            let mut children = links;
            while root.len() <= tab_width && !multi(&root) {
                let s = shape.offset_left(root.len())?;
                match self.link(&children[0], s) {
                    Some(r) => root.push_str(&r),
                    None => break,
                }
                root_ends_with_block = last_line_extendable(&root);
                children = &children[1..];
                if children.is_empty() {
                    break;
                }
            }
            if children.is_empty() {
                return wrap(root, shape);
            }
            let child_shape =
                if root_ends_with_block { shape.block_indent(0) } else { shape.block_indent(TAB) }
                    .with_max_width();
            let mut rewrites = Vec::with_capacity(children.len() + 1);
            rewrites.push(root);
            for link in &children[..children.len() - 1] {
                rewrites.push(self.link(link, child_shape)?);
            }

            // The last link, overflowing onto the first line if that reads better.
            let last = &children[children.len() - 1];
            let extendable = last_line_extendable(&rewrites[0]);
            let almost_total = if extendable {
                last_line_width(&rewrites[0])
            } else {
                rewrites.iter().map(|r| width(r)).sum()
            } + last.tries;
            let one_line_budget =
                if links.len() == 1 { shape.width } else { shape.width.min(CHAIN_WIDTH) }
                    .saturating_sub(almost_total);
            let all_in_one_line = rewrites.iter().all(|r| !multi(r)) && one_line_budget > 0;
            let last_shape = if all_in_one_line {
                shape.sub_width(last.tries)?
            } else if extendable {
                child_shape.sub_width(last.tries)?
            } else {
                child_shape.sub_width(shape.rhs_overhead() + last.tries)?
            };
            let mut fits_single_line = false;
            let mut last_str = None;
            if (all_in_one_line || extendable)
                && let Some(one_line_shape) = last_shape.offset_left(almost_total)
                && let Some(rw) = self.link(last, one_line_shape)
            {
                let line_count = rw.lines().count();
                let could_fit_single_line = first_line_width(&rw) <= one_line_budget;
                if could_fit_single_line && line_count >= 5 {
                    last_str = Some(rw);
                    fits_single_line = all_in_one_line;
                } else {
                    let shape2 = child_shape.sub_width(shape.rhs_overhead() + last.tries)?;
                    match self.link(last, shape2) {
                        Some(new) if !could_fit_single_line => last_str = Some(new),
                        Some(new) if new.lines().count() >= line_count => {
                            last_str = Some(rw);
                            fits_single_line = could_fit_single_line && all_in_one_line;
                        }
                        Some(new) => last_str = Some(new),
                        None => {
                            last_str = Some(rw);
                            fits_single_line = could_fit_single_line && all_in_one_line;
                        }
                    }
                }
            }
            let last_str = match last_str {
                Some(s) => s,
                None => self.link(last, last_shape)?,
            };
            rewrites.push(last_str);
            let result = if fits_single_line {
                rewrites.concat()
            } else {
                if self.force_one_line_chain.get() {
                    return None;
                }
                rewrites.join(&child_shape.offset_str())
            };
            wrap(result, shape)
        }

        // ----- struct literals -----------------------------------------------

        fn struct_lit(
            &self,
            path: &str,
            fields: &[(&str, Option<E<'_>>)],
            shape: Shape,
        ) -> Option<String> {
            if width(path) > shape.sub_width(2)?.width {
                return None;
            }
            if fields.is_empty() {
                return Some(format!("{path} {{}}"));
            }
            let v_shape = {
                let s = shape.block_indent(TAB);
                Shape { width: MAX_WIDTH.saturating_sub(s.indent_width()), ..s }
            };
            let h_width = shape.width.checked_sub(width(path) + 5).map(|w| w.min(STRUCT_LIT_WIDTH));
            let field_shape = v_shape.sub_width(1)?;
            let items: Vec<Option<String>> = fields
                .iter()
                .map(|(name, value)| match value {
                    None => Some(name.to_string()),
                    Some(value) => {
                        let value_shape = field_shape.offset_left(name.len() + 2)?;
                        match self.rw(value, value_shape) {
                            Some(v) => Some(format!("{name}: {v}")),
                            None => {
                                let block = field_shape.block + TAB;
                                let s =
                                    self.rw(value, Shape::indented_with(block, field_shape.align))?;
                                Some(format!(
                                    "{name}:{}{s}",
                                    newline_indent(block + field_shape.align)
                                ))
                            }
                        }
                    }
                })
                .collect();
            let tactic = match h_width {
                Some(w) => definitive_tactic(&items, w),
                None => Tactic::Vertical,
            };
            let fields_str = write_list(
                &items,
                tactic,
                if tactic == Tactic::Horizontal { shape } else { v_shape },
                Trailing::Vertical,
                tactic == Tactic::Vertical,
            )?;
            if multi(&fields_str) || width(&fields_str) > h_width.unwrap_or(0) {
                Some(format!(
                    "{path} {{{}{fields_str}{}}}",
                    v_shape.indent_str(),
                    shape.indent_str()
                ))
            } else {
                Some(format!("{path} {{ {fields_str} }}"))
            }
        }

        // ----- pairs (rustfmt's pairs.rs) ------------------------------------

        /// `lhs infix rhs` (with prefix and suffix); `front` puts the infix at
        /// the start of the next line when it breaks.
        fn pair(
            &self,
            lhs: &E<'_>,
            rhs: &E<'_>,
            (prefix, infix, suffix): (&str, &str, &str),
            shape: Shape,
            front: bool,
        ) -> Option<String> {
            let lhs_overhead = if front {
                shape.used_width()
            } else {
                shape.used_width() + prefix.len() + infix.trim_end().len()
            };
            let lhs_shape = Shape { width: MAX_WIDTH.saturating_sub(lhs_overhead), ..shape };
            let lhs_str = format!("{prefix}{}", self.rw(lhs, lhs_shape)?);
            let rhs_orig = shape
                .offset_left(last_line_width(&lhs_str) + infix.len())
                .and_then(|s| s.sub_width(suffix.len()))
                .and_then(|s| self.rw(rhs, s));
            if let Some(rhs_str) = &rhs_orig {
                let allow_same_line = lhs_str.len() <= TAB || first_line_ends_with(rhs_str, '{');
                if (!multi(rhs_str) || allow_same_line)
                    && last_line_width(&lhs_str)
                        + infix.len()
                        + first_line_width(rhs_str)
                        + suffix.len()
                        <= shape.width
                {
                    return Some(format!("{lhs_str}{infix}{rhs_str}{suffix}"));
                }
            }
            let mut rhs_shape = Shape::indented_with(shape.block + TAB, shape.align)
                .sub_width(shape.rhs_overhead())?;
            let infix = if front { infix.trim_start() } else { infix.trim_end() };
            if front {
                rhs_shape = rhs_shape.offset_left(infix.len())?;
            }
            let rhs_str = self.rw(rhs, rhs_shape)?;
            let indent = rhs_shape.indent_str();
            Some(if front {
                format!("{lhs_str}{indent}{infix}{rhs_str}{suffix}")
            } else {
                format!("{lhs_str}{infix}{indent}{rhs_str}{suffix}")
            })
        }

        /// A chain of one binary operator, flattened (`a && b && c`).
        fn pairs(&self, e: &E<'_>, shape: Shape) -> Option<String> {
            let K::Binary(top, ..) = &e.k else { unreachable!() };
            let mut operands = Vec::new();
            let mut ops = Vec::new();
            fn flatten<'e, 'a>(
                e: &'e E<'a>,
                top: &str,
                operands: &mut Vec<&'e E<'a>>,
                ops: &mut Vec<&'a str>,
            ) {
                match &e.k {
                    K::Binary(op, lhs, rhs) if *op == top => {
                        flatten(lhs, top, operands, ops);
                        ops.push(op);
                        operands.push(rhs);
                    }
                    _ => operands.push(e),
                }
            }
            flatten(e, top, &mut operands, &mut ops);
            let nested = shape.block_indent(TAB).with_max_width();
            let defaults: Vec<Option<String>> = operands
                .iter()
                .enumerate()
                .map(|(i, operand)| {
                    if i == 0 {
                        return self.rw(operand, shape);
                    }
                    let s = nested
                        .sub_width(shape.rhs_overhead())?
                        .offset_left(ops[i - 1].len() + 1)?;
                    self.rw(operand, s)
                })
                .collect();
            if let Some(s) = self.pairs_one_line(&operands, &ops, &defaults, shape) {
                return Some(s);
            }
            if let Some(s) = self.pairs_multiline(&operands, &ops, &defaults, shape) {
                return Some(s);
            }
            let K::Binary(op, lhs, rhs) = &e.k else { unreachable!() };
            self.pair(lhs, rhs, ("", &format!(" {op} "), ""), shape, true)
        }

        fn pairs_one_line(
            &self,
            operands: &[&E<'_>],
            ops: &[&str],
            defaults: &[Option<String>],
            shape: Shape,
        ) -> Option<String> {
            let mut result = String::new();
            for (rw, op) in defaults.iter().zip(ops) {
                let rw = rw.as_deref()?;
                if multi(rw) || result.len() > shape.width {
                    return None;
                }
                result.push_str(rw);
                result.push(' ');
                result.push_str(op);
                result.push(' ');
            }
            let prefix_len = result.len();
            let last = operands.last()?;
            let cur_shape = shape.block_only().offset_left(last_line_width(&result))?;
            let last_rw = self.rw(last, cur_shape)?;
            result.push_str(&last_rw);
            if first_line_width(&result) > shape.width {
                return None;
            }
            // A multi-line last operand is ugly unless it is a block.
            if multi(&result)
                && !last_rw.starts_with('{')
                && (last_rw.starts_with('(') || prefix_len > TAB)
            {
                return None;
            }
            wrap(result, shape)
        }

        fn pairs_multiline(
            &self,
            operands: &[&E<'_>],
            ops: &[&str],
            defaults: &[Option<String>],
            shape: Shape,
        ) -> Option<String> {
            let nested =
                shape.block_indent(TAB).with_max_width().sub_width(shape.rhs_overhead())?;
            let indent = nested.indent_str();
            let mut result = defaults[0].clone()?;
            for ((operand, default), op) in operands[1..].iter().zip(&defaults[1..]).zip(ops) {
                let offset = if multi(&result) { 0 } else { shape.used_width() };
                if last_line_width(&result) + offset <= nested.used_width()
                    && let Some(line_shape) =
                        shape.offset_left(op.len() + 2 + width(last_line(&result).trim()))
                    && let Some(rw) = self.rw(operand, line_shape)
                {
                    result.push(' ');
                    result.push_str(op);
                    result.push(' ');
                    result.push_str(&rw);
                    continue;
                }
                result.push_str(&indent);
                result.push_str(op);
                result.push(' ');
                result.push_str(default.as_deref()?);
            }
            Some(result)
        }

        fn index(&self, expr: &E<'_>, index: &E<'_>, shape: Shape) -> Option<String> {
            let expr_str = self.rw(expr, shape)?;
            let offset = last_line_width(&expr_str) + 1;
            let rhs_overhead = shape.rhs_overhead();
            let index_shape = if multi(&expr_str) {
                Shape::legacy(MAX_WIDTH, shape.block)
                    .offset_left(offset)
                    .and_then(|s| s.sub_width(1 + rhs_overhead))
            } else {
                shape.offset_left(offset).and_then(|s| s.sub_width(1))
            };
            let orig = index_shape.and_then(|s| self.rw(index, s));
            if let Some(o) = &orig
                && !multi(o)
            {
                return Some(format!("{expr_str}[{o}]"));
            }
            let indent = shape.block + TAB;
            let index_shape2 = Shape::indented_with(indent, shape.align)
                .offset_left(1)?
                .sub_width(1 + rhs_overhead)?;
            let new = self.rw(index, index_shape2);
            match (orig, new) {
                (_, Some(n)) if !multi(&n) => {
                    Some(format!("{expr_str}{}[{n}]", newline_indent(indent + shape.align)))
                }
                (None, Some(n)) => {
                    Some(format!("{expr_str}{}[{n}]", newline_indent(indent + shape.align)))
                }
                (Some(o), _) => Some(format!("{expr_str}[{o}]")),
                (None, None) => None,
            }
        }

        // ----- match ---------------------------------------------------------

        fn match_(
            &self,
            scrutinee: &E<'_>,
            arms: &[(&str, E<'_>)],
            shape: Shape,
        ) -> Option<String> {
            let cond_shape = Shape { width: MAX_WIDTH.saturating_sub(shape.used_width()), ..shape }
                .offset_left(6)?;
            let cond = self.rw(scrutinee, cond_shape)?;
            let block_sep = if last_line_extendable(&cond) {
                " ".to_string()
            } else if multi(&cond) || cond.len() + 2 > cond_shape.width {
                shape.indent_str()
            } else {
                " ".to_string()
            };
            let arm_shape = shape.block_indent(TAB).with_max_width();
            let mut out = format!("match {cond}{block_sep}{{");
            for (pattern, body) in arms {
                out.push_str(&arm_shape.indent_str());
                out.push_str(&self.arm(pattern, body, arm_shape)?);
            }
            out.push_str(&shape.indent_str());
            out.push('}');
            Some(out)
        }

        /// One `pattern => body` arm whose body is an expression (not a block).
        fn arm(&self, pattern: &str, body: &E<'_>, shape: Shape) -> Option<String> {
            if width(pattern) > shape.sub_width(5)?.width {
                return None;
            }
            let extend = body.can_flatten_block_around();
            let orig_shape = shape.offset_left(width(pattern) + 4).and_then(|s| s.sub_width(1));
            let orig = match orig_shape {
                Some(s) => match self.rw_statement(body, s) {
                    Some(b) if !multi(&b) && width(&b) <= s.width => {
                        return Some(format!("{pattern} => {b},"));
                    }
                    other => other,
                },
                None => None,
            };
            let orig_budget = orig_shape.map_or(0, |s| s.width);
            let next_indent = shape.block + TAB;
            let next = self.rw_statement(body, Shape::indented_with(next_indent, shape.align));
            let semi = if matches!(body.k, K::Ret(_)) { ";" } else { "" };
            let next_line = |n: &str| {
                format!(
                    "{pattern} => {{{}{n}{semi}{}}}",
                    newline_indent(next_indent + shape.align),
                    shape.indent_str()
                )
            };
            match (orig, next) {
                (Some(o), Some(n)) if prefer_next_line(&o, &n) => Some(next_line(&n)),
                (Some(o), _) if extend && first_line_width(&o) <= orig_budget => {
                    Some(format!("{pattern} => {o},"))
                }
                (Some(o), Some(n)) if multi(&o) => Some(next_line(&n)),
                (None, Some(n)) => Some(next_line(&n)),
                (None, None) => None,
                (Some(o), _) => Some(format!("{pattern} => {o},")),
            }
        }

        // ----- statements ----------------------------------------------------

        /// The right-hand side of `lhs` (which ends with `=`): on the same line
        /// or on the next, as rustfmt's `rewrite_assign_rhs` chooses.
        pub fn assign_rhs(&self, lhs: &str, e: &E<'_>, shape: Shape) -> Option<String> {
            let llw = if multi(lhs) {
                last_line_width(lhs).saturating_sub(shape.indent_width())
            } else {
                last_line_width(lhs)
            };
            let orig_shape = shape.offset_left(llw + 1).unwrap_or(Shape {
                width: 0,
                offset: shape.offset + llw + 1,
                ..shape
            });
            let orig = self.rw(e, orig_shape);
            if let Some(o) = &orig {
                if o.is_empty() {
                    return Some(String::new());
                }
                if !multi(o) && width(o) <= orig_shape.width {
                    return Some(format!(" {o}"));
                }
            }
            let new_shape = Shape::indented_with(orig_shape.block + TAB, orig_shape.align)
                .sub_width(orig_shape.rhs_overhead())?;
            let new = self.rw(e, new_shape);
            let new_indent = newline_indent(orig_shape.indent_width() + TAB);
            match (orig, new) {
                (Some(o), Some(n)) if !fits(&n, new_shape) => Some(format!(" {o}")),
                (Some(o), Some(n)) if prefer_next_line(&o, &n) => Some(format!("{new_indent}{n}")),
                (None, Some(n)) => Some(format!("{new_indent}{n}")),
                (None, None) => None,
                (Some(o), _) => Some(format!(" {o}")),
            }
        }

        /// A function signature, as rustfmt's `rewrite_fn_base` lays it out:
        /// `head(params) -> ret` on one line, else one parameter a line.
        /// With a body it ends with the block's `{`, without with `;`.
        pub fn fn_sig(
            &self,
            head: &str,
            params: &[&str],
            ret: Option<&str>,
            body: bool,
            indent: usize,
        ) -> String {
            let ret_ty = ret.map(parse_type);
            let ret_line = |shape: Shape| -> Option<String> {
                let ty = ret_ty.as_ref()?;
                Some(format!("-> {}", self.rw(ty, shape.offset_left(3)?)?))
            };
            let ret_str = match ret {
                None => String::new(),
                Some(r) => ret_line(Shape::indented(indent)).unwrap_or_else(|| format!("-> {r}")),
            };
            let multi_line_ret = multi(&ret_str);
            let ret_len = if multi_line_ret { 0 } else { ret_str.len() };
            // Each parameter as rustfmt rewrites it, its type broken if too long.
            let param_width = MAX_WIDTH.saturating_sub(indent + TAB + 1);
            let params: Vec<String> = params
                .iter()
                .map(|p| {
                    let Some((name, ty)) = p.split_once(": ") else { return p.to_string() };
                    let shape =
                        Shape::legacy(param_width.saturating_sub(name.len() + 2), indent + TAB);
                    match self.rw(&parse_type(ty), shape) {
                        Some(t) => format!("{name}: {t}"),
                        None => p.to_string(),
                    }
                })
                .collect();
            let mut sig = String::with_capacity(128);
            match head.split_once('<') {
                // `fn name<params>`: the generic parameters may break, one a line.
                Some((name, generics)) => {
                    let (prefix, ident) = name.rsplit_once(' ').unwrap_or(("", name));
                    let prefix = format!("{prefix} ");
                    let overhead = if body { 4 } else { 2 };
                    let used = indent + prefix.len();
                    let shape = Shape {
                        width: MAX_WIDTH.saturating_sub(used + overhead),
                        block: indent,
                        align: 0,
                        offset: used,
                    };
                    let params: Vec<E<'_>> =
                        generics[..generics.len() - 1].split(", ").map(E::path).collect();
                    sig.push_str(&prefix);
                    match self.list_of(
                        ident,
                        &params,
                        shape,
                        MAX_WIDTH,
                        Trailing::Vertical,
                        ("<", ">"),
                        Items::Types,
                    ) {
                        Some(g) => sig.push_str(&g),
                        None => sig.push_str(&head[prefix.len()..]),
                    }
                }
                None => sig.push_str(head),
            }
            let mut one_line_budget = 0;
            if !multi_line_ret && !multi(&sig) {
                let overhead = if ret_len == 0 { 2 } else { 3 } + if body { 2 } else { 1 };
                one_line_budget = MAX_WIDTH.saturating_sub(indent + sig.len() + ret_len + overhead);
            }
            let horizontal: usize =
                params.iter().map(|p| width(p)).sum::<usize>() + 2 * params.len().saturating_sub(1);
            let in_block = !params.is_empty()
                && (one_line_budget == 0
                    || horizontal > one_line_budget
                    || params.iter().any(|p| multi(p)));
            sig.push('(');
            if in_block {
                for p in &params {
                    sig.push_str(&newline_indent(indent + TAB));
                    sig.push_str(p);
                    sig.push(',');
                }
                sig.push_str(&newline_indent(indent));
            } else {
                sig.push_str(&params.join(", "));
            }
            sig.push(')');
            if ret.is_some() {
                let ret_should_indent = if in_block || params.is_empty() {
                    false
                } else if multi(&sig) || multi_line_ret {
                    true
                } else {
                    sig.len() + indent + ret_len + 1 + 2 > MAX_WIDTH
                };
                let ret_shape = if ret_should_indent {
                    sig.push_str(&newline_indent(indent));
                    Shape::indented(indent)
                } else {
                    sig.push(' ');
                    let shape = Shape::indented(indent);
                    shape.offset_left(last_line_width(&sig)).unwrap_or(shape)
                };
                if multi_line_ret || ret_should_indent {
                    match ret_line(ret_shape) {
                        Some(r) => sig.push_str(&r),
                        None => sig.push_str(&ret_str),
                    }
                } else {
                    sig.push_str(&ret_str);
                }
            }
            if !body {
                sig.push(';');
            } else if last_line_width(&sig) + 2 > MAX_WIDTH.saturating_sub(indent) {
                sig.push_str(&newline_indent(indent));
                sig.push('{');
            } else {
                sig.push_str(" {");
            }
            sig
        }

        /// `match scrutinee {`: the head of a statement-level `match`.
        pub fn match_head(&self, scrutinee: &str, indent: usize) -> Option<String> {
            let shape = Shape::indented(indent);
            let cond_shape = Shape { width: MAX_WIDTH.saturating_sub(shape.used_width()), ..shape }
                .offset_left(6)?;
            let cond = self.rw(&parse_scrutinee(scrutinee), cond_shape)?;
            let sep = if last_line_extendable(&cond) {
                " ".to_string()
            } else if multi(&cond) || cond.len() + 2 > cond_shape.width {
                shape.indent_str()
            } else {
                " ".to_string()
            };
            Some(format!("match {cond}{sep}{{"))
        }

        /// A tuple struct with one field, `head(field);`.
        pub fn tuple_struct(&self, head: &str, field: &str, indent: usize) -> Option<String> {
            let shape = Shape::indented(indent).sub_width(1)?;
            let field = [E::path(field)];
            let s = self.list_of(
                head,
                &field,
                shape,
                FN_CALL_WIDTH,
                Trailing::Vertical,
                ("(", ")"),
                Items::Types,
            )?;
            Some(s + ";")
        }

        /// `let pattern = value;`
        pub fn let_stmt(&self, pattern: &str, value: &str, indent: usize) -> Option<String> {
            let shape = Shape::indented(indent);
            let pat = parse(pattern);
            let pat_shape = shape.offset_left(4)?.sub_width(1)?;
            // A binding (`name`, `mut name`) is written whatever its width.
            let pat_str =
                if let K::Path(p) = pat.k { p.to_string() } else { self.rw(&pat, pat_shape)? };
            let lhs = format!("let {pat_str} =");
            let rhs = self.assign_rhs(&lhs, &parse(value), shape.sub_width(1)?)?;
            Some(format!("{lhs}{rhs};"))
        }

        /// `expr;`
        pub fn expr_stmt(&self, expr: &str, indent: usize) -> Option<String> {
            let shape = Shape::indented(indent).sub_width(1)?;
            Some(format!("{};", self.rw_statement(&parse(expr), shape)?))
        }

        /// `place = value;`
        pub fn assign_stmt(&self, place: &str, value: &str, indent: usize) -> Option<String> {
            let shape = Shape::indented(indent).sub_width(1)?;
            let lhs = format!("{} =", self.rw(&parse(place), shape.sub_width(2)?)?);
            let rhs = self.assign_rhs(&lhs, &parse(value), shape)?;
            Some(format!("{lhs}{rhs};"))
        }

        /// A block's final expression.
        pub fn tail(&self, expr: &str, indent: usize) -> Option<String> {
            self.rw(&parse(expr), Shape::indented(indent))
        }

        /// `if cond {` or `if let pattern = value {`: the head of the block.
        pub fn if_head(&self, pattern: Option<&str>, cond: &str, indent: usize) -> Option<String> {
            let shape = Shape::indented(indent);
            let fresh = Shape { width: MAX_WIDTH.saturating_sub(shape.used_width()), ..shape };
            let cond_shape = fresh.offset_left(3)?;
            let cond_str = match pattern {
                None => self.rw(&parse(cond), cond_shape)?,
                Some(pattern) => {
                    let pat = self.rw(&parse(pattern), cond_shape.offset_left(4)?.sub_width(2)?)?;
                    let lhs = format!("let {pat} =");
                    let rhs = self.assign_rhs(&lhs, &parse(cond), cond_shape)?;
                    format!("{lhs}{rhs}")
                }
            };
            let one_line_budget = MAX_WIDTH.saturating_sub(fresh.used_width() + 3 + 2);
            let offsetted = {
                let last = last_line(&cond_str);
                let leading = last.len() - last.trim_start().len();
                multi(&cond_str) && leading > shape.used_width()
            };
            let force_newline_brace = (multi(&cond_str) || cond_str.len() > one_line_budget)
                && (!last_line_extendable(&cond_str) || offsetted);
            Some(if force_newline_brace {
                format!("if {cond_str}{}{{", shape.indent_str())
            } else {
                format!("if {cond_str} {{")
            })
        }

        /// `pattern => body,` in a `match` at block indentation `indent`.
        pub fn arm_stmt(&self, pattern: &str, body: &str, indent: usize) -> Option<String> {
            self.arm(pattern, &parse(body), Shape::indented(indent))
        }

        /// An item `name: Type = value;` (rustfmt's `rewrite_static`).
        pub fn item(&self, head: &str, value: &E<'_>, indent: usize) -> Option<String> {
            let (name, ty) = head.split_once(": ")?;
            let ty = parse_type(ty);
            let ty_shape = Shape::indented(indent).offset_left(name.len() + 4);
            let lhs = match ty_shape.and_then(|s| self.rw(&ty, s)) {
                Some(t) => format!("{name}: {t} ="),
                None => {
                    let t = self.rw(&ty, Shape::indented(indent + TAB))?;
                    format!("{name}:{}{t} =", newline_indent(indent + TAB))
                }
            };
            let shape = Shape::legacy(MAX_WIDTH.saturating_sub(indent + 1), indent);
            let rhs = self.assign_rhs(&lhs, value, shape)?;
            Some(format!("{lhs}{rhs};"))
        }

        /// `item,` in a list laid out one item a line.
        pub fn elem(&self, item: &str, indent: usize) -> Option<String> {
            Some(format!("{},", self.rw(&parse(item), Shape::indented(indent).sub_width(1)?)?))
        }

        /// A struct field `prefix Type,` (rustfmt's `rewrite_struct_field`).
        pub fn field(&self, prefix: &str, ty: &str, indent: usize) -> Option<String> {
            let shape = Shape::indented(indent).sub_width(1)?;
            let ty = parse_type(ty);
            if let Some(t) = shape.offset_left(prefix.len() + 1).and_then(|s| self.rw(&ty, s))
                && !multi(&t)
            {
                return Some(format!("{prefix} {t},"));
            }
            let rhs = self.assign_rhs(prefix, &ty, shape)?;
            Some(format!("{prefix}{rhs},"))
        }

        /// `impl<generics> Trait for Type {` (rustfmt's `format_impl_ref_and_type`).
        pub fn impl_head(
            &self,
            generics: &str,
            trait_: Option<&str>,
            self_ty: &str,
            indent: usize,
        ) -> String {
            let mut head = format!("impl{generics}");
            if let Some(t) = trait_ {
                let used = 1 + head.len();
                let t_ty = parse_type(t);
                match self.rw(&t_ty, Shape::indented_with(indent, used)) {
                    Some(s) if !multi(&s) => {
                        head.push(' ');
                        head.push_str(&s);
                    }
                    _ => {
                        let s = self
                            .rw(&t_ty, Shape::indented(indent + TAB))
                            .unwrap_or_else(|| t.to_string());
                        head.push_str(&newline_indent(indent + TAB));
                        head.push_str(&s);
                    }
                }
            }
            let for_len = if trait_.is_some() { 4 } else { 0 };
            let budget = MAX_WIDTH.saturating_sub(last_line_width(&head) + for_len + 2 + 1);
            let ty = parse_type(self_ty);
            match self.rw(&ty, Shape::legacy(budget, indent)) {
                Some(s) if !multi(&s) && !multi(&head) => {
                    head.push_str(if trait_.is_some() { " for " } else { " " });
                    head.push_str(&s);
                    head.push_str(" {");
                }
                _ => {
                    head.push_str(&newline_indent(indent + TAB));
                    if trait_.is_some() {
                        head.push_str("for ");
                    }
                    let budget = MAX_WIDTH.saturating_sub(last_line_width(&head));
                    let s = self
                        .rw(&ty, Shape::legacy(budget, indent + TAB))
                        .unwrap_or_else(|| self_ty.to_string());
                    head.push_str(&s);
                    head.push_str(&newline_indent(indent));
                    head.push('{');
                }
            }
            head
        }
    }
}
