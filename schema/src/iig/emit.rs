//! From the parsed `.iig` to `<Stem>.h` and `<Stem>.iig.cpp`, section by
//! section as `runtime/sim/driverkit/IIG.md` lists them. Lines longer than
//! [`COLUMNS`] break between arguments, aligned after the `(`, as the
//! contract's reference files do.

use super::parse::{Access, ClassDecl, File, MethodDecl, Param};
use super::runtime::{self, Kind};
use crate::diag::{Diagnostic, Span};

const COLUMNS: usize = 120;

/// A method the generated class can override or name: where its plumbing is.
#[derive(Debug, Clone)]
struct Known {
    kind: Kind,
    /// `<Decl>_<Method>` of its `_ID`, `_Args` and (unless `invocation` says
    /// otherwise) `_Invocation`.
    decl_prefix: String,
    invocation: String,
    params: Vec<String>,
}

/// What one method of the class becomes.
enum Role<'a> {
    /// Declared as in the .iig (a C++ virtual, a LOCALONLY or a non-virtual method).
    Plain { method: &'a MethodDecl, overrides: bool },
    /// An `_Impl` dispatched under `id`.
    Dispatched {
        method: &'a MethodDecl,
        /// Whether the class declares it (a stub, an `_ID`) rather than overriding it.
        new: bool,
        id: String,
        args: String,
        invocation: String,
        /// The `_Invocation` members, in order.
        members: Vec<String>,
        impl_virtual: bool,
        /// `TYPE(X::M)`: `X_M`.
        action: Option<String>,
    },
}

fn error(span: Span, message: impl Into<String>, label: impl Into<String>) -> Diagnostic {
    Diagnostic::error(span, message).label(label)
}

