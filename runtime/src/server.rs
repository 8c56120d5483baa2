//! The dext side of an external method call, for dexts modelled in Rust.
//!
//! [`Arguments`] is `IOUserClientMethodArguments` (docs/driverkit.md §1) as a
//! safe Rust value; [`external_method`] is what DriverKit's
//! `IOUserClient::ExternalMethod` does with an `IOUserClientMethodDispatch`
//! entry (§2.2). The generated `dispatch` function of each interface uses
//! both, exactly as the generated C++ `ExternalMethod` helper uses DriverKit.

use std::fmt;
use std::sync::Arc;

use crate::IoReturn;

/// `kIOUserClientVariableStructureSize`: "don't care" in a dispatch entry.
pub const VARIABLE: u32 = 0xffff_ffff;

/// One `IOUserClientMethodDispatch` entry's checks (docs/driverkit.md §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DispatchChecks {
    pub completion_exists: u32,
    pub scalar_input_count: u32,
    pub structure_input_size: u32,
    pub scalar_output_count: u32,
    pub structure_output_size: u32,
}

/// Dispatch metadata of one method, as generated into `METHODS`: the same
/// check values as the C++ table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodInfo {
    pub selector: u32,
    pub name: &'static str,
    pub is_async: bool,
    /// Dispatched by hand: the table entry is zero and no checks apply.
    pub unchecked: bool,
    pub checks: DispatchChecks,
    /// Values the completion carries after the status.
    pub completion_values: u32,
}

/// A memory type, as generated into `MEMORY_TYPES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryInfo {
    pub id: u32,
    pub name: &'static str,
    pub size: u64,
    pub read_only: bool,
}

/// The layout of one shared struct as the Rust compiler laid it out, as
/// generated into `STRUCTS`: the values are `size_of`, `align_of` and
/// `offset_of!` of the generated type, not numbers copied from the schema, so
/// that comparing them with what a C++ compiler made of the header compares
/// two compilers (`dextlink-tablecheck` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StructLayout {
    /// The struct's name in the schema, the Rust module and the C++ header.
    pub name: &'static str,
    /// `size_of` in bytes.
    pub size: usize,
    /// `align_of` in bytes.
    pub align: usize,
    /// Every field, in declaration order.
    pub fields: &'static [FieldLayout],
}

/// One field of a [`StructLayout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLayout {
    /// The field's name in the C++ header (what `offsetof` names).
    pub name: &'static str,
    /// `offset_of!` in bytes.
    pub offset: usize,
    /// `size_of` of the field's Rust type in bytes (a `bool` or enum field is
    /// stored as its integer, which has the C++ field's size).
    pub size: usize,
}

/// Everything the generated module knows about its interface's ABI, in one
/// value, as generated into `INTERFACE`: what a check of the compiled C++
/// header against the Rust side needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// The interface's name in the schema, e.g. `FwLoader`.
    pub name: &'static str,
    /// The C++ namespace of the header, e.g. `fw_loader`.
    pub cpp_namespace: &'static str,
    /// The dext's C++ header, byte for byte what `dextlink gen --cpp` writes.
    pub cpp_header: &'static str,
    /// The schema fingerprint (`kFingerprint` in C++).
    pub fingerprint: u64,
    /// The schema version (`kVersion` in C++).
    pub version: u32,
    /// Entries in the dispatch table (`kSelectorCount` in C++).
    pub selector_count: u32,
    /// Dispatch metadata, sorted by selector (`METHODS`).
    pub methods: &'static [MethodInfo],
    /// The memory types, by id (`MEMORY_TYPES`).
    pub memory_types: &'static [MemoryInfo],
    /// The shared structs as the Rust compiler laid them out (`STRUCTS`).
    pub structs: &'static [StructLayout],
}

/// The structure input as the dext receives it (docs/driverkit.md §3.2-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StructureInput<'a> {
    /// No input: `structureInput` and `structureInputDescriptor` are both NULL.
    None,
    /// Up to 4096 bytes, in `structureInput` (an OSData).
    Inline(&'a [u8]),
    /// Over 4096 bytes, through `structureInputDescriptor`, mapped read-only.
    Descriptor(&'a [u8]),
}

impl<'a> StructureInput<'a> {
    /// The bytes, whichever way they came.
    pub fn bytes(&self) -> &'a [u8] {
        match *self {
            StructureInput::None => &[],
            StructureInput::Inline(b) | StructureInput::Descriptor(b) => b,
        }
    }

    /// The length DriverKit's check compares (descriptor length or OSData length).
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What delivers a completion to the client (the simulator's kernel side).
type Sender = dyn Fn(IoReturn, &[u64]) + Send + Sync;

/// The `completion` action of an async call: `AsyncCompletion` sends the
/// status and up to 16 values to the client.
#[derive(Clone)]
pub struct AsyncCompletion {
    send: Arc<Sender>,
}

impl fmt::Debug for AsyncCompletion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AsyncCompletion")
    }
}

