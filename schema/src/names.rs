//! Names: the keywords of the languages we generate, the names the generated
//! code itself defines, and case conversion between schema and output.

/// C++20 keywords and alternative tokens, plus C11 `restrict`.
const CPP_KEYWORDS: &[&str] = &[
    "alignas",
    "alignof",
    "and",
    "and_eq",
    "asm",
    "auto",
    "bitand",
    "bitor",
    "bool",
    "break",
    "case",
    "catch",
    "char",
    "char8_t",
    "char16_t",
    "char32_t",
    "class",
    "compl",
    "concept",
    "const",
    "consteval",
    "constexpr",
    "constinit",
    "const_cast",
    "continue",
    "co_await",
    "co_return",
    "co_yield",
    "decltype",
    "default",
    "delete",
    "do",
    "double",
    "dynamic_cast",
    "else",
    "enum",
    "explicit",
    "export",
    "extern",
    "false",
    "float",
    "for",
    "friend",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "mutable",
    "namespace",
    "new",
    "noexcept",
    "not",
    "not_eq",
    "nullptr",
    "operator",
    "or",
    "or_eq",
    "private",
    "protected",
    "public",
    "register",
    "reinterpret_cast",
    "requires",
    "restrict",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "static_assert",
    "static_cast",
    "struct",
    "switch",
    "template",
    "this",
    "thread_local",
    "throw",
    "true",
    "try",
    "typedef",
    "typeid",
    "typename",
    "union",
    "unsigned",
    "using",
    "virtual",
    "void",
    "volatile",
    "wchar_t",
    "while",
    "xor",
    "xor_eq",
];

/// Rust's strict and reserved keywords (edition 2024).
const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// Names the generated code defines next to the schema's own types and
/// constants, and DriverKit names a type must not shadow.
pub const GENERATED_NAMES: &[&str] = &[
    // C++ header and Rust module
    "Selector",
    "MemoryType",
    "ClientMemory",
    "ExternalMethod",
    "Handler",
    "Client",
    "Error",
    "kDispatchTable",
    "kSelectorCount",
    "kFingerprint",
    "kVersion",
    "kHandshakeSelector",
    "FINGERPRINT",
    "VERSION",
    "SERVICE",
    "CPP_HEADER",
    "METHODS",
    "MEMORY_TYPES",
    "STRUCTS",
    "INTERFACE",
    "HANDSHAKE_SELECTOR",
    "SELECTOR_COUNT",
    "dispatch",
    "kService",
    "detail",
    // DriverKit types the header uses unqualified
    "IOUserClient",
    "IOService",
    "OSObject",
    "OSData",
    "OSAction",
    "IOMemoryDescriptor",
    "IOBufferMemoryDescriptor",
    "IOMemoryMap",
    "IOReturn",
    "IOUserClientMethodArguments",
    "IOUserClientMethodDispatch",
    "IOUserClientAsyncArgumentsArray",
    "IOAddressSegment",
    // Rust's prelude types the generated module might name
    "Option",
    "Result",
    "Vec",
    "String",
    "Box",
    "Some",
    "None",
    "Ok",
    "Err",
];

/// Parameter names the generated C++ signatures use themselves (thunks take
/// `target, reference, arguments`; handlers `target`; completion senders
/// `client, completion, result`; thunks keep the status in `ret`), so a schema
/// parameter may not take them.
pub const GENERATED_PARAMS: &[&str] =
    &["target", "reference", "arguments", "client", "completion", "result", "ret"];

/// Why `name` cannot be a C++ class name (the IOUserClass a `service` names),
/// or `None` when it can.
pub fn not_a_cpp_class_name(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !starts_well || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Some(
            "it is not a C++ identifier (letters, digits and `_`, not starting with a digit)",
        );
    }
    if CPP_KEYWORDS.contains(&name) {
        return Some("it is a C++ keyword");
    }
    if name.contains("__")
        || (name.starts_with('_') && name[1..].starts_with(|c: char| c.is_ascii_uppercase()))
    {
        return Some(
            "it is reserved for the implementation in C++ (it contains `__` or starts with `_` and a capital)",
        );
    }
    None
}

/// Which language, if any, keeps `name` for itself.
pub fn reserved_by(name: &str) -> Option<&'static str> {
    let cpp = CPP_KEYWORDS.contains(&name);
    let rust = RUST_KEYWORDS.contains(&name);
    match (cpp, rust) {
        (true, true) => Some("a C++ and Rust keyword"),
        (true, false) => Some("a C++ keyword"),
        (false, true) => Some("a Rust keyword"),
        _ if name.contains("__")
            || (name.starts_with('_')
                && name[1..].starts_with(|c: char| c.is_ascii_uppercase())) =>
        {
            Some(
                "reserved for the implementation in C and C++ (it contains `__` or starts with `_` and a capital)",
            )
        }
        _ => None,
    }
}

fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        let boundary = c.is_ascii_uppercase()
            && !current.is_empty()
            && (chars[i - 1].is_ascii_lowercase()
                || chars[i - 1].is_ascii_digit()
                || chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase()));
        if boundary {
            words.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// `write_blob` → `WriteBlob`.
pub fn upper_camel(name: &str) -> String {
    words(name)
        .iter()
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect()
}

/// `FwLoader` → `fw_loader`.
pub fn snake(name: &str) -> String {
    words(name).iter().map(|w| w.to_ascii_lowercase()).collect::<Vec<_>>().join("_")
}

/// `FwLoader` → `FW_LOADER`.
pub fn screaming(name: &str) -> String {
    words(name).iter().map(|w| w.to_ascii_uppercase()).collect::<Vec<_>>().join("_")
}

pub fn is_upper_camel(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase()) && !name.contains('_')
}

pub fn is_snake(name: &str) -> bool {
    !name.chars().any(|c| c.is_ascii_uppercase()) && !name.starts_with(|c: char| c.is_ascii_digit())
}

pub fn is_screaming(name: &str) -> bool {
    !name.chars().any(|c| c.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_case() {
        assert_eq!(upper_camel("write_blob"), "WriteBlob");
        assert_eq!(upper_camel("crc32"), "Crc32");
        assert_eq!(snake("FwLoader"), "fw_loader");
        assert_eq!(snake("USBDevice"), "usb_device");
        assert_eq!(screaming("FwLoader"), "FW_LOADER");
        assert_eq!(screaming("slot_count"), "SLOT_COUNT");
    }

    #[test]
    fn knows_keywords() {
        assert_eq!(reserved_by("class"), Some("a C++ keyword"));
        assert_eq!(reserved_by("fn"), Some("a Rust keyword"));
        assert_eq!(reserved_by("struct"), Some("a C++ and Rust keyword"));
        assert!(reserved_by("_Reserved").is_some());
        assert!(reserved_by("a__b").is_some());
        assert_eq!(reserved_by("session"), None);
    }
}