/// FNV-1a 64 of `Class::Method`, IIG.md's method id for methods Apple publishes none for.
fn method_id(class: &str, method: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("{class}::{method}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A class declared earlier in the file: its name, its superclass and what its
/// methods became, by name.
type DeclaredClass = (String, String, Vec<(String, Known)>);

/// The classes the file declares so far, for a later class deriving from one.
struct Scope {
    classes: Vec<DeclaredClass>,
}

impl Scope {
    fn class_exists(&self, name: &str) -> bool {
        runtime::class_named(name).is_some() || self.classes.iter().any(|(n, _, _)| n == name)
    }

    /// The method `name` as the superclass chain from `class` declares it.
    fn lookup(&self, class: &str, name: &str) -> Option<Known> {
        let mut current = Some(class.to_string());
        while let Some(class) = current {
            if let Some((_, superclass, methods)) =
                self.classes.iter().find(|(n, _, _)| *n == class)
            {
                if let Some((_, known)) = methods.iter().find(|(m, _)| m == name) {
                    return Some(known.clone());
                }
                current = Some(superclass.clone());
                continue;
            }
            let runtime_class = runtime::class_named(&class)?;
            if let Some(method) =
                runtime_class.methods.iter().find(|m| m.name == name && m.kind != Kind::Action)
            {
                return Some(Known {
                    kind: method.kind,
                    decl_prefix: format!("{class}_{name}"),
                    invocation: format!("{class}_{name}_Invocation"),
                    params: method.params.iter().map(|p| p.to_string()).collect(),
                });
            }
            current = runtime_class.superclass.map(str::to_string);
        }
        None
    }
}

pub fn emit(file_name: &str, stem: &str, file: &File) -> Result<(String, String), Diagnostic> {
    let first_line = format!(
        "/* Generated per dextlink's iig contract (IIG.md) from {file_name} by `dextlink iig`; do not edit. */\n"
    );
    let guard: String = format!(
        "_{}_H",
        stem.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
            .collect::<String>()
    );
    let mut header_blocks = vec![format!("{first_line}#ifndef {guard}\n#define {guard}\n")];
    let mut includes = String::new();
    for include in &file.includes {
        if include.angled && include.path == "Availability.h" {
            // Apple's availability macros; this runtime's headers carry none.
            continue;
        }
        let path = match include.path.strip_suffix(".iig") {
            Some(base) => format!("{base}.h"),
            None => include.path.clone(),
        };
        if include.angled {
            includes.push_str(&format!("#include <{path}>\n"));
        } else {
            includes.push_str(&format!("#include \"{path}\"\n"));
        }
    }
    header_blocks.push(includes);
    header_blocks.push(file.forwards.iter().map(|f| format!("{f}\n")).collect());
    let mut source_blocks = vec![format!("{first_line}#include \"{stem}.h\"\n")];

    let mut scope = Scope { classes: Vec::new() };
    for class in &file.classes {
        if scope.class_exists(&class.name) {
            return Err(error(
                class.name_span,
                format!("class `{}` is declared twice", class.name),
                "again here",
            ));
        }
        if !scope.class_exists(&class.superclass) {
            return Err(error(
                class.superclass_span,
                format!(
                    "this runtime has no class `{}` to derive `{}` from",
                    class.superclass, class.name
                ),
                "not a class of dextlink's DriverKit runtime, nor one declared above in this file",
            ));
        }
        let roles = roles(&scope, class)?;
        let (h, s) = emit_class(class, &roles);
        header_blocks.extend(h);
        source_blocks.extend(s);
        let known = roles
            .iter()
            .map(|role| match role {
                Role::Plain { method, .. } => (
                    method.name.clone(),
                    Known {
                        kind: Kind::Virtual,
                        decl_prefix: format!("{}_{}", class.name, method.name),
                        invocation: String::new(),
                        params: method
                            .params
                            .iter()
                            .map(|p| p.name.clone().unwrap_or_default())
                            .collect(),
                    },
                ),
                Role::Dispatched { method, id, invocation, members, impl_virtual, .. } => (
                    method.name.clone(),
                    Known {
                        kind: Kind::Dispatched { impl_virtual: *impl_virtual },
                        decl_prefix: id.trim_end_matches("_ID").to_string(),
                        invocation: invocation.clone(),
                        params: members.clone(),
                    },
                ),
            })
            .collect();
        scope.classes.push((class.name.clone(), class.superclass.clone(), known));
    }
    header_blocks.push(format!("#endif /* {guard} */\n"));
    Ok((join_blocks(header_blocks), join_blocks(source_blocks)))
}

fn join_blocks(blocks: Vec<String>) -> String {
    blocks.into_iter().filter(|b| !b.is_empty()).collect::<Vec<_>>().join("\n")
}

fn roles<'a>(scope: &Scope, class: &'a ClassDecl) -> Result<Vec<Role<'a>>, Diagnostic> {
    let mut roles = Vec::new();
    for (index, method) in class.methods.iter().enumerate() {
        if let Some(earlier) = class.methods[..index].iter().find(|m| m.name == method.name) {
            return Err(error(
                method.name_span,
                format!("`{}` is declared twice", method.name),
                "again here",
            )
            .related(earlier.name_span, "first here"));
        }
        let known = scope.lookup(&class.superclass, &method.name);
        if method.overrides && known.is_none() {
            return Err(error(
                method.name_span,
                format!(
                    "`{}` is marked `override`, but `{}` has no method `{}`",
                    method.name, class.superclass, method.name
                ),
                "not a method this runtime's classes declare (IIG.md's table)",
            ));
        }
        if method.is_static && (method.is_virtual || known.is_some()) {
            return Err(error(
                method.name_span,
                format!("`static` on the virtual method `{}`", method.name),
                "here",
            ));
        }
        let unnamed = method.params.iter().find(|p| p.name.is_none());
        match known {
            Some(known) => {
                if let Some(action) = &method.action_type {
                    return Err(error(
                        action.span,
                        format!(
                            "`TYPE(…)` on `{}`, which overrides a method of `{}`",
                            method.name, class.superclass
                        ),
                        "an action target must be a method the class declares new",
                    ));
                }
                if known.params.len() != method.params.len() {
                    return Err(error(
                        method.name_span,
                        format!(
                            "`{}` takes {} parameter(s) here, but the method it overrides takes {} ({})",
                            method.name,
                            method.params.len(),
                            known.params.len(),
                            known.params.join(", ")
                        ),
                        "the parameters must be those of the overridden method",
                    ));
                }
                match known.kind {
                    Kind::Virtual | Kind::Action => {
                        roles.push(Role::Plain { method, overrides: true })
                    }
                    Kind::Dispatched { impl_virtual } => roles.push(Role::Dispatched {
                        method,
                        new: false,
                        id: format!("{}_ID", known.decl_prefix),
                        args: format!("{}_Args", known.decl_prefix),
                        invocation: known.invocation,
                        members: known.params,
                        impl_virtual,
                        action: None,
                    }),
                }
            }
            None if !method.is_virtual || method.local_only => {
                if method.action_type.is_some() {
                    return Err(error(
                        method.name_span,
                        format!("`TYPE(…)` on `{}`, which is not a dispatched method", method.name),
                        "an action target is `virtual` and not LOCALONLY",
                    ));
                }
                roles.push(Role::Plain { method, overrides: false });
            }
            None => {
                if method.return_type != "kern_return_t" && method.return_type != "void" {
                    return Err(error(
                        method.name_span,
                        format!(
                            "the dispatched method `{}` returns `{}`",
                            method.name, method.return_type
                        ),
                        "a dispatched method returns `kern_return_t` or `void`; make it LOCALONLY to return anything else",
                    ));
                }
                if let Some(param) = unnamed {
                    return Err(error(
                        param.span,
                        format!(
                            "a parameter of the dispatched method `{}` without a name",
                            method.name
                        ),
                        "its invocation needs a member name",
                    ));
                }
                if method.is_const {
                    return Err(error(
                        method.name_span,
                        format!("the dispatched method `{}` is `const`", method.name),
                        "not supported",
                    ));
                }
                let own: Vec<String> =
                    method.params.iter().filter_map(|p| p.name.clone()).collect();
                let id = format!("{}_{}_ID", class.name, method.name);
                match &method.action_type {
                    Some(action) => {
                        let prefix = format!("{}_{}", action.class, action.method);
                        let members = match runtime::class_named(&action.class) {
                            Some(runtime_class) => {
                                let Some(declared) = runtime_class
                                    .methods
                                    .iter()
                                    .find(|m| m.name == action.method && m.kind == Kind::Action)
                                else {
                                    return Err(error(
                                        action.span,
                                        format!(
                                            "`{}` has no action type `{}` in this runtime",
                                            action.class, action.method
                                        ),
                                        "not an action type of IIG.md's table",
                                    ));
                                };
                                if declared.params.len() != own.len() {
                                    return Err(error(
                                        method.name_span,
                                        format!(
                                            "`{}` takes {} parameter(s), but its action type `{}::{}` takes {} ({})",
                                            method.name,
                                            own.len(),
                                            action.class,
                                            action.method,
                                            declared.params.len(),
                                            declared.params.join(", ")
                                        ),
                                        "an action target has its action type's parameters",
                                    ));
                                }
                                declared.params.iter().map(|p| p.to_string()).collect()
                            }
                            // A class of another framework (USBDriverKit's
                            // IOUSBHostPipe): its header defines `X_M_*`, with
                            // the parameters the .iig repeats.
                            None => own,
                        };
                        roles.push(Role::Dispatched {
                            method,
                            new: true,
                            id,
                            args: format!("{prefix}_Args"),
                            invocation: format!("{prefix}_Invocation"),
                            members,
                            impl_virtual: method.pure,
                            action: Some(prefix),
                        });
                    }
                    None => roles.push(Role::Dispatched {
                        method,
                        new: true,
                        id,
                        args: format!("{}_{}_Args", class.name, method.name),
                        invocation: format!("{}_{}_Invocation", class.name, method.name),
                        members: own,
                        impl_virtual: method.pure,
                        action: None,
                    }),
                }
            }
        }
    }
    Ok(roles)
}

