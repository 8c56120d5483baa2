//! A transport that runs a [`Dext`] in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Dext, SharedMemory, kernel};
use crate::server::AsyncCompletion;
use crate::{Call, CallError, Error, IoReturn, RawMapping, Reply, Transport};

/// One user client of a dext running in this process. Calls are serialised
/// as on DriverKit's ExternalMethod queue (driverkit-facts §2.2-11); several
/// `InProcess` transports may share one dext through [`InProcess::connect`].
pub struct InProcess<D> {
    dext: Arc<Mutex<D>>,
    /// Memory types this client has mapped, with their backing memory.
    mapped: Mutex<HashMap<u32, Arc<SharedMemory>>>,
}

impl<D> std::fmt::Debug for InProcess<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess").finish_non_exhaustive()
    }
}

impl<D: Dext> InProcess<D> {
    /// A user client of a new dext.
    pub fn new(dext: D) -> InProcess<D> {
        InProcess::connect(Arc::new(Mutex::new(dext)))
    }

    /// Another user client of a dext already running.
    pub fn connect(dext: Arc<Mutex<D>>) -> InProcess<D> {
        InProcess { dext, mapped: Mutex::new(HashMap::new()) }
    }

    /// The dext, for tests that look at its state.
    pub fn dext(&self) -> MutexGuard<'_, D> {
        self.dext.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared handle to the dext, to connect more clients.
    pub fn dext_handle(&self) -> Arc<Mutex<D>> {
        Arc::clone(&self.dext)
    }
}

impl<D: Dext> Transport for InProcess<D> {
    fn call(&self, mut call: Call<'_>) -> Result<Reply, CallError> {
        let completion = call.completion.take().map(|slot| {
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
        self.mapped.lock().unwrap_or_else(|e| e.into_inner()).insert(memory_type, memory);
        Ok(raw)
    }

    fn unmap_memory(&self, memory_type: u32, _mapping: &RawMapping) -> Result<(), Error> {
        self.mapped.lock().unwrap_or_else(|e| e.into_inner()).remove(&memory_type);
        Ok(())
    }
}
