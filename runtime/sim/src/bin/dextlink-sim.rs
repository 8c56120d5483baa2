//! `dextlink-sim`: serves a compiled dext to clients on Linux, and tells a
//! dext's build how to compile and link against the simulator's DriverKit.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXIT_HELP: &str = "\
Exit status:
  0  ok (serve: stopped by SIGTERM or SIGINT, after stopping the dext's services)
  1  the dext failed to start (its Start returned an error, shown)
  2  usage error
  3  bad input file: a library that is not a dext, a plist without personalities,
     an IOUserClass the library does not define, a provider the simulator lacks
  4  I/O error (cannot bind or register a socket)";

/// Runs a compiled DriverKit dext on Linux: its own C++, behind the
/// simulator's kernel rules, for clients that find it by service name.
///
/// Build a dext as a shared library with `$(dextlink-sim --print-cflags)`
/// and `$(dextlink-sim --print-libs)`; its DriverKit symbols stay undefined
/// in the library and bind to the runtime inside this server when it loads.
#[derive(Debug, Parser)]
#[command(name = "dextlink-sim", version, after_help = EXIT_HELP, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Print the flags to compile a dext's C++ with (as llvm-config does):
    /// the include directory of the DriverKit headers, -std=c++17, -fPIC.
    /// They work with g++ and clang++ alike.
    #[arg(long)]
    print_cflags: bool,
    /// Print the flags to link a dext with: a shared library (-shared -fPIC)
    /// whose DriverKit symbols resolve against this server at load time.
    #[arg(long)]
    print_libs: bool,
    #[command(subcommand)]
    command: Option<Verb>,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Load a compiled dext, start its personalities' services and serve
    /// each one that called RegisterService on a Unix socket of its own,
    /// listed in the registry of running simulators under its IOUserClass
    /// name (DEXTLINK_SIM_REGISTRY names the registry directory).
    Serve {
        /// The dext: a shared library built with --print-cflags/--print-libs.
        #[arg(long, value_name = "LIB.so")]
        dext: std::path::PathBuf,
        /// Its Info.plist (XML or binary), with IOKitPersonalities.
        #[arg(long, value_name = "Info.plist")]
        plist: std::path::PathBuf,
        /// Where to listen (only for a dext that registers one service;
        /// default: DEXTLINK_SIM_SOCKET, else the registry directory, a
        /// socket named after the service and this process id).
        #[arg(long, value_name = "PATH")]
        socket: Option<std::path::PathBuf>,
        /// Exit when the process that started this server exits.
        #[arg(long)]
        exit_with_parent: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_cflags || cli.print_libs {
        let mut flags = Vec::new();
        if cli.print_cflags {
            flags.extend(cflags());
        }
        if cli.print_libs {
            flags.extend(["-shared".to_string(), "-fPIC".to_string()]);
        }
        let mut seen = std::collections::HashSet::new();
        flags.retain(|flag| seen.insert(flag.clone()));
        println!("{}", flags.join(" "));
        return ExitCode::SUCCESS;
    }
    match cli.command {
        Some(Verb::Serve { dext, plist, socket, exit_with_parent }) => {
            serve::run(&dext, &plist, socket, exit_with_parent)
        }
        None => {
            eprintln!(
                "dextlink-sim: give --print-cflags, --print-libs or a command (serve); see --help"
            );
            ExitCode::from(2)
        }
    }
}

fn cflags() -> Vec<String> {
    let include = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("driverkit/include");
    vec![format!("-I{}", include.display()), "-std=c++17".to_string(), "-fPIC".to_string()]
}

#[cfg(not(target_os = "linux"))]
mod serve {
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    pub fn run(_: &Path, _: &Path, _: Option<PathBuf>, _: bool) -> ExitCode {
        eprintln!("dextlink-sim: the DriverKit runtime for Linux runs on Linux only");
        ExitCode::from(2)
    }
}

#[cfg(target_os = "linux")]
mod serve {
    use std::os::unix::net::UnixListener;
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::sync::{Arc, Mutex};

    use dextlink::sim::registry::{Registration, Registry};
    use dextlink::sim::{Simulator, socket_path_from_env};
    use dextlink_sim::CppDext;

    /// Blocks SIGTERM and SIGINT in this thread, and so in every thread
    /// started from now on (the dext's queue threads too): only the thread
    /// [`on_termination`] starts takes them.
    fn block_termination() -> std::io::Result<libc::sigset_t> {
        // SAFETY: a sigset_t is plain data that sigemptyset initialises;
        // pthread_sigmask only reads it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            let code = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if code != 0 {
                return Err(std::io::Error::from_raw_os_error(code));
            }
            Ok(set)
        }
    }

    /// Runs `then` on a thread that waits for a signal of `set`.
    fn on_termination(
        set: libc::sigset_t,
        then: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        std::thread::Builder::new().name("termination".into()).spawn(move || {
            let mut signal = 0;
            // SAFETY: `set` is an initialised signal set; sigwait writes
            // the signal number into `signal`.
            while unsafe { libc::sigwait(&set, &mut signal) } != 0 {}
            then();
        })?;
        Ok(())
    }

    pub fn run(
        dext: &Path,
        plist: &Path,
        socket: Option<PathBuf>,
        exit_with_parent: bool,
    ) -> ExitCode {
        if exit_with_parent {
            // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and
            // touches no memory of ours.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
        }
        // SIGTERM and SIGINT end the server as exit ends a dext: its
        // services stop, and the leak report (and, under a sanitizer, its
        // exit-time leak check) runs.
        let termination = match block_termination() {
            Ok(set) => set,
            Err(error) => {
                eprintln!("dextlink-sim: cannot block SIGTERM: {error}");
                return ExitCode::from(4);
            }
        };
        let loaded = match CppDext::load(dext, plist) {
            Ok(loaded) => loaded,
            Err(error) => {
                eprintln!("dextlink-sim: {error}");
                return ExitCode::from(if error.is_start_failure() { 1 } else { 3 });
            }
        };
        let services = loaded.registered();
        if services.is_empty() {
            eprintln!(
                "dextlink-sim: {}: no service called RegisterService, so there is nothing \
                 clients can find (docs/driverkit.md §9-3)",
                dext.display()
            );
            return ExitCode::from(1);
        }
        let socket = socket.or_else(socket_path_from_env);
        if socket.is_some() && services.len() > 1 {
            eprintln!(
                "dextlink-sim: --socket names one socket, but {} registers {} services ({}); \
                 leave it out to serve each on its own",
                dext.display(),
                services.len(),
                services.join(", ")
            );
            return ExitCode::from(2);
        }
        // What exit removes: the registry entries and the sockets.
        let listed: Arc<Mutex<Vec<(Registration, PathBuf)>>> = Arc::default();
        let exit_dext = loaded.clone();
        let exit_listed = Arc::clone(&listed);
        if let Err(error) = on_termination(termination, move || {
            exit_dext.shut_down();
            for (registration, socket) in
                exit_listed.lock().unwrap_or_else(|e| e.into_inner()).drain(..)
            {
                drop(registration);
                let _ = std::fs::remove_file(socket);
            }
            std::process::exit(0)
        }) {
            eprintln!("dextlink-sim: cannot wait for SIGTERM: {error}");
            return ExitCode::from(4);
        }
        let registry = Registry::from_env();
        let mut servers = Vec::new();
        for name in services {
            let path = match &socket {
                Some(path) => path.clone(),
                None => {
                    if let Err(error) = std::fs::create_dir_all(registry.directory()) {
                        eprintln!(
                            "dextlink-sim: cannot create the registry directory {}: {error}",
                            registry.directory().display()
                        );
                        return ExitCode::from(4);
                    }
                    registry.directory().join(format!("{name}-{}.sock", std::process::id()))
                }
            };
            let service = match loaded.service(&name) {
                Ok(service) => service,
                Err(error) => {
                    eprintln!("dextlink-sim: {error}");
                    return ExitCode::from(1);
                }
            };
            // What Simulator::serve_path does, keeping the entry for exit.
            let _ = std::fs::remove_file(&path);
            let listener = match UnixListener::bind(&path) {
                Ok(listener) => listener,
                Err(error) => {
                    eprintln!("dextlink-sim: cannot listen on {}: {error}", path.display());
                    return ExitCode::from(4);
                }
            };
            match registry.register(&name, &path) {
                Ok(registration) => listed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((registration, path.clone())),
                Err(error) => {
                    eprintln!(
                        "dextlink-sim: cannot list {name} in the registry {}: {error}",
                        registry.directory().display()
                    );
                    return ExitCode::from(4);
                }
            }
            let simulator = Simulator::new(&name, service);
            println!("serving {name} on {}", path.display());
            let thread = std::thread::Builder::new()
                .name(format!("serve {name}"))
                .spawn(move || (simulator.serve(listener), path));
            match thread {
                Ok(thread) => servers.push(thread),
                Err(error) => {
                    eprintln!("dextlink-sim: cannot start serving {name}: {error}");
                    return ExitCode::from(4);
                }
            }
        }
        // A server only returns when it cannot accept any more.
        for server in servers {
            match server.join() {
                Ok((Err(error), path)) => {
                    eprintln!("dextlink-sim: serving on {}: {error}", path.display());
                    return ExitCode::from(4);
                }
                Ok((Ok(()), _)) => {}
                Err(_) => return ExitCode::from(4),
            }
        }
        ExitCode::SUCCESS
    }
}