/// `head` + items separated by `, ` + `tail`, broken before an item that
/// would pass [`COLUMNS`], continuation lines aligned after `head`.
fn wrap_call(indent: &str, head: &str, items: &[String], tail: &str) -> String {
    let mut out = format!("{indent}{head}");
    let align = out.chars().count();
    let mut line_len = align;
    if items.is_empty() {
        out.push_str(tail);
        out.push('\n');
        return out;
    }
    for (i, item) in items.iter().enumerate() {
        let piece = if i + 1 == items.len() { format!("{item}{tail}") } else { format!("{item},") };
        let piece_len = piece.chars().count();
        if i == 0 {
            out.push_str(&piece);
            line_len += piece_len;
        } else if line_len + 1 + piece_len <= COLUMNS {
            out.push(' ');
            out.push_str(&piece);
            line_len += 1 + piece_len;
        } else {
            out.push('\n');
            out.push_str(&" ".repeat(align));
            out.push_str(&piece);
            line_len = align + piece_len;
        }
    }
    out.push('\n');
    out
}

/// `#define NAME VALUE`, continued on a second line when it is too long.
fn define(name: &str, value: &str) -> String {
    if value.is_empty() {
        format!("#define {name}\n")
    } else if 8 + name.len() + 1 + value.len() <= COLUMNS {
        format!("#define {name} {value}\n")
    } else {
        format!("#define {name} \\\n    {value}\n")
    }
}

