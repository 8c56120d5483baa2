//! `cargo run --release -p dextlink-bench`: the project's benchmark.
//!
//! Prints each measured figure beside its target from DESIGN.md, as a table
//! on stdout (details of each measurement on stderr) and, with `--json`, as
//! one JSON object per line.
//! Tests never assert times; this is where the targets are shown.

use std::fmt::Write;
use std::time::{Duration, Instant};

use dextlink::sim::usb::LinkModel;
use dextlink::sim::{UserClient, kernel};
use dextlink::{Call, IoReturn, StructOutput, Transport};
use dextlink_schema::emit::{c_client, cpp, rust};

#[cfg(target_os = "linux")]
mod null_driver;
mod upload;

use fwloader::fw_loader;

/// One measured figure.
#[derive(Debug)]
pub struct Figure {
    name: &'static str,
    value: f64,
    unit: &'static str,
    target: &'static str,
    met: bool,
}

/// A schema with `n` methods covering every shape, for the parse + emit figure.
fn large_schema(n: usize) -> String {
    let mut s = String::from(
        "/// Benchmark interface.\ninterface Large {\n    service \"com.example.Large\";\n    version 1;\n    \
         const MAX: u32 = 4096;\n    enum Mode: u32 { A = 0, B = 1, C = 2 }\n    \
         /// A record.\n    struct Rec { a: u64, b: u32, mode: Mode, name: [u8; 16], flag: bool, _pad0: [u8; 7] }\n",
    );
    for i in 0..n {
        let line = match i % 6 {
            0 => format!(
                "    /// Scalars.\n    {i} => fn m{i}(a: u32 in 0..MAX, b: u64, m: Mode) -> (r: u64, ok: bool);\n"
            ),
            1 => format!("    /// Structs.\n    {i} => fn m{i}(rec: &Rec) -> (out: Rec);\n"),
            2 => format!(
                "    /// Async.\n    {i} => async fn m{i}(a: u8) completes (x: u32, y: i64);\n"
            ),
            3 => {
                format!("    /// Bounded.\n    {i} => fn m{i}(data: &[u8; 1..=MAX]) -> (n: u32);\n")
            }
            4 => format!("    /// Variable output.\n    {i} => fn m{i}() -> (log: [u8]);\n"),
            _ => format!(
                "    /// Mixed.\n    {i} => fn m{i}(k: i32 in -5..=5, rec: &Rec) -> (v: i16, out: [u8; ..=64]);\n"
            ),
        };
        s.push_str(&line);
    }
    s.push_str("}\n");
    s
}

/// The median of `runs` timings of `f`.
fn median_time(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn schema_figure() -> Figure {
    let text = large_schema(512);
    if std::env::var_os("DEXTLINK_BENCH_DETAIL").is_some() {
        let t = Instant::now();
        let schema = dextlink_schema::parse_str("large.dextlink", &text).unwrap();
        eprintln!("parse {:?}", t.elapsed());
        let t = Instant::now();
        let h = cpp::emit(&schema.interface, &cpp::Options::default());
        eprintln!("cpp {:?} ({} bytes)", t.elapsed(), h.len());
        let t = Instant::now();
        let c = c_client::emit(&schema.interface);
        eprintln!("c {:?} ({} bytes)", t.elapsed(), c.len());
        let t = Instant::now();
        let r = rust::emit(&schema.interface, &rust::Options::default());
        eprintln!("rust {:?} ({} bytes, {} lines)", t.elapsed(), r.len(), r.lines().count());
        // Layouts are cached per thread: what the macro's later expansions take.
        let t = Instant::now();
        std::hint::black_box(rust::emit(&schema.interface, &rust::Options::default()));
        eprintln!("rust again {:?} (layouts cached)", t.elapsed());
    }
    let time = median_time(21, || {
        let schema =
            dextlink_schema::parse_str("large.dextlink", &text).expect("benchmark schema is valid");
        let header = cpp::emit(&schema.interface, &cpp::Options::default());
        let client = c_client::emit(&schema.interface);
        let module = rust::emit(&schema.interface, &rust::Options::default());
        std::hint::black_box((header, client, module));
    });
    let ms = time.as_secs_f64() * 1e3;
    Figure {
        name: "schema: 512 methods, parse + validate + emit C++, C and Rust",
        value: ms,
        unit: "ms",
        target: "< 50 ms",
        met: ms < 50.0,
    }
}

/// A transport that runs the user client on the caller's thread, through the
/// simulator's kernel layer: the client-side call path with no thread hop,
/// so that the stub/raw ratio is not drowned in scheduling noise.
struct Direct<U>(std::sync::Mutex<U>);

// SAFETY: `map_memory` never returns a region.
unsafe impl<U: UserClient> dextlink::Transport for Direct<U> {
    fn call(&self, call: dextlink::Call<'_>) -> Result<dextlink::Reply, dextlink::CallError> {
        let mut user_client = self.0.lock().expect("user client");
        kernel::deliver(call, None, |selector, args| user_client.external_method(selector, args))
    }
    fn map_memory(&self, memory_type: u32) -> Result<dextlink::MappedRegion<'_>, dextlink::Error> {
        Err(dextlink::Error::Memory { memory_type, detail: "not mapped here".to_string() })
    }
}

