//! The schema's surface syntax: a file is lexed as Rust tokens by proc-macro2
//! and parsed with syn into this tree. Nothing here judges meaning; `check`
//! turns the tree into the validated model and reports every mistake.
//!
//! ```text
//! file      := inner-doc* attrs 'interface' IDENT '{' item* '}'
//! item      := attrs ( 'service' STRING ';' | 'version' INT ';'
//!                    | 'const' IDENT ':' TYPE '=' EXPR ';'
//!                    | 'enum' IDENT ':' TYPE '{' (attrs IDENT '=' EXPR),* '}'
//!                    | 'struct' IDENT '{' (attrs IDENT ':' TYPE),* '}'
//!                    | 'memory' INT IDENT ':' TYPE ',' ('read_only' | 'read_write') ';'
//!                    | INT '=>' 'reserved' ';'
//!                    | INT '=>' 'async'? 'fn' IDENT '(' params ')'
//!                          ('->' '(' params ')')? ('completes' '(' params ')')? ';' )
//! param     := attrs IDENT ':' TYPE ('in' RANGE)?
//! ```

use proc_macro2::{Span as PmSpan, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Ident, LitInt, LitStr, Token, Type, braced, parenthesized};

use crate::diag::{Diagnostic, Span};

mod kw {
    syn::custom_keyword!(interface);
    syn::custom_keyword!(service);
    syn::custom_keyword!(version);
    syn::custom_keyword!(memory);
    syn::custom_keyword!(reserved);
    syn::custom_keyword!(completes);
}

/// A name as written, with where it was written.
#[derive(Debug, Clone)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

impl Name {
    fn from_ident(ident: &Ident) -> Name {
        Name { text: ident.unraw().to_string(), span: Span::of(ident.span()) }
    }
}

/// `#[name]` or `#[name(args)]`, other than doc comments.
#[derive(Debug, Clone)]
pub struct Attr {
    pub name: String,
    /// The tokens inside the parentheses, as text (`any` for `#[completion(any)]`).
    pub args: Option<String>,
    pub span: Span,
}

/// Doc comments and attributes in front of an item.
#[derive(Debug, Clone, Default)]
pub struct Attrs {
    pub docs: Vec<String>,
    pub attrs: Vec<Attr>,
}

#[derive(Debug)]
pub struct File {
    pub attrs: Attrs,
    pub name: Name,
    pub items: Vec<Item>,
    /// The span of `interface Name`, for diagnostics about the whole interface.
    pub head: Span,
}

#[derive(Debug)]
pub enum Item {
    Service { value: String, span: Span },
    Version { value: LitInt },
    Const(Const),
    Enum(Enum),
    Struct(Struct),
    Memory(Memory),
    Method(Method),
    Reserved { attrs: Attrs, selector: LitInt },
}

#[derive(Debug)]
pub struct Const {
    pub attrs: Attrs,
    pub name: Name,
    pub ty: Type,
    pub value: Expr,
}

#[derive(Debug)]
pub struct Enum {
    pub attrs: Attrs,
    pub name: Name,
    pub repr: Option<Type>,
    pub variants: Vec<Variant>,
    pub brace: Span,
}

#[derive(Debug)]
pub struct Variant {
    pub attrs: Attrs,
    pub name: Name,
    pub value: Option<Expr>,
}

#[derive(Debug)]
pub struct Struct {
    pub attrs: Attrs,
    pub name: Name,
    pub fields: Vec<Field>,
    pub brace: Span,
}

#[derive(Debug)]
pub struct Field {
    pub attrs: Attrs,
    pub name: Name,
    pub ty: Type,
}

#[derive(Debug)]
pub struct Memory {
    pub attrs: Attrs,
    pub id: LitInt,
    pub name: Name,
    pub ty: Type,
    pub access: Name,
}

#[derive(Debug)]
pub struct Method {
    pub attrs: Attrs,
    pub selector: LitInt,
    pub is_async: Option<Span>,
    pub name: Name,
    pub inputs: Vec<Param>,
    pub inputs_span: Span,
    pub outputs: Vec<Param>,
    pub completion: Option<(Span, Vec<Param>)>,
}