impl AsyncCompletion {
    /// An action that delivers through `send` (the simulator's kernel side).
    pub fn new(send: impl Fn(IoReturn, &[u64]) + Send + Sync + 'static) -> AsyncCompletion {
        AsyncCompletion { send: Arc::new(send) }
    }

    /// `IOUserClient::AsyncCompletion`. More than 16 values are dropped
    /// silently, as the iig stub does (docs/driverkit.md §4.1-3): the client
    /// then never hears of this completion.
    pub fn complete(&self, status: IoReturn, values: &[u64]) {
        if values.len() > crate::completion::MAX_COMPLETION_VALUES {
            return;
        }
        (self.send)(status, values);
    }
}

/// `IOUserClientMethodArguments`, as the dext's `ExternalMethod` receives it.
#[derive(Debug)]
pub struct Arguments<'a> {
    /// Set exactly when the client made an async call (§4.2-2).
    pub completion: Option<AsyncCompletion>,
    pub scalar_input: &'a [u64],
    pub structure_input: StructureInput<'a>,
    /// Sixteen slots, zeroed by the kernel (§3.2-4).
    pub scalar_output: &'a mut [u64],
    /// The count the client requested; the dext may lower it (§3.2-5).
    pub scalar_output_count: u32,
    /// The OSData the dext returns for an inline or variable output (§3.3-1, 3).
    pub structure_output: Option<Vec<u8>>,
    /// The client's buffer when it offered more than 4096 bytes (§3.3-2).
    pub structure_output_descriptor: Option<&'a mut [u8]>,
    /// The capacity offered: 0..=4096 inline, the descriptor length, or
    /// `0xffffffff` for the var-output call (§3.2-5).
    pub structure_output_maximum_size: u64,
}

/// What `IOUserClient::ExternalMethod` does with a dispatch entry
/// (docs/driverkit.md §2.2): a missing entry gives `kIOReturnUnsupported`
/// (§2.2-10, UNVERIFIED); then the completion check, then the four count and
/// size checks in declaration order, each failing with
/// `kIOReturnBadArgument` (the kernel twin's code; DriverKit's own is
/// UNVERIFIED, §2.2-8); `0xffffffff` means don't care, any other value
/// (including 0) must match exactly (§2.2-7). Returns `Ok` when `function`
/// may run; a NULL `function` is the caller's `kIOReturnNoCompletion`.
pub fn external_method(
    checks: Option<&DispatchChecks>,
    args: &Arguments<'_>,
) -> Result<(), IoReturn> {
    check_dispatch(checks, &CallShape::of(args))
}

/// What the dispatch checks look at in a call, and nothing else: the shape of
/// an `IOUserClientMethodArguments` (docs/driverkit.md §2.2). The C++ DriverKit
/// runtime fills one from the arguments its `IOUserClient::ExternalMethod`
/// receives, so that Rust and C++ dexts are held to the same rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallShape {
    /// `completion != NULL`.
    pub has_completion: bool,
    /// `scalarInputCount`.
    pub scalar_input_count: u64,
    /// The length of `structureInputDescriptor` if set, else of `structureInput`
    /// (0 when both are NULL).
    pub structure_input_length: u64,
    /// `scalarOutputCount`: the count the client requested.
    pub scalar_output_count: u64,
    /// `structureOutputMaximumSize`: the capacity the client offered.
    pub structure_output_maximum_size: u64,
}

impl CallShape {
    /// The shape of a call modelled in Rust.
    pub fn of(args: &Arguments<'_>) -> CallShape {
        CallShape {
            has_completion: args.completion.is_some(),
            scalar_input_count: args.scalar_input.len() as u64,
            structure_input_length: args.structure_input.len() as u64,
            scalar_output_count: u64::from(args.scalar_output_count),
            structure_output_maximum_size: args.structure_output_maximum_size,
        }
    }
}

