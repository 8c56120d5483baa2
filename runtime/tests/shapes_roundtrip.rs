//! Every method shape of `tests/schemas/shapes.dextlink` round-trips through
//! the generated client, the in-process simulator (DriverKit's delivery rules,
//! docs/driverkit.md §3, §4) and the generated `dispatch` into a model dext, and
//! every check the generated code promises refuses bad input on both sides
//! before a handler sees it.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use dextlink::server::{Arguments, StructureInput, VARIABLE};
use dextlink::sim::{ClientMemory, InProcess, SharedMemory, Simulator, UserClient};
use dextlink::{Call, CallError, Error, IoReturn, Pending, Reply, StructOutput, Transport};

dextlink::interface!("../tests/schemas/shapes.dextlink");

use shapes::{Big, Config, Mode, Point, Trim};

// The shared structs' bytes for hand-made calls. Generated code reaches
// zerocopy the same way; the test crate has no zerocopy dependency of its own.
use dextlink::__private::zerocopy::IntoBytes;

const SHORT: Duration = Duration::from_millis(30);

// ----- the model dext ---------------------------------------------------------

/// What `raw` (#[unchecked]) received.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawSeen {
    scalar_input: Vec<u64>,
    structure_input: Vec<u8>,
    has_completion: bool,
    scalar_output_count: u32,
    structure_output_maximum_size: u64,
}

/// Records every handler call and computes deterministic outputs.
#[derive(Debug)]
struct Model {
    /// One entry per handler call, with its arguments.
    calls: Vec<String>,
    /// Answer the next handler call with this error.
    fail_next: Option<IoReturn>,
    name: Vec<u8>,
    key: Option<[u8; 16]>,
    /// `(length, byte sum)` of every blob written.
    blobs: Vec<(usize, u64)>,
    big_in: Option<Box<Big>>,
    started: Vec<Config>,
    pings: Vec<shapes::PingCompleter>,
    measures: Vec<shapes::MeasureCompleter>,
    samples: Vec<shapes::SampleCompleter>,
    starts: Vec<shapes::StartCompleter>,
    maybes: Vec<(u32, Option<shapes::MaybeAsyncCompleter>)>,
    raws: Vec<RawSeen>,
}

impl Model {
    fn new() -> Model {
        Model {
            calls: Vec::new(),
            fail_next: None,
            name: b"shapes-dext".to_vec(),
            key: None,
            blobs: Vec::new(),
            big_in: None,
            started: Vec::new(),
            pings: Vec::new(),
            measures: Vec::new(),
            samples: Vec::new(),
            starts: Vec::new(),
            maybes: Vec::new(),
            raws: Vec::new(),
        }
    }

    fn enter(&mut self, call: String) -> Result<(), IoReturn> {
        self.calls.push(call);
        match self.fail_next.take() {
            Some(code) => Err(code),
            None => Ok(()),
        }
    }
}

fn scalars_sum(a: u8, c: u64, on: bool, mode: Mode) -> u64 {
    u64::from(a) + c + u64::from(on) + u64::from(u8::from(mode))
}

fn big_checksum(big: &Big) -> u64 {
    big.words
        .iter()
        .enumerate()
        .fold(0u64, |acc, (i, w)| acc.wrapping_add(w.wrapping_mul(i as u64 + 1)))
}

fn big_from_seed(seed: u64) -> Big {
    let mut big = Big::zeroed();
    for (i, w) in big.words.iter_mut().enumerate() {
        *w = seed.wrapping_mul(i as u64 + 1) ^ 0x5555_5555_5555_5555;
    }
    big
}

fn log_text(lines: u32) -> Vec<u8> {
    (0..lines).flat_map(|i| format!("line {i:04}\n").into_bytes()).collect()
}

impl shapes::Handler for Model {
    fn scalars(
        &mut self,
        a: u8,
        b: i32,
        c: u64,
        on: bool,
        mode: Mode,
    ) -> Result<shapes::ScalarsOutput, IoReturn> {
        self.enter(format!("scalars({a}, {b}, {c}, {on}, {mode:?})"))?;
        Ok(shapes::ScalarsOutput {
            sum: scalars_sum(a, c, on, mode),
            neg: i64::from(b) * 1000 - i64::from(a),
        })
    }

    fn structs(&mut self, config: &Config) -> Result<Config, IoReturn> {
        self.enter(format!("structs(gain {})", config.gain))?;
        let mut echo = *config;
        echo.serial = !config.serial;
        Ok(echo)
    }

    fn mixed(&mut self, index: u32, point: &Point) -> Result<shapes::MixedOutput, IoReturn> {
        self.enter(format!("mixed({index}, {}, {})", point.x, point.y))?;
        let mut config = Config::zeroed();
        config.corners[index as usize] = *point;
        config.gain = index;
        config.set_mode(Mode::On);
        config.set_enabled(true);
        config.set_trim(Trim::Up);
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
        let a = [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15];
        self.enter(format!("wide({a:?})"))?;
        // Reversed and inverted: every position and every bit matters.
        let b: [u64; 16] = std::array::from_fn(|i| !a[15 - i]);
        Ok(shapes::WideOutput {
            b0: b[0],
            b1: b[1],
            b2: b[2],
            b3: b[3],
            b4: b[4],
            b5: b[5],
            b6: b[6],
            b7: b[7],
            b8: b[8],
            b9: b[9],
            b10: b[10],
            b11: b[11],
            b12: b[12],
            b13: b[13],
            b14: b[14],
            b15: b[15],
        })
    }

    fn big_in(&mut self, big: &Big) -> Result<u64, IoReturn> {
        self.enter("big_in".to_string())?;
        self.big_in = Some(Box::new(*big));
        Ok(big_checksum(big))
    }

    fn big_out(&mut self, seed: u64) -> Result<Big, IoReturn> {
        self.enter(format!("big_out({seed})"))?;
        Ok(big_from_seed(seed))
    }

    fn write_blob(&mut self, data: &[u8]) -> Result<u32, IoReturn> {
        self.enter(format!("write_blob({} bytes)", data.len()))?;
        self.blobs.push((data.len(), data.iter().map(|&b| u64::from(b)).sum()));
        Ok(data.len() as u32)
    }

    fn read_name(&mut self) -> Result<Vec<u8>, IoReturn> {
        self.enter("read_name".to_string())?;
        Ok(self.name.clone())
    }

    fn read_log(&mut self, max_lines: u32) -> Result<Vec<u8>, IoReturn> {
        self.enter(format!("read_log({max_lines})"))?;
        Ok(log_text(max_lines))
    }

    fn set_key(&mut self, key: &[u8; 16]) -> Result<(), IoReturn> {
        self.enter("set_key".to_string())?;
        self.key = Some(*key);
        Ok(())
    }

    fn ping(&mut self, completion: shapes::PingCompleter) -> Result<(), IoReturn> {
        self.enter("ping".to_string())?;
        self.pings.push(completion);
        Ok(())
    }

    fn measure(
        &mut self,
        channel: u8,
        completion: shapes::MeasureCompleter,
    ) -> Result<(), IoReturn> {
        self.enter(format!("measure({channel})"))?;
        self.measures.push(completion);
        Ok(())
    }

    fn sample(&mut self, completion: shapes::SampleCompleter) -> Result<(), IoReturn> {
        self.enter("sample".to_string())?;
        self.samples.push(completion);
        Ok(())
    }

    fn start(
        &mut self,
        config: &Config,
        completion: shapes::StartCompleter,
    ) -> Result<u32, IoReturn> {
        self.enter(format!("start(gain {})", config.gain))?;
        self.started.push(*config);
        self.starts.push(completion);
        Ok(1000 + self.starts.len() as u32 - 1)
    }

