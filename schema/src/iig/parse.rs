//! The parser of the `.iig` subset: include lines, an include guard, forward
//! declarations and `class NAME : public SUPER { … };` with method
//! declarations. Anything else is an error that names the construct; nothing
//! is skipped silently.

use super::lex::{Tok, Token};
use crate::diag::{Diagnostic, Span};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub includes: Vec<Include>,
    /// `struct X;` / `class X;`, as written.
    pub forwards: Vec<String>,
    pub classes: Vec<ClassDecl>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// Between the delimiters.
    pub path: String,
    pub angled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassDecl {
    pub name: String,
    pub name_span: Span,
    pub superclass: String,
    pub superclass_span: Span,
    pub methods: Vec<MethodDecl>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Protected,
    Private,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodDecl {
    pub access: Access,
    pub is_virtual: bool,
    pub is_static: bool,
    pub return_type: String,
    pub name: String,
    pub name_span: Span,
    /// From the first specifier to the `;`.
    pub span: Span,
    pub params: Vec<Param>,
    /// The parameter list was written `(void)`.
    pub void_params: bool,
    pub is_const: bool,
    pub overrides: bool,
    pub pure: bool,
    pub local_only: bool,
    /// `TYPE(Class::Method)`.
    pub action_type: Option<ActionType>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionType {
    pub class: String,
    pub method: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The declaration as written (whitespace runs made one space), without a
    /// default argument and without `TARGET`.
    pub decl: String,
    /// The type as written, without the name and any array suffix.
    pub type_text: String,
    pub name: Option<String>,
    /// `[N]` after the name, as written.
    pub array_suffix: Option<String>,
    pub default: Option<String>,
    pub span: Span,
}

/// Identifiers that end a type but are never a parameter's name.
const TYPE_KEYWORDS: &[&str] = &[
    "void", "bool", "char", "short", "int", "long", "unsigned", "signed", "float", "double",
    "const",
];

struct Parser<'a> {
    text: &'a str,
    tokens: &'a [Token],
    pos: usize,
}

pub fn parse(text: &str, tokens: &[Token]) -> Result<File, Diagnostic> {
    let mut parser = Parser { text, tokens, pos: 0 };
    parser.file()
}

fn error(span: Span, message: impl Into<String>, label: impl Into<String>) -> Diagnostic {
    Diagnostic::error(span, message).label(label)
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.pos)
    }

    fn peek_at(&self, n: usize) -> Option<&'a Token> {
        self.tokens.get(self.pos + n)
    }

    fn end_span(&self) -> Span {
        let end = self.text.len();
        Span::new(end..end)
    }

    fn next(&mut self, what: &str) -> Result<&'a Token, Diagnostic> {
        match self.tokens.get(self.pos) {
            Some(token) => {
                self.pos += 1;
                Ok(token)
            }
            None => Err(error(
                self.end_span(),
                format!("the file ends where {what} was expected"),
                "the declaration is incomplete",
            )),
        }
    }

    fn expect_punct(&mut self, p: &str, context: &str) -> Result<&'a Token, Diagnostic> {
        let token = self.next(&format!("`{p}`"))?;
        if token.is_punct(p) {
            Ok(token)
        } else {
            Err(error(
                token.span,
                format!("expected `{p}` {context}, found {}", token.describe()),
                format!("`{p}` expected here"),
            ))
        }
    }

    fn expect_ident(&mut self, what: &str) -> Result<(&'a str, Span), Diagnostic> {
        let token = self.next(what)?;
        match &token.tok {
            Tok::Ident(name) => Ok((name, token.span)),
            _ => Err(error(
                token.span,
                format!("expected {what}, found {}", token.describe()),
                format!("{what} expected here"),
            )),
        }
    }

    /// The tokens' text as written, with each gap between two tokens made one
    /// space (or nothing where they touch).
    fn join(&self, tokens: &[&Token]) -> String {
        let mut out = String::new();
        let mut last_end: Option<usize> = None;
        for token in tokens {
            if let Some(end) = last_end
                && end < token.span.start
            {
                out.push(' ');
            }
            out.push_str(&self.text[token.span.start..token.span.end]);
            last_end = Some(token.span.end);
        }
        out
    }

    fn file(&mut self) -> Result<File, Diagnostic> {
        let mut file = File { includes: Vec::new(), forwards: Vec::new(), classes: Vec::new() };
        // The guard's macro once `#ifndef X` / `#define X` opened it.
        let mut guard: Option<String> = None;
        let mut guard_closed = false;
        while let Some(token) = self.peek() {
            if guard_closed {
                return Err(error(
                    token.span,
                    format!("{} after the include guard's `#endif`", token.describe()),
                    "a .iig file ends with its include guard's `#endif`",
                ));
            }
            match &token.tok {
                Tok::Directive { name, rest, rest_span } => {
                    self.pos += 1;
                    match name.as_str() {
                        "include" => file.includes.push(include(rest, *rest_span)?),
                        "ifndef" if guard.is_none() && file.is_empty() => {
                            let define = self.peek();
                            let is_guard = matches!(define, Some(Token {
                                tok: Tok::Directive { name: d, rest: r, .. }, ..
                            }) if d == "define" && r == rest)
                                && !rest.is_empty()
                                && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                            if !is_guard {
                                return Err(error(
                                    token.span,
                                    "`#ifndef` that is not an include guard",
                                    format!(
                                        "only `#ifndef {rest}` directly followed by `#define {rest}` is understood"
                                    ),
                                ));
                            }
                            self.pos += 1;
                            guard = Some(rest.clone());
                        }
                        "endif" if guard.is_some() => guard_closed = true,
                        "define" => {
                            return Err(error(
                                token.span,
                                format!("macro definition `#define {rest}`"),
                                "dextlink iig understands `#define` only as an include guard's",
                            ));
                        }
                        other => {
                            return Err(error(
                                token.span,
                                format!("unsupported preprocessor directive `#{other}`"),
                                "dextlink iig understands `#include` and an include guard \
                                 (`#ifndef`/`#define`/`#endif`) only",
                            ));
                        }
                    }
                }
                Tok::Ident(word) if word == "class" || word == "struct" => {
                    let keyword = word.clone();
                    let start = token.span;
                    self.pos += 1;
                    let (name, name_span) = self.expect_ident("a class name")?;
                    let after = self.next("`;`, `:` or `{`")?;
                    if after.is_punct(";") {
                        file.forwards.push(format!("{keyword} {name};"));
                    } else if after.is_punct(":") && keyword == "class" {
                        file.classes.push(self.class_body(name, name_span)?);
                    } else if after.is_punct("{") || after.is_punct(":") {
                        return Err(error(
                            start.to(name_span),
                            format!("definition of {keyword} `{name}`"),
                            "a .iig declares classes `class NAME : public SUPER { … };`; \
                             structs belong in a header",
                        ));
                    } else {
                        return Err(error(
                            after.span,
                            format!(
                                "expected `;` or `:` after `{keyword} {name}`, found {}",
                                after.describe()
                            ),
                            "unexpected here",
                        ));
                    }
                }
                _ => return Err(unsupported_top_level(token)),
            }
        }
        if let Some(name) = guard
            && !guard_closed
        {
            return Err(error(
                self.end_span(),
                format!("the include guard `#ifndef {name}` has no `#endif`"),
                "the file ends here",
            ));
        }
        Ok(file)
    }

    fn class_body(&mut self, name: &str, name_span: Span) -> Result<ClassDecl, Diagnostic> {
        let access = self.next("`public`")?;
        if !access.is_ident("public") {
            return Err(error(
                access.span,
                format!("`{name}` must derive `public` from its superclass"),
                "write `: public SUPER`",
            ));
        }
        let (superclass, superclass_span) = self.expect_ident("the superclass's name")?;
        if self.peek().is_some_and(|t| t.is_punct(",")) {
            return Err(error(
                self.tokens[self.pos].span,
                "multiple inheritance",
                "a DriverKit class has exactly one superclass",
            ));
        }
        self.expect_punct("{", &format!("after `class {name} : public {superclass}`"))?;
        let mut class = ClassDecl {
            name: name.to_string(),
            name_span,
            superclass: superclass.to_string(),
            superclass_span,
            methods: Vec::new(),
        };
        let mut access = Access::Private;
        loop {
            let Some(token) = self.peek() else {
                return Err(error(
                    name_span,
                    format!("class `{name}` has no closing `}};`"),
                    "this class's body never ends",
                ));
            };
            if token.is_punct("}") {
                self.pos += 1;
                self.expect_punct(";", &format!("after the body of class `{name}`"))?;
                return Ok(class);
            }
            if let Some(word @ ("public" | "protected" | "private")) = token.ident()
                && self.peek_at(1).is_some_and(|t| t.is_punct(":"))
            {
                access = match word {
                    "public" => Access::Public,
                    "protected" => Access::Protected,
                    _ => Access::Private,
                };
                self.pos += 2;
                continue;
            }
            if token.is_ident("OSDeclareDefaultStructors") {
                self.pos += 1;
                self.expect_punct("(", "after `OSDeclareDefaultStructors`")?;
                let (declared, span) = self.expect_ident("the class name")?;
                if declared != name {
                    return Err(error(
                        span,
                        format!("`OSDeclareDefaultStructors({declared})` inside class `{name}`"),
                        format!("this must name the class: `{name}`"),
                    ));
                }
                self.expect_punct(")", "after `OSDeclareDefaultStructors(…`")?;
                if self.peek().is_some_and(|t| t.is_punct(";")) {
                    self.pos += 1;
                }
                continue;
            }
            let method = self.method(access)?;
            class.methods.push(method);
        }
    }

    fn method(&mut self, access: Access) -> Result<MethodDecl, Diagnostic> {
        let start = self.tokens[self.pos].span;
        let mut is_virtual = false;
        let mut is_static = false;
        // Specifiers before the return type.
        loop {
            let token = self.next("a method declaration")?;
            match &token.tok {
                Tok::Ident(word) if word == "virtual" => is_virtual = true,
                Tok::Ident(word) if word == "static" => is_static = true,
                Tok::Ident(word) if word == "__attribute__" => self.skip_attribute(token)?,
                Tok::Ident(word) => {
                    if let Some(what) = unsupported_member_keyword(word) {
                        return Err(error(
                            token.span,
                            format!("{what} in a class body"),
                            "a .iig class declares methods only",
                        ));
                    }
                    self.pos -= 1;
                    break;
                }
                Tok::Punct("~") => {
                    return Err(error(
                        token.span,
                        "a destructor",
                        "DriverKit classes have none: release resources in `free()`",
                    ));
                }
                Tok::Directive { name, .. } => {
                    return Err(error(
                        token.span,
                        format!("preprocessor directive `#{name}` inside a class"),
                        "dextlink iig understands no directives in a class body",
                    ));
                }
                _ => {
                    return Err(error(
                        token.span,
                        format!("expected a method declaration, found {}", token.describe()),
                        "not a method declaration",
                    ));
                }
            }
        }
        // The return type and the name: everything up to the `(`.
        let mut head: Vec<&Token> = Vec::new();
        loop {
            let token = self.next("a method declaration")?;
            if token.is_punct("(") {
                break;
            }
            if token.is_punct(";")
                || token.is_punct("=")
                || token.is_punct("[")
                || token.is_punct("{")
            {
                let name = head.last().map(|t| self.join(&[t])).unwrap_or_default();
                return Err(error(
                    start.to(token.span),
                    format!("member variable `{name}`"),
                    "a .iig class declares no data members: keep state in the class's ivars",
                ));
            }
            if token.is_punct("<") {
                return Err(error(
                    token.span,
                    "a template type",
                    "dextlink iig does not understand templates",
                ));
            }
            match &token.tok {
                Tok::Ident(_) | Tok::Punct("*" | "&" | "::") => head.push(token),
                _ => {
                    return Err(error(
                        token.span,
                        format!("unexpected {} in a method declaration", token.describe()),
                        "not part of a return type or a method name",
                    ));
                }
            }
        }
        let Some((name_token, return_tokens)) = head.split_last() else {
            return Err(error(start, "a declaration without a name", "expected a method here"));
        };
        let Some(name) = name_token.ident() else {
            return Err(error(
                name_token.span,
                "a method without a name",
                "expected its name here",
            ));
        };
        if name == "operator" {
            return Err(error(name_token.span, "an operator overload", "not supported in a .iig"));
        }
        if return_tokens.is_empty() {
            return Err(error(
                name_token.span,
                format!("`{name}(…)` without a return type (a constructor or an unknown macro)"),
                "dextlink iig does not know this macro; DriverKit classes have no constructors",
            ));
        }
        let return_type = self.join(return_tokens);
        let (params, void_params) = self.params(name)?;
        let mut method = MethodDecl {
            access,
            is_virtual,
            is_static,
            return_type,
            name: name.to_string(),
            name_span: name_token.span,
            span: start,
            params,
            void_params,
            is_const: false,
            overrides: false,
            pure: false,
            local_only: false,
            action_type: None,
        };
        // After the parameters: qualifiers and attributes, then `;`.
        loop {
            let token = self.next("`;`")?;
            match &token.tok {
                Tok::Punct(";") => {
                    method.span = start.to(token.span);
                    return Ok(method);
                }
                Tok::Punct("{") => {
                    return Err(error(
                        token.span,
                        format!("an inline body for `{name}`"),
                        "a .iig declares methods; define them in the dext's .cpp",
                    ));
                }
                Tok::Punct("=") => {
                    let value = self.next("`0`")?;
                    if matches!(&value.tok, Tok::Number(n) if n == "0") {
                        method.pure = true;
                    } else {
                        return Err(error(
                            token.span.to(value.span),
                            format!("`= {}` on `{name}`", self.join(&[value])),
                            "only `= 0` (pure virtual) is understood here",
                        ));
                    }
                }
                Tok::Ident(word) => match word.as_str() {
                    "const" => method.is_const = true,
                    "override" | "APPLE_KEXT_OVERRIDE" => method.overrides = true,
                    "LOCALONLY" => method.local_only = true,
                    // Everything runs in the dext's process here (IIG.md, "Attributes").
                    "LOCAL" | "KERNEL" | "NATIVE" | "REPLY" => {}
                    "QUEUENAME" => {
                        self.expect_punct("(", "after `QUEUENAME`")?;
                        self.expect_ident("a queue name")?;
                        self.expect_punct(")", "after `QUEUENAME(name`")?;
                    }
                    "TYPE" => {
                        self.expect_punct("(", "after `TYPE`")?;
                        let (class, class_span) = self.expect_ident("a class name")?;
                        self.expect_punct("::", "in `TYPE(Class::Method)`")?;
                        let (action, action_span) = self.expect_ident("a method name")?;
                        self.expect_punct(")", "after `TYPE(Class::Method`")?;
                        method.action_type = Some(ActionType {
                            class: class.to_string(),
                            method: action.to_string(),
                            span: class_span.to(action_span),
                        });
                    }
                    "__attribute__" => self.skip_attribute(token)?,
                    "final" => {
                        return Err(error(
                            token.span,
                            "`final` on a method",
                            "not supported in a .iig",
                        ));
                    }
                    other => {
                        return Err(error(
                            token.span,
                            format!("unknown macro or attribute `{other}` after `{name}(…)`"),
                            "dextlink iig knows LOCAL, LOCALONLY, KERNEL, QUEUENAME(…), TYPE(…), \
                             NATIVE, REPLY, override, APPLE_KEXT_OVERRIDE and __attribute__((…))",
                        ));
                    }
                },
                _ => {
                    return Err(error(
                        token.span,
                        format!("unexpected {} after `{name}(…)`", token.describe()),
                        "expected attributes, `override`, `= 0` or `;`",
                    ));
                }
            }
        }
    }

    /// `__attribute__((…))`, whose first token has been read.
    fn skip_attribute(&mut self, keyword: &Token) -> Result<(), Diagnostic> {
        self.expect_punct("(", "after `__attribute__`")?;
        let mut depth = 1;
        while depth > 0 {
            let Some(token) = self.peek() else {
                return Err(error(
                    keyword.span,
                    "unterminated `__attribute__((…))`",
                    "opened here",
                ));
            };
            self.pos += 1;
            if token.is_punct("(") {
                depth += 1;
            } else if token.is_punct(")") {
                depth -= 1;
            } else if matches!(token.tok, Tok::Directive { .. }) {
                return Err(error(token.span, "a directive inside `__attribute__`", "unexpected"));
            }
        }
        Ok(())
    }

    /// The parameter list after its `(`, through the `)`.
    fn params(&mut self, method: &str) -> Result<(Vec<Param>, bool), Diagnostic> {
        let mut groups: Vec<Vec<&Token>> = vec![Vec::new()];
        let mut depth = 0usize;
        loop {
            let token = self.next("`)`")?;
            if token.is_punct(")") && depth == 0 {
                break;
            }
            if token.is_punct("(") || token.is_punct("[") || token.is_punct("<") {
                depth += 1;
            } else if token.is_punct(")") || token.is_punct("]") || token.is_punct(">") {
                depth = depth.saturating_sub(1);
            } else if token.is_punct(";") || token.is_punct("{") || token.is_punct("}") {
                return Err(error(
                    token.span,
                    format!("unexpected {} in the parameters of `{method}`", token.describe()),
                    "the parameter list is not closed",
                ));
            }
            if token.is_punct(",") && depth == 0 {
                groups.push(Vec::new());
            } else if let Some(group) = groups.last_mut() {
                group.push(token);
            }
        }
        if groups.len() == 1 && groups[0].is_empty() {
            return Ok((Vec::new(), false));
        }
        if groups.len() == 1 && groups[0].len() == 1 && groups[0][0].is_ident("void") {
            return Ok((Vec::new(), true));
        }
        let mut params = Vec::new();
        for group in groups {
            params.push(self.param(method, &group)?);
        }
        Ok((params, false))
    }

    fn param(&self, method: &str, tokens: &[&'a Token]) -> Result<Param, Diagnostic> {
        let Some(first) = tokens.first() else {
            return Err(error(
                self.tokens[self.pos - 1].span,
                format!("an empty parameter in `{method}`"),
                "a parameter is missing before this",
            ));
        };
        let span = tokens.iter().fold(first.span, |s, t| s.to(t.span));
        let mut decl: Vec<&Token> = Vec::new();
        let mut default = None;
        let mut i = 0;
        while i < tokens.len() {
            let token = tokens[i];
            if token.is_punct("=") {
                let rest = &tokens[i + 1..];
                if rest.is_empty() {
                    return Err(error(token.span, "a default argument without a value", "here"));
                }
                default = Some(self.join(rest));
                break;
            }
            if token.is_ident("TARGET") {
                i += 1;
                continue;
            }
            if token.is_ident("__attribute__") {
                return Err(error(token.span, "`__attribute__` on a parameter", "not supported"));
            }
            if token.is_punct("(") || token.is_punct("...") {
                return Err(error(
                    token.span,
                    format!("a function pointer or variadic parameter in `{method}`"),
                    "dextlink iig does not understand this parameter",
                ));
            }
            if token.is_punct("<") {
                return Err(error(
                    token.span,
                    "a template type",
                    "dextlink iig does not understand templates",
                ));
            }
            if !matches!(
                &token.tok,
                Tok::Ident(_) | Tok::Punct("*" | "&" | "::" | "[" | "]") | Tok::Number(_)
            ) {
                return Err(error(
                    token.span,
                    format!("unexpected {} in a parameter of `{method}`", token.describe()),
                    "not part of a parameter declaration",
                ));
            }
            decl.push(token);
            i += 1;
        }
        // An array suffix `[N]` after the name.
        let mut array_suffix = None;
        let mut end = decl.len();
        if decl.last().is_some_and(|t| t.is_punct("]")) {
            let Some(open) = decl.iter().rposition(|t| t.is_punct("[")) else {
                return Err(error(span, "unbalanced `]`", "in this parameter"));
            };
            array_suffix = Some(self.join(&decl[open..]));
            end = open;
        }
        let named = end >= 2
            && decl[end - 1].ident().is_some_and(|n| !TYPE_KEYWORDS.contains(&n))
            && (decl[end - 2].ident().is_some()
                || decl[end - 2].is_punct("*")
                || decl[end - 2].is_punct("&"));
        let (type_tokens, name) = if named {
            (&decl[..end - 1], decl[end - 1].ident().map(str::to_string))
        } else {
            (&decl[..end], None)
        };
        if type_tokens.is_empty() {
            return Err(error(span, format!("a parameter of `{method}` without a type"), "here"));
        }
        Ok(Param {
            decl: self.join(&decl),
            type_text: self.join(type_tokens),
            name,
            array_suffix,
            default,
            span,
        })
    }
}

