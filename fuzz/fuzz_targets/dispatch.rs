//! The simulated dext's side of a call: the generated `dispatch` of two
//! example schemas, reached through the simulator's kernel layer
//! (`dextlink::sim::kernel::deliver`, docs/driverkit.md §3, §4) or with
//! hand-made `IOUserClientMethodArguments`, with arbitrary selectors, scalar
//! counts and values, structure inputs (inline and, above 4096 bytes, as a
//! descriptor), output capacities, with and without a completion.
//!
//! What must hold, besides "no panic":
//! - a call that does not match its method's declaration (the spec tables
//!   below, written from the schemas by hand and compared with the generated
//!   `METHODS` once) fails with an IOReturn error, never with success, and
//!   never reaches its handler;
//! - through the kernel layer, a call that matches succeeds, returns exactly
//!   the declared number of scalars, and a failed call leaves the client's
//!   scalars and inline buffer as they were;
//! - no handler sees a value outside what its schema declares: the handlers
//!   assert every range, bool, enum and length themselves;
//! - a completion carries exactly the declared number of values.
//!
//! Input layout (a cursor that reads zeros past the end):
//!
//! ```text
//! [flags] bit 0: fwloader (else shapes), bit 1: hand-made arguments (else
//!         the kernel layer), bit 2: with a completion, bit 3: the handler
//!         fails, bit 4 (hand-made only): a maximum output size of its own;
//!         bits 4-7 also: how many bytes `read_name` and `read_log` add
//! [selector] 0..=0xEF itself, 0xF0 the handshake, above: a u64 follows
//! [n] scalar inputs (mod 20), then n scalars: a tag, 0xF0 u64, 0xF1 i32
//!     sign-extended, 0xF2 u32, 0xF3 i8 sign-extended, else the tag itself
//! [count] scalar outputs requested (mod 20)
//! [output] mod 4: none, variable, inline (u16 capacity), 4096 + u16
//! [input] mod 3: none, u16 length, 4096 + u16 length
//! hand-made only: [slots] scalar output slots (mod 17), then, with flag
//!     bit 4, a u64 maximum output size
//! the rest: the structure input's bytes (zero-padded to its length)
//! ```

#![no_main]

use std::sync::Once;

use dextlink::server::{
    Arguments, AsyncCompletion, DispatchChecks, MethodInfo, StructLayout, StructureInput, VARIABLE,
};
use dextlink::sim::kernel;
use dextlink::{Call, CallError, IoReturn, StructOutput};
use libfuzzer_sys::fuzz_target;

dextlink::interface!("../tests/schemas/shapes.dextlink");
dextlink::interface!("../examples/fwloader/fwloader.dextlink");

// ----- the declarations, by hand ------------------------------------------------

