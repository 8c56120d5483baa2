//! `cargo run --release -p dextlink-bench`: the project's benchmark.
//!
//! Prints each measured figure beside its target from DESIGN.md, as a table
//! on stderr-free stdout and, with `--json`, as one JSON object per line.
//! Tests never assert times; this is where the targets are shown.

use std::fmt::Write;
use std::time::{Duration, Instant};

use dextlink_schema::emit::{c_client, cpp};

/// One measured figure.
struct Figure {
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
    let time = median_time(21, || {
        let schema =
            dextlink_schema::parse_str("large.dextlink", &text).expect("benchmark schema is valid");
        let header = cpp::emit(&schema.interface, &cpp::Options::default());
        let client = c_client::emit(&schema.interface);
        std::hint::black_box((header, client));
    });
    let ms = time.as_secs_f64() * 1e3;
    Figure {
        name: "schema: 512 methods, parse + validate + emit C++ and C headers",
        value: ms,
        unit: "ms",
        target: "< 50 ms",
        met: ms < 50.0,
    }
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let figures = vec![schema_figure()];
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