impl File {
    fn is_empty(&self) -> bool {
        self.includes.is_empty() && self.forwards.is_empty() && self.classes.is_empty()
    }
}

fn include(rest: &str, span: Span) -> Result<Include, Diagnostic> {
    let (angled, close) = match rest.chars().next() {
        Some('<') => (true, '>'),
        Some('"') => (false, '"'),
        _ => {
            return Err(error(
                span,
                format!("`#include {rest}`"),
                "expected `<path>` or `\"path\"`",
            ));
        }
    };
    match rest[1..].find(close) {
        Some(n) if rest[1 + n + 1..].trim().is_empty() && n > 0 => {
            Ok(Include { path: rest[1..1 + n].to_string(), angled })
        }
        _ => {
            Err(error(span, format!("`#include {rest}`"), "expected `<path>` or `\"path\"` alone"))
        }
    }
}

fn unsupported_member_keyword(word: &str) -> Option<&'static str> {
    Some(match word {
        "template" => "a template",
        "enum" => "an enum",
        "typedef" => "a typedef",
        "using" => "a `using` declaration",
        "friend" => "a friend declaration",
        "struct" | "class" | "union" => "a nested type",
        "inline" => "an inline method",
        "explicit" | "constexpr" => "a constructor or constexpr member",
        "static_assert" => "a static_assert",
        _ => return None,
    })
}

fn unsupported_top_level(token: &Token) -> Diagnostic {
    let what = match token.ident() {
        Some("template") => "a template".to_string(),
        Some("enum") => "an enum".to_string(),
        Some("typedef") => "a typedef".to_string(),
        Some("namespace") => "a namespace".to_string(),
        Some("using") => "a `using` declaration".to_string(),
        Some("union") => "a union".to_string(),
        Some("extern") => "an extern declaration".to_string(),
        _ => format!("unexpected {}", token.describe()),
    };
    error(
        token.span,
        format!("{what} at the top level of a .iig"),
        "dextlink iig understands #include, an include guard, forward declarations and \
         `class NAME : public SUPER { … };` here",
    )
}