/// A scalar input as the schema declares it, over its wire value.
#[derive(Debug, Clone, Copy)]
enum Scalar {
    /// Unsigned: the wire value in `lo..=hi`.
    U(u64, u64),
    /// Signed: the wire value, read as `i64` (sign-extended), in `lo..=hi`.
    I(i64, i64),
    Bool,
    /// An enum: exactly these wire values.
    Enum(&'static [u64]),
}

impl Scalar {
    fn accepts(self, wire: u64) -> bool {
        match self {
            Scalar::U(lo, hi) => (lo..=hi).contains(&wire),
            Scalar::I(lo, hi) => (lo..=hi).contains(&(wire as i64)),
            Scalar::Bool => wire <= 1,
            Scalar::Enum(values) => values.contains(&wire),
        }
    }
}

const ANY_U64: Scalar = Scalar::U(0, u64::MAX);
const U8: Scalar = Scalar::U(0, 0xff);
const U32: Scalar = Scalar::U(0, 0xffff_ffff);
/// `Mode: u8 { Off = 0, On = 1, Auto = 0xff }`.
const MODE: Scalar = Scalar::Enum(&[0, 1, 0xff]);

#[derive(Debug, Clone, Copy)]
enum Input {
    None,
    /// Exactly this many bytes, whose contents `valid` accepts.
    Fixed(usize, fn(&[u8]) -> bool),
    /// A byte array of `lo..=hi` bytes.
    Bytes(usize, usize),
}

#[derive(Debug, Clone, Copy)]
enum Output {
    None,
    /// A struct or `[u8; N]`: the capacity offered must be exactly N.
    Fixed(u64),
    /// `[u8; ..=N]`: the capacity offered must be N.
    Bounded(u64),
    /// `[u8]`: the var-output call.
    Variable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Completion {
    Forbidden,
    Required,
    Any,
}

#[derive(Debug, Clone, Copy)]
struct Method {
    selector: u32,
    name: &'static str,
    completion: Completion,
    scalars: &'static [Scalar],
    input: Input,
    outputs: u32,
    output: Output,
    completion_values: usize,
    /// `#[unchecked]`: the fuzz handler's own rule applies (one scalar in,
    /// one out, anything else ignored).
    unchecked: bool,
}

const fn method(selector: u32, name: &'static str) -> Method {
    Method {
        selector,
        name,
        completion: Completion::Forbidden,
        scalars: &[],
        input: Input::None,
        outputs: 0,
        output: Output::None,
        completion_values: 0,
        unchecked: false,
    }
}

fn any_bytes(_: &[u8]) -> bool {
    true
}

/// Offsets of `Config`'s typed fields, in `tests/schemas/shapes.dextlink`:
/// origin 0, corners 8, name 40, mode 72, enabled 73, trim 74, gain 76,
/// serial 80; 88 bytes.
const CONFIG_MODE: usize = 72;
const CONFIG_ENABLED: usize = 73;
const CONFIG_TRIM: usize = 74;

fn valid_config(b: &[u8]) -> bool {
    let trim = i16::from_ne_bytes([b[CONFIG_TRIM], b[CONFIG_TRIM + 1]]);
    matches!(b[CONFIG_MODE], 0 | 1 | 0xff) && b[CONFIG_ENABLED] <= 1 && (-1..=1).contains(&trim)
}

/// `ImageInfo`: total_len 0, load_address 8, format 16 (`ImageFormat`, 0..=4), crc 20.
const IMAGE_INFO_FORMAT: usize = 16;

fn valid_image_info(b: &[u8]) -> bool {
    let format =
        u32::from_ne_bytes(b[IMAGE_INFO_FORMAT..IMAGE_INFO_FORMAT + 4].try_into().unwrap());
    format <= 4
}

const SHAPES: &[Method] = &[
    Method {
        scalars: &[U8, Scalar::I(-40, 125), Scalar::U(1, 65536), Scalar::Bool, MODE],
        outputs: 2,
        ..method(0, "scalars")
    },
    Method {
        input: Input::Fixed(88, valid_config),
        output: Output::Fixed(88),
        ..method(1, "structs")
    },
    Method {
        scalars: &[Scalar::U(0, 3)],
        input: Input::Fixed(8, any_bytes),
        outputs: 1,
        output: Output::Fixed(88),
        ..method(2, "mixed")
    },
    Method { scalars: &[ANY_U64; 16], outputs: 16, ..method(3, "wide") },
    Method { input: Input::Fixed(4800, any_bytes), outputs: 1, ..method(4, "big_in") },
    Method { scalars: &[ANY_U64], output: Output::Fixed(4800), ..method(5, "big_out") },
    Method { input: Input::Bytes(1, 65536), outputs: 1, ..method(6, "write_blob") },
    Method { output: Output::Bounded(32), ..method(7, "read_name") },
    Method { scalars: &[U32], output: Output::Variable, ..method(8, "read_log") },
    Method { input: Input::Fixed(16, any_bytes), ..method(9, "set_key") },
    Method { completion: Completion::Required, ..method(10, "ping") },
    Method {
        completion: Completion::Required,
        scalars: &[Scalar::U(0, 7)],
        completion_values: 1,
        ..method(11, "measure")
    },
    Method { completion: Completion::Required, completion_values: 16, ..method(12, "sample") },
    Method {
        completion: Completion::Required,
        input: Input::Fixed(88, valid_config),
        outputs: 1,
        completion_values: 3,
        ..method(13, "start")
    },
    // 14 is reserved.
    Method { unchecked: true, ..method(15, "raw") },
    Method { completion: Completion::Any, scalars: &[U32], ..method(16, "maybe_async") },
];

const SLOT_COUNT: u64 = 8;
const SLOT_SIZE: u64 = 0x10_0000;

const FWLOADER: &[Method] = &[
    Method { input: Input::Fixed(24, valid_image_info), outputs: 2, ..method(0, "begin") },
    Method {
        completion: Completion::Required,
        scalars: &[Scalar::U(0, SLOT_COUNT - 1), Scalar::U(1, SLOT_SIZE)],
        completion_values: 2,
        ..method(1, "submit")
    },
    Method { scalars: &[U32], outputs: 1, ..method(2, "finish") },
    Method { output: Output::Fixed(48), ..method(3, "status") },
    method(4, "abort"),
    Method { scalars: &[ANY_U64], input: Input::Bytes(0, 4096), outputs: 1, ..method(5, "write") },
];

/// What DriverKit's table entry holds for `m` (schema/LANGUAGE.md, "What the
/// dispatch table gets").
fn table_entry(m: &Method) -> DispatchChecks {
    if m.unchecked {
        return DispatchChecks {
            completion_exists: 0,
            scalar_input_count: 0,
            structure_input_size: 0,
            scalar_output_count: 0,
            structure_output_size: 0,
        };
    }
    DispatchChecks {
        completion_exists: match m.completion {
            Completion::Forbidden => 0,
            Completion::Required => 1,
            Completion::Any => VARIABLE,
        },
        scalar_input_count: m.scalars.len() as u32,
        structure_input_size: match m.input {
            Input::None => 0,
            Input::Fixed(n, _) => n as u32,
            Input::Bytes(..) => VARIABLE,
        },
        scalar_output_count: m.outputs,
        structure_output_size: match m.output {
            Output::None => 0,
            Output::Fixed(n) | Output::Bounded(n) => n as u32,
            Output::Variable => VARIABLE,
        },
    }
}

/// The hand-written tables describe what was generated (or the oracle is wrong).
fn check_specs(specs: &[Method], methods: &[MethodInfo]) {
    assert_eq!(specs.len(), methods.len());
    for (spec, info) in specs.iter().zip(methods) {
        assert_eq!((spec.selector, spec.name), (info.selector, info.name));
        assert_eq!(spec.unchecked, info.unchecked, "{}", spec.name);
        assert_eq!(table_entry(spec), info.checks, "{}", spec.name);
        assert_eq!(spec.completion_values as u32, info.completion_values, "{}", spec.name);
    }
}

fn field_offset(structs: &[StructLayout], ty: &str, field: &str) -> usize {
    let s = structs.iter().find(|s| s.name == ty).expect("struct");
    s.fields.iter().find(|f| f.name == field).expect("field").offset
}

fn check_layouts() {
    let s = shapes::STRUCTS;
    assert_eq!(field_offset(s, "Config", "mode"), CONFIG_MODE);
    assert_eq!(field_offset(s, "Config", "enabled"), CONFIG_ENABLED);
    assert_eq!(field_offset(s, "Config", "trim"), CONFIG_TRIM);
    assert_eq!(std::mem::size_of::<shapes::Config>(), 88);
    assert_eq!(std::mem::size_of::<shapes::Big>(), 4800);
    let f = fw_loader::STRUCTS;
    assert_eq!(field_offset(f, "ImageInfo", "format"), IMAGE_INFO_FORMAT);
    assert_eq!(std::mem::size_of::<fw_loader::ImageInfo>(), 24);
    assert_eq!(std::mem::size_of::<fw_loader::UploadState>(), 48);
}

/// A call's shape as the dext's `ExternalMethod` sees it.
struct Shape<'a> {
    selector: u64,
    completion: bool,
    scalars: &'a [u64],
    input: &'a [u8],
    outputs: u32,
    maximum: u64,
}

/// Whether the call matches what its method declares.
fn well_formed(specs: &[Method], handshake: u32, call: &Shape<'_>) -> bool {
    if call.selector == u64::from(handshake) {
        return !call.completion
            && call.scalars.is_empty()
            && call.input.is_empty()
            && call.outputs == 2
            && call.maximum == 0;
    }
    let Some(m) = specs.iter().find(|m| u64::from(m.selector) == call.selector) else {
        return false;
    };
    if m.unchecked {
        return call.scalars.len() == 1 && call.outputs == 1;
    }
    let completion = match m.completion {
        Completion::Forbidden => !call.completion,
        Completion::Required => call.completion,
        Completion::Any => true,
    };
    let input = match m.input {
        Input::None => call.input.is_empty(),
        Input::Fixed(n, valid) => call.input.len() == n && valid(call.input),
        Input::Bytes(lo, hi) => (lo..=hi).contains(&call.input.len()),
    };
    let output = match m.output {
        Output::None => call.maximum == 0,
        Output::Fixed(n) | Output::Bounded(n) => call.maximum == n,
        Output::Variable => call.maximum == u64::from(VARIABLE),
    };
    completion
        && call.scalars.len() == m.scalars.len()
        && m.scalars.iter().zip(call.scalars).all(|(s, &v)| s.accepts(v))
        && input
        && call.outputs == m.outputs
        && output
}

// ----- the handlers: they assert what they are promised --------------------------

/// A fuzz dext: answers deterministically, fails on request, and panics on
/// any value its schema rules out.
#[derive(Debug)]
struct Dext {
    fail: bool,
    /// How long `read_name`'s answer is (≤ 32) and `read_log`'s base length.
    length: usize,
    /// Handler calls made.
    calls: u32,
}

impl Dext {
    fn enter(&mut self) -> Result<(), IoReturn> {
        self.calls += 1;
        if self.fail { Err(IoReturn::BUSY) } else { Ok(()) }
    }
}

fn assert_config(config: &shapes::Config) {
    assert!(matches!(config.mode, 0 | 1 | 0xff), "Config.mode {}", config.mode);
    assert!(config.enabled <= 1, "Config.enabled {}", config.enabled);
    assert!((-1..=1).contains(&config.trim), "Config.trim {}", config.trim);
    assert!(config.mode().is_ok() && config.trim().is_ok() && config.is_valid());
}

impl shapes::Handler for Dext {
    fn scalars(
        &mut self,
        a: u8,
        b: i32,
        c: u64,
        on: bool,
        mode: shapes::Mode,
    ) -> Result<shapes::ScalarsOutput, IoReturn> {
        assert!((-40..=125).contains(&b), "scalars: b = {b}");
        assert!((1..=65536).contains(&c), "scalars: c = {c}");
        self.enter()?;
        let sum = u64::from(a) + c + u64::from(on) + u64::from(u8::from(mode));
        Ok(shapes::ScalarsOutput { sum, neg: -i64::from(b) })
    }