    fn raw(&mut self, arguments: &mut Arguments<'_>) -> IoReturn {
        self.calls.push("raw".to_string());
        self.raws.push(RawSeen {
            scalar_input: arguments.scalar_input.to_vec(),
            structure_input: arguments.structure_input.bytes().to_vec(),
            has_completion: arguments.completion.is_some(),
            scalar_output_count: arguments.scalar_output_count,
            structure_output_maximum_size: arguments.structure_output_maximum_size,
        });
        if let Some(code) = self.fail_next.take() {
            // Outputs written before a failure must not reach the client.
            arguments.scalar_output[0] = 0xdead;
            return code;
        }
        // Dispatched by hand: this method does its own checking.
        if arguments.scalar_input.len() != 1 || arguments.scalar_output_count != 1 {
            return IoReturn::BAD_ARGUMENT;
        }
        arguments.scalar_output[0] = arguments.scalar_input[0].wrapping_mul(3).wrapping_add(1);
        IoReturn::SUCCESS
    }

    fn maybe_async(
        &mut self,
        x: u32,
        completion: Option<shapes::MaybeAsyncCompleter>,
    ) -> Result<(), IoReturn> {
        self.enter(format!("maybe_async({x}, {})", completion.is_some()))?;
        match completion {
            // x == 0: completes before ExternalMethod returns.
            Some(c) if x == 0 => c.complete(()),
            other => self.maybes.push((x, other)),
        }
        Ok(())
    }
}

/// How the structure input reached the dext (docs/driverkit.md §3.2-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    None,
    Inline(usize),
    Descriptor(usize),
}

/// What the dext's `ExternalMethod` saw of one call, before dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    selector: u64,
    input: Input,
    scalar_inputs: usize,
    output_descriptor: Option<usize>,
    maximum: u64,
    completion: bool,
}

/// The dext: `ExternalMethod` is the generated `dispatch`; two memory types.
#[derive(Debug)]
struct ShapesDext {
    model: Model,
    counters: Arc<SharedMemory>,
    scratch: Arc<SharedMemory>,
    seen: Vec<Seen>,
    copies: Vec<u64>,
    /// Answer the handshake with this fingerprint instead (a stale dext).
    handshake_as: Option<(u64, u32)>,
    /// Rewrites the dext's answer after `dispatch` (a misbehaving dext).
    tamper: Option<Tamper>,
    /// Hand out memory type 2 read-only, or memory type 1 in its place.
    scratch_read_only: bool,
    scratch_is_counters: bool,
}

type Tamper = fn(u64, &mut Arguments<'_>, IoReturn) -> IoReturn;

const COUNTER0: u64 = 0x1122_3344_5566_7788;

impl ShapesDext {
    fn new() -> ShapesDext {
        let counters = SharedMemory::new(4096).expect("counters");
        assert!(counters.write(0, &COUNTER0.to_ne_bytes()));
        assert!(counters.write(4088, &42u64.to_ne_bytes()));
        ShapesDext {
            model: Model::new(),
            counters: Arc::new(counters),
            scratch: Arc::new(SharedMemory::new(65536).expect("scratch")),
            seen: Vec::new(),
            copies: Vec::new(),
            handshake_as: None,
            tamper: None,
            scratch_read_only: false,
            scratch_is_counters: false,
        }
    }
}

impl UserClient for ShapesDext {
    fn external_method(&mut self, selector: u64, arguments: &mut Arguments<'_>) -> IoReturn {
        self.seen.push(Seen {
            selector,
            input: match arguments.structure_input {
                StructureInput::None => Input::None,
                StructureInput::Inline(b) => Input::Inline(b.len()),
                StructureInput::Descriptor(b) => Input::Descriptor(b.len()),
            },
            scalar_inputs: arguments.scalar_input.len(),
            output_descriptor: arguments.structure_output_descriptor.as_ref().map(|d| d.len()),
            maximum: arguments.structure_output_maximum_size,
            completion: arguments.completion.is_some(),
        });
        if let Some((fingerprint, version)) = self.handshake_as
            && selector == u64::from(shapes::HANDSHAKE_SELECTOR)
        {
            return dextlink::server::handshake(arguments, fingerprint, version);
        }
        let status = shapes::dispatch(&mut self.model, selector, arguments);
        match self.tamper {
            Some(tamper) if selector != u64::from(shapes::HANDSHAKE_SELECTOR) => {
                tamper(selector, arguments, status)
            }
            _ => status,
        }
    }

    /// The same descriptor for a type on every call (docs/driverkit.md §5.1).
    fn copy_client_memory(&mut self, memory_type: u64) -> Result<ClientMemory, IoReturn> {
        self.copies.push(memory_type);
        let (memory, read_only) = match memory_type {
            1 => (&self.counters, true),
            2 if self.scratch_is_counters => (&self.counters, false),
            2 => (&self.scratch, self.scratch_read_only),
            _ => return Err(IoReturn::BAD_ARGUMENT),
        };
        Ok(ClientMemory { memory: Arc::clone(memory), read_only })
    }
}

type Client = shapes::Shapes<InProcess<ShapesDext>>;

fn connect() -> Client {
    shapes::Shapes::connect(InProcess::new(ShapesDext::new())).expect("handshake")
}

fn dext(client: &Client) -> MutexGuard<'_, ShapesDext> {
    client.transport().dext()
}

fn calls(client: &Client) -> Vec<String> {
    dext(client).model.calls.clone()
}

fn last_seen(client: &Client) -> Seen {
    *dext(client).seen.last().expect("the dext saw a call")
}

fn sample_config() -> Config {
    let mut config = Config::zeroed();
    config.origin = Point { x: -3, y: 4 };
    config.corners = [
        Point { x: i32::MIN, y: i32::MAX },
        Point { x: -1, y: 1 },
        Point { x: 100, y: -100 },
        Point { x: 0, y: 7 },
    ];
    config.name[..6].copy_from_slice(b"shapes");
    config.name[31] = 0xff;
    config.set_mode(Mode::Auto);
    config.set_enabled(true);
    config.set_trim(Trim::Down);
    config.gain = 0xdead_beef;
    config.serial = 0x0123_4567_89ab_cdef;
    config
}

/// The structure output a hand-made call offers.
#[derive(Debug, Clone, Copy)]
enum Out {
    None,
    Cap(usize),
    Var,
}

/// A call made directly on the transport, bypassing the typed client.
fn raw_call(
    client: &Client,
    selector: u32,
    scalars: &[u64],
    input: &[u8],
    outputs: usize,
    out: Out,
    completion: bool,
) -> (Result<Reply, CallError>, Vec<u64>) {
    let mut scalar_output = vec![0u64; outputs];
    let mut buffer = match out {
        Out::Cap(n) => vec![0u8; n],
        _ => Vec::new(),
    };
    let mut variable = Vec::new();
    let struct_output = match out {
        Out::None => StructOutput::None,
        Out::Cap(_) => StructOutput::Buffer(&mut buffer),
        Out::Var => StructOutput::Variable(&mut variable),
    };
    let (_pending, slot) = Pending::<()>::new("raw call", |_| Ok(()));
    let result = client.transport().call(Call {
        selector,
        scalar_input: scalars,
        struct_input: input,
        scalar_output: &mut scalar_output,
        struct_output,
        completion: completion.then_some(slot),
    });
    (result, scalar_output)
}

/// Asserts that a hand-made call fails with `code` without reaching a handler.
#[track_caller]
#[allow(clippy::too_many_arguments)]
fn refused(
    client: &Client,
    code: IoReturn,
    selector: u32,
    scalars: &[u64],
    input: &[u8],
    outputs: usize,
    out: Out,
    completion: bool,
) {
    let before = calls(client);
    let (result, _) = raw_call(client, selector, scalars, input, outputs, out, completion);
    assert_eq!(result, Err(CallError::Status(code)), "selector {selector}, scalars {scalars:?}");
    assert_eq!(calls(client), before, "the handler must not be called");
}

// ----- a tiny executor --------------------------------------------------------

struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => thread::park(),
        }
    }
}

// ----- connection -------------------------------------------------------------

#[test]
fn connect_runs_the_handshake_and_no_handler() {
    let client = connect();
    let seen = dext(&client).seen.clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].selector, u64::from(shapes::HANDSHAKE_SELECTOR));
    assert!(calls(&client).is_empty());
    assert_eq!(shapes::SELECTOR_COUNT, 17);
    assert_eq!(shapes::METHODS.len(), 16, "reserved selector 14 has no entry");
    assert_eq!(shapes::Selector::Raw as u32, 15);
    assert_eq!(shapes::Selector::MaybeAsync as u32, 16);
    assert!(shapes::METHODS.iter().all(|m| m.selector != 14));
}