fn param_with_default(param: &Param) -> String {
    match &param.default {
        Some(default) => format!("{} = {default}", param.decl),
        None => param.decl.clone(),
    }
}

/// A parameter as an `_Invocation` member: arrays become pointers.
fn member(param: &Param) -> String {
    let name = param.name.as_deref().unwrap_or_default();
    if param.array_suffix.is_some() {
        return format!("{}* {name}", param.type_text);
    }
    let words: Vec<&str> = param.type_text.split(' ').collect();
    if let Some((last, before)) = words.split_last()
        && let Some((_, element)) = runtime::ARRAY_TYPEDEFS.iter().find(|(t, _)| t == last)
    {
        let mut text = before.join(" ");
        if !text.is_empty() {
            text.push(' ');
        }
        return format!("{text}{element}* {name}");
    }
    format!("{} {name}", param.type_text)
}

fn plain_declaration(method: &MethodDecl, overrides: bool) -> String {
    let mut head = String::new();
    if method.is_static {
        head.push_str("static ");
    }
    if method.is_virtual && !overrides {
        head.push_str("virtual ");
    }
    head.push_str(&format!("{} {}(", method.return_type, method.name));
    let mut items: Vec<String> = method.params.iter().map(param_with_default).collect();
    if method.void_params {
        items.push("void".to_string());
    }
    let mut tail = ")".to_string();
    if method.is_const {
        tail.push_str(" const");
    }
    if overrides {
        tail.push_str(" override");
    }
    if method.pure {
        tail.push_str(" = 0");
    }
    tail.push(';');
    wrap_call("    ", &head, &items, &tail)
}