    fn structs(&mut self, config: &shapes::Config) -> Result<shapes::Config, IoReturn> {
        assert_config(config);
        self.enter()?;
        Ok(*config)
    }

    fn mixed(
        &mut self,
        index: u32,
        point: &shapes::Point,
    ) -> Result<shapes::MixedOutput, IoReturn> {
        assert!(index < 4, "mixed: index = {index}");
        self.enter()?;
        let mut config = shapes::Config::zeroed();
        config.corners[index as usize] = *point;
        Ok(shapes::MixedOutput { ok: index.is_multiple_of(2), config })
    }

    fn wide(
        &mut self,
        a0: u64,
        a1: u64,
        a2: u64,
        a3: u64,
        a4: u64,
        a5: u64,
        a6: u64,
        a7: u64,
        a8: u64,
        a9: u64,
        a10: u64,
        a11: u64,
        a12: u64,
        a13: u64,
        a14: u64,
        a15: u64,
    ) -> Result<shapes::WideOutput, IoReturn> {
        self.enter()?;
        Ok(shapes::WideOutput {
            b0: a15,
            b1: a14,
            b2: a13,
            b3: a12,
            b4: a11,
            b5: a10,
            b6: a9,
            b7: a8,
            b8: a7,
            b9: a6,
            b10: a5,
            b11: a4,
            b12: a3,
            b13: a2,
            b14: a1,
            b15: a0,
        })
    }

