//! The registry of running simulators: which dext services are served, and
//! where, so that a client finds a dext by its service name as it does on a
//! Mac (`IOServiceNameMatching`, then `IOServiceOpen`), not by a socket path.
//!
//! A server lists each service it serves as one small file in the registry
//! directory: [`REGISTRY_ENV`] if it is set, else `$XDG_RUNTIME_DIR/dextlink-sim`,
//! else `dextlink-sim-UID` in the temporary directory (made `0700`, and used
//! only if this user owns it). The file is named by the entry's registry ID,
//! unique in the directory like an I/O Registry entry ID, and says
//!
//! ```text
//! service NullDriver
//! socket /run/user/1000/dextlink-sim/NullDriver-4242.sock
//! pid 4242
//! ```
//!
//! Entries appear whole (written aside, then linked into place) and go when
//! their [`Registration`] is dropped. A server killed outright leaves its
//! file behind; readers skip and remove entries whose process is gone.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{OpenOptions, SocketTransport};
use crate::Error;

/// The environment variable naming the registry directory.
pub const REGISTRY_ENV: &str = "DEXTLINK_SIM_REGISTRY";

/// The ending of an entry's file name.
const ENTRY_SUFFIX: &str = ".service";

/// One service a running simulator serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedService {
    /// Unique among the entries of the registry directory; the oldest entry
    /// has the lowest.
    pub registry_id: u64,
    /// The service name clients match: the dext's `IOUserClass`.
    pub service: String,
    /// Where the server listens.
    pub socket: PathBuf,
    /// The server's process.
    pub pid: u32,
}

/// An entry in the registry; removed when dropped.
#[derive(Debug)]
pub struct Registration {
    entry: ServedService,
    path: PathBuf,
}

impl Registration {
    /// What the entry says.
    pub fn entry(&self) -> &ServedService {
        &self.entry
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A registry directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// The registry this process uses (see the module docs). The directory
    /// is made when a server first registers.
    pub fn from_env() -> Registry {
        if let Some(dir) = std::env::var_os(REGISTRY_ENV).filter(|dir| !dir.is_empty()) {
            return Registry::at(dir);
        }
        if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
            return Registry::at(PathBuf::from(runtime).join("dextlink-sim"));
        }
        let uid = rustix::process::getuid().as_raw();
        Registry::at(std::env::temp_dir().join(format!("dextlink-sim-{uid}")))
    }

    /// The registry in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Registry {
        Registry { dir: dir.into() }
    }

    /// Its directory.
    pub fn directory(&self) -> &Path {
        &self.dir
    }

    /// Lists `service`, served by this process at `socket`.
    pub fn register(&self, service: &str, socket: &Path) -> io::Result<Registration> {
        if service.is_empty() || service.contains(['\n', '\r']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{service:?} cannot be a service name"),
            ));
        }
        let socket = std::path::absolute(socket)?;
        let text =
            socket.to_str().filter(|text| !text.contains(['\n', '\r'])).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "the socket path {} cannot be listed in the registry",
                        socket.display()
                    ),
                )
            })?;
        let dir = prepare_directory(&self.dir)?;
        let pid = std::process::id();
        let contents = format!("service {service}\nsocket {text}\npid {pid}\n");
        // Written aside first, so that a reader never sees half an entry.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let aside = dir.join(format!(".new-{pid}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        fs::write(&aside, contents)?;
        let claimed = claim_next_id(&dir, &aside);
        let _ = fs::remove_file(&aside);
        let (registry_id, path) = claimed?;
        let entry = ServedService { registry_id, service: service.to_string(), socket, pid };
        Ok(Registration { entry, path })
    }

    /// Every live service, oldest first. Entries of processes that are gone
    /// are removed on the way.
    pub fn services(&self) -> io::Result<Vec<ServedService>> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let mut live = Vec::new();
        for (registry_id, path) in entries(&self.dir)? {
            let Ok(text) = fs::read_to_string(&path) else { continue };
            let Some(entry) = parse_entry(registry_id, &text) else { continue };
            if process_is_alive(entry.pid) {
                live.push(entry);
            } else {
                let _ = fs::remove_file(&path);
            }
        }
        live.sort_by_key(|entry| entry.registry_id);
        Ok(live)
    }

    /// The live entries for `service`, oldest first.
    pub fn find(&self, service: &str) -> io::Result<Vec<ServedService>> {
        Ok(self.services()?.into_iter().filter(|entry| entry.service == service).collect())
    }

    /// Opens a user client of the dext served as `service` (see
    /// [`sim::open`](super::open)).
    pub fn open(&self, service: &str, options: &OpenOptions) -> Result<SocketTransport, Error> {
        let not_found = |hint: String| Error::NotFound { service: service.to_string(), hint };
        let services = self.services().map_err(|error| {
            not_found(format!(
                " (the simulator registry {} cannot be read: {error})",
                self.dir.display()
            ))
        })?;
        let Some(entry) = services.iter().find(|entry| entry.service == service) else {
            let listed: Vec<String> = services.iter().map(|s| format!("{:?}", s.service)).collect();
            let listed = if listed.is_empty() { "nothing".to_string() } else { listed.join(", ") };
            return Err(not_found(format!(
                " (no running simulator serves it: the registry {} lists {listed}; \
                 {REGISTRY_ENV} names another registry)",
                self.dir.display()
            )));
        };
        SocketTransport::connect(&entry.socket, options)
    }
}