fn emit_class(class: &ClassDecl, roles: &[Role<'_>]) -> (Vec<String>, Vec<String>) {
    let name = &class.name;
    let superclass = &class.superclass;
    let mut ids = String::new();
    let mut invocations = String::new();
    let mut args_defines = String::new();
    for role in roles {
        let Role::Dispatched { method, new, id, args, invocation, action, .. } = role else {
            continue;
        };
        let own_args = format!("{name}_{}_Args", method.name);
        if *new {
            let hash = method_id(name, &method.name);
            ids.push_str(&format!("#define {id} 0x{hash:016x}ULL\n"));
            if action.is_none() {
                invocations.push_str(&format!("struct {invocation} {{\n"));
                for param in &method.params {
                    invocations.push_str(&format!("    {};\n", member(param)));
                }
                invocations.push_str("};\n");
            }
        }
        let value = if *new && action.is_none() {
            method.params.iter().map(|p| p.decl.clone()).collect::<Vec<_>>().join(", ")
        } else {
            args.clone()
        };
        args_defines.push_str(&define(&own_args, &value));
    }
    let ivars = format!("struct {name}_IVars;\nstruct {name}_LocalIVars;\n");

    let mut class_text = format!(
        "class {name} : public {superclass} {{\n    OSDeclareDefaultStructors({name})\n\npublic:\n    union {{\n        \
         {name}_IVars* ivars;\n        {name}_LocalIVars* lvars;\n    }};\n\n    using super = {superclass};\n"
    );
    for access in [Access::Public, Access::Protected, Access::Private] {
        // Every `_Impl` is protected, wherever the .iig declared its method.
        let mut impls = String::new();
        let mut plain = String::new();
        let mut stubs = String::new();
        let mut create_actions = String::new();
        for role in roles {
            match role {
                Role::Plain { method, overrides } if method.access == access => {
                    plain.push_str(&plain_declaration(method, *overrides));
                }
                Role::Dispatched { method, new: true, action, .. } if method.access == access => {
                    let mut items: Vec<String> =
                        method.params.iter().map(param_with_default).collect();
                    items.push("OSDispatchMethod supermethod = nullptr".to_string());
                    stubs.push_str(&wrap_call(
                        "    ",
                        &format!("{} {}(", method.return_type, method.name),
                        &items,
                        ");",
                    ));
                    if action.is_some() {
                        create_actions.push_str(&format!(
                            "    kern_return_t CreateAction{}(size_t referenceSize, OSAction** action);\n",
                            method.name
                        ));
                    }
                }
                _ => {}
            }
        }
        if access == Access::Protected {
            for role in roles {
                let Role::Dispatched { method, new, impl_virtual, .. } = role else { continue };
                let own_args = format!("{name}_{}_Args", method.name);
                let line = if *new && method.pure {
                    format!(
                        "    virtual {} {}_Impl({own_args}) = 0;\n",
                        method.return_type, method.name
                    )
                } else if *impl_virtual {
                    format!(
                        "    {} {}_Impl({own_args}) override;\n",
                        method.return_type, method.name
                    )
                } else {
                    format!("    {} {}_Impl({own_args});\n", method.return_type, method.name)
                };
                impls.push_str(&line);
            }
        }
        stubs.push_str(&create_actions);
        let groups: Vec<&String> =
            [&plain, &stubs, &impls].into_iter().filter(|g| !g.is_empty()).collect();
        if groups.is_empty() {
            continue;
        }
        match access {
            Access::Public => {}
            Access::Protected => class_text.push_str("\nprotected:\n"),
            Access::Private => class_text.push_str("\nprivate:\n"),
        }
        for (i, group) in groups.iter().enumerate() {
            if access == Access::Public || i > 0 {
                class_text.push('\n');
            }
            class_text.push_str(group);
        }
    }
    class_text.push_str("};\n");

    let ids_block = if invocations.is_empty() { ids } else { format!("{ids}\n{invocations}") };
    let header = vec![ids_block, args_defines, ivars, class_text];

    // The companion.
    let abstract_class = class.methods.iter().any(|m| m.pure);
    let mut source = vec![format!(
        "{}({name}, {superclass})\n",
        if abstract_class {
            "OSDefineMetaClassAndAbstractStructors"
        } else {
            "OSDefineMetaClassAndStructors"
        }
    )];
    let mut cases = String::new();
    for role in roles {
        let Role::Dispatched { method, id, invocation, members, .. } = role else { continue };
        if method.pure {
            continue;
        }
        cases.push_str(&format!("    case {id}: {{\n"));
        if !members.is_empty() {
            let line =
                format!("        {invocation}* a = static_cast<{invocation}*>(rpc.arguments);\n");
            if line.trim_end().chars().count() <= COLUMNS {
                cases.push_str(&line);
            } else {
                cases.push_str(&format!(
                    "        {invocation}* a =\n            static_cast<{invocation}*>(rpc.arguments);\n"
                ));
            }
        }
        let call_args: Vec<String> = members.iter().map(|m| format!("a->{m}")).collect();
        let head = format!("object->{name}::{}_Impl(", method.name);
        if method.return_type == "void" {
            cases.push_str(&wrap_call("        ", &head, &call_args, ");"));
            cases.push_str("        return kIOReturnSuccess;\n");
        } else {
            cases.push_str(&wrap_call("        ", &format!("return {head}"), &call_args, ");"));
        }
        cases.push_str("    }\n");
    }
    let dispatch = if cases.is_empty() {
        format!(
            "kern_return_t {name}::_Dispatch(OSObject* self, const IORPC rpc)\n{{\n    return super::_Dispatch(self, rpc);\n}}\n"
        )
    } else {
        format!(
            "kern_return_t {name}::_Dispatch(OSObject* self, const IORPC rpc)\n{{\n    {name}* object = static_cast<{name}*>(self);\n    \
             switch (rpc.methodID) {{\n{cases}    default:\n        return super::_Dispatch(self, rpc);\n    }}\n}}\n"
        )
    };
    source.push(dispatch);
    let mut create_actions = Vec::new();
    for role in roles {
        let Role::Dispatched { method, new: true, id, invocation, action, .. } = role else {
            continue;
        };
        let mut items: Vec<String> = method.params.iter().map(|p| p.decl.clone()).collect();
        items.push("OSDispatchMethod supermethod".to_string());
        let mut stub =
            wrap_call("", &format!("{} {name}::{}(", method.return_type, method.name), &items, ")");
        stub.push_str("{\n");
        let values: Vec<String> = method.params.iter().filter_map(|p| p.name.clone()).collect();
        stub.push_str(&wrap_call("    ", &format!("{invocation} a = {{"), &values, "};"));
        let call =
            vec!["this".to_string(), "supermethod".to_string(), id.clone(), "&a".to_string()];
        if method.return_type == "void" {
            stub.push_str(&wrap_call("    ", "OSObjectDispatchInvocation(", &call, ");"));
        } else {
            stub.push_str(&wrap_call("    ", "return OSObjectDispatchInvocation(", &call, ");"));
        }
        stub.push_str("}\n");
        source.push(stub);
        if let Some(action) = action {
            let mut text = format!(
                "kern_return_t {name}::CreateAction{}(size_t referenceSize, OSAction** action)\n{{\n",
                method.name
            );
            let items = vec![
                "this".to_string(),
                id.clone(),
                format!("{action}_ID"),
                "referenceSize".to_string(),
                "action".to_string(),
            ];
            text.push_str(&wrap_call("    ", "return OSAction::Create(", &items, ");"));
            text.push_str("}\n");
            create_actions.push(text);
        }
    }
    source.extend(create_actions);
    (header, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_ids_are_fnv1a_of_the_qualified_name() {
        // The value TestUserClient.h of the contract carries.
        assert_eq!(method_id("TestUserClient", "TimerOccurred"), 0x100c_9d94_df0e_5eb1);
    }

    #[test]
    fn calls_break_before_the_item_that_passes_the_column_limit() {
        let items: Vec<String> = (0..30).map(|i| format!("argument{i:02}")).collect();
        let text = wrap_call("    ", "f(", &items, ");");
        assert!(text.lines().count() > 1, "{text}");
        for line in text.lines() {
            assert!(line.chars().count() <= COLUMNS, "{line}");
        }
        assert!(text.lines().nth(1).unwrap().starts_with("      argument"), "{text}");
    }
}
