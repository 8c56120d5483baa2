//! The NullDriver dext modelled in Rust, with the sample's behaviour, for
//! the simulator: the same logic as `dext/NullDriverUserClient.cpp`.
//!
//! - Scalar (unchecked): each output is its input + 1, for min(inputs,
//!   outputs) values, each count clamped to 16.
//! - Struct (unchecked): `foo + 1`, `bar + 10`; input inline or through a
//!   descriptor (the "Large Struct" button), output inline or through a
//!   descriptor, which is then filled up to the oversized struct's length.
//! - Checked scalar / struct: the same, behind the dispatch table's checks.
//! - RegisterAsyncCallback keeps the completion and arms the timer;
//!   AsyncRequest re-arms it. When the timer fires (5–7 s later in the
//!   sample; configurable here), the kept callback receives three values:
//!   the event type 2, then `foo + 1` and `bar + 10` of the last input.
//!
//! Where the sample trusts its input (an inline struct shorter than
//! `DataStruct`, an output descriptor shorter than the oversized struct),
//! this model refuses with `kIOReturnBadArgument` instead of reading or
//! writing out of bounds.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use dextlink::IoReturn;
use dextlink::server::{Arguments, StructureInput};
use dextlink::sim::{Driver, UserClient};
use zerocopy::{FromBytes, IntoBytes};

use crate::OVERSIZED_LEN;
use crate::null_driver::{self, DataStruct, RegisterAsyncCallbackCompletion};

/// How long the sample's timer waits before the simulated device event:
/// `WakeAtTime(now + 5 s)` with 2 s of leeway.
pub const SAMPLE_DELAY: Duration = Duration::from_secs(5);

/// The dext's service: makes a user client per connection.
#[derive(Debug, Clone)]
pub struct NullDriverDext {
    delay: Duration,
}

impl NullDriverDext {
    /// A dext whose simulated device answers `delay` after being armed.
    pub fn new(delay: Duration) -> NullDriverDext {
        NullDriverDext { delay }
    }
}

impl Default for NullDriverDext {
    fn default() -> NullDriverDext {
        NullDriverDext::new(SAMPLE_DELAY)
    }
}

impl Driver for NullDriverDext {
    type UserClient = NullDriverUserClient;

    fn new_user_client(&self, _kind: u32) -> Result<NullDriverUserClient, IoReturn> {
        Ok(NullDriverUserClient::new(self.delay))
    }
}

/// The timer (`IOTimerDispatchSource`) and what it fires with.
#[derive(Debug, Default)]
struct Timer {
    /// When the armed timer fires; arming again replaces it, as `WakeAtTime` does.
    deadline: Option<Instant>,
    /// The input the event answers (the sample keeps it in the action's reference).
    data: Option<DataStruct>,
    /// The client's registered callback (`ivars->callbackAction`).
    callback: Option<null_driver::RegisterAsyncCallbackCompleter>,
    stopped: bool,
}

#[derive(Debug, Default)]
struct TimerShared {
    timer: Mutex<Timer>,
    changed: Condvar,
}

impl TimerShared {
    fn lock(&self) -> MutexGuard<'_, Timer> {
        self.timer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One user client of the NullDriver dext.
#[derive(Debug)]
pub struct NullDriverUserClient {
    delay: Duration,
    timer: Arc<TimerShared>,
}

impl NullDriverUserClient {
    fn new(delay: Duration) -> NullDriverUserClient {
        let timer = Arc::new(TimerShared::default());
        let on_queue = Arc::clone(&timer);
        // The dext's dispatch queue, on which the timer's handler runs.
        thread::Builder::new()
            .name("NullDriver timer".to_string())
            .spawn(move || run_timer(&on_queue))
            .expect("spawning the NullDriver timer thread");
        NullDriverUserClient { delay, timer }
    }

    /// `WakeAtTime(now + delay)`, answering `data`.
    fn arm(&self, data: DataStruct) {
        let mut timer = self.timer.lock();
        timer.deadline = Some(Instant::now() + self.delay);
        timer.data = Some(data);
        drop(timer);
        self.timer.changed.notify_all();
    }
}

/// The timer's queue: waits for the deadline, then sends the event
/// (`SimulatedAsyncEvent`) through the registered callback.
fn run_timer(shared: &TimerShared) {
    let mut timer = shared.lock();
    loop {
        if timer.stopped {
            return;
        }
        match timer.deadline {
            None => timer = shared.changed.wait(timer).unwrap_or_else(|e| e.into_inner()),
            Some(deadline) if Instant::now() < deadline => {
                let wait = deadline - Instant::now();
                timer =
                    shared.changed.wait_timeout(timer, wait).unwrap_or_else(|e| e.into_inner()).0;
            }
            Some(_) => {
                timer.deadline = None;
                if let (Some(data), Some(callback)) = (timer.data, &timer.callback) {
                    // "3 is the 1 leading type message plus the two elements of the DataStruct."
                    callback.complete(RegisterAsyncCallbackCompletion {
                        kind: 2,
                        foo: data.foo.wrapping_add(1),
                        bar: data.bar.wrapping_add(10),
                    });
                }
            }
        }
    }
}

fn answer(input: &DataStruct) -> DataStruct {
    DataStruct { foo: input.foo.wrapping_add(1), bar: input.bar.wrapping_add(10) }
}

impl UserClient for NullDriverUserClient {
    fn external_method(&mut self, selector: u64, arguments: &mut Arguments<'_>) -> IoReturn {
        null_driver::dispatch(self, selector, arguments)
    }

