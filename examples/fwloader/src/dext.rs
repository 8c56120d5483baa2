//! The fwloader dext modelled in Rust for the simulator: the same logic as
//! `dext/FwLoaderUserClient.cpp`, over the simulator's USB pipe
//! ([`BulkOutPipe`], its `IOUSBHostPipe`) and bootloader ([`Bootloader`]).
//!
//! - The staging ring is allocated once, when the dext starts, as one
//!   buffer of `SLOT_COUNT × SLOT_SIZE` bytes; each slot's descriptor
//!   ([`IoBuffer`], a range of it) is made then too and reused for every
//!   transfer. `CopyClientMemoryForType(0)` hands the client the ring,
//!   read-write (docs/driverkit.md §5).
//! - `submit` refuses a slot already in flight (`kIOReturnBusy`), keeps the
//!   client's completion, and queues `AsyncIO` of the slot's first `len`
//!   bytes with a transfer timeout. The generated dispatch has already
//!   range-checked `slot` and `len` (§2).
//! - The transfer's completion (`CompleteAsyncIO`): a stall is cleared with
//!   `ClearStall`, which aborts the other pending transfers (§6-4; they
//!   complete with `kIOReturnAborted` on their own); then the client's
//!   completion carries the status, the bytes transferred and the
//!   bootloader's acknowledged offset.
//! - `write` (the naive path) frames its data with a slot header in a bounce
//!   buffer of its own and sends it with a synchronous `IO`, then answers
//!   with the acknowledged offset.
//! - `begin`, `finish`, `status`, `abort` are the bootloader's control
//!   requests (vendor requests on the default pipe in the C++ dext);
//!   `abort` aborts the pipe first (§6-3: `kIOReturnAborted`).
//! - After the device disconnects, the user clients made before are
//!   terminated: every call fails with `kIOReturnNotAttached`, and opening
//!   waits for the device to come back (`kIOReturnNoDevice` meanwhile).
//! - `Stop` (the client closed or died) aborts what it had in flight and
//!   leaves the upload resumable.

use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use dextlink::IoReturn;
use dextlink::server::Arguments;
use dextlink::sim::usb::{BulkOutPipe, IoBuffer};
use dextlink::sim::{ClientMemory, Driver, SharedMemory, UserClient};
use dextlink::staging::slot_crc32;

use crate::device::Bootloader;
use crate::fw_loader::{
    self, BeginOutput, ImageInfo, SLOT_COUNT, SLOT_HEADER_SIZE, SLOT_SIZE, SlotHeader, Status,
    SubmitCompleter, SubmitCompletion, UploadState,
};

/// The largest block `write` takes (the schema's `data: &[u8; ..=4096]`).
const WRITE_MAX: usize = 4096;

/// How long a transfer may take before the pipe reports a timeout.
pub const TRANSFER_TIMEOUT_MS: u32 = 2000;

/// Which user client has a slot in flight.
type InFlight = [Option<u64>; SLOT_COUNT as usize];

#[derive(Debug)]
struct Shared {
    pipe: BulkOutPipe,
    bootloader: Bootloader,
    ring: Arc<SharedMemory>,
    slots: Vec<IoBuffer>,
    in_flight: Mutex<InFlight>,
    /// `write`'s bounce buffer (a slot header and one block), one `write` at a time.
    bounce: Mutex<IoBuffer>,
    next_client: Mutex<u64>,
    transfer_timeout_ms: u32,
}