    fn big_in(&mut self, big: &shapes::Big) -> Result<u64, IoReturn> {
        self.enter()?;
        Ok(big.words.iter().fold(0u64, |a, w| a.wrapping_add(*w)))
    }

    fn big_out(&mut self, seed: u64) -> Result<shapes::Big, IoReturn> {
        self.enter()?;
        let mut big = shapes::Big::zeroed();
        big.words.fill(seed);
        Ok(big)
    }

    fn write_blob(&mut self, data: &[u8]) -> Result<u32, IoReturn> {
        assert!((1..=65536).contains(&data.len()), "write_blob: {} bytes", data.len());
        self.enter()?;
        Ok(data.len() as u32)
    }

    fn read_name(&mut self) -> Result<Vec<u8>, IoReturn> {
        self.enter()?;
        Ok(vec![b'n'; self.length % 33])
    }

    fn read_log(&mut self, max_lines: u32) -> Result<Vec<u8>, IoReturn> {
        self.enter()?;
        Ok(vec![b'l'; (max_lines as usize % 8192) + self.length])
    }

    fn set_key(&mut self, _key: &[u8; 16]) -> Result<(), IoReturn> {
        self.enter()
    }

    fn ping(&mut self, completion: shapes::PingCompleter) -> Result<(), IoReturn> {
        self.enter()?;
        completion.complete(());
        Ok(())
    }

