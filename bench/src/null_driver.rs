//! NullDriver over a Unix socket: the generated client's per-call cost
//! against the dext's own C++ (hosted by dextlink-sim) divided by the same
//! against the Rust model, each served on a Unix socket by a server thread
//! of this process; beside it, a bare request/response round trip over the
//! same kind of socket (report only). Measured once, interleaved, for both
//! figures.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dextlink::Transport;
use dextlink::sim::{Driver, OpenOptions, Simulator, SocketTransport};
use null_driver::dext::NullDriverDext;
use null_driver::{DataStruct, NullDriver};

use crate::Figure;

/// Calls per timed round, and rounds per path.
const CALLS: u32 = 2_000;
const ROUNDS: u32 = 15;

/// Per call, in seconds: C++ dext, Rust model, raw round trip.
struct Measured {
    cpp: f64,
    rust: f64,
    raw: f64,
}

fn serve<D: Driver>(dir: &Path, name: &str, driver: D) -> PathBuf {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind the benchmark socket");
    let simulator = Simulator::new(null_driver::null_driver::SERVICE, driver);
    std::thread::spawn(move || simulator.serve(listener));
    path
}

fn connect(path: &Path) -> NullDriver<Arc<dyn Transport>> {
    let transport = SocketTransport::connect(path, &OpenOptions::default()).expect("connect");
    NullDriver::connect(Arc::new(transport) as Arc<dyn Transport>).expect("handshake")
}

/// A server that answers every 64-byte request with 64 bytes.
fn echo(dir: &Path) -> UnixStream {
    let path = dir.join("echo.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind the echo socket");
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else { return };
        let mut buffer = [0u8; 64];
        while stream.read_exact(&mut buffer).is_ok() {
            if stream.write_all(&buffer).is_err() {
                return;
            }
        }
    });
    UnixStream::connect(&path).expect("connect to the echo socket")
}

fn measure(dir: &Path) -> Measured {
    // The dext logs every call (os_log). On a Mac that goes to the log
    // store's buffer, not to a terminal; here it goes to a sink that
    // counts the lines, so the figure is the call path, not stderr.
    let lines = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&lines);
    dextlink_sim::driverkit::set_log_sink(Some(Arc::new(move |_, line: &str| {
        counted.fetch_add(1, Ordering::Relaxed);
        std::hint::black_box(line);
    })));
    let (_dext, service) = null_driver::cpp::start().unwrap_or_else(|e| panic!("{e}"));
    let cpp = connect(&serve(dir, "cpp.sock", service));
    let rust = connect(&serve(dir, "rust.sock", NullDriverDext::new(Duration::from_secs(5))));
    let mut raw = echo(dir);
    let input = DataStruct { foo: 1, bar: 2 };
    let mut best = [Duration::MAX; 3];
    // Interleaved rounds in rotating order, best of each: every path sees
    // the same machine state and none always runs first.
    for round in 0..ROUNDS {
        for step in 0..3 {
            let path = (round as usize + step) % 3;
            let start = Instant::now();
            match path {
                0 | 1 => {
                    let client = if path == 0 { &cpp } else { &rust };
                    for _ in 0..CALLS {
                        std::hint::black_box(
                            client.checked_struct(std::hint::black_box(&input)).expect("call"),
                        );
                    }
                }
                _ => {
                    let mut buffer = [7u8; 64];
                    for _ in 0..CALLS {
                        raw.write_all(&buffer).expect("echo write");
                        raw.read_exact(&mut buffer).expect("echo read");
                    }
                    std::hint::black_box(&buffer);
                }
            }
            best[path] = best[path].min(start.elapsed());
        }
    }
    dextlink_sim::driverkit::set_log_sink(None);
    let per_call = |d: Duration| d.as_secs_f64() / f64::from(CALLS);
    let measured =
        Measured { cpp: per_call(best[0]), rust: per_call(best[1]), raw: per_call(best[2]) };
    eprintln!(
        "NullDriver checked_struct over a socket: C++ dext {:.1} us/call, Rust model {:.1} us/call; \
         raw 64-byte round trip {:.1} us; {} dext log lines discarded",
        measured.cpp * 1e6,
        measured.rust * 1e6,
        measured.raw * 1e6,
        lines.load(Ordering::Relaxed)
    );
    measured
}

fn measured(dir: &Path) -> &'static Measured {
    static MEASURED: OnceLock<Measured> = OnceLock::new();
    MEASURED.get_or_init(|| measure(dir))
}

pub fn cpp_ratio(dir: &Path) -> Figure {
    let m = measured(dir);
    let ratio = m.cpp / m.rust;
    Figure {
        name: "generated client per call, C++ dext / Rust model, same socket",
        value: ratio,
        unit: "x",
        target: "<= 1.2 x",
        met: ratio <= 1.2,
    }
}

pub fn raw_round_trip(dir: &Path) -> Figure {
    let m = measured(dir);
    Figure {
        name: "raw request/response round trip, same kind of socket (report only)",
        value: m.raw * 1e6,
        unit: "us",
        target: "report",
        met: true,
    }
}
