//! The sample's retained callback (docs/driverkit.md §9-7): the completion
//! given to RegisterAsyncCallback is kept by the dext and fired on every
//! timer event, however many. Driven through the runtime's host API, since
//! the generated client's completions are one-shot by design. A binary of
//! its own: it loads the dext's library directly, and one process has one
//! class registry.
#![cfg(target_os = "linux")]

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dextlink::IoReturn;
use dextlink_sim::driverkit::{BufferedCall, CompletionFn, Dictionary, Library, Service};

/// A DataStruct as bytes.
fn data(first: u64, second: u64) -> Vec<u8> {
    [first.to_ne_bytes(), second.to_ne_bytes()].concat()
}

#[test]
fn the_registered_callback_fires_on_every_timer_event() {
    let _library = Library::load(null_driver::cpp::library()).unwrap_or_else(|e| panic!("{e}"));
    let personality = Dictionary::personality("NullDriver", Some("NullDriverUserClient")).unwrap();
    let service = Service::start(&personality).unwrap();
    assert!(service.is_registered(), "NullDriver::Start calls RegisterService");
    let client = service.new_user_client(0).unwrap();

    let (sender, events) = mpsc::channel();
    let sender = Mutex::new(sender);
    let on_completion: Arc<CompletionFn> = Arc::new(move |status: IoReturn, values: &[u64]| {
        let _ = sender.lock().unwrap().send((status, values.to_vec()));
    });
    let call = |selector: u64, input: &[u8], completion: Option<Arc<CompletionFn>>| {
        let mut scalars = [0u64; 16];
        let mut output = [0u8; 16];
        let (status, _) = client.call_with_buffers(
            BufferedCall {
                selector,
                scalar_input: &[],
                structure_input: input,
                scalar_output: &mut scalars,
                scalar_output_count: 0,
                structure_output: &mut output,
                structure_output_capacity: if selector == 4 { 16 } else { 0 },
            },
            completion,
        );
        status
    };
    // 5 s until each event, up to 2 s of leeway, and a margin.
    let wait = Duration::from_secs(20);
    assert_eq!(call(4, &data(1, 2), Some(Arc::clone(&on_completion))), IoReturn::SUCCESS);
    assert_eq!(events.recv_timeout(wait).unwrap(), (IoReturn::SUCCESS, vec![2, 2, 12]));
    // Each AsyncRequest re-arms the timer; its own completion goes unused,
    // every event comes through the one registered callback.
    for round in 1..=2u64 {
        assert_eq!(call(5, &data(10 * round, 20 * round), None), IoReturn::SUCCESS);
        let event = events.recv_timeout(wait).unwrap();
        assert_eq!(event, (IoReturn::SUCCESS, vec![2, 10 * round + 1, 20 * round + 10]));
    }
    assert!(events.recv_timeout(Duration::from_millis(100)).is_err(), "one event per arming");
    client.stop().unwrap();
    service.stop().unwrap();
}
