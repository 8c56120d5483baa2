//! The breaking-change check behind `dextlink check --against OLD NEW`.
//!
//! Apps and dexts ship separately, so a change is breaking when *either* an
//! old app talking to a new dext *or* a new app talking to an old dext can
//! fail. Everything is compared by selector (methods, reserved selectors) or
//! by id (memory types) and structurally (struct layouts, enum value sets),
//! never by name: names do not travel over the user-client boundary, so a
//! rename is only a note.
//!
//! The rules:
//!
//! | change | kind |
//! | --- | --- |
//! | method removed, selector not `reserved` in NEW | breaking |
//! | method removed, selector `reserved` in NEW | note |
//! | a selector reserved in OLD used by a method in NEW | breaking |
//! | a selector reserved in OLD no longer reserved in NEW | breaking |
//! | sync ↔ async, `#[unchecked]` toggled, completion check changed | breaking |
//! | scalar input/output/completion count or type changed | breaking |
//! | scalar input range narrowed or widened | breaking |
//! | structure input/output shape or struct layout changed | breaking |
//! | `Interface::dispatch_checks` differ | breaking |
//! | enum used by a method loses a value | breaking |
//! | enum used by a method gains a value | additive |
//! | memory type removed, resized or access changed | breaking |
//! | memory type added, method added | additive |
//! | service name changed | breaking |
//! | method or memory type renamed, version or fingerprint changed | note |

use std::collections::BTreeSet;
use std::fmt;

use crate::diag::Span;
use crate::model::*;

/// How much a change matters to an app and a dext shipped separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// An old app with a new dext, or a new app with an old dext, can fail.
    Breaking,
    /// Something new that the side which is not updated simply does not use.
    Additive,
    /// Worth knowing, harmless on the wire.
    Note,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Breaking => "breaking",
            ChangeKind::Additive => "additive",
            ChangeKind::Note => "note",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One difference between the OLD and the NEW interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// The selector the change is about; `None` for memory types and the
    /// interface as a whole.
    pub selector: Option<u32>,
    pub message: String,
    /// Where in the NEW schema, when the changed item exists there.
    pub new_span: Option<Span>,
    /// Where in the OLD schema, when the changed item existed there.
    pub old_span: Option<Span>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.selector {
            Some(sel) => write!(f, "{}: selector {sel}: {}", self.kind, self.message),
            None => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

/// True when any change is breaking.
pub fn has_breaking(changes: &[Change]) -> bool {
    changes.iter().any(|c| c.kind == ChangeKind::Breaking)
}

/// Every difference between `old` and `new` that matters to a shipped app or
/// dext, sorted by selector (changes without a selector come last, memory
/// types by id, then the interface itself).
pub fn compare(old: &Interface, new: &Interface) -> Vec<Change> {
    let mut cmp = Compare { old, new, out: Vec::new() };
    cmp.selectors();
    cmp.memories();
    cmp.interface();
    let mut out = cmp.out;
    // Stable: within one selector, changes keep the order they were found in.
    out.sort_by_key(|c| (c.selector.is_none(), c.selector.unwrap_or(0)));
    out
}

struct Compare<'a> {
    old: &'a Interface,
    new: &'a Interface,
    out: Vec<Change>,
}

/// An enum found at the same place in OLD and NEW, to compare value sets.
struct EnumPair {
    old: usize,
    new: usize,
    /// Where the method uses it, e.g. "scalar input 0 `mode`".
    place: String,
}

/// The method being compared, for messages and spans.
struct Ctx<'a> {
    old: &'a Method,
    new: &'a Method,
    enums: Vec<EnumPair>,
}

impl Ctx<'_> {
    fn name(&self) -> &str {
        &self.new.name
    }
}

fn access_name(a: Access) -> &'static str {
    match a {
        Access::ReadOnly => "read-only",
        Access::ReadWrite => "read-write",
    }
}

fn completion_name(c: CompletionCheck) -> &'static str {
    match c {
        CompletionCheck::Forbidden => "forbidden (checkCompletionExists = 0)",
        CompletionCheck::Required => "required (checkCompletionExists = 1)",
        CompletionCheck::Any => "optional (checkCompletionExists = -1U)",
    }
}

fn check_value(v: u32) -> String {
    if v == VARIABLE { "0xffffffff (variable)".to_string() } else { v.to_string() }
}

/// The values of a range the other one does not contain, e.g. `8..=15`.
fn outside(range: (i128, i128), other: (i128, i128)) -> String {
    let mut parts = Vec::new();
    if range.0 < other.0 {
        parts.push(span_text(range.0, (other.0 - 1).min(range.1)));
    }
    if range.1 > other.1 {
        parts.push(span_text((other.1 + 1).max(range.0), range.1));
    }
    parts.join(" and ")
}

fn span_text(lo: i128, hi: i128) -> String {
    if lo == hi { lo.to_string() } else { format!("{lo}..={hi}") }
}

impl<'a> Compare<'a> {
    fn push(
        &mut self,
        kind: ChangeKind,
        selector: Option<u32>,
        message: String,
        old_span: Option<Span>,
        new_span: Option<Span>,
    ) {
        self.out.push(Change { kind, selector, message, new_span, old_span });
    }

