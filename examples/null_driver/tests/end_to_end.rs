//! The NullDriver port end to end: the sample's behaviour through the
//! generated client, against the dext's own C++ (built by build.rs, hosted by
//! dextlink-sim) and against the Rust model, each in process and in a
//! `nulldriver-sim` server process; the same call script against both,
//! reply for reply; the service's lifecycle; and the client CLI's buttons.
#![cfg(target_os = "linux")] // the C++ dext runs in dextlink-sim's Linux DriverKit runtime

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use dextlink::sim::registry::{REGISTRY_ENV, Registry};
use dextlink::sim::{Driver, OpenOptions, ServerProcess, Simulator, SocketTransport, UserClient};
use dextlink::{Call, CallError, Error, IoReturn, StructOutput, Transport};
use null_driver::dext::NullDriverDext;
use null_driver::{DataStruct, NullDriver, OVERSIZED_LEN};

type Client = NullDriver<Arc<dyn Transport>>;

/// The Rust model's delay; the C++ dext waits the sample's 5 s.
const DELAY: Duration = Duration::from_millis(20);
/// 5 s, up to 2 s of the timer's leeway, and a margin for a loaded machine.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dext {
    Cpp,
    Rust,
}

const BOTH: [Dext; 2] = [Dext::Cpp, Dext::Rust];

fn in_process(dext: Dext) -> Client {
    let transport = match dext {
        Dext::Cpp => {
            let (_dext, service) = null_driver::cpp::start().unwrap_or_else(|e| panic!("{e}"));
            Arc::new(Simulator::new(null_driver::null_driver::SERVICE, service).open().unwrap())
                as Arc<dyn Transport>
        }
        Dext::Rust => {
            let simulator =
                Simulator::new(null_driver::null_driver::SERVICE, NullDriverDext::new(DELAY));
            Arc::new(simulator.open().unwrap()) as Arc<dyn Transport>
        }
    };
    NullDriver::connect(transport).unwrap()
}

fn server_command(dext: Dext) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nulldriver-sim"));
    let name = if dext == Dext::Cpp { "cpp" } else { "rust" };
    command.args(["--dext", name, "--delay-ms", "20"]);
    command
}

fn server(dext: Dext) -> ServerProcess {
    ServerProcess::spawn(server_command(dext)).unwrap()
}

fn over_socket(server: &ServerProcess) -> Client {
    let transport = SocketTransport::connect(server.socket_path(), &OpenOptions::default());
    NullDriver::connect(Arc::new(transport.unwrap()) as Arc<dyn Transport>).unwrap()
}

/// Every button's behaviour, as the sample defines it.
fn sample_behaviour(client: &Client) {
    let input = DataStruct { foo: 1, bar: 2 };
    let expected = DataStruct { foo: 2, bar: 12 };

    let out = client.scalar(41, u64::MAX).unwrap();
    assert_eq!((out.a_plus_one, out.b_plus_one), (42, 0));
    assert_eq!(client.structure(&input).unwrap(), expected);

    // The oversized struct: in and out through descriptors (> 4096 bytes).
    let mut sent = vec![0u8; OVERSIZED_LEN];
    sent[..8].copy_from_slice(&7u64.to_ne_bytes());
    sent[8..16].copy_from_slice(&8u64.to_ne_bytes());
    let mut received = vec![0xffu8; OVERSIZED_LEN];
    let reply = client
        .transport()
        .call(Call {
            selector: 1,
            scalar_input: &[],
            struct_input: &sent,
            scalar_output: &mut [],
            struct_output: StructOutput::Buffer(&mut received),
            completion: None,
        })
        .unwrap();
    assert_eq!(reply.struct_output_size, OVERSIZED_LEN);
    assert_eq!(received[..8], 8u64.to_ne_bytes());
    assert_eq!(received[8..16], 18u64.to_ne_bytes());
    assert!(received[16..].iter().all(|&b| b == 0));

    let out = client.checked_scalar(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15).unwrap();
    assert_eq!((out.r0, out.r7, out.r15), (1, 8, 16));
    assert_eq!(client.checked_struct(&input).unwrap(), expected);

    // Assign Callback: the immediate answer, then the device event.
    let (out, mut event) = client.register_async_callback(&input).unwrap();
    assert_eq!(out, expected);
    let event = event.wait_timeout(WAIT).unwrap();
    assert_eq!((event.kind, event.foo, event.bar), (2, 2, 12));

    // Async Action: the event comes through the registered callback.
    let (_, mut event) = client.register_async_callback(&input).unwrap();
    drop(client.async_request(&DataStruct { foo: 100, bar: 200 }).unwrap());
    let event = event.wait_timeout(WAIT).unwrap();
    assert_eq!((event.kind, event.foo, event.bar), (2, 101, 210));
}

