//! The lexer of the `.iig` subset: C++ tokens with their byte spans, comments
//! dropped, and each preprocessor line kept whole as one directive token (the
//! parser decides which directives it understands).

use crate::diag::{Diagnostic, Span};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Ident(String),
    /// `::`, `->`, `...` or one punctuation character.
    Punct(&'static str),
    Number(String),
    /// A string or character literal, quotes included.
    Literal(String),
    /// `#name rest`: `rest` has its comments removed and is trimmed; its span
    /// is `rest_span`.
    Directive {
        name: String,
        rest: String,
        rest_span: Span,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

impl Token {
    pub fn is_punct(&self, p: &str) -> bool {
        matches!(&self.tok, Tok::Punct(q) if *q == p)
    }

    pub fn ident(&self) -> Option<&str> {
        match &self.tok {
            Tok::Ident(name) => Some(name),
            _ => None,
        }
    }

    pub fn is_ident(&self, name: &str) -> bool {
        self.ident() == Some(name)
    }

    /// How the token reads in a message.
    pub fn describe(&self) -> String {
        match &self.tok {
            Tok::Ident(name) => format!("`{name}`"),
            Tok::Punct(p) => format!("`{p}`"),
            Tok::Number(n) => format!("the number `{n}`"),
            Tok::Literal(l) => format!("the literal {l}"),
            Tok::Directive { name, .. } => format!("`#{name}`"),
        }
    }
}

const PUNCTS: &[&str] = &[
    "::", "->", "...", "(", ")", "{", "}", "[", "]", ";", ",", ":", "*", "&", "=", "<", ">", "~",
    "!", "+", "-", "/", "%", "^", "|", "?", ".", "#",
];

pub fn lex(text: &str) -> Result<Vec<Token>, Diagnostic> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    // Whether only whitespace and comments precede `i` on its line.
    let mut line_start = true;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\n' {
            line_start = true;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if text[i..].starts_with("//") {
            i = text[i..].find('\n').map_or(text.len(), |n| i + n);
        } else if text[i..].starts_with("/*") {
            i = block_comment_end(text, i)?;
        } else if c == b'#' && line_start {
            let (token, end) = directive(text, i)?;
            tokens.push(token);
            i = end;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            tokens.push(Token {
                tok: Tok::Ident(text[start..i].to_string()),
                span: Span::new(start..i),
            });
            line_start = false;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'\'') {
                i += 1;
            }
            tokens.push(Token {
                tok: Tok::Number(text[start..i].to_string()),
                span: Span::new(start..i),
            });
            line_start = false;
        } else if c == b'"' || c == b'\'' {
            let start = i;
            i += 1;
            loop {
                match bytes.get(i) {
                    None | Some(b'\n') => {
                        return Err(Diagnostic::error(
                            Span::new(start..i),
                            "unterminated string or character literal",
                        )
                        .label("the literal starts here and does not end on its line"));
                    }
                    Some(b'\\') => i += 2,
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            tokens.push(Token {
                tok: Tok::Literal(text[start..i].to_string()),
                span: Span::new(start..i),
            });
            line_start = false;
        } else if let Some(p) = PUNCTS.iter().find(|p| text[i..].starts_with(**p)) {
            tokens.push(Token { tok: Tok::Punct(p), span: Span::new(i..i + p.len()) });
            i += p.len();
            line_start = false;
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(Diagnostic::error(
                Span::new(i..i + ch.len_utf8()),
                format!("unexpected character `{ch}`"),
            )
            .label("not part of the C++ that a .iig file contains"));
        }
    }
    Ok(tokens)
}

/// The offset just past the `*/` of the comment that starts at `start`.
fn block_comment_end(text: &str, start: usize) -> Result<usize, Diagnostic> {
    match text[start + 2..].find("*/") {
        Some(n) => Ok(start + 2 + n + 2),
        None => Err(Diagnostic::error(Span::new(start..start + 2), "unterminated `/*` comment")
            .label("this comment never ends")),
    }
}

/// One preprocessor line (with `\` continuations), from its `#`.
fn directive(text: &str, start: usize) -> Result<(Token, usize), Diagnostic> {
    let bytes = text.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
        i += 1;
    }
    let name_start = i;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        i += 1;
    }
    let name = text[name_start..i].to_string();
    // The rest of the logical line, without comments.
    let mut rest = String::new();
    let rest_start = i;
    let mut rest_end = i;
    while i < bytes.len() && bytes[i] != b'\n' {
        if text[i..].starts_with("//") {
            i = text[i..].find('\n').map_or(text.len(), |n| i + n);
            break;
        }
        if text[i..].starts_with("/*") {
            i = block_comment_end(text, i)?;
            rest.push(' ');
            continue;
        }
        if text[i..].starts_with("\\\n") {
            rest.push(' ');
            i += 2;
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        rest.push(ch);
        i += ch.len_utf8();
        if !ch.is_whitespace() {
            rest_end = i;
        }
    }
    let leading = rest.len() - rest.trim_start().len();
    let rest_span = Span::new((rest_start + leading).min(rest_end)..rest_end);
    let token = Token {
        tok: Tok::Directive { name, rest: rest.trim().to_string(), rest_span },
        span: Span::new(start..rest_end.max(name_start)),
    };
    Ok((token, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_comments_and_keeps_directives_whole() {
        let tokens = lex("#include <a/b.iig> // x\n/* c */ class A::B* x;").unwrap();
        match &tokens[0].tok {
            Tok::Directive { name, rest, .. } => {
                assert_eq!(name, "include");
                assert_eq!(rest, "<a/b.iig>");
            }
            other => panic!("{other:?}"),
        }
        let rest: Vec<String> = tokens[1..].iter().map(|t| format!("{:?}", t.tok)).collect();
        assert_eq!(
            rest,
            [
                "Ident(\"class\")",
                "Ident(\"A\")",
                "Punct(\"::\")",
                "Ident(\"B\")",
                "Punct(\"*\")",
                "Ident(\"x\")",
                "Punct(\";\")"
            ]
        );
    }

    #[test]
    fn an_unterminated_comment_is_an_error() {
        let error = lex("class A /* no end").unwrap_err();
        assert_eq!(error.span, Span::new(8..10));
    }
}