/// A dext that predates the handshake: it knows no selector at all.
#[derive(Debug)]
struct Silent;

impl UserClient for Silent {
    fn external_method(&mut self, _: u64, _: &mut Arguments<'_>) -> IoReturn {
        IoReturn::UNSUPPORTED
    }
}

#[test]
fn connecting_to_a_dext_without_the_handshake_fails_clearly() {
    let err = shapes::Shapes::connect(InProcess::new(Silent)).unwrap_err();
    assert_eq!(
        err,
        Error::Dext {
            method: "handshake",
            selector: shapes::HANDSHAKE_SELECTOR,
            code: IoReturn::UNSUPPORTED
        }
    );
}

#[test]
fn fingerprint_mismatch_names_both_fingerprints() {
    let stale = shapes::FINGERPRINT ^ 0x00ff_00ff_1234_5678;
    let mut impostor = ShapesDext::new();
    impostor.handshake_as = Some((stale, shapes::VERSION));
    let err = shapes::Shapes::connect(InProcess::new(impostor)).unwrap_err();
    assert_eq!(
        err,
        Error::FingerprintMismatch {
            client_fingerprint: shapes::FINGERPRINT,
            client_version: shapes::VERSION,
            dext_fingerprint: stale,
            dext_version: u64::from(shapes::VERSION),
        }
    );
    let text = err.to_string();
    assert!(text.contains(&format!("{:#018x}", shapes::FINGERPRINT)), "{text}");
    assert!(text.contains(&format!("{stale:#018x}")), "{text}");

    // Same fingerprint, another version: refused too.
    let mut newer = ShapesDext::new();
    newer.handshake_as = Some((shapes::FINGERPRINT, shapes::VERSION + 1));
    let err = shapes::Shapes::connect(InProcess::new(newer)).unwrap_err();
    assert!(
        matches!(err, Error::FingerprintMismatch { dext_version, .. } if dext_version == u64::from(shapes::VERSION) + 1),
        "{err:?}"
    );

    // Skipping the handshake is explicit and still works against a stale dext.
    let mut old = ShapesDext::new();
    old.handshake_as = Some((stale, 1));
    let client = shapes::Shapes::without_handshake(InProcess::new(old));
    assert_eq!(client.raw(1).unwrap(), 4);
}

#[test]
fn handshake_with_the_wrong_shape_is_refused() {
    let client = connect();
    let hs = shapes::HANDSHAKE_SELECTOR;
    refused(&client, IoReturn::BAD_ARGUMENT, hs, &[], &[], 1, Out::None, false);
    refused(&client, IoReturn::BAD_ARGUMENT, hs, &[1], &[], 2, Out::None, false);
    refused(&client, IoReturn::BAD_ARGUMENT, hs, &[], &[1], 2, Out::None, false);
    refused(&client, IoReturn::BAD_ARGUMENT, hs, &[], &[], 2, Out::Cap(8), false);
    refused(&client, IoReturn::BAD_ARGUMENT, hs, &[], &[], 2, Out::None, true);
    let (result, out) = raw_call(&client, hs, &[], &[], 2, Out::None, false);
    assert_eq!(result.unwrap().scalar_output_count, 2);
    assert_eq!(out, vec![shapes::FINGERPRINT, u64::from(shapes::VERSION)]);
}

// ----- synchronous shapes -----------------------------------------------------

#[test]
fn scalars_round_trip_signed_enum_and_bool() {
    let client = connect();
    let out = client.scalars(7, -40, 1, true, Mode::Auto).unwrap();
    assert_eq!(out, shapes::ScalarsOutput { sum: 7 + 1 + 1 + 0xff, neg: -40_007 });
    let out = client.scalars(255, 125, 65536, false, Mode::Off).unwrap();
    assert_eq!(out, shapes::ScalarsOutput { sum: 255 + 65536, neg: 124_745 });
    let out = client.scalars(0, 0, 2, false, Mode::On).unwrap();
    assert_eq!(out, shapes::ScalarsOutput { sum: 3, neg: 0 });
    assert_eq!(
        calls(&client),
        [
            "scalars(7, -40, 1, true, Auto)",
            "scalars(255, 125, 65536, false, Off)",
            "scalars(0, 0, 2, false, On)",
        ]
    );
    let seen = last_seen(&client);
    assert_eq!(seen.scalar_inputs, 5);
    assert_eq!(seen.input, Input::None);
    assert!(!seen.completion);
}

#[test]
fn structs_round_trip_nested_points_bools_and_enums() {
    let client = connect();
    let config = sample_config();
    let echo = client.structs(&config).unwrap();
    assert_eq!(echo.serial, !config.serial);
    assert_eq!(Config { serial: config.serial, ..echo }, config);
    assert_eq!(echo.corners[0], Point { x: i32::MIN, y: i32::MAX });
    assert_eq!(echo.origin, Point { x: -3, y: 4 });
    assert_eq!(&echo.name[..6], b"shapes");
    assert_eq!(echo.enabled(), Some(true));
    assert_eq!(echo.mode(), Ok(Mode::Auto));
    assert_eq!(echo.trim(), Ok(Trim::Down));
    assert!(echo.is_valid());
    let seen = last_seen(&client);
    assert_eq!(seen.input, Input::Inline(std::mem::size_of::<Config>()));
    assert_eq!(seen.maximum, 88);
    assert_eq!(seen.output_descriptor, None);
    assert_eq!(calls(&client), ["structs(gain 3735928559)"]);
}

#[test]
fn mixed_scalars_and_structs() {
    let client = connect();
    let point = Point { x: -1, y: 2 };
    let out = client.mixed(3, &point).unwrap();
    assert!(!out.ok);
    assert_eq!(out.config.corners[3], point);
    assert_eq!(out.config.gain, 3);
    assert_eq!(out.config.mode(), Ok(Mode::On));
    assert_eq!(out.config.enabled(), Some(true));
    assert_eq!(out.config.trim(), Ok(Trim::Up));
    let out = client.mixed(0, &Point { x: 5, y: 6 }).unwrap();
    assert!(out.ok);
    assert_eq!(out.config.corners[0], Point { x: 5, y: 6 });
    assert_eq!(calls(&client), ["mixed(3, -1, 2)", "mixed(0, 5, 6)"]);
    assert_eq!(last_seen(&client).input, Input::Inline(8));
}

#[test]
fn sixteen_scalars_in_and_out() {
    let client = connect();
    let a: [u64; 16] = std::array::from_fn(|i| match i {
        0 => u64::MAX,
        1 => 0,
        2 => 1 << 63,
        i => (i as u64) << (i * 3),
    });
    let out = client
        .wide(
            a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13],
            a[14], a[15],
        )
        .unwrap();
    let got = [
        out.b0, out.b1, out.b2, out.b3, out.b4, out.b5, out.b6, out.b7, out.b8, out.b9, out.b10,
        out.b11, out.b12, out.b13, out.b14, out.b15,
    ];
    let expected: [u64; 16] = std::array::from_fn(|i| !a[15 - i]);
    assert_eq!(got, expected);
    assert_eq!(calls(&client), [format!("wide({a:?})")]);
    assert_eq!(last_seen(&client).scalar_inputs, 16);
}

#[test]
fn big_struct_input_travels_as_a_descriptor() {
    let client = connect();
    assert!(std::mem::size_of::<Big>() > 4096);
    let mut big = Box::new(Big::zeroed());
    for (i, w) in big.words.iter_mut().enumerate() {
        *w = (i as u64) * (i as u64) + 0x1_0000_0001;
    }
    assert_eq!(client.big_in(&big).unwrap(), big_checksum(&big));
    assert_eq!(last_seen(&client).input, Input::Descriptor(4800));
    assert_eq!(dext(&client).model.big_in.as_deref(), Some(&*big));
}

