//! A transport to a user client running in this process, on a thread of its own.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::host::{self, CallRequest, CallResponse};
use super::memory::ClientMaps;
use super::{ClientMemory, UserClient};
use crate::server::AsyncCompletion;
use crate::{Call, CallError, CompletionSlot, Error, IoReturn, MappedRegion, Reply, Transport};

/// One user client of a dext running in this process.
///
/// The user client runs on a thread of its own, its `ExternalMethod` queue:
/// calls are copied in, run there one at a time (docs/driverkit.md §2.2-11)
/// and copied back, as the kernel does between an app and a dext. Clients
/// opened through one [`Simulator`](super::Simulator) share its driver and
/// run side by side.
///
/// Dropping the transport is closing the connection: the user client is
/// stopped, every completion still outstanding ends with
/// [`Error::Disconnected`], and later completions from the dext are no-ops
/// (docs/driverkit.md §4.3-5).
pub struct InProcess<U> {
    user_client: Arc<Mutex<U>>,
    /// The queue of the user client's thread; `None` once closed.
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Completions of this client's async calls that may still arrive.
    outstanding: Mutex<Vec<CompletionSlot>>,
    /// This client's mappings of the dext's memory.
    maps: ClientMaps,
}

/// A call for the user client's thread, and where its answer goes.
struct Job {
    request: CallRequest,
    completion: Option<AsyncCompletion>,
    reply: mpsc::SyncSender<CallResponse>,
}

impl<U> std::fmt::Debug for InProcess<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent, so a panic
    // elsewhere (a dext model that panicked) does not make it unusable.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<U: UserClient> InProcess<U> {
    /// Runs `user_client` as the only client of its dext.
    pub fn new(user_client: U) -> InProcess<U> {
        let user_client = Arc::new(Mutex::new(user_client));
        let (queue, jobs) = mpsc::channel::<Job>();
        let on_thread = Arc::clone(&user_client);
        let thread = std::thread::Builder::new()
            .name("dext user client".to_string())
            .spawn(move || {
                for job in jobs {
                    let mut guard = lock(&on_thread);
                    let response = host::execute(&mut *guard, job.request, job.completion);
                    drop(guard);
                    // The caller may be gone (it panicked); nothing to do then.
                    let _ = job.reply.send(response);
                }
                lock(&on_thread).stop();
            })
            .ok();
        InProcess {
            user_client,
            queue: thread.is_some().then_some(queue),
            thread,
            outstanding: Mutex::new(Vec::new()),
            maps: ClientMaps::default(),
        }
    }

    /// The user client, for tests that look at its state. Holding the guard
    /// keeps the user client from running calls.
    pub fn dext(&self) -> MutexGuard<'_, U> {
        lock(&self.user_client)
    }
}

// SAFETY: every region comes from `ClientMaps`: a `ClientMap` is this
// process's own `mmap` of the dext's memfd, `PROT_READ` and also
// `PROT_WRITE` unless read-only, of the descriptor's whole length; it stays
// mapped until the last region of it is dropped (each region's guard borrows
// `self.maps`). The table is keyed by the descriptor, so a descriptor mapped
// again is the same range, and distinct mappings are distinct `mmap`s, which
// never overlap. Nothing here makes a reference into a mapping.
unsafe impl<U: UserClient> Transport for InProcess<U> {
    fn call(&self, mut call: Call<'_>) -> Result<Reply, CallError> {
        let queue = self.queue.as_ref().ok_or(CallError::Transport(Error::Disconnected))?;
        let completion = call.completion.take().map(|slot| {
            let mut outstanding = lock(&self.outstanding);
            outstanding.retain(|s| !s.is_finished() && !s.is_abandoned());
            outstanding.push(slot.clone());
            AsyncCompletion::new(move |status: IoReturn, values: &[u64]| {
                slot.complete(status, values)
            })
        });
        let (reply, response) = mpsc::sync_channel(1);
        let job = Job { request: CallRequest::from_call(&call), completion, reply };
        // A closed queue or a dropped reply means the user client's thread
        // is gone (its model panicked): the dext died under the client.
        queue.send(job).map_err(|_| CallError::Transport(Error::Disconnected))?;
        let response = response.recv().map_err(|_| CallError::Transport(Error::Disconnected))?;
        response.apply(call)
    }

    fn map_memory(&self, memory_type: u32) -> Result<MappedRegion<'_>, Error> {
        // `CopyClientMemoryForType` runs under the same lock as the calls:
        // it too is serialised with the user client's other work.
        let ClientMemory { memory, read_only } = self
            .dext()
            .copy_client_memory(u64::from(memory_type))
            .map_err(|code| Error::Memory {
                memory_type,
                detail: format!("CopyClientMemoryForType failed: {code}"),
            })?;
        self.maps.region(memory.identity(), || {
            memory.map_for_client(read_only).map_err(|error| Error::Memory {
                memory_type,
                detail: format!("mapping failed: {error}"),
            })
        })
    }
}

impl<U> Drop for InProcess<U> {
    fn drop(&mut self) {
        // Closing the queue ends the thread, which stops the user client.
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for slot in lock(&self.outstanding).drain(..) {
            slot.fail(Error::Disconnected);
        }
    }
}
