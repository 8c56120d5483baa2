//! The validated model of an interface: what every emitter, the fingerprint
//! and the compatibility check work from. Every value here has been checked
//! (names, selectors, ranges, layouts), so consumers never re-validate.

use crate::diag::Span;

/// `kIOUserClientVariableStructureSize`: "don't care" in a dispatch entry
/// (docs/driverkit.md §1, §2.2-7).
pub const VARIABLE: u32 = 0xffff_ffff;

/// The selector dextlink reserves for the fingerprint handshake ("DXLK").
/// It answers with two scalars: the schema fingerprint and version.
pub const HANDSHAKE_SELECTOR: u32 = 0x4458_4c4b;

/// Structure input/output travels inline up to this many bytes
/// (`io_struct_inband_t`, docs/driverkit.md §1 "Limits that actually bind" 1).
pub const INBAND_STRUCT_MAX: u64 = 4096;

/// Scalars in, scalars out and completion values are each capped at 16
/// (docs/driverkit.md §1 limits 2 and 4).
pub const SCALAR_MAX: usize = 16;

/// A validated interface.
#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub docs: Vec<String>,
    pub service: String,
    pub version: u32,
    pub consts: Vec<Const>,
    pub enums: Vec<Enum>,
    pub structs: Vec<Struct>,
    pub memories: Vec<Memory>,
    /// Sorted by selector.
    pub methods: Vec<Method>,
    /// Retired selectors, sorted.
    pub reserved: Vec<Reserved>,
    pub fingerprint: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IntType {
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
}

impl IntType {
    pub const ALL: [IntType; 8] = [
        IntType::U8,
        IntType::U16,
        IntType::U32,
        IntType::U64,
        IntType::I8,
        IntType::I16,
        IntType::I32,
        IntType::I64,
    ];

    pub fn from_name(name: &str) -> Option<IntType> {
        IntType::ALL.into_iter().find(|t| t.rust() == name)
    }

    pub fn size(self) -> u64 {
        match self {
            IntType::U8 | IntType::I8 => 1,
            IntType::U16 | IntType::I16 => 2,
            IntType::U32 | IntType::I32 => 4,
            IntType::U64 | IntType::I64 => 8,
        }
    }

    pub fn signed(self) -> bool {
        matches!(self, IntType::I8 | IntType::I16 | IntType::I32 | IntType::I64)
    }

    pub fn min(self) -> i128 {
        if self.signed() { -(1i128 << (self.size() * 8 - 1)) } else { 0 }
    }

    pub fn max(self) -> i128 {
        if self.signed() {
            (1i128 << (self.size() * 8 - 1)) - 1
        } else {
            (1i128 << (self.size() * 8)) - 1
        }
    }

    pub fn contains(self, value: i128) -> bool {
        (self.min()..=self.max()).contains(&value)
    }

