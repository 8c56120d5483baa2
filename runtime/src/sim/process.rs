//! Starting a dext server process, for tools and tests.
//!
//! A server binary calls [`Simulator::serve_path`](super::Simulator::serve_path)
//! with [`socket_path_from_env`]; [`ServerProcess::spawn`] starts such a binary
//! on a fresh socket and waits until it listens.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The environment variable that tells a server binary where to listen.
pub const SOCKET_ENV: &str = "DEXTLINK_SIM_SOCKET";

/// The socket path a server binary was given in [`SOCKET_ENV`].
pub fn socket_path_from_env() -> Option<PathBuf> {
    std::env::var_os(SOCKET_ENV).map(PathBuf::from)
}

/// Numbers the socket directories of this process's servers.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A dext server child process; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl ServerProcess {
    /// Starts `command` with [`SOCKET_ENV`] set to a socket in a fresh
    /// directory, and waits (up to 10 s) until it accepts connections.
    pub fn spawn(mut command: Command) -> io::Result<ServerProcess> {
        let dir = std::env::temp_dir().join(format!(
            "dextlink-sim-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("dext.sock");
        // A server started for a tool or a test is found by its socket; it
        // lists itself in a registry of its own, removed with it, unless the
        // caller named one (to find it by service name).
        let named_registry =
            command.get_envs().any(|(key, _)| key == super::registry::REGISTRY_ENV);
        if !named_registry {
            command.env(super::registry::REGISTRY_ENV, dir.join("registry"));
        }
        let child = match command.env(SOCKET_ENV, &socket).spawn() {
            Ok(child) => child,
            Err(e) => {
                // No `ServerProcess` to remove the directory on drop yet.
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let mut server = ServerProcess { child, dir, socket };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if std::os::unix::net::UnixStream::connect(&server.socket).is_ok() {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                return Err(io::Error::other(format!("the dext server exited early ({status})")));
            }
            if std::time::Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the dext server did not listen within 10 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Where the server listens.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The server's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server (SIGKILL: no chance to say goodbye) and reaps it.
    pub fn kill(&mut self) -> io::Result<()> {
        match self.child.try_wait()? {
            Some(_) => Ok(()),
            None => {
                self.child.kill()?;
                self.child.wait().map(drop)
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_cannot_start_leaves_no_directory() {
        let next = NEXT.load(Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dextlink-sim-{}-{next}", std::process::id()));
        let missing = Command::new("/nonexistent/dextlink-server");
        let error = ServerProcess::spawn(missing).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
}