#[derive(Debug)]
pub struct Param {
    pub attrs: Attrs,
    pub name: Name,
    pub ty: Type,
    pub range: Option<Expr>,
}

/// Lexes and parses a schema. A syntax error stops at the first problem, as
/// rustc's parser does; everything after that is `check`'s job.
pub fn parse(text: &str) -> Result<File, Diagnostic> {
    let tokens: TokenStream = text.parse().map_err(|err: proc_macro2::LexError| {
        Diagnostic::error(Span::of(err.span()), "this is not valid schema syntax")
            .label("cannot be read as a token")
            .help(
                "schemas use Rust's tokens: check for an unclosed string, `/*` comment or bracket",
            )
    })?;
    check_nesting(tokens.clone())?;
    syn::parse2::<File>(tokens).map_err(|err| {
        let mut span = Span::of(err.span());
        let message = err.to_string();
        // A missing separator is noticed at the next token, often on the next
        // line; point just after the token it should follow instead.
        if message == "expected `;`" || message == "expected `,`" {
            let before = text[..span.start.min(text.len())].trim_end();
            span = Span { start: before.len(), end: before.len() };
        }
        Diagnostic::error(span, message.clone()).label("here").help(syntax_help(&message))
    })
}

/// How deeply a schema may nest: open brackets, plus the tokens of the
/// expression or type being read at each of them. Real schemas stay under
/// 30. syn parses recursively, one level per token or bracket, so a schema
/// nested thousands deep (`&&&…u8`, `((((…))))`, `- - - … 1`, `1 + 1 + …`)
/// would overflow the stack of the CLI, or of rustc running the macro.
const MAX_NESTING: usize = 256;

/// Refuses tokens nested deeper than [`MAX_NESTING`] before syn sees them.
///
/// At each bracket level the tokens since the last `;` or `,` are counted
/// (at the interface's level an item's `{ … }` body ends a run too), except
/// an attribute's `#`, `!` and brackets, so that long lists, many items and
/// long doc comments cost nothing. The walk is iterative: it must not
/// recurse on what it guards against.
fn check_nesting(tokens: TokenStream) -> Result<(), Diagnostic> {
    use proc_macro2::{Delimiter, TokenTree, token_stream::IntoIter};

    let too_deep = |span: PmSpan| {
        Diagnostic::error(Span::of(span), "the schema nests too deeply here")
            .label(format!("more than {MAX_NESTING} levels of brackets, operators and operands"))
            .help(
                "split the expression into named constants (`const PART: u32 = …;`); types are \
                 written `Name`, `[T; N]`, `&Struct` or `&[u8; ..=MAX]`",
            )
    };
    // Each open level: its remaining tokens, and the tokens counted since its
    // last separator. `counted` is the sum over all levels.
    let mut levels: Vec<(IntoIter, usize)> = vec![(tokens.into_iter(), 0)];
    let mut counted = 0;
    let mut in_attribute = false;
    loop {
        let open = levels.len();
        let Some((rest, run)) = levels.last_mut() else { break };
        let Some(tree) = rest.next() else {
            counted -= *run;
            levels.pop();
            continue;
        };
        // At the file's level or the interface's.
        let item_level = open <= 2;
        match tree {
            TokenTree::Punct(p) if matches!(p.as_char(), ';' | ',') => {
                counted -= std::mem::take(run);
                in_attribute = false;
            }
            TokenTree::Punct(p) if p.as_char() == '#' => in_attribute = true,
            TokenTree::Punct(p) if p.as_char() == '!' && in_attribute => {}
            TokenTree::Group(g) => {
                if g.delimiter() == Delimiter::Brace && item_level {
                    counted -= std::mem::take(run);
                } else if !(in_attribute && g.delimiter() == Delimiter::Bracket) {
                    *run += 1;
                    counted += 1;
                }
                in_attribute = false;
                // Inside the group: one more level.
                if open + counted > MAX_NESTING {
                    return Err(too_deep(g.span_open()));
                }
                levels.push((g.stream().into_iter(), 0));
            }
            other => {
                *run += 1;
                counted += 1;
                in_attribute = false;
                if open - 1 + counted > MAX_NESTING {
                    return Err(too_deep(other.span()));
                }
            }
        }
    }
    Ok(())
}