/// A dext that answers `finish` at once: the call path is all that is measured.
struct Instant_;

impl fw_loader::Handler for Instant_ {
    fn begin(&mut self, _: &fw_loader::ImageInfo) -> Result<fw_loader::BeginOutput, IoReturn> {
        Err(IoReturn::UNSUPPORTED)
    }
    fn submit(&mut self, _: u32, _: u32, _: fw_loader::SubmitCompleter) -> Result<(), IoReturn> {
        Err(IoReturn::UNSUPPORTED)
    }
    fn finish(&mut self, image_crc32: u32) -> Result<fw_loader::Status, IoReturn> {
        Ok(if image_crc32.is_multiple_of(2) {
            fw_loader::Status::Committed
        } else {
            fw_loader::Status::Failed
        })
    }
    fn status(&mut self) -> Result<fw_loader::UploadState, IoReturn> {
        Err(IoReturn::UNSUPPORTED)
    }
    fn abort(&mut self) -> Result<(), IoReturn> {
        Ok(())
    }
    fn write(&mut self, _: u64, _: &[u8]) -> Result<u64, IoReturn> {
        Err(IoReturn::UNSUPPORTED)
    }
}

impl UserClient for Instant_ {
    fn external_method(
        &mut self,
        selector: u64,
        arguments: &mut dextlink::server::Arguments<'_>,
    ) -> IoReturn {
        fw_loader::dispatch(self, selector, arguments)
    }
}

/// The same call written by hand against the transport, doing the same job
/// (checked reply, decoded enum, a useful error): what the generated stub
/// must not be noticeably slower than.
fn raw_finish(transport: &impl Transport, crc: u32) -> Result<fw_loader::Status, dextlink::Error> {
    let mut out = [0u64; 1];
    let reply = transport
        .call(Call {
            selector: 2,
            scalar_input: &[u64::from(crc)],
            struct_input: &[],
            scalar_output: &mut out,
            struct_output: StructOutput::None,
            completion: None,
        })
        .map_err(|e| e.for_method("finish", 2))?;
    if reply.scalar_output_count != 1 {
        return Err(dextlink::Error::MalformedReply {
            method: "finish",
            detail: "short reply".to_string(),
        });
    }
    fw_loader::Status::from_wire(out[0])
        .map_err(|e| dextlink::Error::MalformedReply { method: "finish", detail: e.to_string() })
}

