//! Async completions for one connection: an `IONotificationPort` whose mach
//! port one dedicated thread receives from, and the routing of each
//! completion message to the [`CompletionSlot`] of its call.
//!
//! Routing: an async call passes `reference[0..3]` (`kIOAsyncCalloutCount`,
//! as Apple's sample does). The kernel overwrites `[0]` with the wake port
//! (docs/driverkit.md §4.2-1) and sends it back as 0; `[1]`, which IOKitLib's
//! own dispatcher would call as a function, holds [`ROUTE_SENTINEL`]; `[2]`
//! (`kIOAsyncCalloutRefconIndex`) holds a connection-local call id. Messages
//! are parsed here, never dispatched through IOKitLib.
//!
//! A completion is delivered once: the slot leaves the table when its first
//! message arrives (a dext that keeps an action and completes it again sends
//! messages nobody waits for; they are dropped). Timeouts are the
//! [`Pending`](crate::Pending)'s business; this side only delivers, or fails
//! with [`Error::Disconnected`] when the connection goes away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use mach2::port::mach_port_t;

use super::ffi::{self, ASYNC_REFERENCE_COUNT, MessageBuffer, NotificationPort, Received};
use super::message;
use crate::{CompletionSlot, Error, IoReturn};

/// `kIOAsyncCalloutFuncIndex`, `kIOAsyncCalloutRefconIndex`.
const CALLOUT_FUNC_INDEX: usize = 1;
const REFCON_INDEX: usize = 2;

/// Marks `reference[1]` of our calls ("dxlk" and a version); never a function.
const ROUTE_SENTINEL: u64 = 0x6478_6c6b_0000_0001;

/// The `msgh_id` of the message that wakes the thread to stop ("dxlk").
const WAKE_MESSAGE_ID: i32 = 0x6478_6c6b;

/// How long one receive waits before the thread looks at its stop flag
/// again: a bound on stopping if the wake message could not be queued.
const RECEIVE_TIMEOUT: Duration = Duration::from_millis(200);

/// The outstanding calls of one connection.
#[derive(Debug, Default)]
struct Slots {
    by_id: HashMap<u64, CompletionSlot>,
    next_id: u64,
    /// Table size at which abandoned slots are pruned next.
    prune_at: usize,
    /// No more completions will be delivered: the thread stopped.
    closed: bool,
}

#[derive(Debug, Default)]
struct Routes {
    slots: Mutex<Slots>,
    stop: AtomicBool,
}

impl Routes {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Every update of `Slots` is complete before anything that could
        // panic, so a poisoned lock still holds a consistent table.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands one received message to its slot, if it is a completion of ours.
    fn deliver(&self, bytes: &[u8]) {
        let Some(completion) = message::parse_async_completion(bytes) else { return };
        if completion.reference[CALLOUT_FUNC_INDEX] != ROUTE_SENTINEL {
            return;
        }
        let id = completion.reference[REFCON_INDEX];
        let slot = self.lock().by_id.remove(&id);
        // Outside the lock: completing may run a waker.
        if let Some(slot) = slot {
            slot.complete(IoReturn(completion.result), completion.args());
        }
    }

    /// Ends every outstanding call with `Error::Disconnected` and refuses new ones.
    fn close(&self) {
        let orphans: Vec<CompletionSlot> = {
            let mut slots = self.lock();
            slots.closed = true;
            slots.by_id.drain().map(|(_, slot)| slot).collect()
        };
        for slot in orphans {
            slot.fail(Error::Disconnected);
        }
    }

    /// The notification thread.
    fn run(&self, port: mach_port_t) {
        let mut buffer = MessageBuffer::new();
        while !self.stop.load(Ordering::Acquire) {
            if let Received::Failed(_) =
                ffi::receive(port, RECEIVE_TIMEOUT, &mut buffer, |bytes| self.deliver(bytes))
            {
                // Our own receive right is gone: nothing can arrive any more.
                break;
            }
        }
        if !self.stop.load(Ordering::Acquire) {
            self.close();
        }
    }
}

/// The notification port of one connection and the thread that serves it.
/// Dropping it stops the thread, delivers what already arrived, fails every
/// other outstanding call with `Error::Disconnected` and destroys the port.
#[derive(Debug)]
pub(super) struct Notifier {
    routes: Arc<Routes>,
    thread: Option<JoinHandle<()>>,
    // Destroyed after the thread has stopped (in `drop`, then field order).
    port: NotificationPort,
}

impl Notifier {
    pub(super) fn start(connection: u32) -> Result<Notifier, Error> {
        let port = NotificationPort::new()
            .ok_or_else(|| Error::Transport("IONotificationPortCreate failed".to_string()))?;
        let mach_port = port.mach_port();
        let routes = Arc::new(Routes::default());
        let thread = std::thread::Builder::new()
            .name(format!("dextlink-iokit-{connection:#x}"))
            .spawn({
                let routes = Arc::clone(&routes);
                move || routes.run(mach_port)
            })
            .map_err(|e| {
                Error::Transport(format!("cannot start the IOKit notification thread: {e}"))
            })?;
        Ok(Notifier { routes, thread: Some(thread), port })
    }

    /// The wake port to pass to `IOConnectCallAsyncMethod`.
    pub(super) fn wake_port(&self) -> mach_port_t {
        self.port.mach_port()
    }

    /// Registers `slot` and returns the reference slots for its call.
    pub(super) fn register(
        &self,
        slot: CompletionSlot,
    ) -> Result<(u64, [u64; ASYNC_REFERENCE_COUNT]), Error> {
        let mut slots = self.routes.lock();
        if slots.closed {
            return Err(Error::Disconnected);
        }
        // Calls whose `Pending` was dropped and that never completed would
        // otherwise stay until the connection closes.
        if slots.by_id.len() >= slots.prune_at {
            slots.by_id.retain(|_, slot| !slot.is_abandoned());
            slots.prune_at = (slots.by_id.len() * 2).max(64);
        }
        let id = slots.next_id;
        slots.next_id += 1;
        slots.by_id.insert(id, slot);
        let mut reference = [0u64; ASYNC_REFERENCE_COUNT];
        reference[CALLOUT_FUNC_INDEX] = ROUTE_SENTINEL;
        reference[REFCON_INDEX] = id;
        Ok((id, reference))
    }

    /// Forgets a call that failed synchronously: it will not complete.
    pub(super) fn forget(&self, id: u64) {
        let slot = self.routes.lock().by_id.remove(&id);
        drop(slot);
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        let port = self.port.mach_port();
        self.routes.stop.store(true, Ordering::Release);
        ffi::send_wake(port, WAKE_MESSAGE_ID);
        if let Some(thread) = self.thread.take() {
            // A panic on the thread (a waker's) has nothing left to report.
            let _ = thread.join();
        }
        // Deliver what is already queued, then fail the rest.
        let mut buffer = MessageBuffer::new();
        let deliver = |bytes: &[u8]| self.routes.deliver(bytes);
        while ffi::receive(port, Duration::ZERO, &mut buffer, deliver) == Received::Message {}
        self.routes.close();
    }
}