    fn measure(
        &mut self,
        channel: u8,
        completion: shapes::MeasureCompleter,
    ) -> Result<(), IoReturn> {
        assert!(channel < 8, "measure: channel = {channel}");
        self.enter()?;
        completion.complete(-i32::from(channel));
        Ok(())
    }

    fn sample(&mut self, completion: shapes::SampleCompleter) -> Result<(), IoReturn> {
        self.enter()?;
        completion.fail(IoReturn::ABORTED);
        Ok(())
    }

    fn start(
        &mut self,
        config: &shapes::Config,
        completion: shapes::StartCompleter,
    ) -> Result<u32, IoReturn> {
        assert_config(config);
        self.enter()?;
        completion.complete(shapes::StartCompletion {
            status: shapes::Mode::Auto,
            trim: shapes::Trim::Down,
            done: true,
        });
        Ok(config.gain)
    }

    fn raw(&mut self, arguments: &mut Arguments<'_>) -> IoReturn {
        // Dispatched by hand: this handler checks for itself.
        if let Err(code) = self.enter() {
            return code;
        }
        if arguments.scalar_input.len() != 1
            || arguments.scalar_output_count != 1
            || arguments.scalar_output.is_empty()
        {
            return IoReturn::BAD_ARGUMENT;
        }
        arguments.scalar_output[0] = arguments.scalar_input[0].wrapping_add(1);
        IoReturn::SUCCESS
    }

    fn maybe_async(
        &mut self,
        _x: u32,
        completion: Option<shapes::MaybeAsyncCompleter>,
    ) -> Result<(), IoReturn> {
        self.enter()?;
        if let Some(c) = completion {
            c.complete(());
        }
        Ok(())
    }
}

impl fw_loader::Handler for Dext {
    fn begin(&mut self, info: &fw_loader::ImageInfo) -> Result<fw_loader::BeginOutput, IoReturn> {
        assert!(info.format <= 4, "begin: format = {}", info.format);
        assert!(info.format().is_ok() && info.is_valid());
        self.enter()?;
        Ok(fw_loader::BeginOutput { session: info.total_len, resume_offset: 0 })
    }