    fn selectors(&mut self) {
        let (old, new) = (self.old, self.new);
        let all: BTreeSet<u32> = old
            .methods
            .iter()
            .map(|m| m.selector)
            .chain(new.methods.iter().map(|m| m.selector))
            .chain(old.reserved.iter().map(|r| r.selector))
            .chain(new.reserved.iter().map(|r| r.selector))
            .collect();
        for sel in all {
            let old_reserved = old.reserved.iter().find(|r| r.selector == sel);
            let new_reserved = new.reserved.iter().find(|r| r.selector == sel);
            match (old.method(sel), new.method(sel)) {
                (Some(o), Some(n)) => self.method(o, n),
                (Some(o), None) => match new_reserved {
                    Some(r) => self.push(
                        ChangeKind::Note,
                        Some(sel),
                        format!("`{}` was removed and its selector is reserved; old apps that still call it get an error", o.name),
                        Some(o.span),
                        Some(r.span),
                    ),
                    None => self.push(
                        ChangeKind::Breaking,
                        Some(sel),
                        format!(
                            "`{}` was removed without reserving its selector; add `{sel} => reserved;` so that {sel} is never reused",
                            o.name
                        ),
                        Some(o.span),
                        None,
                    ),
                },
                (None, Some(n)) => match old_reserved {
                    Some(r) => self.push(
                        ChangeKind::Breaking,
                        Some(sel),
                        format!(
                            "selector {sel} was reserved and is reused by `{}`; shipped apps may still send {sel} with the old arguments: give `{}` a new selector",
                            n.name, n.name
                        ),
                        Some(r.span),
                        Some(n.span),
                    ),
                    None => self.push(
                        ChangeKind::Additive,
                        Some(sel),
                        format!("new method `{}`; old dexts reject it, so new apps must expect an error from them", n.name),
                        None,
                        Some(n.span),
                    ),
                },
                (None, None) => match (old_reserved, new_reserved) {
                    (Some(r), None) => self.push(
                        ChangeKind::Breaking,
                        Some(sel),
                        format!("selector {sel} is no longer reserved; keep `{sel} => reserved;` so that it is never reused"),
                        Some(r.span),
                        None,
                    ),
                    (None, Some(r)) => {
                        self.push(ChangeKind::Note, Some(sel), format!("selector {sel} is newly reserved"), None, Some(r.span))
                    }
                    _ => {}
                },
            }
        }
    }