    pub fn rust(self) -> &'static str {
        match self {
            IntType::U8 => "u8",
            IntType::U16 => "u16",
            IntType::U32 => "u32",
            IntType::U64 => "u64",
            IntType::I8 => "i8",
            IntType::I16 => "i16",
            IntType::I32 => "i32",
            IntType::I64 => "i64",
        }
    }

    pub fn c(self) -> &'static str {
        match self {
            IntType::U8 => "uint8_t",
            IntType::U16 => "uint16_t",
            IntType::U32 => "uint32_t",
            IntType::U64 => "uint64_t",
            IntType::I8 => "int8_t",
            IntType::I16 => "int16_t",
            IntType::I32 => "int32_t",
            IntType::I64 => "int64_t",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Const {
    pub name: String,
    pub docs: Vec<String>,
    pub ty: IntType,
    pub value: i128,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Enum {
    pub name: String,
    pub docs: Vec<String>,
    pub repr: IntType,
    pub variants: Vec<Variant>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub docs: Vec<String>,
    pub value: i128,
}

/// The type of a struct field or array element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DataType {
    Int(IntType),
    /// One byte, 0 or 1.
    Bool,
    /// Index into `Interface::enums`.
    Enum(usize),
    /// Index into `Interface::structs`.
    Struct(usize),
    Array(Box<DataType>, u64),
}

#[derive(Debug, Clone)]
pub struct Struct {
    pub name: String,
    pub docs: Vec<String>,
    pub fields: Vec<Field>,
    pub size: u64,
    pub align: u64,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub docs: Vec<String>,
    pub ty: DataType,
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// A memory type the client maps with `IOConnectMapMemory64` and the dext
/// provides from `CopyClientMemoryForType` (docs/driverkit.md §5).
#[derive(Debug, Clone)]
pub struct Memory {
    pub id: u32,
    pub name: String,
    pub docs: Vec<String>,
    pub size: u64,
    pub access: Access,
    pub span: Span,
}

/// A scalar's type: every scalar travels as a `uint64_t` and is narrowed by
/// the generated code on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScalarType {
    Int(IntType),
    Bool,
    /// Index into `Interface::enums`.
    Enum(usize),
}

#[derive(Debug, Clone)]
pub struct Scalar {
    pub name: String,
    pub docs: Vec<String>,
    pub ty: ScalarType,
    /// Inclusive bounds the value must lie in, when the schema gives a range.
    pub range: Option<(i128, i128)>,
    pub span: Span,
}

/// The shape of a method's structure input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StructShape {
    /// A schema struct (index into `Interface::structs`), fixed size.
    Struct(usize),
    /// `[u8; N]`.
    Bytes(u64),
    /// `[u8; MIN..=MAX]`: any length in the bounds.
    Bounded { min: u64, max: u64 },
    /// `[u8]`, outputs only: the dext returns any length, out of line
    /// (`kIOConnectMethodVarOutputSize`, docs/driverkit.md §3.1-2, §3.3-3).
    Variable,
}

#[derive(Debug, Clone)]
pub struct StructArg {
    pub name: String,
    pub docs: Vec<String>,
    pub shape: StructShape,
    pub span: Span,
}

/// What `checkCompletionExists` demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompletionCheck {
    /// Synchronous method: `completion` must be NULL (0).
    Forbidden,
    /// Async method: `completion` must be set (1).
    Required,
    /// `#[completion(any)]`: don't care (`-1U`).
    Any,
}

#[derive(Debug, Clone)]
pub struct Method {
    pub selector: u32,
    pub name: String,
    pub docs: Vec<String>,
    pub is_async: bool,
    /// `#[unchecked]`: the dext dispatches this selector by hand, with no
    /// table checks and raw arguments (like NullDriver's selectors 0 and 1).
    pub unchecked: bool,
    pub completion_check: CompletionCheck,
    pub scalar_inputs: Vec<Scalar>,
    pub struct_input: Option<StructArg>,
    pub scalar_outputs: Vec<Scalar>,
    pub struct_output: Option<StructArg>,
    /// Values an async method's completion carries after the status.
    pub completion: Vec<Scalar>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Reserved {
    pub selector: u32,
    pub docs: Vec<String>,
    pub span: Span,
}

/// One `IOUserClientMethodDispatch` entry's check values (docs/driverkit.md §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DispatchChecks {
    pub completion_exists: u32,
    pub scalar_input_count: u32,
    pub structure_input_size: u32,
    pub scalar_output_count: u32,
    pub structure_output_size: u32,
}

impl DispatchChecks {
    /// A zero-filled entry: what an omitted or hand-dispatched selector gets.
    pub const ZERO: DispatchChecks = DispatchChecks {
        completion_exists: 0,
        scalar_input_count: 0,
        structure_input_size: 0,
        scalar_output_count: 0,
        structure_output_size: 0,
    };
}

impl Interface {
    pub fn struct_by_name(&self, name: &str) -> Option<&Struct> {
        self.structs.iter().find(|s| s.name == name)
    }