fn stub_figure() -> Figure {
    let client =
        fw_loader::FwLoader::connect(Direct(std::sync::Mutex::new(Instant_))).expect("handshake");
    const CALLS: u32 = 20_000;
    let mut stub_best = Duration::MAX;
    let mut raw_best = Duration::MAX;
    // Interleaved rounds in alternating order, best of each: both paths see
    // the same machine state and neither always runs first.
    for round in 0..30 {
        for path in [round % 2, 1 - round % 2] {
            let start = Instant::now();
            if path == 0 {
                for i in 0..CALLS {
                    std::hint::black_box(client.finish(std::hint::black_box(i)).expect("finish"));
                }
                stub_best = stub_best.min(start.elapsed());
            } else {
                for i in 0..CALLS {
                    std::hint::black_box(
                        raw_finish(client.transport(), std::hint::black_box(i)).expect("finish"),
                    );
                }
                raw_best = raw_best.min(start.elapsed());
            }
        }
    }
    eprintln!(
        "stub {:.1} ns/call, raw {:.1} ns/call",
        stub_best.as_nanos() as f64 / f64::from(CALLS),
        raw_best.as_nanos() as f64 / f64::from(CALLS)
    );
    let ratio = stub_best.as_secs_f64() / raw_best.as_secs_f64();
    Figure {
        name: "generated stub / hand-written raw call, simulator kernel on the calling thread",
        value: ratio,
        unit: "x",
        target: "<= 1.05 x",
        met: ratio <= 1.05,
    }
}

fn main() {
    if upload::child_role() {
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    // Any other argument picks figures by key (e.g. `staging usb3`).
    let only: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "--json").collect();
    let scratch = upload::Scratch::new();
    const MIB: u64 = 1 << 20;
    type Measure<'a> = Box<dyn Fn() -> Figure + 'a>;
    let all: Vec<(&str, Measure)> = vec![
        ("usb2", Box::new(|| upload::pipelined(&scratch, LinkModel::USB2, 64 * MIB, 0.97))),
        ("usb3", Box::new(|| upload::pipelined(&scratch, LinkModel::USB3, 512 * MIB, 0.95))),
        ("naive", Box::new(|| upload::naive(&scratch, 8 * MIB))),
        ("flash", Box::new(|| upload::flash_overlap(&scratch, 4 * MIB))),
        ("staging", Box::new(|| upload::staging(&scratch, 256 * MIB))),
        ("memory", Box::new(|| upload::peak_memory(&scratch, 1024 * MIB))),
        ("stub", Box::new(stub_figure)),
        ("schema", Box::new(schema_figure)),
    ];
    #[cfg(target_os = "linux")]
    let all = {
        let mut all = all;
        all.push(("cpp-dext", Box::new(|| null_driver::cpp_ratio(scratch.path()))));
        all.push(("socket", Box::new(|| null_driver::raw_round_trip(scratch.path()))));
        all
    };
    if let Some(unknown) = only.iter().find(|key| !all.iter().any(|(k, _)| k == *key)) {
        let keys: Vec<&str> = all.iter().map(|(k, _)| *k).collect();
        eprintln!("error: no figure {unknown:?}; the figures are {}", keys.join(", "));
        std::process::exit(2);
    }
    let figures: Vec<Figure> = all
        .iter()
        .filter(|(key, _)| only.is_empty() || only.contains(key))
        .map(|(_, measure)| measure())
        .collect();
    if json {
        for f in &figures {
            println!(
                "{{\"name\":{:?},\"value\":{:.3},\"unit\":{:?},\"target\":{:?},\"met\":{}}}",
                f.name, f.value, f.unit, f.target, f.met
            );
        }
        return;
    }
    let width = figures.iter().map(|f| f.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "{:<width$}  {:>12}  {:<10}  met", "figure", "measured", "target");
    for f in &figures {
        let _ = writeln!(
            out,
            "{:<width$}  {:>9.3} {:<2}  {:<10}  {}",
            f.name,
            f.value,
            f.unit,
            f.target,
            if f.met { "yes" } else { "NO" }
        );
    }
    print!("{out}");
}
