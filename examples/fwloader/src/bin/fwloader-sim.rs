//! The fwloader dext on its simulated USB device, as a server process:
//! `fwupload --connect SOCKET` (or any client using
//! `dextlink::sim::SocketTransport`) talks to it. Its flash persists in the
//! `--flash` file, so a killed server can be restarted on the same device state.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dextlink::sim::usb::LinkModel;
use fwloader::sim::{self, SimArgs};

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
    let simulator = match sim::simulator(&options) {
        Ok(simulator) => simulator,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    // A `kill-dext` fault kills this process outright, as a crashing dext
    // dies: no unwinding, no flushing beyond what the flash file already holds.
    simulator.driver().pipe().set_kill_dext_hook(Box::new(|| {
        eprintln!("fwloader-sim: kill-dext fault: killing the dext process");
        sim::kill_this_process();
    }));
    eprintln!(
        "fwloader-sim: serving {} on {} (link {}, flash {:?})",
        simulator.service(),
        socket.display(),
        options.link.name,
        options.flash
    );
    match simulator.serve_path(&socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: serving on {}: {error}", socket.display());
            ExitCode::FAILURE
        }
    }
}
