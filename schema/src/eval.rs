//! Constant expressions: integer literals, constant names, parentheses,
//! unary `-` and `!`, and the binary operators `+ - * / % << >> & | ^`.
//! Arithmetic is done in `i128` and every overflow is an error, so a size
//! or bound either evaluates exactly or is reported.

use std::collections::HashMap;

use syn::{BinOp, Expr, UnOp};

use crate::diag::{Diagnostic, Span};
use crate::syntax::span;

/// Evaluates `expr` given the constants defined so far. A constant that is
/// defined but had an error of its own maps to `None`: an expression using it
/// fails with `Err(None)`, because that error has already been reported.
pub fn eval(
    expr: &Expr,
    consts: &HashMap<String, Option<i128>>,
) -> Result<i128, Option<Diagnostic>> {
    eval_inner(expr, consts).map_err(|e| match e {
        Failure::Reported => None,
        Failure::New(d) => Some(d),
    })
}

enum Failure {
    Reported,
    New(Diagnostic),
}

impl From<Diagnostic> for Failure {
    fn from(d: Diagnostic) -> Failure {
        Failure::New(d)
    }
}

fn eval_inner(expr: &Expr, consts: &HashMap<String, Option<i128>>) -> Result<i128, Failure> {
    let here = span(expr);
    match expr {
        Expr::Lit(syn::ExprLit { lit: syn::Lit::Int(lit), .. }) => {
            if !lit.suffix().is_empty() {
                return Err(Diagnostic::error(here, "integer literals take no type suffix here")
                    .label("suffix")
                    .help(format!("write `{}`", lit.base10_digits()))
                    .into());
            }
            lit.base10_parse::<i128>().map_err(|_| {
                Diagnostic::error(here, "this integer is too large to evaluate")
                    .label("does not fit in 128 bits")
                    .help("sizes, bounds and values fit in 64 bits; use a smaller number")
                    .into()
            })
        }
        Expr::Lit(_) => Err(Diagnostic::error(here, "expected an integer")
            .label("not an integer")
            .help("sizes, bounds and values are integers or constant expressions like `SLOT_COUNT * 4`")
            .into()),
        Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
            let name = p.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
            match consts.get(&name) {
                Some(Some(value)) => Ok(*value),
                Some(None) => Err(Failure::Reported),
                None => Err(Diagnostic::error(here, format!("unknown constant `{name}`"))
                    .label("not defined before this point")
                    .help(format!("define it first: `const {name}: u32 = …;`"))
                    .into()),
            }
        }
        Expr::Paren(p) => eval_inner(&p.expr, consts),
        Expr::Group(g) => eval_inner(&g.expr, consts),
        Expr::Unary(u) => {
            let value = eval_inner(&u.expr, consts)?;
            match u.op {
                UnOp::Neg(_) => value.checked_neg().ok_or_else(|| overflow(here).into()),
                UnOp::Not(_) => Ok(!value),
                _ => Err(unsupported(here).into()),
            }
        }
        Expr::Binary(b) => {
            let lhs = eval_inner(&b.left, consts)?;
            let rhs = eval_inner(&b.right, consts)?;
            let result = match b.op {
                BinOp::Add(_) => lhs.checked_add(rhs),
                BinOp::Sub(_) => lhs.checked_sub(rhs),
                BinOp::Mul(_) => lhs.checked_mul(rhs),
                BinOp::Div(_) | BinOp::Rem(_) if rhs == 0 => {
                    return Err(Diagnostic::error(here, "division by zero in a constant expression")
                        .label("divides by zero")
                        .help("divide by a non-zero value")
                        .into());
                }
                BinOp::Div(_) => lhs.checked_div(rhs),
                BinOp::Rem(_) => lhs.checked_rem(rhs),
                BinOp::Shl(_) => u32::try_from(rhs).ok().filter(|s| *s < 127).and_then(|s| {
                    let r = lhs.checked_shl(s)?;
                    (r >> s == lhs).then_some(r)
                }),
                BinOp::Shr(_) => u32::try_from(rhs).ok().filter(|s| *s < 128).map(|s| lhs >> s),
                BinOp::BitAnd(_) => Some(lhs & rhs),
                BinOp::BitOr(_) => Some(lhs | rhs),
                BinOp::BitXor(_) => Some(lhs ^ rhs),
                _ => return Err(unsupported(here).into()),
            };
            result.ok_or_else(|| overflow(here).into())
        }
        _ => Err(unsupported(here).into()),
    }
}

fn overflow(span: Span) -> Diagnostic {
    Diagnostic::error(span, "this constant expression overflows")
        .label("overflows")
        .help("sizes, bounds and values fit in 64 bits; use smaller operands")
}

fn unsupported(span: Span) -> Diagnostic {
    Diagnostic::error(span, "this is not a constant expression")
        .label("cannot be evaluated")
        .help("use integer literals, constants and `+ - * / % << >> & | ^ ( )`")
}