    pub fn method(&self, selector: u32) -> Option<&Method> {
        self.methods.iter().find(|m| m.selector == selector)
    }

    /// Entries in the dispatch table: the highest selector plus one.
    pub fn dispatch_len(&self) -> u32 {
        self.methods.iter().map(|m| m.selector + 1).max().unwrap_or(0)
    }

    /// Size in bytes of a structure argument of a fixed shape.
    pub fn shape_size(&self, shape: StructShape) -> Option<u64> {
        match shape {
            StructShape::Struct(i) => Some(self.structs[i].size),
            StructShape::Bytes(n) => Some(n),
            StructShape::Bounded { .. } | StructShape::Variable => None,
        }
    }

    /// The check values of a method's dispatch entry, exactly as the C++
    /// table carries them (docs/driverkit.md §2.2):
    /// - completion: 1 for async, 0 for sync, `-1U` for `#[completion(any)]`;
    /// - counts: the exact number of scalars;
    /// - structure input: the fixed size, `0xffffffff` for a bounded input
    ///   (the thunk checks the bounds), 0 with none;
    /// - structure output: compared with `structureOutputMaximumSize`, the
    ///   capacity the client offers; the generated client always offers the
    ///   fixed size or the bound, so that is exact too; `0xffffffff` for a
    ///   variable output (the var-output call, §3.2-5).
    ///
    /// `#[unchecked]` methods are dispatched by hand and get a zero entry.
    pub fn dispatch_checks(&self, method: &Method) -> DispatchChecks {
        if method.unchecked {
            return DispatchChecks::ZERO;
        }
        let completion_exists = match method.completion_check {
            CompletionCheck::Forbidden => 0,
            CompletionCheck::Required => 1,
            CompletionCheck::Any => VARIABLE,
        };
        // A bounded input is checked by the thunk, so DriverKit gets "don't
        // care"; a bounded output is the capacity the client offers, exactly.
        let structure_input_size = match method.struct_input.as_ref().map(|a| a.shape) {
            None => 0,
            Some(StructShape::Bounded { .. } | StructShape::Variable) => VARIABLE,
            Some(shape) => self.shape_size(shape).map_or(VARIABLE, |s| s as u32),
        };
        let structure_output_size = match method.struct_output.as_ref().map(|a| a.shape) {
            None => 0,
            Some(StructShape::Bounded { max, .. }) => max as u32,
            Some(StructShape::Variable) => VARIABLE,
            Some(shape) => self.shape_size(shape).map_or(VARIABLE, |s| s as u32),
        };
        DispatchChecks {
            completion_exists,
            scalar_input_count: method.scalar_inputs.len() as u32,
            structure_input_size,
            scalar_output_count: method.scalar_outputs.len() as u32,
            structure_output_size,
        }
    }

    /// Whether some bytes are not a valid value of `ty`: it holds a bool (0 or
    /// 1 only) or an enum (declared values only), so both generated sides
    /// check such struct contents before a handler sees them.
    pub fn needs_validation(&self, ty: &DataType) -> bool {
        match ty {
            DataType::Int(_) => false,
            DataType::Bool | DataType::Enum(_) => true,
            DataType::Struct(i) => {
                self.structs[*i].fields.iter().any(|f| self.needs_validation(&f.ty))
            }
            DataType::Array(e, _) => self.needs_validation(e),
        }
    }

    /// Size and alignment of a data type in the C layout (LP64: arm64 and x86_64).
    pub fn layout_of(&self, ty: &DataType) -> (u64, u64) {
        match ty {
            DataType::Int(t) => (t.size(), t.size()),
            DataType::Bool => (1, 1),
            DataType::Enum(i) => {
                let size = self.enums[*i].repr.size();
                (size, size)
            }
            DataType::Struct(i) => (self.structs[*i].size, self.structs[*i].align),
            DataType::Array(elem, n) => {
                let (size, align) = self.layout_of(elem);
                (size * n, align)
            }
        }
    }
}