    fn submit(
        &mut self,
        slot: u32,
        len: u32,
        completion: fw_loader::SubmitCompleter,
    ) -> Result<(), IoReturn> {
        assert!(u64::from(slot) < SLOT_COUNT, "submit: slot = {slot}");
        assert!((1..=SLOT_SIZE).contains(&u64::from(len)), "submit: len = {len}");
        self.enter()?;
        completion.complete(fw_loader::SubmitCompletion { transferred: len, acknowledged: 0 });
        Ok(())
    }

    fn finish(&mut self, _image_crc32: u32) -> Result<fw_loader::Status, IoReturn> {
        self.enter()?;
        Ok(fw_loader::Status::Failed)
    }

    fn status(&mut self) -> Result<fw_loader::UploadState, IoReturn> {
        self.enter()?;
        let mut state = fw_loader::UploadState::zeroed();
        state.set_status(fw_loader::Status::Interrupted);
        Ok(state)
    }

    fn abort(&mut self) -> Result<(), IoReturn> {
        self.enter()
    }

    fn write(&mut self, image_offset: u64, data: &[u8]) -> Result<u64, IoReturn> {
        assert!(data.len() <= 4096, "write: {} bytes", data.len());
        self.enter()?;
        Ok(image_offset.wrapping_add(data.len() as u64))
    }
}

// ----- decoding the input -----------------------------------------------------------

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.byte())
    }

    fn u16(&mut self) -> usize {
        usize::from(u16::from_le_bytes(self.bytes()))
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }

    fn scalar(&mut self) -> u64 {
        match self.byte() {
            0xF0 => self.u64(),
            0xF1 => i32::from_le_bytes(self.bytes()) as i64 as u64,
            0xF2 => u64::from(u32::from_le_bytes(self.bytes())),
            0xF3 => self.byte() as i8 as i64 as u64,
            tag => u64::from(tag),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum OutputKind {
    None,
    Variable,
    Buffer(usize),
}

/// Which interface a call goes to.
#[derive(Clone, Copy)]
struct Interface {
    specs: &'static [Method],
    handshake: u32,
    dispatch: fn(&mut Dext, u64, &mut Arguments<'_>) -> IoReturn,
}

const INTERFACES: [Interface; 2] = [
    Interface {
        specs: SHAPES,
        handshake: shapes::HANDSHAKE_SELECTOR,
        dispatch: |dext, selector, args| shapes::dispatch(dext, selector, args),
    },
    Interface {
        specs: FWLOADER,
        handshake: fw_loader::HANDSHAKE_SELECTOR,
        dispatch: |dext, selector, args| fw_loader::dispatch(dext, selector, args),
    },
];

/// A completion action that checks what it carries.
fn completion_for(specs: &[Method], selector: u64) -> AsyncCompletion {
    let expected = specs.iter().find(|m| u64::from(m.selector) == selector).map(|m| {
        // An unchecked method completes as it likes.
        (!m.unchecked).then_some(m.completion_values)
    });
    AsyncCompletion::new(move |_status, values| {
        if let Some(Some(n)) = expected {
            assert_eq!(values.len(), n, "selector {selector}: completion values");
        }
    })
}

const SENTINEL: u64 = 0x5a5a_5a5a_5a5a_5a5a;

/// One decoded call.
#[derive(Debug)]
struct Request {
    selector: u64,
    completion: bool,
    scalars: Vec<u64>,
    /// Scalar outputs requested.
    outputs: u32,
    output: OutputKind,
    input: Vec<u8>,
    /// Hand-made arguments: scalar output slots, and a maximum output size
    /// of its own.
    hand_made: Option<(usize, Option<u64>)>,
}

impl Request {
    fn decode(c: &mut Cursor<'_>, flags: u8, handshake: u32) -> Request {
        let selector = match c.byte() {
            0xF0 => u64::from(handshake),
            b @ 0..=0xEF => u64::from(b),
            _ => c.u64(),
        };
        let scalars = (0..c.byte() % 20).map(|_| c.scalar()).collect();
        let outputs = u32::from(c.byte() % 20);
        let output = match c.byte() % 4 {
            0 => OutputKind::None,
            1 => OutputKind::Variable,
            2 => OutputKind::Buffer(c.u16()),
            _ => OutputKind::Buffer(kernel::INBAND_MAX + c.u16()),
        };
        let input_len = match c.byte() % 3 {
            0 => 0,
            1 => c.u16(),
            _ => kernel::INBAND_MAX + c.u16(),
        };
        let hand_made = (flags & 2 != 0).then(|| {
            let slots = usize::from(c.byte() % 17);
            (slots, (flags & 16 != 0).then(|| c.u64()))
        });
        let mut input = c.0.to_vec();
        input.resize(input_len, 0);
        Request { selector, completion: flags & 4 != 0, scalars, outputs, output, input, hand_made }
    }

    /// The maximum output size the dext sees for the output offered.
    fn maximum(&self) -> u64 {
        match self.output {
            OutputKind::None => 0,
            OutputKind::Variable => u64::from(VARIABLE),
            OutputKind::Buffer(n) => n as u64,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    static SPECS: Once = Once::new();
    SPECS.call_once(|| {
        check_specs(SHAPES, shapes::METHODS);
        check_specs(FWLOADER, fw_loader::METHODS);
        check_layouts();
    });

    let mut c = Cursor(data);
    let flags = c.byte();
    let iface = INTERFACES[usize::from(flags & 1)];
    let mut dext = Dext { fail: flags & 8 != 0, length: usize::from(flags >> 4), calls: 0 };
    let request = Request::decode(&mut c, flags, iface.handshake);
    match request.hand_made {
        Some((slots, maximum)) => hand_made_call(iface, &mut dext, &request, slots, maximum),
        None => kernel_call(iface, &mut dext, &request),
    }
});

/// Through the simulator's kernel layer, as a client's `IOConnectCallMethod`.
fn kernel_call(iface: Interface, dext: &mut Dext, request: &Request) {
    // `Call` has a 32-bit selector, as `IOConnectCallMethod`.
    let selector = request.selector as u32;
    let outputs = request.outputs;
    let mut scalar_output = vec![SENTINEL; outputs as usize];
    let mut buffer = match request.output {
        OutputKind::Buffer(n) => vec![0xa5u8; n],
        _ => Vec::new(),
    };
    let mut variable = Vec::new();
    let struct_output = match request.output {
        OutputKind::None => StructOutput::None,
        OutputKind::Variable => StructOutput::Variable(&mut variable),
        OutputKind::Buffer(_) => StructOutput::Buffer(&mut buffer),
    };
    let shape = Shape {
        selector: u64::from(selector),
        completion: request.completion,
        scalars: &request.scalars,
        input: &request.input,
        outputs,
        maximum: request.maximum(),
    };
    let unchecked = iface.specs.iter().any(|m| m.unchecked && m.selector == selector);
    let expect_ok = well_formed(iface.specs, iface.handshake, &shape)
        && request.scalars.len() <= kernel::SCALAR_MAX
        && outputs as usize <= kernel::SCALAR_MAX
        // The unchecked handler returns no OSData: the var-output call is an
        // underrun in the kernel (docs/driverkit.md §3.3-3).
        && !(unchecked && matches!(request.output, OutputKind::Variable));
    let call = Call {
        selector,
        scalar_input: &request.scalars,
        struct_input: &request.input,
        scalar_output: &mut scalar_output,
        struct_output,
        completion: None,
    };
    let completion = request.completion.then(|| completion_for(iface.specs, u64::from(selector)));
    let result =
        kernel::deliver(call, completion, |selector, args| (iface.dispatch)(dext, selector, args));
    let handshake = selector == iface.handshake;
    if !unchecked && !handshake {
        // Checks come first: a malformed call never reaches its handler, and
        // nothing after the handler refuses a well-formed one.
        assert_eq!(dext.calls, u32::from(expect_ok), "selector {selector}: handler calls");
    }
    match result {
        Ok(reply) => {
            assert!(expect_ok, "selector {selector}: a malformed call succeeded: {reply:?}");
            assert!(
                !dext.fail || handshake,
                "selector {selector}: succeeded past a failing handler"
            );
            assert_eq!(reply.scalar_output_count, outputs as usize, "selector {selector}");
        }
        Err(CallError::Status(code)) => {
            assert!(!code.is_success(), "selector {selector}: failed with success");
            if expect_ok {
                // Only the handler's own failure may stop a well-formed call.
                assert!(
                    dext.fail && !handshake && code == IoReturn::BUSY,
                    "selector {selector}: a well-formed call failed with {code}"
                );
            }
            // After a failure nothing is copied back (docs/driverkit.md §3.2-5).
            assert!(scalar_output.iter().all(|&v| v == SENTINEL), "scalars written on failure");
            if let OutputKind::Buffer(n) = request.output
                && n <= kernel::INBAND_MAX
            {
                assert!(buffer.iter().all(|&b| b == 0xa5), "inline output written on failure");
            }
        }
        Err(CallError::Transport(error)) => panic!("the kernel layer failed: {error}"),
    }
}

/// `IOUserClientMethodArguments` made by hand, including shapes the kernel
/// layer never produces: a 64-bit selector, fewer scalar output slots than
/// the count, any maximum output size.
fn hand_made_call(
    iface: Interface,
    dext: &mut Dext,
    request: &Request,
    slots: usize,
    maximum: Option<u64>,
) {
    let selector = request.selector;
    let mut scalar_output = vec![0u64; slots];
    let mut descriptor = match request.output {
        OutputKind::Buffer(n) if n > kernel::INBAND_MAX => Some(vec![0u8; n]),
        _ => None,
    };
    let maximum = maximum.unwrap_or(request.maximum());
    let input = &request.input[..];
    let structure_input = match input.len() {
        0 => StructureInput::None,
        n if n <= kernel::INBAND_MAX => StructureInput::Inline(input),
        _ => StructureInput::Descriptor(input),
    };
    let shape = Shape {
        selector,
        completion: request.completion,
        scalars: &request.scalars,
        input,
        outputs: request.outputs,
        maximum,
    };
    let expect_ok = well_formed(iface.specs, iface.handshake, &shape);
    let mut args = Arguments {
        completion: request.completion.then(|| completion_for(iface.specs, selector)),
        scalar_input: &request.scalars,
        structure_input,
        scalar_output: &mut scalar_output,
        scalar_output_count: request.outputs,
        structure_output: None,
        structure_output_descriptor: descriptor.as_deref_mut(),
        structure_output_maximum_size: maximum,
    };
    let status = (iface.dispatch)(dext, selector, &mut args);
    let unchecked = iface.specs.iter().any(|m| m.unchecked && u64::from(m.selector) == selector);
    if !expect_ok && !unchecked {
        assert_eq!(dext.calls, 0, "selector {selector:#x}: a malformed call reached its handler");
    }
    if status.is_success() {
        assert!(expect_ok, "selector {selector:#x}: a malformed call succeeded");
        assert!(!dext.fail || selector == u64::from(iface.handshake));
        if let Some(data) = &args.structure_output {
            assert!(
                maximum == u64::from(VARIABLE) || data.len() as u64 <= maximum,
                "selector {selector:#x}: {} bytes returned for a capacity of {maximum}",
                data.len()
            );
        }
    }
}
