//! The generated NullDriver client over the IOKit backend, against Apple's
//! NullDriver sample dext ("Communicating between a DriverKit extension and a
//! client app"). Apple targets only, and ignored unless asked for: it needs
//! that dext activated on this Mac (`systemextensionsctl list`), and this
//! test binary entitled to open it (signed with
//! `com.apple.developer.driverkit.userclient-access` listing the dext's
//! bundle id), or a dext with `com.apple.developer.driverkit.allow-any-userclient-access`:
//!
//! ```sh
//! cargo test -p dextlink --test iokit_null_driver -- --ignored --test-threads 1
//! ```
//!
//! On Linux, `.ci/check-apple` type-checks it: the generated client compiles
//! over `IoKit` exactly as over the simulator.
#![cfg(target_vendor = "apple")]

use std::time::Duration;

use dextlink::iokit::{IoKit, OpenOptions};

dextlink::interface!("../examples/null_driver/null_driver.dextlink");

use null_driver::{DataStruct, NullDriver};

fn open() -> NullDriver<IoKit> {
    let options = OpenOptions { user_client_type: 0, wait: Some(Duration::from_secs(5)) };
    let transport = IoKit::open(null_driver::SERVICE, options).unwrap_or_else(|e| panic!("{e}"));
    // Apple's sample predates dextlink's fingerprint handshake.
    NullDriver::without_handshake(transport)
}

#[test]
#[ignore = "needs Apple's NullDriver sample dext activated on this Mac"]
fn sync_calls_reach_the_sample() {
    let client = open();
    let out = client.scalar(1, 41).unwrap();
    assert_eq!((out.a_plus_one, out.b_plus_one), (2, 42));
    let out = client.structure(&DataStruct { foo: 1, bar: 2 }).unwrap();
    assert_eq!((out.foo, out.bar), (2, 12));
    let out = client.checked_struct(&DataStruct { foo: 5, bar: 5 }).unwrap();
    assert_eq!((out.foo, out.bar), (6, 15));
}

#[test]
#[ignore = "needs Apple's NullDriver sample dext activated on this Mac"]
fn the_async_callback_completes() {
    let client = open();
    let (out, mut pending) =
        client.register_async_callback(&DataStruct { foo: 1, bar: 2 }).unwrap();
    assert_eq!((out.foo, out.bar), (2, 12));
    // The sample completes after 5 to 7 seconds, with the values
    // {2, foo + 1, bar + 10}.
    pending.wait_timeout(Duration::from_secs(15)).unwrap();
}

#[test]
#[ignore = "needs Apple's NullDriver sample dext activated on this Mac"]
fn closing_fails_outstanding_completions_with_disconnected() {
    let client = open();
    let (_, pending) = client.register_async_callback(&DataStruct { foo: 1, bar: 2 }).unwrap();
    drop(client);
    assert_eq!(pending.wait().unwrap_err(), dextlink::Error::Disconnected);
}
