//! The sample app's buttons, from the command line, against the simulated
//! NullDriver dext: in this process, in a server process it starts, or in
//! one already listening on a socket.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use dextlink::sim::{OpenOptions, ServerProcess, Simulator, SocketTransport};
use dextlink::{Call, Error, StructOutput, Transport};
use null_driver::dext::NullDriverDext;
use null_driver::{DataStruct, NullDriver, OVERSIZED_LEN};

/// Press the NullDriver sample app's buttons against the simulated dext.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Buttons to press, in order (default: all of them).
    #[arg(value_enum)]
    buttons: Vec<Button>,
    /// Where the dext runs.
    #[arg(long, value_enum, default_value_t = Mode::InProcess)]
    sim: Mode,
    /// With `--sim socket`: the socket of a running `nulldriver-sim`.
    #[arg(long, required_if_eq("sim", "socket"))]
    socket: Option<PathBuf>,
    /// The Rust model only: milliseconds before the simulated device event
    /// (the sample, and so the C++ dext, waits 5 s).
    #[arg(long, default_value_t = 5000)]
    delay_ms: u64,
    /// Which dext: its own C++ (dext/, built by this crate) or the Rust model.
    #[arg(long, value_enum, default_value_t = Dext::Cpp)]
    dext: Dext,
    /// With `--dext cpp --sim in-process`: another build of the dext's
    /// library than this crate's (e.g. one with sanitizers).
    #[arg(long, value_name = "LIB.so", requires = "plist")]
    library: Option<PathBuf>,
    /// The Info.plist for `--library`.
    #[arg(long, value_name = "Info.plist", requires = "library")]
    plist: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Dext {
    Cpp,
    Rust,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The dext on a thread of this process.
    InProcess,
    /// The dext in a `nulldriver-sim` process started for this run.
    Spawn,
    /// The dext in a `nulldriver-sim` already listening on `--socket`.
    Socket,
    /// The dext a running server (`nulldriver-sim`, or `dextlink-sim serve`
    /// of the compiled dext) registered under its service name, NullDriver.
    Named,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Button {
    UncheckedScalar,
    UncheckedStruct,
    UncheckedLargeStruct,
    CheckedScalar,
    CheckedStruct,
    AssignCallback,
    AsyncAction,
}

type Client = NullDriver<Arc<dyn Transport>>;

fn main() -> ExitCode {
    let args = Args::parse();
    let buttons = if args.buttons.is_empty() {
        Button::value_variants().to_vec()
    } else {
        args.buttons.clone()
    };
    let delay = Duration::from_millis(args.delay_ms);
    // Kept alive for the run: dropping it stops the server.
    let mut server = None;
    let transport: Result<Arc<dyn Transport>, Error> = match args.sim {
        Mode::InProcess => match args.dext {
            Dext::Cpp => {
                match open_cpp_in_process(args.library.as_deref(), args.plist.as_deref()) {
                    Ok(opened) => opened,
                    Err(error) => {
                        eprintln!("error: {error}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            Dext::Rust => {
                let simulator =
                    Simulator::new(null_driver::null_driver::SERVICE, NullDriverDext::new(delay));
                simulator.open().map(|t| Arc::new(t) as Arc<dyn Transport>)
            }
        },
        Mode::Spawn => match spawn_server(args.dext, args.delay_ms) {
            Ok(process) => {
                let connected =
                    SocketTransport::connect(process.socket_path(), &OpenOptions::default());
                server = Some(process);
                connected.map(|t| Arc::new(t) as Arc<dyn Transport>)
            }
            Err(error) => {
                eprintln!("error: starting nulldriver-sim: {error}");
                return ExitCode::FAILURE;
            }
        },
        Mode::Named => {
            dextlink::sim::open(null_driver::null_driver::SERVICE, &OpenOptions::default())
                .map(|t| Arc::new(t) as Arc<dyn Transport>)
        }
        Mode::Socket => {
            let path = args.socket.clone().expect("clap requires --socket");
            SocketTransport::connect(&path, &OpenOptions::default())
                .map(|t| Arc::new(t) as Arc<dyn Transport>)
        }
    };
    let client = match transport.and_then(NullDriver::connect) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The C++ dext waits the sample's 5 s, plus up to 2 s of timer leeway.
    let wait = delay.max(Duration::from_secs(7)) + Duration::from_secs(10);
    for button in buttons {
        if let Err(error) = press(&client, button, wait) {
            eprintln!("error: {button:?}: {error}");
            return ExitCode::FAILURE;
        }
    }
    drop(client);
    drop(server);
    ExitCode::SUCCESS
}

/// Starts `nulldriver-sim` from beside this executable.
fn spawn_server(dext: Dext, delay_ms: u64) -> std::io::Result<ServerProcess> {
    let exe = std::env::current_exe()?.with_file_name("nulldriver-sim");
    let mut command = Command::new(exe);
    let dext = if dext == Dext::Cpp { "cpp" } else { "rust" };
    command.args(["--dext", dext, "--delay-ms", &delay_ms.to_string()]);
    ServerProcess::spawn(command)
}

fn show(data: &DataStruct) -> String {
    format!("{{ foo: {}, bar: {} }}", data.foo, data.bar)
}

fn press(client: &Client, button: Button, wait: Duration) -> Result<(), Error> {
    let input = DataStruct { foo: 1, bar: 2 };
    match button {
        Button::UncheckedScalar => {
            let out = client.scalar(1, 2)?;
            println!("Unchecked scalar: sent [1, 2], got [{}, {}]", out.a_plus_one, out.b_plus_one);
        }
        Button::UncheckedStruct => {
            let out = client.structure(&input)?;
            println!("Unchecked struct: sent {}, got {}", show(&input), show(&out));
        }
        Button::UncheckedLargeStruct => {
            // No typed method sends more than the schema's DataStruct: this
            // is the sample's oversized struct, sent by hand.
            let mut sent = vec![0u8; OVERSIZED_LEN];
            sent[..8].copy_from_slice(&input.foo.to_ne_bytes());
            sent[8..16].copy_from_slice(&input.bar.to_ne_bytes());
            let mut received = vec![0xffu8; OVERSIZED_LEN];
            let reply = client
                .transport()
                .call(Call {
                    selector: null_driver::null_driver::Selector::Structure as u32,
                    scalar_input: &[],
                    struct_input: &sent,
                    scalar_output: &mut [],
                    struct_output: StructOutput::Buffer(&mut received),
                    completion: None,
                })
                .map_err(|e| e.for_method("structure", 1))?;
            let word = |i: usize| u64::from_ne_bytes(received[i..i + 8].try_into().expect("8"));
            let rest_zero = received[16..].iter().all(|&b| b == 0);
            println!(
                "Unchecked large struct: sent {} bytes starting {}, got {} bytes starting \
                 {{ foo: {}, bar: {} }}, rest zeroed: {}",
                sent.len(),
                show(&input),
                reply.struct_output_size,
                word(0),
                word(8),
                if rest_zero { "yes" } else { "no" }
            );
        }
        Button::CheckedScalar => {
            let out =
                client.checked_scalar(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)?;
            let values = [
                out.r0, out.r1, out.r2, out.r3, out.r4, out.r5, out.r6, out.r7, out.r8, out.r9,
                out.r10, out.r11, out.r12, out.r13, out.r14, out.r15,
            ];
            println!("Checked scalar: sent 0..=15, got {values:?}");
        }
        Button::CheckedStruct => {
            let out = client.checked_struct(&input)?;
            println!("Checked struct: sent {}, got {}", show(&input), show(&out));
        }
        Button::AssignCallback => {
            let (out, mut event) = client.register_async_callback(&input)?;
            println!(
                "Assign callback: sent {}, got {}; waiting for the event…",
                show(&input),
                show(&out)
            );
            let event = event.wait_timeout(wait)?;
            println!("  event: type {}, foo {}, bar {}", event.kind, event.foo, event.bar);
        }
        Button::AsyncAction => {
            // Completions are one-shot here: register a fresh callback for
            // the event this request triggers (the request re-arms the
            // dext's one timer, so one event comes, with this input).
            let (_, mut event) = client.register_async_callback(&input)?;
            let request = DataStruct { foo: 100, bar: 200 };
            // The request's own completion is unused by the dext.
            drop(client.async_request(&request)?);
            println!("Async action: sent {}; waiting for the event…", show(&request));
            let event = event.wait_timeout(wait)?;
            println!("  event: type {}, foo {}, bar {}", event.kind, event.foo, event.bar);
        }
    }
    Ok(())
}

/// Opens the compiled C++ dext in this process: this crate's build, or
/// `library` with `plist`.
#[cfg(target_os = "linux")]
fn open_cpp_in_process(
    library: Option<&std::path::Path>,
    plist: Option<&std::path::Path>,
) -> Result<Result<Arc<dyn Transport>, Error>, String> {
    let started = match (library, plist) {
        (Some(library), Some(plist)) => null_driver::cpp::start_from(library, plist),
        _ => null_driver::cpp::start(),
    };
    // The service keeps its dext loaded for as long as it lives.
    let (_dext, service) = started.map_err(|error| error.to_string())?;
    let simulator = Simulator::new(null_driver::null_driver::SERVICE, service);
    Ok(simulator.open().map(|t| Arc::new(t) as Arc<dyn Transport>))
}

/// The C++ dext runs in dextlink-sim's DriverKit runtime, which is Linux's.
#[cfg(not(target_os = "linux"))]
fn open_cpp_in_process(
    _: Option<&std::path::Path>,
    _: Option<&std::path::Path>,
) -> Result<Result<Arc<dyn Transport>, Error>, String> {
    Err("--dext cpp runs the dext's C++ in dextlink-sim's DriverKit runtime, which needs Linux; \
         use --dext rust here"
        .to_string())
}