/// What to write instead, for the syntax errors users hit.
fn syntax_help(message: &str) -> String {
    let known = [
        ("expected `interface`", "a schema is one `interface Name { … }` block"),
        ("expected `=>`", "methods start with their selector: `0 => fn name(…);`"),
        ("expected `;`", "end the item with `;`"),
        ("expected `,`", "separate fields, variants and parameters with `,`"),
        ("nothing may follow it", "put the other interface in a schema file of its own"),
        ("outputs are a list of named values", "name every output, e.g. `-> (status: u32)`"),
        ("write documentation as `///` comments", "replace the attribute with `/// text` lines"),
        ("not `#[", "attributes take their arguments in parentheses, e.g. `#[completion(any)]`"),
        ("unexpected end of input", "a `}` or `;` may be missing"),
        ("not followed by the item", "remove it, or put the item it describes after it"),
    ];
    if let Some((_, help)) = known.iter().find(|(pattern, _)| message.contains(pattern)) {
        return help.to_string();
    }
    if message.contains("expected one of") || message.contains("expected item") {
        return "an interface holds `service`, `version`, `const`, `enum`, `struct`, `memory`, \
                `N => fn …;` and `N => reserved;` items"
            .to_string();
    }
    if let Some(rest) = message.strip_prefix("expected ") {
        return format!("write {rest} here; the syntax is described in schema/LANGUAGE.md");
    }
    "the syntax is described in schema/LANGUAGE.md".to_string()
}

fn span_of<T: Spanned>(node: &T) -> Span {
    Span::of(node.span())
}

impl Parse for Attrs {
    fn parse(input: ParseStream) -> syn::Result<Attrs> {
        let mut attrs = Attrs::default();
        for attr in input.call(Attribute::parse_outer)? {
            attrs.push(attr)?;
        }
        Ok(attrs)
    }
}

impl Attrs {
    fn push(&mut self, attr: Attribute) -> syn::Result<()> {
        if attr.path().is_ident("doc") {
            if let syn::Meta::NameValue(nv) = &attr.meta
                && let Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value
            {
                self.docs.push(s.value());
                return Ok(());
            }
            return Err(syn::Error::new_spanned(attr, "write documentation as `///` comments"));
        }
        let name = attr.path().get_ident().map(|i| i.to_string()).unwrap_or_else(|| {
            attr.path().segments.iter().map(|s| s.ident.to_string()).collect::<Vec<_>>().join("::")
        });
        let args = match &attr.meta {
            syn::Meta::Path(_) => None,
            syn::Meta::List(list) => Some(list.tokens.to_string()),
            syn::Meta::NameValue(nv) => {
                return Err(syn::Error::new_spanned(
                    nv,
                    format!("write `#[{name}(…)]`, not `#[{name} = …]`"),
                ));
            }
        };
        self.attrs.push(Attr { name, args, span: span_of(&attr) });
        Ok(())
    }
}

fn parse_name(input: ParseStream) -> syn::Result<Name> {
    // Accept keywords here so that `check` can say which language reserves them.
    let ident = Ident::parse_any(input)?;
    Ok(Name::from_ident(&ident))
}

impl Parse for File {
    fn parse(input: ParseStream) -> syn::Result<File> {
        let mut attrs = Attrs::default();
        for attr in input.call(Attribute::parse_inner)? {
            attrs.push(attr)?;
        }
        let outer: Attrs = input.parse()?;
        if !attrs.docs.is_empty() && !outer.docs.is_empty() {
            attrs.docs.push(String::new()); // a paragraph break between `//!` and `///` docs
        }
        attrs.docs.extend(outer.docs);
        attrs.attrs.extend(outer.attrs);
        let kw: kw::interface = input.parse()?;
        let name = parse_name(input)?;
        let head = Span::of(kw.span).to(name.span);
        let content;
        braced!(content in input);
        let mut items = Vec::new();
        while !content.is_empty() {
            items.push(content.parse()?);
        }
        if !input.is_empty() {
            return Err(input.error("a schema holds exactly one interface; nothing may follow it"));
        }
        Ok(File { attrs, name, items, head })
    }
}

