//! The NullDriver port end to end: the sample's behaviour through the
//! generated client, against the simulated dext in process and in a
//! `nulldriver-sim` server process, and the client CLI's buttons.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use dextlink::sim::{OpenOptions, ServerProcess, Simulator, SocketTransport};
use dextlink::{Call, CallError, Error, IoReturn, StructOutput, Transport};
use null_driver::dext::NullDriverDext;
use null_driver::{DataStruct, NullDriver, OVERSIZED_LEN};

type Client = NullDriver<Arc<dyn Transport>>;

const DELAY: Duration = Duration::from_millis(20);
const WAIT: Duration = Duration::from_secs(10);

fn in_process() -> Client {
    let simulator = Simulator::new(null_driver::null_driver::SERVICE, NullDriverDext::new(DELAY));
    NullDriver::connect(Arc::new(simulator.open().unwrap()) as Arc<dyn Transport>).unwrap()
}

fn server() -> ServerProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nulldriver-sim"));
    command.args(["--delay-ms", "20"]);
    ServerProcess::spawn(command).unwrap()
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
    sample_behaviour(&in_process());
}

#[test]
fn the_sample_behaves_in_a_server_process() {
    let server = server();
    sample_behaviour(&over_socket(&server));
}

/// Where the sample trusts its input, the port refuses it.
#[test]
fn malformed_calls_are_refused() {
    let server = server();
    for client in [in_process(), over_socket(&server)] {
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
        assert_eq!(call(1, &[0; OVERSIZED_LEN], StructOutput::Buffer(&mut short), false), refused);
        // The checked struct method with the wrong size: DriverKit's table check.
        assert_eq!(call(3, &[0; 15], StructOutput::Buffer(&mut [0; 16]), false), refused);
        // RegisterAsyncCallback without a completion.
        assert_eq!(call(4, &[0; 16], StructOutput::Buffer(&mut [0; 16]), false), refused);
        // AsyncRequest before any callback was registered: the sample's kIOReturnError.
        let err = client.async_request(&DataStruct { foo: 0, bar: 0 }).unwrap_err();
        assert_eq!(err.io_return(), Some(IoReturn::ERROR));
    }
}

#[test]
fn the_client_presses_every_button_in_both_modes() {
    for mode in ["in-process", "spawn"] {
        let output = Command::new(env!("CARGO_BIN_EXE_nulldriver-client"))
            .args(["--sim", mode, "--delay-ms", "20"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{mode}: {stdout}{}",
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
            assert!(stdout.contains(line), "{mode}: missing {line:?} in\n{stdout}");
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