#[test]
fn the_sample_behaves_in_process() {
    for dext in BOTH {
        sample_behaviour(&in_process(dext));
    }
}

#[test]
fn the_sample_behaves_in_a_server_process() {
    for dext in BOTH {
        let server = server(dext);
        sample_behaviour(&over_socket(&server));
    }
}

/// One call script, every reply as text: what the differential test compares.
fn script(client: &Client) -> Vec<String> {
    let mut replies = Vec::new();
    let input = DataStruct { foo: 3, bar: u64::MAX - 5 };
    replies.push(format!("{:?}", client.scalar(0, u64::MAX)));
    replies.push(format!("{:?}", client.structure(&input)));
    replies.push(format!("{:?}", client.checked_struct(&input)));
    replies.push(format!(
        "{:?}",
        client.checked_scalar(9, 8, 7, 6, 5, 4, 3, 2, 1, 0, u64::MAX, 11, 12, 13, 14, 15)
    ));
    let raw = |selector: u32, scalars: &[u64], input: &[u8], output: usize| {
        let mut scalar_output = [0u64; 16];
        let mut structure = vec![0xa5u8; output];
        let reply = client.transport().call(Call {
            selector,
            scalar_input: scalars,
            struct_input: input,
            scalar_output: &mut scalar_output[..scalars.len().min(16)],
            struct_output: StructOutput::Buffer(&mut structure),
            completion: None,
        });
        format!("{selector}: {reply:?} {scalar_output:?} {structure:?}")
    };
    // The unchecked methods with odd counts and sizes, the checked ones
    // outside their table entries, an unknown selector.
    replies.push(raw(0, &[1, 2, 3], &[], 0));
    replies.push(raw(0, &[], &[], 0));
    replies.push(raw(1, &[], &[1; 15], 16));
    replies.push(raw(1, &[], &[2; 16], 15));
    replies.push(raw(1, &[], &[3; OVERSIZED_LEN], OVERSIZED_LEN));
    replies.push(raw(1, &[], &[4; OVERSIZED_LEN], 16));
    replies.push(raw(2, &[1; 15], &[], 0));
    replies.push(raw(3, &[], &[0; 17], 16));
    replies.push(raw(3, &[1], &[0; 16], 16));
    replies.push(raw(4, &[], &[0; 16], 16));
    replies.push(raw(6, &[], &[], 0));
    replies.push(format!("{:?}", client.async_request(&input).map(|_| ())));
    let (out, mut event) = client.register_async_callback(&input).unwrap();
    replies.push(format!("{out:?} {:?}", event.wait_timeout(WAIT)));
    replies
}

/// The Rust model earns its place as the benchmark's baseline and as a
/// second implementation: every reply of one script must be the same.
#[test]
fn the_cpp_dext_and_the_rust_model_answer_alike() {
    let cpp = script(&in_process(Dext::Cpp));
    let rust = script(&in_process(Dext::Rust));
    assert_eq!(cpp.len(), rust.len());
    for (index, (cpp, rust)) in cpp.iter().zip(&rust).enumerate() {
        assert_eq!(cpp, rust, "reply {index} differs");
    }
    let server = server(Dext::Cpp);
    assert_eq!(script(&over_socket(&server)), rust, "the served C++ dext");
}

/// A client finds the served dext by its service name, the IOUserClass
/// `NullDriver`, only while the server runs.
#[test]
fn the_service_is_found_by_name_only_while_it_runs() {
    let registry = std::env::temp_dir().join(format!("nulldriver-registry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&registry);
    let find = || Registry::at(&registry).open("NullDriver", &OpenOptions::default());
    assert!(matches!(find(), Err(Error::NotFound { .. })), "found before the server started");
    let mut command = server_command(Dext::Cpp);
    command.env(REGISTRY_ENV, &registry);
    let server = ServerProcess::spawn(command).unwrap();
    let client = NullDriver::connect(Arc::new(find().unwrap()) as Arc<dyn Transport>).unwrap();
    assert_eq!(client.checked_struct(&DataStruct { foo: 1, bar: 1 }).unwrap().bar, 11);
    // The CLI finds it the same way.
    let named = Command::new(env!("CARGO_BIN_EXE_nulldriver-client"))
        .args(["--sim", "named", "checked-struct"])
        .env(REGISTRY_ENV, &registry)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&named.stdout);
    assert!(named.status.success(), "{stdout}{}", String::from_utf8_lossy(&named.stderr));
    assert!(stdout.contains("Checked struct: sent { foo: 1, bar: 2 }, got { foo: 2, bar: 12 }"));
    drop(client);
    drop(server);
    assert!(matches!(find(), Err(Error::NotFound { .. })), "found after the server stopped");
    let named = Command::new(env!("CARGO_BIN_EXE_nulldriver-client"))
        .args(["--sim", "named", "checked-struct"])
        .env(REGISTRY_ENV, &registry)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&named.stderr);
    assert!(!named.status.success());
    assert!(stderr.contains("NullDriver"), "the error names the service: {stderr}");
    let _ = std::fs::remove_dir_all(&registry);
}