impl Parse for Item {
    fn parse(input: ParseStream) -> syn::Result<Item> {
        let start = input.span();
        let attrs: Attrs = input.parse()?;
        if input.is_empty() {
            return Err(syn::Error::new(
                start,
                "this doc comment or attribute is not followed by the item it describes",
            ));
        }
        let look = input.lookahead1();
        if look.peek(kw::service) {
            let kw: kw::service = input.parse()?;
            let value: LitStr = input.parse()?;
            input.parse::<Token![;]>()?;
            Ok(Item::Service { value: value.value(), span: Span::of(kw.span).to(span_of(&value)) })
        } else if look.peek(kw::version) {
            input.parse::<kw::version>()?;
            let value: LitInt = input.parse()?;
            input.parse::<Token![;]>()?;
            Ok(Item::Version { value })
        } else if look.peek(Token![const]) {
            input.parse::<Token![const]>()?;
            let name = parse_name(input)?;
            input.parse::<Token![:]>()?;
            let ty: Type = input.parse()?;
            input.parse::<Token![=]>()?;
            let value: Expr = input.parse()?;
            input.parse::<Token![;]>()?;
            Ok(Item::Const(Const { attrs, name, ty, value }))
        } else if look.peek(Token![enum]) {
            input.parse::<Token![enum]>()?;
            let name = parse_name(input)?;
            let repr = if input.peek(Token![:]) {
                input.parse::<Token![:]>()?;
                Some(input.parse()?)
            } else {
                None
            };
            let content;
            let brace = braced!(content in input);
            let variants = Punctuated::<Variant, Token![,]>::parse_terminated(&content)?;
            Ok(Item::Enum(Enum {
                attrs,
                name,
                repr,
                variants: variants.into_iter().collect(),
                brace: Span::of(brace.span.join()),
            }))
        } else if look.peek(Token![struct]) {
            input.parse::<Token![struct]>()?;
            let name = parse_name(input)?;
            let content;
            let brace = braced!(content in input);
            let fields = Punctuated::<Field, Token![,]>::parse_terminated(&content)?;
            Ok(Item::Struct(Struct {
                attrs,
                name,
                fields: fields.into_iter().collect(),
                brace: Span::of(brace.span.join()),
            }))
        } else if look.peek(kw::memory) {
            input.parse::<kw::memory>()?;
            let id: LitInt = input.parse()?;
            let name = parse_name(input)?;
            input.parse::<Token![:]>()?;
            let ty: Type = input.parse()?;
            input.parse::<Token![,]>()?;
            let access = parse_name(input)?;
            input.parse::<Token![;]>()?;
            Ok(Item::Memory(Memory { attrs, id, name, ty, access }))
        } else if look.peek(LitInt) {
            let selector: LitInt = input.parse()?;
            input.parse::<Token![=>]>()?;
            if input.peek(kw::reserved) {
                input.parse::<kw::reserved>()?;
                input.parse::<Token![;]>()?;
                return Ok(Item::Reserved { attrs, selector });
            }
            let is_async = if input.peek(Token![async]) {
                Some(Span::of(input.parse::<Token![async]>()?.span))
            } else {
                None
            };
            input.parse::<Token![fn]>()?;
            let name = parse_name(input)?;
            let (inputs_span, inputs) = parse_params(input)?;
            let outputs = if input.peek(Token![->]) {
                input.parse::<Token![->]>()?;
                if !input.peek(syn::token::Paren) {
                    return Err(input
                        .error("outputs are a list of named values: write `-> (name: Type, …)`"));
                }
                parse_params(input)?.1
            } else {
                Vec::new()
            };
            let completion = if input.peek(kw::completes) {
                let kw: kw::completes = input.parse()?;
                let (span, params) = parse_params(input)?;
                Some((Span::of(kw.span).to(span), params))
            } else {
                None
            };
            input.parse::<Token![;]>()?;
            Ok(Item::Method(Method {
                attrs,
                selector,
                is_async,
                name,
                inputs,
                inputs_span,
                outputs,
                completion,
            }))
        } else {
            Err(look.error())
        }
    }
}