#[test]
fn big_fixed_output_travels_as_a_descriptor() {
    let client = connect();
    let big = client.big_out(0xfeed).unwrap();
    assert_eq!(big, big_from_seed(0xfeed));
    let seen = last_seen(&client);
    assert_eq!(seen.output_descriptor, Some(4800));
    assert_eq!(seen.maximum, 4800);
    assert_eq!(calls(&client), ["big_out(65261)"]);
}

#[test]
fn bounded_input_at_its_edges() {
    let client = connect();
    for (len, path) in [
        (1, Input::Inline(1)),
        (4096, Input::Inline(4096)),
        (4097, Input::Descriptor(4097)),
        (65536, Input::Descriptor(65536)),
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        assert_eq!(client.write_blob(&data).unwrap(), len as u32);
        assert_eq!(last_seen(&client).input, path, "{len} bytes");
        let sum = data.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(dext(&client).model.blobs.last(), Some(&(len, sum)));
    }
    assert_eq!(calls(&client).len(), 4);
}

#[test]
fn bounded_input_out_of_bounds_is_refused_by_the_client() {
    let client = connect();
    let seen_before = dext(&client).seen.len();
    for len in [0usize, 65537] {
        let err = client.write_blob(&vec![1u8; len]).unwrap_err();
        assert_eq!(
            err,
            Error::OutOfRange {
                method: "write_blob",
                parameter: "data",
                value: format!("{len} bytes"),
                range: "1..=65536 bytes".to_string(),
            }
        );
        assert_eq!(
            err.to_string(),
            format!("write_blob: `data` = {len} bytes is outside 1..=65536 bytes")
        );
    }
    assert!(calls(&client).is_empty());
    assert_eq!(dext(&client).seen.len(), seen_before, "nothing was sent");
}

#[test]
fn bounded_output_may_be_shorter() {
    let client = connect();
    assert_eq!(client.read_name().unwrap(), b"shapes-dext");
    assert_eq!(last_seen(&client).maximum, 32, "the client offers the bound");
    dext(&client).model.name = (1..=32).collect();
    assert_eq!(client.read_name().unwrap(), (1..=32).collect::<Vec<u8>>());
    dext(&client).model.name = Vec::new();
    assert_eq!(client.read_name().unwrap(), Vec::<u8>::new());
    // A handler breaking its bound is caught by the thunk.
    dext(&client).model.name = vec![b'x'; 33];
    assert_eq!(
        client.read_name().unwrap_err(),
        Error::Dext { method: "read_name", selector: 7, code: IoReturn::INTERNAL_ERROR }
    );
}

#[test]
fn variable_output_of_any_size() {
    let client = connect();
    assert_eq!(client.read_log(3).unwrap(), b"line 0000\nline 0001\nline 0002\n");
    assert_eq!(last_seen(&client).maximum, u64::from(VARIABLE));
    let long = client.read_log(1000).unwrap();
    assert!(long.len() > 4096);
    assert_eq!(long, log_text(1000));
    assert_eq!(client.read_log(0).unwrap(), Vec::<u8>::new());
    assert_eq!(calls(&client), ["read_log(3)", "read_log(1000)", "read_log(0)"]);
}

#[test]
fn fixed_byte_array_input() {
    let client = connect();
    let key: [u8; 16] = std::array::from_fn(|i| 0xf0 | i as u8);
    client.set_key(&key).unwrap();
    assert_eq!(dext(&client).model.key, Some(key));
    assert_eq!(last_seen(&client).input, Input::Inline(16));
}

// ----- asynchronous shapes ----------------------------------------------------

#[test]
fn async_without_values_times_out_then_completes_from_another_thread() {
    let client = connect();
    let mut pending = client.ping().unwrap();
    assert_eq!(pending.method(), "ping");
    assert!(last_seen(&client).completion);
    assert!(pending.try_take().is_none());
    assert_eq!(pending.wait_timeout(SHORT), Err(Error::Timeout { method: "ping" }));
    let completer = dext(&client).model.pings.pop().expect("the handler kept the completer");
    let t = thread::spawn(move || {
        thread::sleep(SHORT);
        completer.complete(());
    });
    assert_eq!(pending.wait(), Ok(()));
    t.join().unwrap();
}

#[test]
fn async_with_one_signed_value() {
    let client = connect();
    let mut pending = client.measure(7).unwrap();
    assert_eq!(pending.wait_timeout(SHORT), Err(Error::Timeout { method: "measure" }));
    let completer = dext(&client).model.measures.pop().unwrap();
    completer.complete(-5);
    assert_eq!(pending.wait_timeout(SHORT), Ok(-5));
    assert_eq!(calls(&client), ["measure(7)"]);

    let pending = client.measure(0).unwrap();
    let completer = dext(&client).model.measures.pop().unwrap();
    completer.complete(i32::MIN);
    assert_eq!(pending.wait(), Ok(i32::MIN));
}

#[test]
fn async_with_sixteen_values_awaited() {
    let client = connect();
    let pending = client.sample().unwrap();
    let completer = dext(&client).model.samples.pop().unwrap();
    let values = shapes::SampleCompletion {
        v0: 0,
        v1: 1,
        v2: u64::MAX,
        v3: 3,
        v4: 4,
        v5: 5,
        v6: 6,
        v7: 7,
        v8: 8,
        v9: 9,
        v10: 10,
        v11: 11,
        v12: 12,
        v13: 13,
        v14: 14,
        v15: 1 << 63,
    };
    let t = thread::spawn(move || {
        thread::sleep(SHORT);
        completer.complete(values);
    });
    assert_eq!(block_on(pending), Ok(values));
    t.join().unwrap();
}

#[test]
fn async_with_outputs_and_a_typed_completion() {
    let client = connect();
    let config = sample_config();
    let (ticket, first) = client.start(&config).unwrap();
    assert_eq!(ticket, 1000);
    let (ticket, second) = client.start(&Config { gain: 1, ..config }).unwrap();
    assert_eq!(ticket, 1001);
    assert_eq!(dext(&client).model.started, [config, Config { gain: 1, ..config }]);
    let completers: Vec<_> = dext(&client).model.starts.drain(..).collect();
    let t = thread::spawn(move || {
        thread::sleep(SHORT);
        // Out of order: the second call finishes first.
        completers[1].complete(shapes::StartCompletion {
            status: Mode::Off,
            trim: Trim::Level,
            done: false,
        });
        completers[0].complete(shapes::StartCompletion {
            status: Mode::Auto,
            trim: Trim::Down,
            done: true,
        });
    });
    let (a, b) = block_on(async { (first.await, second.await) });
    t.join().unwrap();
    assert_eq!(a, Ok(shapes::StartCompletion { status: Mode::Auto, trim: Trim::Down, done: true }));
    assert_eq!(
        b,
        Ok(shapes::StartCompletion { status: Mode::Off, trim: Trim::Level, done: false })
    );
}

#[test]
fn completion_error_status() {
    let client = connect();
    let pending = client.measure(1).unwrap();
    dext(&client).model.measures.pop().unwrap().fail(IoReturn::ABORTED);
    let err = pending.wait().unwrap_err();
    assert_eq!(err, Error::Completion { method: "measure", selector: 11, code: IoReturn::ABORTED });
    assert_eq!(err.io_return(), Some(IoReturn::ABORTED));

    let pending = client.sample().unwrap();
    dext(&client).model.samples.pop().unwrap().fail(IoReturn::TIMEOUT);
    assert_eq!(
        block_on(pending),
        Err(Error::Completion { method: "sample", selector: 12, code: IoReturn::TIMEOUT })
    );

    let pending = client.ping().unwrap();
    dext(&client).model.pings.pop().unwrap().fail(IoReturn::NO_DEVICE);
    assert_eq!(
        pending.wait(),
        Err(Error::Completion { method: "ping", selector: 10, code: IoReturn::NO_DEVICE })
    );
}