/// The dispatch rules themselves, on a call's shape: see [`external_method`].
/// This is the one implementation; the C++ runtime reaches it through a C ABI.
pub fn check_dispatch(checks: Option<&DispatchChecks>, shape: &CallShape) -> Result<(), IoReturn> {
    let Some(checks) = checks else {
        return Err(IoReturn::UNSUPPORTED);
    };
    match checks.completion_exists {
        VARIABLE => {}
        0 if shape.has_completion => return Err(IoReturn::BAD_ARGUMENT),
        0 => {}
        _ if !shape.has_completion => return Err(IoReturn::BAD_ARGUMENT),
        _ => {}
    }
    let exact = |check: u32, actual: u64| check == VARIABLE || u64::from(check) == actual;
    if !exact(checks.scalar_input_count, shape.scalar_input_count)
        || !exact(checks.structure_input_size, shape.structure_input_length)
        || !exact(checks.scalar_output_count, shape.scalar_output_count)
        || !exact(checks.structure_output_size, shape.structure_output_maximum_size)
    {
        return Err(IoReturn::BAD_ARGUMENT);
    }
    Ok(())
}

/// Answers dextlink's handshake selector, as the generated C++ `Handshake`
/// does: no inputs and no structure output; two scalars out, the schema
/// fingerprint and version.
pub fn handshake(args: &mut Arguments<'_>, fingerprint: u64, version: u32) -> IoReturn {
    if args.completion.is_some()
        || !args.scalar_input.is_empty()
        || !args.structure_input.is_empty()
        || args.scalar_output_count != 2
        || args.scalar_output.len() < 2
        || args.structure_output_maximum_size != 0
        || args.structure_output_descriptor.is_some()
    {
        return IoReturn::BAD_ARGUMENT;
    }
    args.scalar_output[0] = fingerprint;
    args.scalar_output[1] = u64::from(version);
    IoReturn::SUCCESS
}

/// Returns structure output the way a dext must (docs/driverkit.md §3.3): into
/// the client's descriptor when it offered more than 4096 bytes, otherwise as
/// an OSData no longer than the capacity offered.
pub fn return_structure(args: &mut Arguments<'_>, bytes: &[u8]) -> Result<(), IoReturn> {
    if let Some(descriptor) = args.structure_output_descriptor.as_deref_mut() {
        let target = descriptor.get_mut(..bytes.len()).ok_or(IoReturn::BAD_ARGUMENT)?;
        target.copy_from_slice(bytes);
        return Ok(());
    }
    if bytes.len() as u64 > args.structure_output_maximum_size {
        return Err(IoReturn::BAD_ARGUMENT);
    }
    args.structure_output = Some(bytes.to_vec());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(scalars: &'a [u64], out: &'a mut [u64]) -> Arguments<'a> {
        Arguments {
            completion: None,
            scalar_input: scalars,
            structure_input: StructureInput::None,
            scalar_output: out,
            scalar_output_count: 0,
            structure_output: None,
            structure_output_descriptor: None,
            structure_output_maximum_size: 0,
        }
    }

    const ZERO: DispatchChecks = DispatchChecks {
        completion_exists: 0,
        scalar_input_count: 0,
        structure_input_size: 0,
        scalar_output_count: 0,
        structure_output_size: 0,
    };

    #[test]
    fn zero_is_an_exact_check_and_variable_is_dont_care() {
        let mut out = [0; 16];
        assert_eq!(external_method(Some(&ZERO), &args(&[], &mut out)), Ok(()));
        assert_eq!(
            external_method(Some(&ZERO), &args(&[1], &mut out)),
            Err(IoReturn::BAD_ARGUMENT)
        );
        let any = DispatchChecks { scalar_input_count: VARIABLE, ..ZERO };
        assert_eq!(external_method(Some(&any), &args(&[1, 2, 3], &mut out)), Ok(()));
        assert_eq!(external_method(None, &args(&[], &mut out)), Err(IoReturn::UNSUPPORTED));
    }

    #[test]
    fn completion_check_follows_the_header_contract() {
        let mut out = [0; 16];
        let mut a = args(&[], &mut out);
        let required = DispatchChecks { completion_exists: 1, ..ZERO };
        assert_eq!(external_method(Some(&required), &a), Err(IoReturn::BAD_ARGUMENT));
        a.completion = Some(AsyncCompletion::new(|_, _| {}));
        assert_eq!(external_method(Some(&required), &a), Ok(()));
        assert_eq!(external_method(Some(&ZERO), &a), Err(IoReturn::BAD_ARGUMENT));
        let any = DispatchChecks { completion_exists: VARIABLE, ..ZERO };
        assert_eq!(external_method(Some(&any), &a), Ok(()));
    }

    #[test]
    fn more_than_sixteen_completion_values_are_dropped() {
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&sent);
        let c = AsyncCompletion::new(move |s, v| log.lock().unwrap().push((s, v.len())));
        c.complete(IoReturn::SUCCESS, &[0; 16]);
        c.complete(IoReturn::SUCCESS, &[0; 17]);
        assert_eq!(*sent.lock().unwrap(), vec![(IoReturn::SUCCESS, 16)]);
    }
}