    fn method(&mut self, o: &'a Method, n: &'a Method) {
        let sel = n.selector;
        let mut cx = Ctx { old: o, new: n, enums: Vec::new() };
        if o.name != n.name {
            self.note(
                &cx,
                format!(
                    "`{}` is renamed `{}`; the selector is unchanged, so calls still reach it",
                    o.name, n.name
                ),
            );
        }
        let name = n.name.clone();
        if o.is_async != n.is_async {
            let msg = if n.is_async {
                format!(
                    "`{name}` became async: its dispatch entry now requires a completion, so old apps' synchronous calls are rejected by the new dext, and new apps' async calls by old dexts"
                )
            } else {
                format!(
                    "`{name}` became synchronous: its dispatch entry now forbids a completion, so old apps' async calls are rejected by the new dext, and new apps' synchronous calls by old dexts"
                )
            };
            self.breaking(&cx, msg);
        }
        if o.unchecked != n.unchecked {
            let msg = if n.unchecked {
                format!(
                    "`{name}` is now #[unchecked]: the dext dispatches it by hand with raw arguments and no table checks"
                )
            } else {
                format!(
                    "`{name}` is no longer #[unchecked]: the dispatch table now checks its arguments, where old dexts took them raw"
                )
            };
            self.breaking(&cx, msg);
        }
        let natural = |m: &Method| {
            m.completion_check
                == if m.is_async { CompletionCheck::Required } else { CompletionCheck::Forbidden }
        };
        let explained_by_async = o.is_async != n.is_async && natural(o) && natural(n);
        if o.completion_check != n.completion_check && !explained_by_async {
            self.breaking(
                &cx,
                format!(
                    "`{name}`: the completion check changes from {} to {}",
                    completion_name(o.completion_check),
                    completion_name(n.completion_check)
                ),
            );
        }
        self.scalars(&mut cx, "scalar input", &o.scalar_inputs, &n.scalar_inputs);
        self.struct_arg(
            &mut cx,
            "structure input",
            true,
            o.struct_input.as_ref(),
            n.struct_input.as_ref(),
        );
        self.scalars(&mut cx, "scalar output", &o.scalar_outputs, &n.scalar_outputs);
        self.struct_arg(
            &mut cx,
            "structure output",
            false,
            o.struct_output.as_ref(),
            n.struct_output.as_ref(),
        );
        if o.is_async && n.is_async {
            self.scalars(&mut cx, "completion value", &o.completion, &n.completion);
        }

        let (a, b) = (self.old.dispatch_checks(o), self.new.dispatch_checks(n));
        if a != b {
            let fields = [
                ("checkCompletionExists", a.completion_exists, b.completion_exists),
                ("checkScalarInputCount", a.scalar_input_count, b.scalar_input_count),
                ("checkStructureInputSize", a.structure_input_size, b.structure_input_size),
                ("checkScalarOutputCount", a.scalar_output_count, b.scalar_output_count),
                ("checkStructureOutputSize", a.structure_output_size, b.structure_output_size),
            ];
            let diffs: Vec<String> = fields
                .iter()
                .filter(|(_, x, y)| x != y)
                .map(|(f, x, y)| format!("{f} {} → {}", check_value(*x), check_value(*y)))
                .collect();
            self.breaking(
                &cx,
                format!(
                    "`{name}`: the dispatch entry changes ({}); the side that is not updated fails the check with kIOReturnBadArgument",
                    diffs.join(", ")
                ),
            );
        }

        // Enum value sets, once per pair of enums.
        let mut seen = BTreeSet::new();
        for pair in std::mem::take(&mut cx.enums) {
            if !seen.insert((pair.old, pair.new)) {
                continue;
            }
            let (oe, ne) = (&self.old.enums[pair.old], &self.new.enums[pair.new]);
            let old_values: BTreeSet<i128> = oe.variants.iter().map(|v| v.value).collect();
            let new_values: BTreeSet<i128> = ne.variants.iter().map(|v| v.value).collect();
            let describe = |e: &Enum, values: &mut dyn Iterator<Item = &i128>| {
                values
                    .map(|v| {
                        let variant = e
                            .variants
                            .iter()
                            .find(|x| x.value == *v)
                            .map_or("", |x| x.name.as_str());
                        format!("{v} (`{variant}`)")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let removed: Vec<&i128> = old_values.difference(&new_values).collect();
            let added: Vec<&i128> = new_values.difference(&old_values).collect();
            if !removed.is_empty() {
                let msg = format!(
                    "`{name}`: enum `{}` ({}) loses {} {}; one side may still send what the other no longer accepts",
                    oe.name,
                    pair.place,
                    if removed.len() == 1 { "value" } else { "values" },
                    describe(oe, &mut removed.into_iter()),
                );
                self.push(ChangeKind::Breaking, Some(sel), msg, Some(oe.span), Some(ne.span));
            }
            if !added.is_empty() {
                let msg = format!(
                    "`{name}`: enum `{}` ({}) gains {} {}; only updated apps and dexts know {}",
                    ne.name,
                    pair.place,
                    if added.len() == 1 { "value" } else { "values" },
                    describe(ne, &mut added.iter().copied()),
                    if added.len() == 1 { "it" } else { "them" },
                );
                self.push(ChangeKind::Additive, Some(sel), msg, Some(oe.span), Some(ne.span));
            }
        }
    }

    fn breaking(&mut self, cx: &Ctx<'_>, message: String) {
        self.push(
            ChangeKind::Breaking,
            Some(cx.new.selector),
            message,
            Some(cx.old.span),
            Some(cx.new.span),
        );
    }

    fn note(&mut self, cx: &Ctx<'_>, message: String) {
        self.push(
            ChangeKind::Note,
            Some(cx.new.selector),
            message,
            Some(cx.old.span),
            Some(cx.new.span),
        );
    }

    fn scalar_type(iface: &Interface, ty: ScalarType) -> String {
        match ty {
            ScalarType::Int(t) => format!("`{}`", t.rust()),
            ScalarType::Bool => "`bool`".to_string(),
            ScalarType::Enum(i) => {
                format!("enum `{}: {}`", iface.enums[i].name, iface.enums[i].repr.rust())
            }
        }
    }

    fn scalars(&mut self, cx: &mut Ctx<'_>, what: &str, old: &[Scalar], new: &[Scalar]) {
        let name = cx.name().to_string();
        if old.len() != new.len() {
            self.breaking(
                cx,
                format!("`{name}`: the {what} count changes from {} to {}", old.len(), new.len()),
            );
        }
        for (i, (a, b)) in old.iter().zip(new).enumerate() {
            let same_type = match (a.ty, b.ty) {
                (ScalarType::Int(x), ScalarType::Int(y)) => x == y,
                (ScalarType::Bool, ScalarType::Bool) => true,
                (ScalarType::Enum(x), ScalarType::Enum(y)) => {
                    let same = self.old.enums[x].repr == self.new.enums[y].repr;
                    if same {
                        cx.enums.push(EnumPair {
                            old: x,
                            new: y,
                            place: format!("{what} {i} `{}`", b.name),
                        });
                    }
                    same
                }
                _ => false,
            };
            if !same_type {
                let msg = format!(
                    "`{name}`: {what} {i} `{}` changes type from {} to {}",
                    b.name,
                    Self::scalar_type(self.old, a.ty),
                    Self::scalar_type(self.new, b.ty)
                );
                self.push(
                    ChangeKind::Breaking,
                    Some(cx.new.selector),
                    msg,
                    Some(a.span),
                    Some(b.span),
                );
                continue;
            }
            let ScalarType::Int(t) = b.ty else { continue };
            let full = (t.min(), t.max());
            let (ra, rb) = (a.range.unwrap_or(full), b.range.unwrap_or(full));
            let show = |r: (i128, i128)| {
                if r == full { format!("the whole `{}`", t.rust()) } else { span_text(r.0, r.1) }
            };
            if rb.0 > ra.0 || rb.1 < ra.1 {
                let msg = format!(
                    "`{name}`: the range of {what} {i} `{}` narrows from {} to {}: old apps may send {}, which the new dext rejects",
                    b.name,
                    show(ra),
                    show(rb),
                    outside(ra, rb)
                );
                self.push(
                    ChangeKind::Breaking,
                    Some(cx.new.selector),
                    msg,
                    Some(a.span),
                    Some(b.span),
                );
            }
            if rb.0 < ra.0 || rb.1 > ra.1 {
                let msg = format!(
                    "`{name}`: the range of {what} {i} `{}` widens from {} to {}: new apps may send {}, which old dexts reject",
                    b.name,
                    show(ra),
                    show(rb),
                    outside(rb, ra)
                );
                self.push(
                    ChangeKind::Breaking,
                    Some(cx.new.selector),
                    msg,
                    Some(a.span),
                    Some(b.span),
                );
            }
        }
    }

    fn shape_text(iface: &Interface, shape: StructShape) -> String {
        match shape {
            StructShape::Struct(i) => {
                format!("struct `{}` ({} bytes)", iface.structs[i].name, iface.structs[i].size)
            }
            StructShape::Bytes(n) => format!("{n} bytes"),
            StructShape::Bounded { min, max } => format!("{min}..={max} bytes"),
            StructShape::Variable => "any number of bytes".to_string(),
        }
    }

    fn struct_arg(
        &mut self,
        cx: &mut Ctx<'_>,
        what: &str,
        input: bool,
        old: Option<&StructArg>,
        new: Option<&StructArg>,
    ) {
        let name = cx.name().to_string();
        let sel = Some(cx.new.selector);
        let (a, b) = match (old, new) {
            (None, None) => return,
            (None, Some(b)) => {
                let msg = format!(
                    "`{name}` gains a {what} `{}` ({})",
                    b.name,
                    Self::shape_text(self.new, b.shape)
                );
                self.push(ChangeKind::Breaking, sel, msg, Some(cx.old.span), Some(b.span));
                return;
            }
            (Some(a), None) => {
                let msg = format!(
                    "`{name}` loses its {what} `{}` ({})",
                    a.name,
                    Self::shape_text(self.old, a.shape)
                );
                self.push(ChangeKind::Breaking, sel, msg, Some(a.span), Some(cx.new.span));
                return;
            }
            (Some(a), Some(b)) => (a, b),
        };
        let spans = (Some(a.span), Some(b.span));
        let mut diffs = Vec::new();
        match (a.shape, b.shape) {
            (StructShape::Struct(x), StructShape::Struct(y)) => {
                let place = format!("{what} `{}`", b.name);
                self.struct_layout(
                    x,
                    y,
                    &format!("`{}`", self.new.structs[y].name),
                    &place,
                    &mut diffs,
                    &mut cx.enums,
                );
            }
            (StructShape::Bytes(x), StructShape::Bytes(y)) if x != y => {
                diffs.push(format!("its size changes from {x} to {y} bytes"));
            }
            (
                StructShape::Bounded { min: a0, max: a1 },
                StructShape::Bounded { min: b0, max: b1 },
            ) if (a0, a1) != (b0, b1) => {
                let (ra, rb) = ((i128::from(a0), i128::from(a1)), (i128::from(b0), i128::from(b1)));
                let (sender_old, sender_new, receiver_new, receiver_old) = if input {
                    ("old apps", "new apps", "the new dext", "old dexts")
                } else {
                    ("old dexts", "new dexts", "new apps", "old apps")
                };
                if rb.0 > ra.0 || rb.1 < ra.1 {
                    diffs.push(format!(
                        "its length bounds narrow from {a0}..={a1} to {b0}..={b1}: {sender_old} may send {} bytes, which {receiver_new} reject",
                        outside(ra, rb)
                    ));
                }
                if rb.0 < ra.0 || rb.1 > ra.1 {
                    diffs.push(format!(
                        "its length bounds widen from {a0}..={a1} to {b0}..={b1}: {sender_new} may send {} bytes, which {receiver_old} reject",
                        outside(rb, ra)
                    ));
                }
            }
            (x, y) if std::mem::discriminant(&x) != std::mem::discriminant(&y) => {
                diffs.push(format!(
                    "it changes from {} to {}",
                    Self::shape_text(self.old, x),
                    Self::shape_text(self.new, y)
                ));
            }
            _ => {}
        }
        for d in diffs {
            self.push(
                ChangeKind::Breaking,
                sel,
                format!("`{name}`: {what} `{}`: {d}", b.name),
                spans.0,
                spans.1,
            );
        }
    }

    /// Compares two struct layouts: size, alignment, and each field's offset
    /// and type, recursively. `path` names the struct in messages.
    fn struct_layout(
        &self,
        x: usize,
        y: usize,
        path: &str,
        place: &str,
        diffs: &mut Vec<String>,
        enums: &mut Vec<EnumPair>,
    ) {
        let (a, b) = (&self.old.structs[x], &self.new.structs[y]);
        if a.size != b.size {
            diffs.push(format!("{path} changes size from {} to {} bytes", a.size, b.size));
        }
        if a.align != b.align {
            diffs.push(format!("{path} changes alignment from {} to {}", a.align, b.align));
        }
        for i in 0..a.fields.len().max(b.fields.len()) {
            match (a.fields.get(i), b.fields.get(i)) {
                (Some(fa), Some(fb)) => {
                    let field = format!("{path} field {i} `{}`", fb.name);
                    if fa.offset != fb.offset {
                        diffs.push(format!(
                            "{field} moves from offset {} to {}",
                            fa.offset, fb.offset
                        ));
                    }
                    self.data(&fa.ty, &fb.ty, &field, place, diffs, enums);
                }
                (Some(fa), None) => diffs.push(format!(
                    "{path} loses field {i} `{}` ({} at offset {})",
                    fa.name,
                    self.data_text(self.old, &fa.ty),
                    fa.offset
                )),
                (None, Some(fb)) => diffs.push(format!(
                    "{path} gains field {i} `{}` ({} at offset {})",
                    fb.name,
                    self.data_text(self.new, &fb.ty),
                    fb.offset
                )),
                (None, None) => unreachable!(),
            }
        }
    }

    fn data_text(&self, iface: &Interface, ty: &DataType) -> String {
        match ty {
            DataType::Int(t) => format!("`{}`", t.rust()),
            DataType::Bool => "`bool`".to_string(),
            DataType::Enum(i) => {
                format!("enum `{}: {}`", iface.enums[*i].name, iface.enums[*i].repr.rust())
            }
            DataType::Struct(i) => {
                format!("struct `{}` ({} bytes)", iface.structs[*i].name, iface.structs[*i].size)
            }
            DataType::Array(elem, n) => format!("[{}; {n}]", self.data_text(iface, elem)),
        }
    }

    fn data(
        &self,
        a: &DataType,
        b: &DataType,
        path: &str,
        place: &str,
        diffs: &mut Vec<String>,
        enums: &mut Vec<EnumPair>,
    ) {
        match (a, b) {
            (DataType::Int(x), DataType::Int(y)) if x == y => {}
            (DataType::Bool, DataType::Bool) => {}
            (DataType::Enum(x), DataType::Enum(y))
                if self.old.enums[*x].repr == self.new.enums[*y].repr =>
            {
                enums.push(EnumPair {
                    old: *x,
                    new: *y,
                    place: format!("{place}, {}", path.trim_start_matches(' ')),
                });
            }
            (DataType::Struct(x), DataType::Struct(y)) => {
                self.struct_layout(
                    *x,
                    *y,
                    &format!("{path} (`{}`)", self.new.structs[*y].name),
                    place,
                    diffs,
                    enums,
                );
            }
            (DataType::Array(ea, na), DataType::Array(eb, nb)) if na == nb => {
                self.data(ea, eb, &format!("{path} element"), place, diffs, enums);
            }
            _ => diffs.push(format!(
                "{path} changes type from {} to {}",
                self.data_text(self.old, a),
                self.data_text(self.new, b)
            )),
        }
    }

    fn memories(&mut self) {
        let (old, new) = (self.old, self.new);
        let ids: BTreeSet<u32> =
            old.memories.iter().map(|m| m.id).chain(new.memories.iter().map(|m| m.id)).collect();
        for id in ids {
            let a = old.memories.iter().find(|m| m.id == id);
            let b = new.memories.iter().find(|m| m.id == id);
            match (a, b) {
                (Some(a), Some(b)) => {
                    let spans = (Some(a.span), Some(b.span));
                    if a.name != b.name {
                        self.push(
                            ChangeKind::Note,
                            None,
                            format!("memory type {id} `{}` is renamed `{}`", a.name, b.name),
                            spans.0,
                            spans.1,
                        );
                    }
                    if a.size != b.size {
                        self.push(
                            ChangeKind::Breaking,
                            None,
                            format!(
                                "memory type {id} `{}` changes size from {} to {} bytes; apps and dexts that are not updated disagree on where it ends",
                                b.name, a.size, b.size
                            ),
                            spans.0,
                            spans.1,
                        );
                    }
                    if a.access != b.access {
                        let why = match b.access {
                            Access::ReadOnly => "old apps that write to it fault",
                            Access::ReadWrite => {
                                "new apps write to it, which old dexts map read-only"
                            }
                        };
                        self.push(
                            ChangeKind::Breaking,
                            None,
                            format!(
                                "memory type {id} `{}` changes access from {} to {}: {why}",
                                b.name,
                                access_name(a.access),
                                access_name(b.access)
                            ),
                            spans.0,
                            spans.1,
                        );
                    }
                }
                (Some(a), None) => self.push(
                    ChangeKind::Breaking,
                    None,
                    format!("memory type {id} `{}` was removed; old apps that map it fail", a.name),
                    Some(a.span),
                    None,
                ),
                (None, Some(b)) => self.push(
                    ChangeKind::Additive,
                    None,
                    format!(
                        "new memory type {id} `{}` ({} bytes, {}); old dexts refuse to map it",
                        b.name,
                        b.size,
                        access_name(b.access)
                    ),
                    None,
                    Some(b.span),
                ),
                (None, None) => {}
            }
        }
    }

    fn interface(&mut self) {
        let (old, new) = (self.old, self.new);
        if old.service != new.service {
            self.push(
                ChangeKind::Breaking,
                None,
                format!(
                    "the service name changes from \"{}\" to \"{}\": apps match the service by name, so old apps cannot find the new dext, nor new apps an old one",
                    old.service, new.service
                ),
                None,
                None,
            );
        }
        if old.name != new.name {
            self.push(
                ChangeKind::Note,
                None,
                format!("the interface is renamed from `{}` to `{}`", old.name, new.name),
                None,
                None,
            );
        }
        if old.version != new.version {
            self.push(
                ChangeKind::Note,
                None,
                format!("the version changes from {} to {}", old.version, new.version),
                None,
                None,
            );
        }
        if old.fingerprint != new.fingerprint {
            self.push(
                ChangeKind::Note,
                None,
                format!(
                    "the fingerprint changes from {:#018x} to {:#018x}",
                    old.fingerprint, new.fingerprint
                ),
                None,
                None,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, src: &str) -> Interface {
        crate::parse_str(name, src).unwrap_or_else(|d| panic!("{d}")).interface
    }

    /// A small schema; `body` replaces the method block.
    fn schema(extra: &str, body: &str) -> String {
        format!(
            r#"interface Demo {{
                service "com.example.Demo";
                version 1;
                const MAX: u32 = 4096;
                enum Mode: u8 {{ Off = 0, On = 1, Auto = 2 }}
                struct Point {{ x: i32, y: i32 }}
                {extra}
                {body}
            }}"#
        )
    }

    fn diff(old: &str, new: &str) -> Vec<Change> {
        compare(&parse("old.dextlink", old), &parse("new.dextlink", new))
    }

    fn of_kind(changes: &[Change], kind: ChangeKind) -> Vec<&Change> {
        changes.iter().filter(|c| c.kind == kind).collect()
    }

    fn breaking_count(changes: &[Change]) -> usize {
        changes.iter().filter(|c| c.kind == ChangeKind::Breaking).count()
    }

    fn assert_breaking(changes: &[Change], needle: &str) {
        assert!(
            changes.iter().any(|c| c.kind == ChangeKind::Breaking && c.message.contains(needle)),
            "no breaking change mentions {needle:?}: {changes:#?}"
        );
    }

    const BASE: &str = "0 => fn get(a: u32 in 0..8, p: &Point) -> (r: u64);\n1 => fn set(m: Mode);";

    #[test]
    fn identical_has_no_changes() {
        for src in [
            include_str!("../../examples/fwloader/fwloader.dextlink"),
            include_str!("../../examples/null_driver/null_driver.dextlink"),
            include_str!("../../tests/schemas/shapes.dextlink"),
        ] {
            let iface = parse("x.dextlink", src);
            let changes = compare(&iface, &iface);
            assert!(changes.is_empty(), "{changes:#?}");
            assert!(!has_breaking(&changes));
        }
    }

    #[test]
    fn removed_method_must_be_reserved() {
        let old = schema("", BASE);
        let changes =
            diff(&old, &schema("", "0 => fn get(a: u32 in 0..8, p: &Point) -> (r: u64);"));
        assert!(has_breaking(&changes));
        assert_breaking(&changes, "add `1 => reserved;`");
        let c = &changes[0];
        assert_eq!(c.selector, Some(1));
        assert!(c.old_span.is_some() && c.new_span.is_none());

        let changes = diff(
            &old,
            &schema("", "0 => fn get(a: u32 in 0..8, p: &Point) -> (r: u64);\n1 => reserved;"),
        );
        assert!(!has_breaking(&changes), "{changes:#?}");
        let notes = of_kind(&changes, ChangeKind::Note);
        assert!(
            notes.iter().any(|c| c.selector == Some(1) && c.message.contains("reserved")),
            "{changes:#?}"
        );
    }

    #[test]
    fn reserved_selector_reused_or_dropped() {
        let old = schema("", "0 => fn get(a: u32 in 0..8, p: &Point) -> (r: u64);\n1 => reserved;");
        let changes = diff(
            &old,
            &schema("", "0 => fn get(a: u32 in 0..8, p: &Point) -> (r: u64);\n1 => fn again();"),
        );
        assert_breaking(&changes, "selector 1 was reserved and is reused by `again`");
        let changes =
            diff(&old, &schema("", "0 => fn get(a: u32 in 0..8, p: &Point) -> (r: u64);"));
        assert_breaking(&changes, "no longer reserved");
    }

    #[test]
    fn sync_async_unchecked_and_completion() {
        let old = schema("", "0 => fn a(x: u32);\n1 => fn b();\n2 => async fn c();");
        let new = schema(
            "",
            "0 => async fn a(x: u32);\n#[unchecked]\n1 => fn b();\n#[completion(any)]\n2 => async fn c();",
        );
        let changes = diff(&old, &new);
        assert_breaking(&changes, "`a` became async");
        assert_breaking(&changes, "`b` is now #[unchecked]");
        assert_breaking(&changes, "`c`: the completion check changes from required");
        // sync→async is one explanation, not also a completion-check message.
        assert!(
            !changes
                .iter()
                .any(|c| c.selector == Some(0) && c.message.contains("completion check")),
            "{changes:#?}"
        );
        // Each also shows in the dispatch entry.
        assert_breaking(&changes, "checkCompletionExists 0 → 1");
        assert_breaking(&changes, "checkCompletionExists 1 → 0xffffffff (variable)");
        let back = diff(&new, &old);
        assert_breaking(&back, "`a` became synchronous");
        assert_breaking(&back, "`b` is no longer #[unchecked]");
    }

    #[test]
    fn scalar_counts_and_types() {
        let old = schema(
            "",
            "0 => fn a(x: u32, y: u32) -> (r: u32);\n1 => async fn b() completes (v: u32);",
        );
        let new = schema(
            "",
            "0 => fn a(x: u64, y: u32, z: bool) -> (r: i32);\n1 => async fn b() completes (v: u32, w: u8);",
        );
        let changes = diff(&old, &new);
        assert_breaking(&changes, "scalar input 0 `x` changes type from `u32` to `u64`");
        assert_breaking(&changes, "the scalar input count changes from 2 to 3");
        assert_breaking(&changes, "scalar output 0 `r` changes type from `u32` to `i32`");
        assert_breaking(&changes, "the completion value count changes from 1 to 2");
        assert_breaking(&changes, "checkScalarInputCount 2 → 3");
        // Sorted by selector.
        let sels: Vec<Option<u32>> = changes.iter().map(|c| c.selector).collect();
        let mut sorted = sels.clone();
        sorted.sort_by_key(|s| (s.is_none(), s.unwrap_or(0)));
        assert_eq!(sels, sorted);
        assert!(sels.contains(&Some(0)) && sels.contains(&Some(1)));
    }

    #[test]
    fn ranges_narrowed_and_widened() {
        let old = schema("", "0 => fn a(x: u32 in 0..8, y: u32 in 1..=MAX, z: u8);");
        let new = schema("", "0 => fn a(x: u32 in 0..4, y: u32 in 1..=8192, z: u8 in 0..=200);");
        let changes = diff(&old, &new);
        assert_breaking(
            &changes,
            "the range of scalar input 0 `x` narrows from 0..=7 to 0..=3: old apps may send 4..=7",
        );
        assert_breaking(
            &changes,
            "the range of scalar input 1 `y` widens from 1..=4096 to 1..=8192: new apps may send 4097..=8192",
        );
        assert_breaking(
            &changes,
            "narrows from the whole `u8` to 0..=200: old apps may send 201..=255",
        );
        // Spelling the full range out changes nothing on the wire (only the
        // fingerprint, which hashes the range as written).
        let changes =
            diff(&schema("", "0 => fn a(z: u8);"), &schema("", "0 => fn a(z: u8 in 0..=255);"));
        assert!(
            changes.iter().all(|c| c.selector.is_none() && c.message.contains("fingerprint")),
            "{changes:#?}"
        );
    }

    #[test]
    fn struct_layouts_compare_structurally() {
        let old =
            schema("struct Info { a: u64, b: u32, c: u32 }", "0 => fn a(i: &Info) -> (p: Point);");
        // Renaming a struct and its fields changes nothing on the wire.
        let renamed = schema(
            "struct Info2 { q: u64, r: u32, s: u32 }",
            "0 => fn a(i: &Info2) -> (p: Point);",
        );
        let changes = diff(&old, &renamed);
        assert!(changes.is_empty(), "{changes:#?}");

        let new = schema(
            "struct Info { a: u64, b: u64, c: u32, _pad: [u8; 4] }",
            "0 => fn a(i: &Info) -> (p: Point);",
        );
        let changes = diff(&old, &new);
        assert_breaking(&changes, "`Info` changes size from 16 to 24 bytes");
        assert_breaking(&changes, "field 1 `b` changes type from `u32` to `u64`");
        assert_breaking(&changes, "field 2 `c` moves from offset 12 to 16");
        assert_breaking(&changes, "gains field 3 `_pad`");
        assert_breaking(&changes, "checkStructureInputSize 16 → 24");

        // Nested: a field of a nested struct.
        let old = schema("struct Outer { p: Point, n: [Point; 2] }", "0 => fn a(o: &Outer);");
        let new = schema(
            "struct Pt { x: u32, y: i32 }\nstruct Outer { p: Pt, n: [Pt; 2] }",
            "0 => fn a(o: &Outer);",
        );
        let changes = diff(&old, &new);
        assert_breaking(
            &changes,
            "field 0 `p` (`Pt`) field 0 `x` changes type from `i32` to `u32`",
        );
        assert_breaking(&changes, "field 1 `n` element (`Pt`) field 0 `x` changes type");

        // Arrays: a different length is one type change, not one per element.
        let old = schema("struct T { a: [u8; 4] }", "0 => fn a(t: &T);");
        let new = schema("struct T { a: [u16; 2] }", "0 => fn a(t: &T);");
        let changes = diff(&old, &new);
        assert_eq!(breaking_count(&changes), 2, "{changes:#?}");
        assert_breaking(&changes, "`T` changes alignment from 1 to 2");
        assert_breaking(&changes, "field 0 `a` changes type from [`u8`; 4] to [`u16`; 2]");
    }

    #[test]
    fn byte_shapes() {
        let old = schema(
            "",
            "0 => fn a(d: &[u8; 16]);\n1 => fn b(d: &[u8; 1..=MAX]);\n2 => fn c() -> (d: [u8; ..=64]);\n3 => fn d(p: &Point);",
        );
        let new = schema(
            "",
            "0 => fn a(d: &[u8; 32]);\n1 => fn b(d: &[u8; 1..=65536]);\n2 => fn c() -> (d: [u8; ..=32]);\n3 => fn d(p: &[u8; 8]);",
        );
        let changes = diff(&old, &new);
        assert_breaking(&changes, "structure input `d`: its size changes from 16 to 32 bytes");
        assert_breaking(
            &changes,
            "widen from 1..=4096 to 1..=65536: new apps may send 4097..=65536 bytes, which old dexts reject",
        );
        assert_breaking(
            &changes,
            "narrow from 0..=64 to 0..=32: old dexts may send 33..=64 bytes, which new apps reject",
        );
        assert_breaking(&changes, "checkStructureOutputSize 64 → 32");
        assert_breaking(&changes, "it changes from struct `Point` (8 bytes) to 8 bytes");
    }

    #[test]
    fn struct_argument_added_or_removed() {
        let changes = diff(&schema("", "0 => fn a();"), &schema("", "0 => fn a(p: &Point);"));
        assert_breaking(&changes, "`a` gains a structure input `p`");
        let changes = diff(&schema("", "0 => fn a() -> (p: Point);"), &schema("", "0 => fn a();"));
        assert_breaking(&changes, "`a` loses its structure output `p`");
    }

    #[test]
    fn enums_by_value_set_not_index() {
        // Same enums declared in another order: indices differ, values do not.
        let old = "interface Demo { service \"s\"; version 1;
            enum A: u8 { X = 0, Y = 1 } enum B: u16 { P = 0 }
            0 => fn a(a: A, b: B); }";
        let new = "interface Demo { service \"s\"; version 1;
            enum B: u16 { P = 0 } enum A: u8 { X = 0, Y = 1 }
            0 => fn a(a: A, b: B); }";
        assert!(diff(old, new).is_empty());

        let old = schema(
            "struct S { m: Mode, _p: [u8; 3], v: u32 }",
            BASE.replace("fn set(m: Mode)", "fn set(m: Mode, s: &S)").as_str(),
        );
        let new = schema(
            "enum Mode2: u8 { Off = 0, On = 1, Turbo = 3 }\nstruct S { m: Mode2, _p: [u8; 3], v: u32 }",
            BASE.replace("fn set(m: Mode)", "fn set(m: Mode2, s: &S)").as_str(),
        );
        let changes = diff(&old, &new);
        assert_breaking(&changes, "enum `Mode` (scalar input 0 `m`) loses value 2 (`Auto`)");
        let additive = of_kind(&changes, ChangeKind::Additive);
        assert!(
            additive.iter().any(|c| c.message.contains("gains value 3 (`Turbo`)")),
            "{changes:#?}"
        );
        // The same pair is reported once even though the struct uses it too.
        assert_eq!(
            changes.iter().filter(|c| c.message.contains("loses value")).count(),
            1,
            "{changes:#?}"
        );

        // A value added alone is additive only.
        let new = schema("", "0 => fn a(m: Mode);").replace("Auto = 2 }", "Auto = 2, Eco = 7 }");
        let changes = diff(&schema("", "0 => fn a(m: Mode);"), &new);
        assert!(!has_breaking(&changes), "{changes:#?}");
        assert_eq!(of_kind(&changes, ChangeKind::Additive).len(), 1);

        // A changed representation is a type change.
        let new = schema("", "0 => fn a(m: Mode);").replace("enum Mode: u8", "enum Mode: u16");
        assert_breaking(
            &diff(&schema("", "0 => fn a(m: Mode);"), &new),
            "changes type from enum `Mode: u8` to enum `Mode: u16`",
        );
    }

    #[test]
    fn memory_types() {
        let old = schema(
            "memory 0 ring: [u8; 4096], read_write;\nmemory 1 stats: [u8; 64], read_only;\nmemory 2 log: [u8; 64], read_only;",
            BASE,
        );
        let new = schema(
            "memory 0 ring: [u8; 8192], read_write;\nmemory 1 stats: [u8; 64], read_write;\nmemory 3 extra: [u8; 16], read_only;",
            BASE,
        );
        let changes = diff(&old, &new);
        assert_breaking(&changes, "memory type 0 `ring` changes size from 4096 to 8192 bytes");
        assert_breaking(
            &changes,
            "memory type 1 `stats` changes access from read-only to read-write",
        );
        assert_breaking(&changes, "memory type 2 `log` was removed");
        assert!(
            of_kind(&changes, ChangeKind::Additive)
                .iter()
                .any(|c| c.message.contains("new memory type 3 `extra`"))
        );
        assert!(
            changes
                .iter()
                .filter(|c| c.message.contains("memory type"))
                .all(|c| c.selector.is_none())
        );
    }

    #[test]
    fn additions_renames_and_versions() {
        let old = schema("", BASE);
        let new = schema("", &format!("{BASE}\n2 => fn added();"))
            .replace("fn set(", "fn set_mode(")
            .replace("version 1", "version 2");
        let changes = diff(&old, &new);
        assert!(!has_breaking(&changes), "{changes:#?}");
        assert!(changes.iter().any(|c| c.kind == ChangeKind::Additive
            && c.selector == Some(2)
            && c.message.contains("`added`")));
        assert!(changes.iter().any(|c| c.kind == ChangeKind::Note
            && c.selector == Some(1)
            && c.message.contains("renamed `set_mode`")));
        assert!(changes.iter().any(|c| c.kind == ChangeKind::Note
            && c.selector.is_none()
            && c.message.contains("version changes from 1 to 2")));
        // Selector-less changes come last.
        assert!(changes.last().unwrap().selector.is_none());
        assert_eq!(
            changes.iter().position(|c| c.selector.is_none()).unwrap(),
            changes.iter().filter(|c| c.selector.is_some()).count()
        );

        // A renamed method keeps the fingerprint: the rename is the only change.
        let renamed = schema("", BASE).replace("fn set(", "fn set_mode(");
        let changes = diff(&old, &renamed);
        assert_eq!(changes.len(), 1, "{changes:#?}");
        assert_eq!(changes[0].kind, ChangeKind::Note);
    }

    #[test]
    fn service_change_is_breaking() {
        let old = schema("", BASE);
        let changes = diff(&old, &old.replace("com.example.Demo", "com.example.Other"));
        assert!(has_breaking(&changes));
        assert!(changes[0].selector.is_none());
        assert!(changes[0].to_string().starts_with("breaking: the service name changes"));
    }

    #[test]
    fn display_names_the_selector() {
        let changes = diff(
            &schema("", BASE),
            &schema("", "0 => fn get(a: u32 in 0..8, p: &Point) -> (r: u64);"),
        );
        assert!(
            changes[0].to_string().starts_with("breaking: selector 1: `set` was removed"),
            "{}",
            changes[0]
        );
    }
}
