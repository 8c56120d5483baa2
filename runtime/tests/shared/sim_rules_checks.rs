//! The bodies of the simulator's rule tests (the rule→test table of
//! `dextlink::sim`), shared by the runtime's tests against the Rust model of
//! the rules dext (`runtime/tests/sim_rules.rs`) and dextlink-sim's tests
//! against the same dext compiled from C++ (`runtime/sim/tests/cpp_rules.rs`),
//! so that both are held to the same results. Each check takes the mode it
//! runs in (for messages) and a dext to open clients of.
//!
//! The including file defines the `rules` module (`dextlink::interface!` of
//! `sim_rules.dextlink`).

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use dextlink::{Error, IoReturn, Transport};

use super::rules::{Pair, Rules};

/// A typed client of the rules dext.
pub type Client = Rules<Arc<dyn Transport>>;

/// A running rules dext, in some mode.
pub trait Dext {
    /// A new client: a user client of its own.
    fn open(&self) -> Client;
}

pub fn typed_calls_round_trip(mode: &str, dext: &dyn Dext) {
    let client = dext.open();
    assert_eq!(client.add(40, 2).unwrap(), 42, "{mode}");
    assert_eq!(client.swap(&Pair { a: 1, b: 2 }).unwrap(), Pair { a: 2, b: 1 }, "{mode}");
    // A dext error comes back as the method's error, outputs untouched.
    let err = client.add(u64::MAX, 1).unwrap_err();
    assert_eq!(err, Error::Dext { method: "add", selector: 0, code: IoReturn::OVERRUN });
}

/// §3.2-5: up to 4096 bytes arrive inline, more through a descriptor.
pub fn large_input_arrives_as_a_descriptor(mode: &str, dext: &dyn Dext) {
    let client = dext.open();
    for (len, descriptor) in [(1, false), (4096, false), (4097, true), (65536, true)] {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let expected: u64 = data.iter().map(|&b| u64::from(b)).sum();
        let out = client.sum(&data).unwrap();
        assert_eq!((out.sum, out.descriptor), (expected, descriptor), "{mode}, {len} bytes");
    }
}

/// §2.2-2, §2.2-8: a call of the wrong shape is refused before the handler
/// with kIOReturnBadArgument (an assumption: the kernel twin's code).
pub fn count_and_size_checks_refuse_wrong_shapes(mode: &str, dext: &dyn Dext) {
    let client = dext.open();
    let transport = client.transport();
    let mut out = [0u64; 1];
    let status = transport
        .call(dextlink::Call {
            selector: 0,
            scalar_input: &[1, 2, 3],
            struct_input: &[],
            scalar_output: &mut out,
            struct_output: dextlink::StructOutput::None,
            completion: None,
        })
        .unwrap_err();
    assert_eq!(status, dextlink::CallError::Status(IoReturn::BAD_ARGUMENT), "{mode}");
    assert_eq!(out, [0], "{mode}: outputs stay as they were on error");
}

/// §4: completions may arrive in any order; each reaches its own call.
pub fn completions_arrive_in_any_order(mode: &str, dext: &dyn Dext) {
    let client = dext.open();
    let pending: Vec<_> = (1..=5).map(|tag| client.later(tag * 11).unwrap()).collect();
    assert_eq!(client.release().unwrap(), 5, "{mode}");
    for (tag, pending) in (1..=5).zip(pending) {
        assert_eq!(pending.wait().unwrap(), tag * 11, "{mode}");
    }
}

/// §4.1-3: more than 16 values and the completion never arrives; the client
/// times out with an error that names the method.
pub fn seventeen_completion_values_never_arrive(mode: &str, dext: &dyn Dext) {
    let client = dext.open();
    let mut pending = client.overflow().unwrap();
    let err = pending.wait_timeout(Duration::from_millis(200)).unwrap_err();
    assert_eq!(err, Error::Timeout { method: "overflow" }, "{mode}");
    assert_eq!(err.to_string(), "timed out waiting for overflow to complete");
}

/// §4.3-5: a client that went away ends its outstanding calls with
/// `Disconnected`; completions sent to it later are no-ops, and the dext and
/// its other clients carry on.
pub fn completion_after_close_is_a_no_op(mode: &str, dext: &dyn Dext) {
    let first = dext.open();
    let second = dext.open();
    let mut orphan = first.later(1).unwrap();
    drop(first);
    assert_eq!(orphan.wait_timeout(Duration::from_secs(5)), Err(Error::Disconnected));
    let mine = second.later(2).unwrap();
    // Completes both: the first one's goes nowhere.
    assert_eq!(second.release().unwrap(), 2, "{mode}");
    assert_eq!(mine.wait().unwrap(), 2, "{mode}");
    assert_eq!(second.add(1, 1).unwrap(), 2, "{mode}");
}

/// Calls into one user client run one at a time, whatever threads make them.
pub fn calls_into_one_user_client_are_serialised(mode: &str, dext: &dyn Dext) {
    let client = Arc::new(dext.open());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let client = Arc::clone(&client);
            // Each call waits up to 30 ms for a second call to come in.
            thread::spawn(move || (0..5).map(|_| client.occupy(30, 2).unwrap()).max())
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), Some(1), "{mode}: two calls ran at once");
    }
}

/// Several clients of one dext run side by side, each on its own queue.
pub fn clients_of_one_dext_run_side_by_side(mode: &str, dext: &dyn Dext) {
    let clients: Vec<_> = (0..2).map(|_| dext.open()).collect();
    let inside = thread::scope(|scope| {
        let calls: Vec<_> =
            clients.iter().map(|c| scope.spawn(move || c.occupy(5000, 2).unwrap())).collect();
        calls.into_iter().map(|call| call.join().unwrap()).collect::<Vec<_>>()
    });
    assert_eq!(inside, vec![2, 2], "{mode}: the two clients' calls did not overlap");
}

/// One set of pages: what either side writes, the other reads; a type
/// mapped twice is the same mapping; an unknown type fails cleanly.
pub fn memory_is_shared_both_ways(mode: &str, dext: &dyn Dext) {
    let client = dext.open();
    let mut ring = client.ring().unwrap();
    ring.as_mut_slice()[65535] = 0x5a;
    assert_eq!(client.peek(65535).unwrap(), 0x5a, "{mode}: the dext sees the client's write");
    let status = client.status().unwrap();
    client.set_status(0xc3).unwrap();
    assert_eq!(status.as_slice()[0], 0xc3, "{mode}: the client sees the dext's write");
    let again = client.status().unwrap();
    assert_eq!(again.as_slice().as_ptr(), status.as_slice().as_ptr(), "{mode}");
    drop((status, again));
    let err = client.transport().map_memory(99).unwrap_err();
    assert!(
        matches!(&err, Error::Memory { memory_type: 99, detail } if detail.contains("kIOReturnBadArgument")),
        "{mode}: {err}"
    );
}
