//! The registry of running simulators: clients find a served dext by its
//! service name (its IOUserClass), as `IOServiceNameMatching` finds it on a
//! Mac, not by a socket path.

use std::path::Path;
use std::process::Command;

use dextlink::IoReturn;
use dextlink::server::Arguments;
use dextlink::sim::registry::{REGISTRY_ENV, Registry};
use dextlink::sim::{OpenOptions, ServerProcess, Simulator, UserClient};
use dextlink::{Call, Error, StructOutput, Transport};

/// A user client whose only method (selector 0) answers its server's pid,
/// so that a test can tell which server it reached.
struct WhoAmI;

impl UserClient for WhoAmI {
    fn external_method(&mut self, selector: u64, args: &mut Arguments<'_>) -> IoReturn {
        if selector != 0 || args.scalar_output.is_empty() {
            return IoReturn::BAD_ARGUMENT;
        }
        args.scalar_output[0] = u64::from(std::process::id());
        args.scalar_output_count = 1;
        IoReturn::SUCCESS
    }
}

const SERVE_AS: &str = "DEXTLINK_TEST_REGISTRY_SERVE_AS";

/// Child-process helper, run by `serve` with `--ignored --exact`: serves
/// [`WhoAmI`] under the service name it is given.
#[test]
#[ignore = "a child-process helper: the tests below run it"]
fn serve_who_am_i_when_asked() {
    let service = std::env::var(SERVE_AS)
        .expect("run by the registry tests, which say which service to serve");
    let path = dextlink::sim::socket_path_from_env().expect("a socket path");
    let simulator = Simulator::new(&service, |_kind| Ok::<_, IoReturn>(WhoAmI));
    simulator.serve_path(&path).unwrap();
}

/// Starts a server of `service` listed in the registry at `registry`.
fn serve(service: &str, registry: &Path) -> ServerProcess {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--ignored", "--exact", "serve_who_am_i_when_asked", "--nocapture"])
        .env(SERVE_AS, service)
        .env(REGISTRY_ENV, registry);
    ServerProcess::spawn(command).unwrap()
}

/// The pid of the server a transport reached.
fn server_pid(transport: &dyn Transport) -> u32 {
    let mut scalar_output = [0u64; 1];
    let call = Call {
        selector: 0,
        scalar_input: &[],
        struct_input: &[],
        scalar_output: &mut scalar_output,
        struct_output: StructOutput::None,
        completion: None,
    };
    transport.call(call).unwrap();
    u32::try_from(scalar_output[0]).unwrap()
}

/// `ServerProcess::spawn` returns once the server accepts connections, and
/// it registers just before it accepts: so its entry is there by now.
#[test]
fn clients_open_a_served_dext_by_its_service_name() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::at(dir.path());
    let first = serve("NullDriver", dir.path());
    let second = serve("NullDriver", dir.path());
    let other = serve("FwLoader", dir.path());

    let listed = registry.services().unwrap();
    let names: Vec<&str> = listed.iter().map(|entry| entry.service.as_str()).collect();
    assert_eq!(names, ["NullDriver", "NullDriver", "FwLoader"]);
    assert_eq!(listed[0].pid, first.id());
    assert!(listed.windows(2).all(|pair| pair[0].registry_id < pair[1].registry_id));
    assert_eq!(listed[2].socket, other.socket_path());

    // The oldest server of a name is the one opened, as the first match is on a Mac.
    let transport = registry.open("NullDriver", &OpenOptions::default()).unwrap();
    assert_eq!(server_pid(&transport), first.id());
    let transport = registry.open("FwLoader", &OpenOptions::default()).unwrap();
    assert_eq!(server_pid(&transport), other.id());
    drop(second);
}

#[test]
fn a_killed_server_leaves_the_registry_and_the_next_one_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::at(dir.path());
    let mut first = serve("NullDriver", dir.path());
    let second = serve("NullDriver", dir.path());
    first.kill().unwrap();
    // SIGKILL gave it no chance to remove its entry: readers skip and remove it.
    let listed = registry.find("NullDriver").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].pid, second.id());
    let entries = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries, 1, "the dead server's entry was removed");
    let transport = registry.open("NullDriver", &OpenOptions::default()).unwrap();
    assert_eq!(server_pid(&transport), second.id());
}

#[test]
fn an_unknown_service_is_not_found_and_says_what_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::at(dir.path());
    let _server = serve("NullDriver", dir.path());
    let err = registry.open("com.example.NullDriver", &OpenOptions::default()).unwrap_err();
    let Error::NotFound { service, hint } = &err else { panic!("{err:?}") };
    assert_eq!(service, "com.example.NullDriver");
    assert!(hint.contains("\"NullDriver\""), "{err}");
    assert!(hint.contains(&dir.path().display().to_string()), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let err = Registry::at(empty.path().join("never-made"))
        .open("NullDriver", &OpenOptions::default())
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { hint, .. } if hint.contains("lists nothing")),
        "{err}"
    );
}

#[test]
fn a_registration_is_removed_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::at(dir.path().join("made-on-first-use"));
    let registration = registry.register("NullDriver", Path::new("/run/x.sock")).unwrap();
    assert_eq!(registration.entry().pid, std::process::id());
    let again = registry.register("NullDriver", Path::new("/run/y.sock")).unwrap();
    assert_eq!(again.entry().registry_id, registration.entry().registry_id + 1);
    assert_eq!(registry.find("NullDriver").unwrap().len(), 2);
    drop(registration);
    let listed = registry.find("NullDriver").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].socket, Path::new("/run/y.sock"));
    drop(again);
    assert!(registry.services().unwrap().is_empty());
}

#[test]
fn names_that_cannot_be_listed_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::at(dir.path());
    for service in ["", "Null\nDriver"] {
        let err = registry.register(service, Path::new("/run/x.sock")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{service:?}");
    }
    let err = registry.register("NullDriver", Path::new("/run/x\n.sock")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn a_registry_others_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err =
        Registry::at(dir.path()).register("NullDriver", Path::new("/run/x.sock")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains(REGISTRY_ENV), "{err}");
}
