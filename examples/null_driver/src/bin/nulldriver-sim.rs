//! The NullDriver dext as a simulator server process: clients connect to its
//! Unix socket (`nulldriver-client --socket PATH`, or any program using
//! `dextlink::sim::SocketTransport`), or find it by its service name
//! `NullDriver` in the registry (`dextlink::sim::open`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use dextlink::sim::Simulator;
use null_driver::dext::NullDriverDext;

/// Serve the NullDriver dext on a Unix socket.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Which dext: its own C++ (dext/, built by this crate) or the Rust model.
    #[arg(long, value_enum, default_value_t = Dext::Cpp)]
    dext: Dext,
    /// Socket to listen on (default: $DEXTLINK_SIM_SOCKET).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The Rust model only: milliseconds before the simulated device event
    /// (the sample, and so the C++ dext, waits 5 s).
    #[arg(long, default_value_t = 5000)]
    delay_ms: u64,
    /// Refuse clients that do not claim the userclient-access entitlement.
    #[arg(long)]
    require_entitlement: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Dext {
    Cpp,
    Rust,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(socket) = args.socket.or_else(dextlink::sim::socket_path_from_env) else {
        eprintln!("error: no socket: pass --socket PATH or set {}", dextlink::sim::SOCKET_ENV);
        return ExitCode::from(2);
    };
    let service = null_driver::null_driver::SERVICE;
    let served = match args.dext {
        Dext::Cpp => match serve_cpp(service, args.require_entitlement, &socket) {
            Ok(served) => served,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        },
        Dext::Rust => {
            let dext = NullDriverDext::new(Duration::from_millis(args.delay_ms));
            let simulator =
                Simulator::new(service, dext).require_entitlement(args.require_entitlement);
            eprintln!(
                "nulldriver-sim: serving the Rust model of {service} on {}",
                socket.display()
            );
            simulator.serve_path(&socket)
        }
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: serving on {}: {error}", socket.display());
            ExitCode::FAILURE
        }
    }
}

/// Serves the compiled C++ dext (this crate's build) until serving fails.
#[cfg(target_os = "linux")]
fn serve_cpp(
    service: &str,
    require_entitlement: bool,
    socket: &std::path::Path,
) -> Result<std::io::Result<()>, String> {
    // Kept for the whole run: dropping the last handle stops the dext.
    let (_dext, started) = null_driver::cpp::start().map_err(|error| error.to_string())?;
    let simulator = Simulator::new(service, started).require_entitlement(require_entitlement);
    eprintln!("nulldriver-sim: serving the C++ {service} on {}", socket.display());
    Ok(simulator.serve_path(socket))
}

/// The C++ dext runs in dextlink-sim's DriverKit runtime, which is Linux's.
#[cfg(not(target_os = "linux"))]
fn serve_cpp(_: &str, _: bool, _: &std::path::Path) -> Result<std::io::Result<()>, String> {
    Err("--dext cpp runs the dext's C++ in dextlink-sim's DriverKit runtime, which needs Linux; \
         use --dext rust here"
        .to_string())
}