/// The sample's user client implements no CopyClientMemoryForType: mapping
/// its memory answers the dispatch chain's kIOReturnUnsupported.
#[test]
fn the_cpp_user_client_has_no_client_memory() {
    let (_dext, service) = null_driver::cpp::start().unwrap_or_else(|e| panic!("{e}"));
    let mut client = service.new_user_client(0).unwrap();
    for memory_type in [0, 1, u64::MAX] {
        let error = client.copy_client_memory(memory_type).map(|_| ()).unwrap_err();
        assert_eq!(error, IoReturn::UNSUPPORTED, "type {memory_type}");
    }
}

/// Where the sample trusts its input, the port refuses it.
#[test]
fn malformed_calls_are_refused() {
    for dext in BOTH {
        let server = server(dext);
        for client in [in_process(dext), over_socket(&server)] {
            let call = |selector: u32, input: &[u8], out: StructOutput<'_>, async_: bool| {
                let (_pending, slot) = dextlink::Pending::<()>::new("raw", |_| Ok::<(), Error>(()));
                client.transport().call(Call {
                    selector,
                    scalar_input: &[],
                    struct_input: input,
                    scalar_output: &mut [],
                    struct_output: out,
                    completion: async_.then_some(slot),
                })
            };
            let refused = Err(CallError::Status(IoReturn::BAD_ARGUMENT));
            // A struct shorter than DataStruct, to the unchecked struct method.
            assert_eq!(call(1, &[1, 2, 3], StructOutput::Buffer(&mut [0; 16]), false), refused);
            // An output descriptor too short for the oversized answer.
            let mut short = vec![0u8; 4097];
            assert_eq!(
                call(1, &[0; OVERSIZED_LEN], StructOutput::Buffer(&mut short), false),
                refused
            );
            // The checked struct method with the wrong size: DriverKit's table check.
            assert_eq!(call(3, &[0; 15], StructOutput::Buffer(&mut [0; 16]), false), refused);
            // RegisterAsyncCallback without a completion.
            assert_eq!(call(4, &[0; 16], StructOutput::Buffer(&mut [0; 16]), false), refused);
            // AsyncRequest before any callback was registered: the sample's kIOReturnError.
            let err = client.async_request(&DataStruct { foo: 0, bar: 0 }).unwrap_err();
            assert_eq!(err.io_return(), Some(IoReturn::ERROR));
        }
    }
}

#[test]
fn the_client_presses_every_button_in_both_modes() {
    for (dext, mode) in
        [("cpp", "in-process"), ("cpp", "spawn"), ("rust", "in-process"), ("rust", "spawn")]
    {
        let output = Command::new(env!("CARGO_BIN_EXE_nulldriver-client"))
            .args(["--dext", dext, "--sim", mode, "--delay-ms", "20"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{dext} {mode}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for line in [
            "Unchecked scalar: sent [1, 2], got [2, 3]",
            "Unchecked struct: sent { foo: 1, bar: 2 }, got { foo: 2, bar: 12 }",
            "got 4104 bytes starting { foo: 2, bar: 12 }, rest zeroed: yes",
            "Checked scalar: sent 0..=15, got [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]",
            "Checked struct: sent { foo: 1, bar: 2 }, got { foo: 2, bar: 12 }",
            "  event: type 2, foo 2, bar 12",
            "  event: type 2, foo 101, bar 210",
        ] {
            assert!(stdout.contains(line), "{dext} {mode}: missing {line:?} in\n{stdout}");
        }
    }
}

#[test]
fn the_client_names_a_missing_server() {
    let output = Command::new(env!("CARGO_BIN_EXE_nulldriver-client"))
        .args(["--sim", "socket", "--socket", "/nonexistent/nulldriver.sock"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/nulldriver.sock"), "{stderr}");
}