impl Shared {
    fn in_flight(&self) -> MutexGuard<'_, InFlight> {
        // Each update is one assignment; a poisoned lock is still consistent.
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The dext's service: one ring and one pipe, a user client per connection.
#[derive(Debug, Clone)]
pub struct FwLoaderDext {
    shared: Arc<Shared>,
}

impl FwLoaderDext {
    /// `Start`: the ring and its slot descriptors, over `pipe` to `bootloader`.
    pub fn new(pipe: BulkOutPipe, bootloader: Bootloader) -> std::io::Result<FwLoaderDext> {
        let ring = Arc::new(SharedMemory::new((SLOT_COUNT * SLOT_SIZE) as usize)?);
        let slots = (0..SLOT_COUNT as usize)
            .map(|slot| {
                IoBuffer::new(Arc::clone(&ring), slot * SLOT_SIZE as usize, SLOT_SIZE as usize)
                    .expect("each slot lies inside the ring")
            })
            .collect();
        let bounce = SharedMemory::new(SLOT_HEADER_SIZE as usize + WRITE_MAX)?;
        Ok(FwLoaderDext {
            shared: Arc::new(Shared {
                pipe,
                bootloader,
                ring,
                slots,
                in_flight: Mutex::new([None; SLOT_COUNT as usize]),
                bounce: Mutex::new(IoBuffer::whole(Arc::new(bounce))),
                next_client: Mutex::new(0),
                transfer_timeout_ms: TRANSFER_TIMEOUT_MS,
            }),
        })
    }

    /// The same dext with another transfer timeout (tests use short ones).
    pub fn with_transfer_timeout(self, timeout_ms: u32) -> FwLoaderDext {
        let shared = Arc::into_inner(self.shared).expect("set before any user client exists");
        FwLoaderDext { shared: Arc::new(Shared { transfer_timeout_ms: timeout_ms, ..shared }) }
    }

    pub fn pipe(&self) -> &BulkOutPipe {
        &self.shared.pipe
    }

    pub fn bootloader(&self) -> &Bootloader {
        &self.shared.bootloader
    }
}

impl Driver for FwLoaderDext {
    type UserClient = FwLoaderUserClient;

    fn new_user_client(&self, _kind: u32) -> Result<FwLoaderUserClient, IoReturn> {
        if !self.shared.pipe.is_connected() {
            return Err(IoReturn::NO_DEVICE);
        }
        let id = {
            let mut next = self.shared.next_client.lock().unwrap_or_else(|e| e.into_inner());
            *next += 1;
            *next
        };
        Ok(FwLoaderUserClient {
            shared: Arc::clone(&self.shared),
            id,
            generation: self.shared.pipe.generation(),
        })
    }
}

/// One user client of the fwloader dext.
#[derive(Debug)]
pub struct FwLoaderUserClient {
    shared: Arc<Shared>,
    id: u64,
    /// The device generation this client was opened on.
    generation: u64,
}

impl FwLoaderUserClient {
    /// `kIOReturnNotAttached` once the device it was opened on is gone.
    fn attached(&self) -> Result<(), IoReturn> {
        let pipe = &self.shared.pipe;
        if pipe.is_connected() && pipe.generation() == self.generation {
            Ok(())
        } else {
            Err(IoReturn::NOT_ATTACHED)
        }
    }
}

impl UserClient for FwLoaderUserClient {
    fn external_method(&mut self, selector: u64, arguments: &mut Arguments<'_>) -> IoReturn {
        fw_loader::dispatch(self, selector, arguments)
    }

    fn copy_client_memory(&mut self, memory_type: u64) -> Result<ClientMemory, IoReturn> {
        match memory_type {
            0 => Ok(ClientMemory { memory: Arc::clone(&self.shared.ring), read_only: false }),
            _ => Err(IoReturn::BAD_ARGUMENT),
        }
    }

    fn stop(&mut self) {
        let mine = self.shared.in_flight().contains(&Some(self.id));
        if mine {
            self.shared.pipe.abort(IoReturn::ABORTED);
            self.shared.bootloader.interrupt();
        }
    }
}

impl fw_loader::Handler for FwLoaderUserClient {
    fn begin(&mut self, info: &ImageInfo) -> Result<BeginOutput, IoReturn> {
        self.attached()?;
        let (session, resume_offset) = self.shared.bootloader.begin(info)?;
        Ok(BeginOutput { session, resume_offset })
    }