#[test]
fn malformed_completions_are_reported() {
    let client = connect();
    let pending = client.measure(2).unwrap();
    dext(&client).model.measures.pop().unwrap().raw().complete(IoReturn::SUCCESS, &[]);
    assert!(matches!(pending.wait(), Err(Error::MalformedReply { method: "measure", .. })));

    let pending = client.measure(2).unwrap();
    dext(&client).model.measures.pop().unwrap().raw().complete(IoReturn::SUCCESS, &[1 << 40]);
    assert!(matches!(pending.wait(), Err(Error::MalformedReply { method: "measure", .. })));

    let pending = client.start(&sample_config()).unwrap().1;
    dext(&client).model.starts.pop().unwrap().raw().complete(IoReturn::SUCCESS, &[7, 0, 1]);
    let err = pending.wait().unwrap_err();
    assert!(
        matches!(&err, Error::MalformedReply { method: "start", detail } if detail.contains("Mode")),
        "{err:?}"
    );

    let pending = client.start(&sample_config()).unwrap().1;
    dext(&client).model.starts.pop().unwrap().raw().complete(IoReturn::SUCCESS, &[1, 0, 2]);
    assert!(matches!(pending.wait(), Err(Error::MalformedReply { method: "start", .. })));
}

#[test]
fn only_the_first_completion_counts() {
    let client = connect();
    let pending = client.measure(3).unwrap();
    let completer = dext(&client).model.measures.pop().unwrap();
    completer.complete(1);
    completer.complete(2);
    completer.fail(IoReturn::ERROR);
    assert_eq!(pending.wait(), Ok(1));
}

#[test]
fn seventeen_completion_values_are_dropped() {
    let client = connect();
    let mut pending = client.measure(4).unwrap();
    let completer = dext(&client).model.measures.pop().unwrap();
    completer.raw().complete(IoReturn::SUCCESS, &[9; 17]);
    assert_eq!(pending.wait_timeout(SHORT), Err(Error::Timeout { method: "measure" }));
    // The call is still outstanding: a proper completion still arrives.
    completer.complete(9);
    assert_eq!(pending.wait_timeout(SHORT), Ok(9));
}

#[test]
fn completing_after_the_client_dropped_its_pending_is_a_no_op() {
    let client = connect();
    drop(client.ping().unwrap());
    let completer = dext(&client).model.pings.pop().unwrap();
    completer.complete(());
    completer.fail(IoReturn::ABORTED);

    let pending = client.measure(5).unwrap();
    let completer = dext(&client).model.measures.pop().unwrap();
    drop(pending);
    thread::spawn(move || completer.complete(5)).join().unwrap();

    // The connection carries on.
    let pending = client.ping().unwrap();
    dext(&client).model.pings.pop().unwrap().complete(());
    assert_eq!(pending.wait(), Ok(()));
}

#[test]
fn completion_any_accepts_calls_with_and_without_a_completion() {
    let client = connect();
    // Completed inside ExternalMethod.
    assert_eq!(client.maybe_async(0).unwrap().wait_timeout(SHORT), Ok(()));
    // Kept and completed later.
    let mut pending = client.maybe_async(5).unwrap();
    assert_eq!(pending.wait_timeout(SHORT), Err(Error::Timeout { method: "maybe_async" }));
    let (x, completer) = dext(&client).model.maybes.pop().unwrap();
    assert_eq!(x, 5);
    completer.expect("a completion was passed").complete(());
    assert_eq!(block_on(pending), Ok(()));
    // A synchronous call is fine too: the handler gets no completer.
    let (result, _) = raw_call(&client, 16, &[6], &[], 0, Out::None, false);
    assert_eq!(result, Ok(Reply { scalar_output_count: 0, struct_output_size: 0 }));
    let (x, completer) = dext(&client).model.maybes.pop().unwrap();
    assert_eq!((x, completer.is_none()), (6, true));
    assert_eq!(
        calls(&client),
        ["maybe_async(0, true)", "maybe_async(5, true)", "maybe_async(6, false)"]
    );
}

// ----- #[unchecked] -----------------------------------------------------------

#[test]
fn unchecked_method_reaches_the_handler_with_raw_arguments() {
    let client = connect();
    assert_eq!(client.raw(10).unwrap(), 31);
    assert_eq!(
        dext(&client).model.raws.last(),
        Some(&RawSeen {
            scalar_input: vec![10],
            structure_input: Vec::new(),
            has_completion: false,
            scalar_output_count: 1,
            structure_output_maximum_size: 0,
        })
    );
    // No table checks: any shape reaches the handler, which judges it itself.
    let (result, _) = raw_call(&client, 15, &[1, 2, 3], &[9, 8], 0, Out::Cap(64), true);
    assert_eq!(result, Err(CallError::Status(IoReturn::BAD_ARGUMENT)));
    assert_eq!(
        dext(&client).model.raws.last(),
        Some(&RawSeen {
            scalar_input: vec![1, 2, 3],
            structure_input: vec![9, 8],
            has_completion: true,
            scalar_output_count: 0,
            structure_output_maximum_size: 64,
        })
    );
    assert_eq!(calls(&client), ["raw", "raw"]);
}

// ----- memory -----------------------------------------------------------------

#[test]
fn read_only_mapping_shows_the_dexts_counters() {
    let client = connect();
    let counters = client.counters().unwrap();
    assert_eq!(counters.memory_type(), 1);
    assert_eq!(counters.len(), 4096);
    let bytes: &[u8] = counters.as_slice();
    assert_eq!(bytes[..8], COUNTER0.to_ne_bytes());
    assert_eq!(*counters.view::<u64>(0).unwrap(), COUNTER0);
    assert_eq!(*counters.view::<u64>(4088).unwrap(), 42);
    // The dext updates; the client sees it through the same memory.
    assert!(dext(&client).counters.write(8, &7u64.to_ne_bytes()));
    assert_eq!(*counters.view::<u64>(8).unwrap(), 7);

    for offset in [4089, 4096, usize::MAX - 3, usize::MAX] {
        let err = counters.view::<u64>(offset).unwrap_err();
        assert!(
            matches!(&err, Error::Memory { memory_type: 1, detail } if detail.contains("do not fit")),
            "{offset}: {err:?}"
        );
    }
    let err = counters.view::<u64>(4).unwrap_err();
    assert!(
        matches!(&err, Error::Memory { memory_type: 1, detail } if detail.contains("not aligned")),
        "{err:?}"
    );
    let err = counters.view::<Point>(2).unwrap_err();
    assert!(matches!(&err, Error::Memory { memory_type: 1, .. }), "{err:?}");
    assert_eq!(dext(&client).copies, [1]);
}

#[test]
fn read_write_mapping_is_shared_with_the_dext() {
    let client = connect();
    let mut scratch = client.scratch().unwrap();
    assert_eq!(scratch.len(), 65536);
    scratch.as_mut_slice()[100..104].copy_from_slice(&[1, 2, 3, 4]);
    *scratch.view_mut::<Point>(8).unwrap() = Point { x: -7, y: 9 };
    {
        let d = dext(&client);
        assert_eq!(d.scratch.read(100, 4).unwrap(), [1, 2, 3, 4]);
        assert_eq!(d.scratch.read(8, 8).unwrap(), Point { x: -7, y: 9 }.as_bytes());
        // And the other way round.
        assert!(d.scratch.write(65535, &[0xab]));
    }
    assert_eq!(scratch.as_slice()[65535], 0xab);
    assert_eq!(*scratch.view::<Point>(8).unwrap(), Point { x: -7, y: 9 });

    assert!(matches!(scratch.view_mut::<Point>(65532), Err(Error::Memory { memory_type: 2, .. })));
    assert!(matches!(
        scratch.view_mut::<Point>(usize::MAX),
        Err(Error::Memory { memory_type: 2, .. })
    ));
    let err = scratch.view_mut::<Point>(2).unwrap_err();
    assert!(
        matches!(&err, Error::Memory { memory_type: 2, detail } if detail.contains("not aligned")),
        "{err:?}"
    );

    // A second read-write view while the first lives would be a second
    // `&mut` to the same bytes: refused, and the first is untouched.
    let err = client.scratch().unwrap_err();
    assert!(
        matches!(&err, Error::Memory { memory_type: 2, detail }
            if detail.contains("already mapped by a live read-write Mapping")),
        "{err:?}"
    );
    assert_eq!(scratch.as_slice()[100..104], [1, 2, 3, 4]);
    // Once it is gone, mapping again gives the same memory
    // (CopyClientMemoryForType returns the same descriptor, docs/driverkit.md §5.1).
    drop(scratch);
    let again = client.scratch().unwrap();
    assert_eq!(again.as_slice()[100..104], [1, 2, 3, 4]);
    drop(again);
    let d = dext(&client);
    assert_eq!(d.copies, [2, 2, 2]);
    assert_eq!(d.scratch.read(8, 8).unwrap(), Point { x: -7, y: 9 }.as_bytes());
}