/// Links `aside` into place under the next free registry ID: `link` fails
/// when the name exists, so two servers starting together never share one.
fn claim_next_id(dir: &Path, aside: &Path) -> io::Result<(u64, PathBuf)> {
    let mut id = entries(dir)?.iter().map(|(id, _)| id + 1).max().unwrap_or(1);
    loop {
        let path = dir.join(format!("{id}{ENTRY_SUFFIX}"));
        match fs::hard_link(aside, &path) {
            Ok(()) => return Ok((id, path)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => id += 1,
            Err(error) => return Err(error),
        }
    }
}

fn entries(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for item in fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        let Some(id) = name.to_str().and_then(|name| name.strip_suffix(ENTRY_SUFFIX)) else {
            continue;
        };
        if let Ok(id) = id.parse::<u64>() {
            found.push((id, item.path()));
        }
    }
    Ok(found)
}

fn parse_entry(registry_id: u64, text: &str) -> Option<ServedService> {
    let (mut service, mut socket, mut pid) = (None, None, None);
    for line in text.lines() {
        let (key, value) = line.split_once(' ')?;
        match key {
            "service" => service = Some(value.to_string()),
            "socket" => socket = Some(PathBuf::from(value)),
            "pid" => pid = value.parse().ok(),
            _ => {}
        }
    }
    Some(ServedService { registry_id, service: service?, socket: socket?, pid: pid? })
}

fn process_is_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
        return false;
    };
    // Signal 0 asks whether the process exists; EPERM means it does, as
    // someone else's.
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(errno) => errno == rustix::io::Errno::PERM,
    }
}

/// Makes the registry directory if it is missing (`0700`), and refuses one
/// that another user owns or others may write: its entries steer clients.
fn prepare_directory(dir: &Path) -> io::Result<PathBuf> {
    match fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(error) => {
            return Err(io::Error::new(
                error.kind(),
                format!("cannot make the simulator registry {}: {error}", dir.display()),
            ));
        }
    }
    let metadata = fs::metadata(dir)?;
    let uid = rustix::process::getuid().as_raw();
    if metadata.uid() != uid || metadata.permissions().mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the simulator registry {} belongs to another user or is writable by others; \
                 set {REGISTRY_ENV} to a directory of your own",
                dir.display()
            ),
        ));
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_reject_what_is_incomplete() {
        let entry = parse_entry(7, "service NullDriver\nsocket /run/x.sock\npid 42\n").unwrap();
        assert_eq!(
            entry,
            ServedService {
                registry_id: 7,
                service: "NullDriver".to_string(),
                socket: PathBuf::from("/run/x.sock"),
                pid: 42,
            }
        );
        assert_eq!(parse_entry(7, "service NullDriver\npid 42\n"), None);
        assert_eq!(parse_entry(7, "service NullDriver\nsocket /x\npid many\n"), None);
        assert_eq!(parse_entry(7, ""), None);
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(process_is_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_is_alive(pid));
        assert!(!process_is_alive(0));
        assert!(!process_is_alive(u32::MAX));
    }
}