fn parse_params(input: ParseStream) -> syn::Result<(Span, Vec<Param>)> {
    let content;
    let paren = parenthesized!(content in input);
    let params = Punctuated::<Param, Token![,]>::parse_terminated(&content)?;
    Ok((Span::of(paren.span.join()), params.into_iter().collect()))
}

impl Parse for Variant {
    fn parse(input: ParseStream) -> syn::Result<Variant> {
        let attrs = input.parse()?;
        let name = parse_name(input)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Variant { attrs, name, value })
    }
}

impl Parse for Field {
    fn parse(input: ParseStream) -> syn::Result<Field> {
        let attrs = input.parse()?;
        let name = parse_name(input)?;
        input.parse::<Token![:]>()?;
        let ty = input.parse()?;
        Ok(Field { attrs, name, ty })
    }
}

impl Parse for Param {
    fn parse(input: ParseStream) -> syn::Result<Param> {
        let attrs = input.parse()?;
        let name = parse_name(input)?;
        input.parse::<Token![:]>()?;
        let ty = input.parse()?;
        let range = if input.peek(Token![in]) {
            input.parse::<Token![in]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Param { attrs, name, ty, range })
    }
}

/// The span of any syn node, in schema byte offsets.
pub fn span<T: Spanned>(node: &T) -> Span {
    span_of(node)
}

/// The span of a bare proc-macro2 span.
pub fn pm_span(span: PmSpan) -> Span {
    Span::of(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nesting_error(text: &str) -> Option<Diagnostic> {
        parse(text).err().filter(|d| d.message == "the schema nests too deeply here")
    }

    /// Found by fuzzing (fuzz/regressions/schema): each of these overflowed
    /// the stack inside syn or `check` instead of failing.
    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let n = 5000;
        let cases = [
            format!("interface I {{ 0 => fn f(a: {}u8); }}", "&".repeat(n)),
            format!("interface I {{ const N: u32 = {}1{}; }}", "(".repeat(n), ")".repeat(n)),
            format!("interface I {{ const N: i32 = {}1; }}", "-".repeat(n)),
            format!("interface I {{ const N: u32 = {}1; }}", "1 + ".repeat(n)),
            format!("interface I {{ const N: u32 = {}1; }}", "return ".repeat(n)),
            format!("interface I {{ struct S {{ a: {}u8{} }} }}", "[".repeat(n), "; 1]".repeat(n)),
            format!("#[doc = {}1] interface I {{ }}", "!".repeat(n)),
        ];
        for text in &cases {
            let d = nesting_error(text).unwrap_or_else(|| panic!("not refused: {:.60}", text));
            assert!(d.span.start < text.len(), "{:?}", d.span);
        }
    }

    /// Long lists, long doc comments and many items are not nesting.
    #[test]
    fn long_but_shallow_schemas_parse() {
        let doc = "/// A line of documentation.\n".repeat(1000);
        let short = "/// A line.\n".repeat(3);
        let structs: String =
            (0..400).map(|i| format!("{short}struct S{i} {{ a: u32 }}\n")).collect();
        let enums: String = (0..400).map(|i| format!("enum E{i}: u8 {{ A = 0 }}\n")).collect();
        let fields: String = (0..400).map(|i| format!("{short}f{i}: u32,\n")).collect();
        let expr = "((1 + 2) * (3 << 4) - !0) % (((5))) ^ 6 | 7 & 8";
        let text = format!(
            "//! Inner docs.\n{doc}interface I {{\n{structs}{enums}{doc}struct Wide {{ {fields} }}\n\
             const N: u64 = {expr};\nstruct A {{ a: [[[[u8; 2]; 3]; 4]; 5] }}\n\
             0 => fn f(a: u32 in 0..=9, b: &[u8; ..=N]) -> (c: u64);\n}}\n"
        );
        if let Err(d) = parse(&text) {
            panic!("{}: {}", d.message, d.label);
        }
    }
}