#[test]
fn views_of_one_memory_type_follow_the_borrow_rules() {
    let client = connect();
    // Any number of read-only views of a range, all of the same range.
    let first = client.counters().unwrap();
    let second = client.counters().unwrap();
    assert_eq!(first.as_slice().as_ptr(), second.as_slice().as_ptr());
    // `read_at` reads the memory afresh: it sees what the dext wrote since.
    assert!(dext(&client).counters.write(16, &9u64.to_ne_bytes()));
    let mut out = [0u8; 8];
    second.read_at(16, &mut out).unwrap();
    assert_eq!(u64::from_ne_bytes(out), 9);
    let err = first.read_at(4090, &mut out).unwrap_err();
    assert!(
        matches!(&err, Error::Memory { memory_type: 1, detail } if detail.contains("do not fit"))
    );

    // A read-only view of a read-write type may not stand beside its
    // writable view, in either order.
    let transport: &dyn Transport = client.transport();
    let scratch = client.scratch().unwrap();
    let err = dextlink::Mapping::<dextlink::ReadOnly>::map(transport, 2, 65536).unwrap_err();
    assert!(matches!(&err, Error::Memory { memory_type: 2, .. }), "{err:?}");
    drop(scratch);
    let reader = dextlink::Mapping::<dextlink::ReadOnly>::map(transport, 2, 65536).unwrap();
    let err = client.scratch().unwrap_err();
    assert!(
        matches!(&err, Error::Memory { memory_type: 2, detail } if detail.contains("read-only Mapping")),
        "{err:?}"
    );
    drop(reader);
    client.scratch().unwrap();
}

/// The lines of `/proc/self/maps` that map the same file as the mapping at
/// `address`: the dext's own mapping of its memfd and the client's. (By
/// inode, so that tests mapping other memory at the same time do not count.)
fn mappings_of_the_file_at(address: usize) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let fields = |line: &str| line.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let inode = maps
        .lines()
        .map(fields)
        .find(|f| usize::from_str_radix(f[0].split('-').next().unwrap(), 16).unwrap() == address)
        .map(|f| f[4].clone())
        .expect("the mapping is in /proc/self/maps");
    maps.lines().map(fields).filter(|f| f[4] == inode).count()
}

#[test]
fn dropping_the_last_view_unmaps() {
    let client = connect();
    let first = client.counters().unwrap();
    let address = first.as_slice().as_ptr() as usize;
    let (dext_only, with_client) = (1, 2);
    assert_eq!(mappings_of_the_file_at(address), with_client);
    let second = client.counters().unwrap();
    assert_eq!(mappings_of_the_file_at(address), with_client, "one mapping for both views");
    drop(first);
    assert_eq!(mappings_of_the_file_at(address), with_client, "the second view keeps it mapped");
    let dext_address = dext(&client).counters.as_ptr().as_ptr() as usize;
    drop(second);
    assert_eq!(mappings_of_the_file_at(dext_address), dext_only);
}

#[test]
fn unknown_memory_type_is_refused() {
    let client = connect();
    assert!(matches!(client.transport().map_memory(3), Err(Error::Memory { memory_type: 3, .. })));
}

// ----- client-side refusals ---------------------------------------------------

#[test]
fn out_of_range_scalars_are_refused_before_sending() {
    let client = connect();
    let seen_before = dext(&client).seen.len();
    let cases = [
        (
            client.scalars(1, -41, 1, true, Mode::On).unwrap_err(),
            "scalars",
            "b",
            "-41",
            "-40..=125",
        ),
        (
            client.scalars(1, 126, 1, true, Mode::On).unwrap_err(),
            "scalars",
            "b",
            "126",
            "-40..=125",
        ),
        (
            client.scalars(1, i32::MIN, 1, true, Mode::On).unwrap_err(),
            "scalars",
            "b",
            "-2147483648",
            "-40..=125",
        ),
        (client.scalars(1, 0, 0, true, Mode::On).unwrap_err(), "scalars", "c", "0", "1..=65536"),
        (
            client.scalars(1, 0, 65537, true, Mode::On).unwrap_err(),
            "scalars",
            "c",
            "65537",
            "1..=65536",
        ),
        (client.mixed(4, &Point { x: 0, y: 0 }).unwrap_err(), "mixed", "index", "4", "0..=3"),
        (client.measure(8).unwrap_err(), "measure", "channel", "8", "0..=7"),
    ];
    for (err, method, parameter, value, range) in cases {
        assert_eq!(
            err,
            Error::OutOfRange {
                method,
                parameter,
                value: value.to_string(),
                range: range.to_string(),
            }
        );
        assert_eq!(
            err.to_string(),
            format!("{method}: `{parameter}` = {value} is outside {range}")
        );
    }
    assert!(calls(&client).is_empty(), "no handler was called");
    assert_eq!(dext(&client).seen.len(), seen_before, "nothing was sent");
}

// ----- dext-side refusals -----------------------------------------------------

#[test]
fn dext_refuses_wrong_counts_and_sizes() {
    let client = connect();
    let bad = IoReturn::BAD_ARGUMENT;
    let ok5 = [1, 0, 1, 0, 0];
    // scalars: 5 in, 2 out, no structs.
    refused(&client, bad, 0, &ok5[..4], &[], 2, Out::None, false);
    refused(&client, bad, 0, &[1, 0, 1, 0, 0, 0], &[], 2, Out::None, false);
    refused(&client, bad, 0, &ok5, &[], 1, Out::None, false);
    refused(&client, bad, 0, &ok5, &[], 3, Out::None, false);
    refused(&client, bad, 0, &ok5, &[0; 8], 2, Out::None, false);
    refused(&client, bad, 0, &ok5, &[], 2, Out::Cap(8), false);
    refused(&client, bad, 0, &ok5, &[], 2, Out::Var, false);
    // More than 16 scalars never reach the dext (MIG's array[*:16]).
    refused(&client, IoReturn::OVERRUN, 3, &[0; 17], &[], 16, Out::None, false);
    refused(&client, IoReturn::OVERRUN, 3, &[0; 16], &[], 17, Out::None, false);
    refused(&client, bad, 3, &[0; 15], &[], 16, Out::None, false);
    refused(&client, bad, 3, &[0; 16], &[], 15, Out::None, false);
    // structs: 88 bytes in, 88 out.
    let config = sample_config();
    let bytes = config.as_bytes();
    refused(&client, bad, 1, &[], &bytes[..87], 0, Out::Cap(88), false);
    refused(&client, bad, 1, &[], &[bytes, &[0][..]].concat(), 0, Out::Cap(88), false);
    refused(&client, bad, 1, &[], &[], 0, Out::Cap(88), false);
    refused(&client, bad, 1, &[], bytes, 0, Out::Cap(87), false);
    refused(&client, bad, 1, &[], bytes, 0, Out::Cap(100), false);
    refused(&client, bad, 1, &[], bytes, 0, Out::None, false);
    refused(&client, bad, 1, &[], bytes, 0, Out::Var, false);
    refused(&client, bad, 1, &[1], bytes, 0, Out::Cap(88), false);
    // big_in: exactly 4800 bytes, by descriptor.
    refused(&client, bad, 4, &[], &[0; 4799], 1, Out::None, false);
    refused(&client, bad, 4, &[], &[0; 4801], 1, Out::None, false);
    // big_out: exactly 4800 bytes of room.
    refused(&client, bad, 5, &[1], &[], 0, Out::Cap(4096), false);
    refused(&client, bad, 5, &[1], &[], 0, Out::Cap(4801), false);
    // write_blob: 1..=65536 bytes.
    refused(&client, bad, 6, &[], &[], 1, Out::None, false);
    refused(&client, bad, 6, &[], &vec![0; 65537], 1, Out::None, false);
    // read_name: the bound, 32, exactly.
    refused(&client, bad, 7, &[], &[], 0, Out::Cap(16), false);
    refused(&client, bad, 7, &[], &[], 0, Out::Cap(4096), false);
    refused(&client, bad, 7, &[], &[], 0, Out::Var, false);
    // read_log: only the var-output call.
    refused(&client, bad, 8, &[1], &[], 0, Out::Cap(4096), false);
    refused(&client, bad, 8, &[1], &[], 0, Out::Cap(8192), false);
    refused(&client, bad, 8, &[1], &[], 0, Out::None, false);
    // set_key: 16 bytes.
    refused(&client, bad, 9, &[], &[0; 15], 0, Out::None, false);
    refused(&client, bad, 9, &[], &[0; 17], 0, Out::None, false);

    // The same calls, well formed, go through.
    let (result, out) = raw_call(&client, 0, &ok5, &[], 2, Out::None, false);
    assert_eq!(result, Ok(Reply { scalar_output_count: 2, struct_output_size: 0 }));
    assert_eq!(out, [2, -1i64 as u64]);
    let (result, _) = raw_call(&client, 1, &[], bytes, 0, Out::Cap(88), false);
    assert_eq!(result, Ok(Reply { scalar_output_count: 0, struct_output_size: 88 }));
    let (result, _) = raw_call(&client, 8, &[2], &[], 0, Out::Var, false);
    assert_eq!(result, Ok(Reply { scalar_output_count: 0, struct_output_size: 20 }));
    assert_eq!(
        calls(&client),
        ["scalars(1, 0, 1, false, Off)", "structs(gain 3735928559)", "read_log(2)"]
    );
}