    fn submit(&mut self, slot: u32, len: u32, completion: SubmitCompleter) -> Result<(), IoReturn> {
        self.attached()?;
        let index = slot as usize;
        {
            let mut in_flight = self.shared.in_flight();
            if in_flight[index].is_some() {
                return Err(IoReturn::BUSY);
            }
            in_flight[index] = Some(self.id);
        }
        let shared = Arc::clone(&self.shared);
        let on_complete = Box::new(move |status: IoReturn, transferred: u32| {
            complete_async_io(&shared, index, status, transferred, &completion);
        });
        let queued = self.shared.pipe.async_io(
            &self.shared.slots[index],
            len,
            self.shared.transfer_timeout_ms,
            on_complete,
        );
        if let Err(code) = queued {
            self.shared.in_flight()[index] = None;
            return Err(code);
        }
        Ok(())
    }

    fn finish(&mut self, image_crc32: u32) -> Result<Status, IoReturn> {
        self.attached()?;
        self.shared.bootloader.finish(image_crc32)
    }

    fn status(&mut self) -> Result<UploadState, IoReturn> {
        self.attached()?;
        Ok(self.shared.bootloader.state())
    }

    fn abort(&mut self) -> Result<(), IoReturn> {
        self.attached()?;
        self.shared.pipe.abort(IoReturn::ABORTED);
        self.shared.bootloader.interrupt();
        Ok(())
    }

    fn write(&mut self, image_offset: u64, data: &[u8]) -> Result<u64, IoReturn> {
        self.attached()?;
        if data.is_empty() {
            return Err(IoReturn::BAD_ARGUMENT);
        }
        let bounce = self.shared.bounce.lock().unwrap_or_else(|e| e.into_inner());
        let header = SlotHeader {
            sequence: 0,
            image_offset,
            length: data.len() as u32,
            crc32: slot_crc32(0, image_offset, data.len() as u32, crc32fast::hash(data)),
        };
        let memory = bounce.memory();
        let header_len = SLOT_HEADER_SIZE as usize;
        if !memory.write(0, zerocopy::IntoBytes::as_bytes(&header))
            || !memory.write(header_len, data)
        {
            return Err(IoReturn::BAD_ARGUMENT);
        }
        // `IO`: the synchronous transfer, a queued AsyncIO waited for. The
        // pipe always completes it (at the latest with the timeout).
        let len = (header_len + data.len()) as u32;
        let (done, wait) = mpsc::channel();
        let on_complete = Box::new(move |status: IoReturn, transferred: u32| {
            let _ = done.send((status, transferred));
        });
        self.shared.pipe.async_io(&bounce, len, self.shared.transfer_timeout_ms, on_complete)?;
        let (status, transferred) = wait.recv().map_err(|_| IoReturn::ABORTED)?;
        if status.is_stall() {
            self.shared.pipe.clear_stall();
        }
        if status != IoReturn::SUCCESS {
            return Err(status);
        }
        if transferred < len {
            return Err(IoReturn::UNDERRUN);
        }
        Ok(self.shared.bootloader.acknowledged())
    }
}

/// `CompleteAsyncIO` for slot `slot`.
fn complete_async_io(
    shared: &Shared,
    slot: usize,
    status: IoReturn,
    transferred: u32,
    completion: &SubmitCompleter,
) {
    if status.is_stall() {
        // The endpoint is halted until cleared; clearing aborts the other
        // pending transfers, which complete through here with kIOReturnAborted.
        shared.pipe.clear_stall();
    }
    // Free the slot before the client hears of it: it may resubmit at once.
    shared.in_flight()[slot] = None;
    if status == IoReturn::SUCCESS {
        let acknowledged = shared.bootloader.acknowledged();
        completion.complete(SubmitCompletion { transferred, acknowledged });
    } else {
        if status == IoReturn::NO_DEVICE {
            shared.bootloader.interrupt();
        }
        completion.fail(status);
    }
}
