//! The NullDriver dext as a simulator server process: clients connect to its
//! Unix socket (`nulldriver-client --socket PATH`, or any program using
//! `dextlink::sim::SocketTransport`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dextlink::sim::Simulator;
use null_driver::dext::NullDriverDext;

/// Serve the simulated NullDriver dext on a Unix socket.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Socket to listen on (default: $DEXTLINK_SIM_SOCKET).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Milliseconds before the simulated device event (the sample waits 5 s).
    #[arg(long, default_value_t = 5000)]
    delay_ms: u64,
    /// Refuse clients that do not claim the userclient-access entitlement.
    #[arg(long)]
    require_entitlement: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(socket) = args.socket.or_else(dextlink::sim::socket_path_from_env) else {
        eprintln!("error: no socket: pass --socket PATH or set {}", dextlink::sim::SOCKET_ENV);
        return ExitCode::from(2);
    };
    let dext = NullDriverDext::new(Duration::from_millis(args.delay_ms));
    let simulator = Simulator::new(null_driver::null_driver::SERVICE, dext)
        .require_entitlement(args.require_entitlement);
    eprintln!("nulldriver-sim: serving {} on {}", simulator.service(), socket.display());
    match simulator.serve_path(&socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: serving on {}: {error}", socket.display());
            ExitCode::FAILURE
        }
    }
}