#[test]
fn dext_refuses_out_of_range_values() {
    let client = connect();
    let bad = IoReturn::BAD_ARGUMENT;
    let with = |i: usize, v: u64| {
        let mut s = [1, 0, 1, 0, 0];
        s[i] = v;
        s
    };
    for scalars in [
        with(0, 256),           // a: u8
        with(1, -41i64 as u64), // b below MIN_TEMP
        with(1, 126),           // b above 125
        with(1, 0xffff_ffd8),   // -40, but not sign-extended
        with(1, 1 << 32),       // b outside i32
        with(2, 0),             // c below 1
        with(2, 65537),         // c above BLOB_MAX
        with(3, 2),             // on: bool
        with(3, u64::MAX),      // on: bool
        with(4, 2),             // mode: not a Mode
        with(4, 0x1ff),         // mode: outside u8
        with(4, u64::MAX),      // mode: -1 is not a Mode
    ] {
        refused(&client, bad, 0, &scalars, &[], 2, Out::None, false);
    }
    // The edges themselves are fine.
    for scalars in
        [with(0, 255), with(1, -40i64 as u64), with(1, 125), with(2, 65536), with(4, 0xff)]
    {
        let (result, _) = raw_call(&client, 0, &scalars, &[], 2, Out::None, false);
        assert!(result.is_ok(), "{scalars:?}");
    }
    assert_eq!(calls(&client).len(), 5);

    refused(&client, bad, 2, &[4], Point { x: 0, y: 0 }.as_bytes(), 1, Out::Cap(88), false);
    refused(&client, bad, 2, &[u64::MAX], Point { x: 0, y: 0 }.as_bytes(), 1, Out::Cap(88), false);
    refused(&client, bad, 11, &[8], &[], 0, Out::None, true);
    refused(&client, bad, 11, &[256], &[], 0, Out::None, true);
    refused(&client, bad, 16, &[1 << 32], &[], 0, Out::None, true);
}

#[test]
fn dext_refuses_invalid_bools_and_enums_inside_structs() {
    let client = connect();
    let bad = IoReturn::BAD_ARGUMENT;
    let config = sample_config();
    let enabled = std::mem::offset_of!(Config, enabled);
    let mode = std::mem::offset_of!(Config, mode);
    let trim = std::mem::offset_of!(Config, trim);
    for (offset, value) in [(enabled, 2u8), (enabled, 0xff), (mode, 2), (mode, 0x80), (trim, 2)] {
        let mut bytes = config.as_bytes().to_vec();
        bytes[offset] = value;
        refused(&client, bad, 1, &[], &bytes, 0, Out::Cap(88), false);
        refused(&client, bad, 13, &[], &bytes, 1, Out::None, true);
    }
    // Trim is an i16: 0xffff is Down (-1) and valid, 0x8000 is not a Trim.
    let mut bytes = config.as_bytes().to_vec();
    bytes[trim..trim + 2].copy_from_slice(&i16::MIN.to_ne_bytes());
    refused(&client, bad, 1, &[], &bytes, 0, Out::Cap(88), false);
    bytes[trim..trim + 2].copy_from_slice(&(-1i16).to_ne_bytes());
    let (result, _) = raw_call(&client, 1, &[], &bytes, 0, Out::Cap(88), false);
    assert!(result.is_ok());
    assert_eq!(calls(&client), ["structs(gain 3735928559)"]);
}

#[test]
fn dext_refuses_completion_mismatches() {
    let client = connect();
    let bad = IoReturn::BAD_ARGUMENT;
    // A synchronous method called with a completion.
    refused(&client, bad, 0, &[1, 0, 1, 0, 0], &[], 2, Out::None, true);
    refused(&client, bad, 1, &[], sample_config().as_bytes(), 0, Out::Cap(88), true);
    refused(&client, bad, 9, &[], &[0; 16], 0, Out::None, true);
    // An async method called without one.
    refused(&client, bad, 10, &[], &[], 0, Out::None, false);
    refused(&client, bad, 11, &[3], &[], 0, Out::None, false);
    refused(&client, bad, 12, &[], &[], 0, Out::None, false);
    refused(&client, bad, 13, &[], sample_config().as_bytes(), 1, Out::None, false);
    assert!(calls(&client).is_empty());
}

#[test]
fn dext_refuses_reserved_and_unknown_selectors() {
    let client = connect();
    for selector in [14, 17, 18, 0x4458_4c4a, u32::MAX] {
        refused(&client, IoReturn::UNSUPPORTED, selector, &[], &[], 0, Out::None, false);
        refused(&client, IoReturn::UNSUPPORTED, selector, &[0], &[], 0, Out::None, true);
    }
    // Selectors wider than 32 bits cannot be expressed by `Call`; hand them to
    // `dispatch` directly as DriverKit's 64-bit `selector` would.
    let mut model = Model::new();
    let mut scalar_output = [0u64; 16];
    for selector in [
        1u64 << 40,
        1 << 32,
        (1 << 32) | 1,
        (1 << 32) | u64::from(shapes::HANDSHAKE_SELECTOR),
        u64::MAX,
    ] {
        let mut args = Arguments {
            completion: None,
            scalar_input: &[1, 0, 1, 0, 0],
            structure_input: StructureInput::None,
            scalar_output: &mut scalar_output,
            scalar_output_count: 2,
            structure_output: None,
            structure_output_descriptor: None,
            structure_output_maximum_size: 0,
        };
        assert_eq!(
            shapes::dispatch(&mut model, selector, &mut args),
            IoReturn::UNSUPPORTED,
            "{selector:#x}"
        );
    }
    assert!(model.calls.is_empty());
    assert!(calls(&client).is_empty());
}

// ----- handler errors ---------------------------------------------------------

