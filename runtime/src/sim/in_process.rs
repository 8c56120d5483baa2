//! A transport that runs a [`Dext`] in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Dext, SharedMemory, kernel};
use crate::server::AsyncCompletion;
use crate::{Call, CallError, CompletionSlot, Error, IoReturn, RawMapping, Reply, Transport};

/// One user client of a dext running in this process. Calls are serialised
/// as on DriverKit's ExternalMethod queue (driverkit-facts §2.2-11); several
/// `InProcess` transports may share one dext through [`InProcess::connect`].
///
/// Dropping the transport is closing the connection: every completion still
/// outstanding ends with [`Error::Disconnected`], and later completions from
/// the dext are no-ops (driverkit-facts §4.3-5).
pub struct InProcess<D> {
    dext: Arc<Mutex<D>>,
    /// Completions of this client's async calls that may still arrive.
    outstanding: Mutex<Vec<CompletionSlot>>,
    /// Live mappings by address, each holding its memory alive, with a count
    /// for a type mapped more than once.
    mapped: Mutex<HashMap<usize, (Arc<SharedMemory>, usize)>>,
}

impl<D> std::fmt::Debug for InProcess<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent, so a panic
    // elsewhere does not make it unusable.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<D: Dext> InProcess<D> {
    /// A user client of a new dext.
    pub fn new(dext: D) -> InProcess<D> {
        InProcess::connect(Arc::new(Mutex::new(dext)))
    }

    /// Another user client of a dext already running.
    pub fn connect(dext: Arc<Mutex<D>>) -> InProcess<D> {
        InProcess { dext, outstanding: Mutex::new(Vec::new()), mapped: Mutex::new(HashMap::new()) }
    }

    /// The dext, for tests that look at its state.
    pub fn dext(&self) -> MutexGuard<'_, D> {
        lock(&self.dext)
    }

    /// The shared handle to the dext, to connect more clients.
    pub fn dext_handle(&self) -> Arc<Mutex<D>> {
        Arc::clone(&self.dext)
    }
}

impl<D: Dext> Transport for InProcess<D> {
    fn call(&self, mut call: Call<'_>) -> Result<Reply, CallError> {
        let completion = call.completion.take().map(|slot| {
            let mut outstanding = lock(&self.outstanding);
            outstanding.retain(|s| !s.is_finished() && !s.is_abandoned());
            outstanding.push(slot.clone());
            AsyncCompletion::new(move |status: IoReturn, values: &[u64]| {
                slot.complete(status, values)
            })
        });
        let mut dext = self.dext();
        kernel::deliver(call, completion, |selector, args| dext.external_method(selector, args))
    }

    fn map_memory(&self, memory_type: u32) -> Result<RawMapping, Error> {
        let (memory, read_only) =
            self.dext().copy_client_memory(u64::from(memory_type)).map_err(|code| {
                Error::Memory {
                    memory_type,
                    detail: format!("CopyClientMemoryForType failed: {code}"),
                }
            })?;
        let raw = RawMapping { address: memory.as_ptr(), len: memory.len(), read_only };
        lock(&self.mapped).entry(raw.address.as_ptr() as usize).or_insert((memory, 0)).1 += 1;
        Ok(raw)
    }

    fn unmap_memory(&self, _memory_type: u32, mapping: &RawMapping) -> Result<(), Error> {
        let mut mapped = lock(&self.mapped);
        let key = mapping.address.as_ptr() as usize;
        if let Some((_, count)) = mapped.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                mapped.remove(&key);
            }
        }
        Ok(())
    }
}

impl<D> Drop for InProcess<D> {
    fn drop(&mut self) {
        for slot in lock(&self.outstanding).drain(..) {
            slot.fail(Error::Disconnected);
        }
    }
}
