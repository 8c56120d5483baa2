//! The fwloader dext on its simulated USB device, as a server process:
//! `fwupload --connect SOCKET` (or any client using
//! `dextlink::sim::SocketTransport`) talks to it. Its flash persists in the
//! `--flash` file, so a killed server can be restarted on the same device state.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use dextlink::sim::usb::LinkModel;
use fwloader::sim::{self, DextKind, SimArgs};

/// Serve the simulated fwloader dext and device on a Unix socket.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Socket to listen on (default: $DEXTLINK_SIM_SOCKET).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Link model of the bulk OUT pipe: usb2, usb2-real, usb3 or fast.
    #[arg(long, default_value = "usb2", value_parser = sim::parse_link)]
    link: LinkModel,
    /// The dext serving the device: `cpp` (the C++ dext of dext/, hosted by
    /// the simulator's DriverKit runtime) or `rust` (its Rust model).
    #[arg(long, value_enum, default_value = "cpp")]
    dext: DextKind,
    #[command(flatten)]
    device: SimArgs,
    /// Exit when the process that started this one dies (Linux), so that a
    /// killed `fwupload --sim-process` leaves no server holding the flash.
    #[arg(long)]
    exit_with_parent: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    #[cfg(target_os = "linux")]
    if args.exit_with_parent {
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    }
    let Some(socket) = args.socket.or_else(dextlink::sim::socket_path_from_env) else {
        eprintln!("error: no socket: pass --socket PATH or set {}", dextlink::sim::SOCKET_ENV);
        return ExitCode::from(2);
    };
    let options = match args.device.options(args.link) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let served = match args.dext {
        DextKind::Rust => serve_rust(&options, &socket),
        #[cfg(target_os = "linux")]
        DextKind::Cpp => serve_cpp(&options, &socket),
        #[cfg(not(target_os = "linux"))]
        DextKind::Cpp => Err("the C++ dext runs in the simulator on Linux only; on a Mac it \
                              is built and loaded by Xcode and macOS"
            .to_string()),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What a `kill-dext` fault does: kills this process outright, as a crashing
/// dext dies -- no unwinding, no flushing beyond what the flash file holds.
fn kill_dext() {
    eprintln!("fwloader-sim: kill-dext fault: killing the dext process");
    sim::kill_this_process();
}

fn announce(service: &str, dext: DextKind, socket: &Path, options: &sim::SimOptions) {
    eprintln!(
        "fwloader-sim: serving {service} ({} dext) on {} (link {}, flash {:?})",
        dext.name(),
        socket.display(),
        options.link.name,
        options.flash
    );
}

fn serve_rust(options: &sim::SimOptions, socket: &Path) -> Result<(), String> {
    let simulator = sim::simulator(options).map_err(|e| e.to_string())?;
    simulator.driver().pipe().set_kill_dext_hook(Box::new(kill_dext));
    announce(simulator.service(), DextKind::Rust, socket, options);
    simulator
        .serve_path(socket)
        .map_err(|error| format!("serving on {}: {error}", socket.display()))
}

#[cfg(target_os = "linux")]
fn serve_cpp(options: &sim::SimOptions, socket: &Path) -> Result<(), String> {
    let simulator = sim::cpp_simulator(options).map_err(|e| e.to_string())?;
    if let Some(library) = &options.dext_library {
        eprintln!("fwloader-sim: hosting the C++ dext {}", library.display());
    }
    simulator.driver().pipe().set_kill_dext_hook(Box::new(kill_dext));
    announce(simulator.service(), DextKind::Cpp, socket, options);
    simulator
        .serve_path(socket)
        .map_err(|error| format!("serving on {}: {error}", socket.display()))
}