    fn stop(&mut self) {
        let mut timer = self.timer.lock();
        timer.stopped = true;
        // Releasing the callback: later events have nowhere to go (§4.3-5).
        timer.callback = None;
        drop(timer);
        self.timer.changed.notify_all();
    }
}

impl Drop for NullDriverUserClient {
    fn drop(&mut self) {
        self.stop();
    }
}

impl null_driver::Handler for NullDriverUserClient {
    fn scalar(&mut self, arguments: &mut Arguments<'_>) -> IoReturn {
        // Dispatched by hand: every count is the client's word, so clamp.
        let inputs = arguments.scalar_input.len().min(16);
        let outputs = (arguments.scalar_output_count as usize).min(16);
        let count = inputs.min(outputs).min(arguments.scalar_output.len());
        for index in 0..count {
            arguments.scalar_output[index] = arguments.scalar_input[index].wrapping_add(1);
        }
        IoReturn::SUCCESS
    }

    fn structure(&mut self, arguments: &mut Arguments<'_>) -> IoReturn {
        // Inline (an OSData) or, for the oversized struct, a descriptor the
        // sample maps; either way only the leading DataStruct is read.
        let bytes = match arguments.structure_input {
            StructureInput::None => return IoReturn::BAD_ARGUMENT,
            StructureInput::Inline(bytes) | StructureInput::Descriptor(bytes) => bytes,
        };
        let Some(input) = bytes.get(..16).and_then(|b| DataStruct::read_from_bytes(b).ok()) else {
            return IoReturn::BAD_ARGUMENT;
        };
        let output = answer(&input);
        if let Some(descriptor) = arguments.structure_output_descriptor.as_deref_mut() {
            // The DataStruct, then zeros up to the oversized struct's length.
            let Some(target) = descriptor.get_mut(..OVERSIZED_LEN) else {
                return IoReturn::BAD_ARGUMENT;
            };
            target.fill(0);
            target[..16].copy_from_slice(output.as_bytes());
            return IoReturn::SUCCESS;
        }
        match dextlink::server::return_structure(arguments, output.as_bytes()) {
            Ok(()) => IoReturn::SUCCESS,
            Err(code) => code,
        }
    }

    fn checked_scalar(
        &mut self,
        s0: u64,
        s1: u64,
        s2: u64,
        s3: u64,
        s4: u64,
        s5: u64,
        s6: u64,
        s7: u64,
        s8: u64,
        s9: u64,
        s10: u64,
        s11: u64,
        s12: u64,
        s13: u64,
        s14: u64,
        s15: u64,
    ) -> Result<null_driver::CheckedScalarOutput, IoReturn> {
        let [r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15] =
            [s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15]
                .map(|s| s.wrapping_add(1));
        Ok(null_driver::CheckedScalarOutput {
            r0,
            r1,
            r2,
            r3,
            r4,
            r5,
            r6,
            r7,
            r8,
            r9,
            r10,
            r11,
            r12,
            r13,
            r14,
            r15,
        })
    }

    fn checked_struct(&mut self, input: &DataStruct) -> Result<DataStruct, IoReturn> {
        Ok(answer(input))
    }

    fn register_async_callback(
        &mut self,
        input: &DataStruct,
        completion: null_driver::RegisterAsyncCallbackCompleter,
    ) -> Result<DataStruct, IoReturn> {
        // Keep the callback (releasing the one before), then arm the timer.
        self.timer.lock().callback = Some(completion);
        self.arm(*input);
        Ok(answer(input))
    }

    fn async_request(
        &mut self,
        input: &DataStruct,
        _completion: Option<null_driver::AsyncRequestCompleter>,
    ) -> Result<(), IoReturn> {
        // The answer goes to the registered callback; this call's own
        // completion is not used, as in the sample.
        if self.timer.lock().callback.is_none() {
            return Err(IoReturn::ERROR);
        }
        self.arm(*input);
        Ok(())
    }
}