#[test]
fn handler_errors_surface_without_outputs() {
    let client = connect();
    dext(&client).model.fail_next = Some(IoReturn::BUSY);
    let err = client.structs(&sample_config()).unwrap_err();
    assert_eq!(err, Error::Dext { method: "structs", selector: 1, code: IoReturn::BUSY });
    assert_eq!(err.io_return(), Some(IoReturn::BUSY));
    assert_eq!(err.to_string(), "structs (selector 1) failed: kIOReturnBusy (0xe00002d5)");

    dext(&client).model.fail_next = Some(IoReturn::BUSY);
    assert_eq!(
        client.scalars(1, 2, 3, true, Mode::On).unwrap_err(),
        Error::Dext { method: "scalars", selector: 0, code: IoReturn::BUSY }
    );
    dext(&client).model.fail_next = Some(IoReturn::BUSY);
    assert_eq!(
        client.big_out(1).unwrap_err(),
        Error::Dext { method: "big_out", selector: 5, code: IoReturn::BUSY }
    );
    dext(&client).model.fail_next = Some(IoReturn::BUSY);
    assert_eq!(
        client.read_log(3).unwrap_err(),
        Error::Dext { method: "read_log", selector: 8, code: IoReturn::BUSY }
    );
    dext(&client).model.fail_next = Some(IoReturn::BUSY);
    assert_eq!(
        client.measure(1).unwrap_err(),
        Error::Dext { method: "measure", selector: 11, code: IoReturn::BUSY }
    );
    assert!(dext(&client).model.measures.is_empty(), "no completer was kept");
    dext(&client).model.fail_next = Some(IoReturn::BUSY);
    assert!(matches!(
        client.start(&sample_config()),
        Err(Error::Dext { method: "start", selector: 13, code: IoReturn::BUSY })
    ));

    // A hand-dispatched handler that wrote an output before failing: the
    // client does not see it (the reply is not copied on failure).
    dext(&client).model.fail_next = Some(IoReturn::BUSY);
    let (result, out) = raw_call(&client, 15, &[1], &[], 1, Out::None, false);
    assert_eq!(result, Err(CallError::Status(IoReturn::BUSY)));
    assert_eq!(out, [0]);
    dext(&client).model.fail_next = Some(IoReturn::BUSY);
    assert_eq!(
        client.raw(1).unwrap_err(),
        Error::Dext { method: "raw", selector: 15, code: IoReturn::BUSY }
    );

    // Every one of them reached its handler; the connection carries on.
    assert_eq!(calls(&client).len(), 8);
    assert_eq!(client.raw(2).unwrap(), 7);
}

#[test]
fn memory_of_the_wrong_size_or_access_is_refused() {
    let mut d = ShapesDext::new();
    d.scratch_read_only = true;
    let client = shapes::Shapes::connect(InProcess::new(d)).unwrap();
    let err = client.scratch().unwrap_err();
    assert!(
        matches!(&err, Error::Memory { memory_type: 2, detail } if detail.contains("read-only")),
        "{err:?}"
    );

    let mut d = ShapesDext::new();
    d.scratch_is_counters = true;
    let client = shapes::Shapes::connect(InProcess::new(d)).unwrap();
    let err = client.scratch().unwrap_err();
    assert!(
        matches!(&err, Error::Memory { memory_type: 2, detail } if detail.contains("4096") && detail.contains("65536")),
        "{err:?}"
    );
    // Refused mappings were unmapped; the good one still maps.
    assert_eq!(client.counters().unwrap().len(), 4096);
}

fn tampered(tamper: Tamper) -> Client {
    let mut d = ShapesDext::new();
    d.tamper = Some(tamper);
    shapes::Shapes::connect(InProcess::new(d)).unwrap()
}

#[test]
fn malformed_replies_are_reported() {
    // The dext returns fewer scalars than declared (it may lower the count, §3.2-5).
    let client = tampered(|_, args, status| {
        args.scalar_output_count = 1;
        status
    });
    let err = client.scalars(1, 2, 3, true, Mode::On).unwrap_err();
    assert_eq!(
        err,
        Error::MalformedReply {
            method: "scalars",
            detail: "expected 2 scalar outputs, got 1".to_string()
        }
    );

    // Scalars that do not fit their declared type.
    let client = tampered(|selector, args, status| {
        match selector {
            2 => args.scalar_output[0] = 2,        // ok: bool
            6 => args.scalar_output[0] = 1 << 32,  // written: u32
            13 => args.scalar_output[0] = 1 << 33, // ticket: u32
            _ => {}
        }
        status
    });
    let err = client.mixed(1, &Point { x: 0, y: 0 }).unwrap_err();
    assert!(
        matches!(&err, Error::MalformedReply { method: "mixed", detail } if detail.contains("`ok`")),
        "{err:?}"
    );
    let err = client.write_blob(&[1]).unwrap_err();
    assert!(
        matches!(&err, Error::MalformedReply { method: "write_blob", detail } if detail.contains("u32")),
        "{err:?}"
    );
    assert!(matches!(
        client.start(&sample_config()),
        Err(Error::MalformedReply { method: "start", .. })
    ));

    // A short struct: the OSData length is what the client gets back (§3.3-1).
    let client = tampered(|selector, args, status| {
        if selector == 1 {
            args.structure_output.as_mut().unwrap().truncate(80);
        }
        status
    });
    assert_eq!(
        client.structs(&sample_config()).unwrap_err(),
        Error::MalformedReply {
            method: "structs",
            detail: "expected 88 bytes of structure output, got 80".to_string()
        }
    );

    // Kernel rules on what a dext returns (§3.3): an OSData longer than the
    // inline capacity, an OSData when the output went out of line, no OSData
    // for the var-output call.
    let client = tampered(|selector, args, status| {
        match selector {
            1 => args.structure_output.as_mut().unwrap().push(0),
            5 => args.structure_output = Some(vec![1; 8]),
            8 => args.structure_output = None,
            _ => {}
        }
        status
    });
    let bad = |method, selector, code| Error::Dext { method, selector, code };
    assert_eq!(
        client.structs(&sample_config()).unwrap_err(),
        bad("structs", 1, IoReturn::BAD_ARGUMENT)
    );
    assert_eq!(client.big_out(3).unwrap_err(), bad("big_out", 5, IoReturn::BAD_ARGUMENT));
    assert_eq!(client.read_log(3).unwrap_err(), bad("read_log", 8, IoReturn::UNDERRUN));
}

#[test]
fn calls_from_many_threads_are_serialised() {
    let client = connect();
    thread::scope(|s| {
        for t in 0..4u8 {
            let client = &client;
            s.spawn(move || {
                for i in 0..50u8 {
                    let out =
                        client.scalars(t, -(i32::from(i)) % 41, 1, i % 2 == 0, Mode::On).unwrap();
                    assert_eq!(out.sum, u64::from(t) + 1 + u64::from(i % 2 == 0) + 1);
                    assert_eq!(
                        client.read_log(u32::from(i % 5)).unwrap(),
                        log_text(u32::from(i % 5))
                    );
                }
            });
        }
    });
    assert_eq!(calls(&client).len(), 4 * 50 * 2);
}

#[test]
fn wait_timeout_accepts_a_huge_timeout() {
    let client = connect();
    let mut pending = client.ping().unwrap();
    dext(&client).model.pings.pop().unwrap().complete(());
    // The completion is already there; a timeout too long to represent
    // must not overflow.
    assert_eq!(pending.wait_timeout(Duration::MAX), Ok(()));
}

#[test]
fn dropping_the_connection_ends_outstanding_completions() {
    // Closing the connection ends the calls still outstanding on it, whether
    // or not the dext still holds their completers.
    let client = connect();
    let mut pending = client.ping().unwrap();
    drop(client);
    assert_eq!(pending.wait_timeout(Duration::from_millis(200)), Err(Error::Disconnected));

    // A dext with two connections: the one that goes away ends its calls.
    let simulator = Simulator::new("Shapes", |_| Ok(ShapesDext::new()));
    let first: Client = shapes::Shapes::connect(simulator.open().unwrap()).unwrap();
    let second: Client = shapes::Shapes::connect(simulator.open().unwrap()).unwrap();
    let mut pending = first.measure(1).unwrap();
    drop(first);
    assert_eq!(pending.wait_timeout(Duration::from_millis(200)), Err(Error::Disconnected));
    assert_eq!(second.raw(1).unwrap(), 4);
}
