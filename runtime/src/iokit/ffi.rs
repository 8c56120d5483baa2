//! Every call into IOKit and Mach that the backend makes, behind small safe
//! types: the only file of the backend that calls foreign functions. (The
//! one `unsafe fn` here, `Connection::unmap_memory`, is unsafe because its
//! caller must guarantee that nothing touches the range afterwards.)
//!
//! Declarations come from `io-kit-sys` and `mach2`; this file adds the few
//! constants they lack or spell differently, with their sources.

use std::ffi::{CStr, c_void};
use std::ptr::{self, NonNull};
use std::time::Duration;

use io_kit_sys::keys::kIOFirstMatchNotification;
use io_kit_sys::types::{
    IOOptionBits, io_connect_t, io_iterator_t, io_object_t, kIOConnectMethodVarOutputSize,
    kIOMapAnywhere,
};
use io_kit_sys::{
    IOConnectCallAsyncMethod, IOConnectCallMethod, IOConnectMapMemory64, IOConnectUnmapMemory64,
    IOIteratorNext, IONotificationPort, IONotificationPortCreate, IONotificationPortDestroy,
    IONotificationPortGetMachPort, IOObjectRelease, IOServiceAddMatchingNotification,
    IOServiceClose, IOServiceGetMatchingService, IOServiceNameMatching, IOServiceOpen,
};
use mach2::kern_return::{KERN_INVALID_ADDRESS, KERN_SUCCESS, kern_return_t};
use mach2::mach_port::mach_port_deallocate;
use mach2::message::{
    MACH_MSG_SUCCESS, MACH_MSG_TYPE_MAKE_SEND, MACH_MSGH_BITS, MACH_RCV_INTERRUPTED, MACH_RCV_MSG,
    MACH_RCV_TIMED_OUT, MACH_RCV_TIMEOUT, MACH_RCV_TOO_LARGE, MACH_SEND_MSG, MACH_SEND_TIMED_OUT,
    MACH_SEND_TIMEOUT, mach_msg, mach_msg_destroy, mach_msg_header_t,
};
use mach2::port::{MACH_PORT_NULL, mach_port_t};
use mach2::vm::{mach_vm_deallocate, mach_vm_region};
use mach2::vm_prot::VM_PROT_WRITE;
use mach2::vm_region::{VM_REGION_BASIC_INFO_64, vm_region_basic_info_64};

use crate::{IoReturn, StructOutput};

/// `kIOMainPortDefault` (`kIOMasterPortDefault` before macOS 12): both are
/// `MACH_PORT_NULL`, which IOKitLib replaces with its default main port.
const MAIN_PORT_DEFAULT: mach_port_t = MACH_PORT_NULL;

/// `kIOConnectMethodVarOutputSize` as the `size_t` IOKitLib compares it with
/// (docs/driverkit.md §1 limit 5, §3.1-2).
const VAR_OUTPUT_SIZE: usize = kIOConnectMethodVarOutputSize as isize as usize;

fn task_self() -> mach_port_t {
    // SAFETY: reads `mach_task_self_`, which libSystem sets before any Rust
    // code runs and never changes.
    unsafe { mach2::traps::mach_task_self() }
}

// ----- objects ---------------------------------------------------------------

/// One reference to an IOKit object (a service or an iterator), released on drop.
///
/// `Send` and `Sync` (it is a port name): IOKit objects are not tied to a
/// thread, the name is only read, and the reference is released once.
#[derive(Debug)]
pub(super) struct IoObject(io_object_t);

impl IoObject {
    fn from_raw(raw: io_object_t) -> Option<IoObject> {
        (raw != 0).then_some(IoObject(raw))
    }
}

impl Drop for IoObject {
    fn drop(&mut self) {
        // SAFETY: `self.0` is a reference this value owns; it is released once.
        unsafe { IOObjectRelease(self.0) };
    }
}

/// `IOServiceGetMatchingService(kIOMainPortDefault, IOServiceNameMatching(name))`.
pub(super) fn service_named(name: &CStr) -> Result<Option<IoObject>, IoReturn> {
    // SAFETY: `name` is NUL-terminated; the result is checked for NULL.
    let matching = unsafe { IOServiceNameMatching(name.as_ptr()) };
    if matching.is_null() {
        return Err(IoReturn::NO_MEMORY);
    }
    // SAFETY: `matching` is a valid matching dictionary; this call consumes
    // the one reference we hold, so it is not used again.
    let service = unsafe { IOServiceGetMatchingService(MAIN_PORT_DEFAULT, matching) };
    Ok(IoObject::from_raw(service))
}

/// Never called: the notification port's messages are received by
/// [`ServiceNotification::wait`], not dispatched through IOKitLib, but
/// `IOServiceAddMatchingNotification` wants a callback.
unsafe extern "C" fn never_called(_refcon: *mut c_void, _iterator: io_iterator_t) {}

/// A first-match notification for services of one name, on its own port.
#[derive(Debug)]
pub(super) struct ServiceNotification {
    // Released before the port is destroyed (field order).
    iterator: IoObject,
    port: NotificationPort,
}

impl ServiceNotification {
    /// `IOServiceAddMatchingNotification(port, kIOFirstMatchNotification,
    /// IOServiceNameMatching(name), …)`.
    pub(super) fn new(name: &CStr) -> Result<ServiceNotification, IoReturn> {
        let port = NotificationPort::new().ok_or(IoReturn::NO_MEMORY)?;
        // SAFETY: as in `service_named`.
        let matching = unsafe { IOServiceNameMatching(name.as_ptr()) };
        if matching.is_null() {
            return Err(IoReturn::NO_MEMORY);
        }
        let mut iterator: io_iterator_t = 0;
        // SAFETY: `port` is live; the call consumes our reference to
        // `matching`; the notification type is a static C string; the callback
        // has the declared signature (and is never called, see above);
        // `iterator` is a valid out-pointer.
        let kr = unsafe {
            IOServiceAddMatchingNotification(
                port.0.as_ptr(),
                kIOFirstMatchNotification,
                matching,
                never_called,
                ptr::null_mut(),
                &mut iterator,
            )
        };
        if kr != KERN_SUCCESS {
            return Err(IoReturn(kr));
        }
        let iterator = IoObject::from_raw(iterator).ok_or(IoReturn::ERROR)?;
        Ok(ServiceNotification { iterator, port })
    }

    /// The next service matched so far. Draining the iterator is also what
    /// arms the notification for the next match.
    pub(super) fn next(&self) -> Option<IoObject> {
        // SAFETY: `self.iterator` is a live iterator reference.
        IoObject::from_raw(unsafe { IOIteratorNext(self.iterator.0) })
    }

    /// Waits up to `timeout` for a notification message; whether one came.
    pub(super) fn wait(&self, timeout: Duration) -> bool {
        let mut buffer = MessageBuffer::new();
        matches!(receive(self.port.mach_port(), timeout, &mut buffer, |_| ()), Received::Message)
    }
}

// ----- connection ------------------------------------------------------------

/// An open user-client connection, closed (`IOServiceClose`) on drop.
///
/// `Send` and `Sync` (it is a port name): IOKitLib's calls on a connection
/// are MIG requests that use the calling thread's reply port, so several
/// threads may call at once; DriverKit serialises them in the dext
/// (docs/driverkit.md §2.2-11). It is closed once, on drop.
#[derive(Debug)]
pub(super) struct Connection(io_connect_t);

/// What `IOConnectCall*Method` reported back.
#[derive(Debug, Clone, Copy)]
pub(super) struct Counts {
    pub scalar_output: u32,
    pub struct_output: usize,
}

/// `kIOAsyncCalloutCount`: the reference slots an async call passes.
pub(super) const ASYNC_REFERENCE_COUNT: usize = 3;

impl Connection {
    /// `IOServiceOpen(service, mach_task_self(), user_client_type, &connect)`.
    pub(super) fn open(service: &IoObject, user_client_type: u32) -> Result<Connection, IoReturn> {
        let mut connect: io_connect_t = 0;
        // SAFETY: `service` is live; `connect` is a valid out-pointer.
        let kr = unsafe { IOServiceOpen(service.0, task_self(), user_client_type, &mut connect) };
        if kr != KERN_SUCCESS {
            return Err(IoReturn(kr));
        }
        if connect == 0 {
            return Err(IoReturn::ERROR);
        }
        Ok(Connection(connect))
    }

    pub(super) fn raw(&self) -> io_connect_t {
        self.0
    }

    /// `IOConnectCallMethod`, or `IOConnectCallAsyncMethod` when `wake` gives
    /// a wake port and the reference slots, with exactly these counts and
    /// sizes (docs/driverkit.md §3.1).
    ///
    /// `StructOutput::Variable` uses `kIOConnectMethodVarOutputSize`: IOKitLib
    /// returns a buffer that MIG mapped into this task, which is copied into
    /// the `Vec` and deallocated. IOKitLib has no such path for async calls
    /// (`IOConnectCallAsyncMethod` would take −3 as an out-of-line size), so
    /// that combination is refused with `kIOReturnUnsupported`.
    pub(super) fn call_method(
        &self,
        selector: u32,
        scalar_input: &[u64],
        struct_input: &[u8],
        scalar_output: &mut [u64],
        struct_output: &mut StructOutput<'_>,
        wake: Option<(mach_port_t, &mut [u64; ASYNC_REFERENCE_COUNT])>,
    ) -> Result<Counts, IoReturn> {
        if wake.is_some() && matches!(struct_output, StructOutput::Variable(_)) {
            return Err(IoReturn::UNSUPPORTED);
        }
        let input_count = u32::try_from(scalar_input.len()).map_err(|_| IoReturn::BAD_ARGUMENT)?;
        let mut output_count =
            u32::try_from(scalar_output.len()).map_err(|_| IoReturn::BAD_ARGUMENT)?;
        let input = if scalar_input.is_empty() { ptr::null() } else { scalar_input.as_ptr() };
        let output =
            if scalar_output.is_empty() { ptr::null_mut() } else { scalar_output.as_mut_ptr() };
        let struct_in: *const c_void =
            if struct_input.is_empty() { ptr::null() } else { struct_input.as_ptr().cast() };

        let mut var_output: *mut c_void = ptr::null_mut();
        let (struct_out, mut struct_out_size): (*mut c_void, usize) = match struct_output {
            StructOutput::None => (ptr::null_mut(), 0),
            StructOutput::Buffer(buffer) => (buffer.as_mut_ptr().cast(), buffer.len()),
            StructOutput::Variable(_) => ((&raw mut var_output).cast(), VAR_OUTPUT_SIZE),
        };
        // No output struct: a NULL count pointer, which IOKitLib reads as a
        // capacity of 0 (§3.1-2).
        let struct_out_size_ptr: *mut usize = match struct_output {
            StructOutput::None => ptr::null_mut(),
            _ => &raw mut struct_out_size,
        };

        let kr = match wake {
            // SAFETY: every pointer is NULL with a count of 0 or points to
            // that many valid elements: IOKitLib reads `input_count` scalars
            // and `struct_input.len()` bytes, writes at most `output_count`
            // scalars and at most `struct_out_size` bytes into a `Buffer`
            // (inline or out of line, §3.1), and for `Variable` writes one
            // pointer into `var_output` (§3.1-2). The borrows outlive the call.
            None => unsafe {
                IOConnectCallMethod(
                    self.0,
                    selector,
                    input,
                    input_count,
                    struct_in,
                    struct_input.len(),
                    output,
                    &mut output_count,
                    struct_out,
                    struct_out_size_ptr,
                )
            },
            // SAFETY: as above (never `Variable`, refused before); IOKitLib
            // reads `reference.len()` slots and does not keep the pointer.
            Some((port, reference)) => unsafe {
                IOConnectCallAsyncMethod(
                    self.0,
                    selector,
                    port,
                    reference.as_mut_ptr(),
                    reference.len() as u32,
                    input,
                    input_count,
                    struct_in,
                    struct_input.len(),
                    output,
                    &mut output_count,
                    struct_out,
                    struct_out_size_ptr,
                )
            },
        };

        if let StructOutput::Variable(out) = struct_output {
            out.clear();
            if !var_output.is_null() {
                if kr == KERN_SUCCESS {
                    // SAFETY: IOKitLib stored in `var_output` the address of
                    // `struct_out_size` bytes of out-of-line memory that MIG
                    // mapped into this task for the reply (§3.1-2); nothing
                    // else refers to it.
                    let data = unsafe {
                        std::slice::from_raw_parts(var_output.cast::<u8>(), struct_out_size)
                    };
                    out.extend_from_slice(data);
                }
                // SAFETY: that memory is ours to give back, once, and is not
                // used after this.
                unsafe {
                    mach_vm_deallocate(task_self(), var_output as u64, struct_out_size as u64)
                };
            }
        }
        if kr != KERN_SUCCESS {
            return Err(IoReturn(kr));
        }
        Ok(Counts { scalar_output: output_count, struct_output: struct_out_size })
    }

    /// `IOConnectMapMemory64(connect, memory_type, mach_task_self(), &address,
    /// &size, kIOMapAnywhere)`: the address and size of the new mapping.
    pub(super) fn map_memory(&self, memory_type: u32) -> Result<(u64, u64), IoReturn> {
        let (mut address, mut size) = (0u64, 0u64);
        // SAFETY: the out-pointers are valid; `kIOMapAnywhere` lets the
        // kernel choose a free range, so no mapping of this task is replaced.
        let kr = unsafe {
            IOConnectMapMemory64(
                self.0,
                memory_type,
                task_self(),
                &mut address,
                &mut size,
                kIOMapAnywhere as IOOptionBits,
            )
        };
        if kr != KERN_SUCCESS {
            return Err(IoReturn(kr));
        }
        Ok((address, size))
    }

    /// `IOConnectUnmapMemory64`.
    ///
    /// # Safety
    ///
    /// Nothing may access `address` (as mapped by `map_memory` for
    /// `memory_type`) after this call.
    pub(super) unsafe fn unmap_memory(
        &self,
        memory_type: u32,
        address: u64,
    ) -> Result<(), IoReturn> {
        // SAFETY: the caller guarantees the range is no longer accessed.
        let kr = unsafe { IOConnectUnmapMemory64(self.0, memory_type, task_self(), address) };
        if kr != KERN_SUCCESS {
            return Err(IoReturn(kr));
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: `self.0` is an open connection this value owns; it is
        // closed once. Closing also releases the connection's port reference.
        unsafe { IOServiceClose(self.0) };
    }
}

/// Whether all of `address..address + len` in this task is mapped writable,
/// from the protection `mach_vm_region` reports for each region in it.
pub(super) fn is_writable(address: u64, len: u64) -> Result<bool, kern_return_t> {
    let end = address.checked_add(len).ok_or(KERN_INVALID_ADDRESS)?;
    let mut cursor = address;
    let mut writable = true;
    while cursor < end {
        let (mut start, mut size) = (cursor, 0u64);
        let mut info = vm_region_basic_info_64::default();
        let mut count = vm_region_basic_info_64::count();
        let mut object_name: mach_port_t = MACH_PORT_NULL;
        // SAFETY: `info` is a `vm_region_basic_info_64` and `count` is its
        // size in `int`s, as `VM_REGION_BASIC_INFO_64` requires; the other
        // out-pointers are valid.
        let kr = unsafe {
            mach_vm_region(
                task_self(),
                &mut start,
                &mut size,
                VM_REGION_BASIC_INFO_64,
                (&raw mut info).cast(),
                &mut count,
                &mut object_name,
            )
        };
        if kr != KERN_SUCCESS {
            return Err(kr);
        }
        if object_name != MACH_PORT_NULL {
            // SAFETY: a send right the call gave us (in practice always NULL).
            unsafe { mach_port_deallocate(task_self(), object_name) };
        }
        // The region found starts after `cursor`: a hole in the range.
        if start > cursor || size == 0 {
            return Err(KERN_INVALID_ADDRESS);
        }
        let protection = info.protection;
        writable &= protection & VM_PROT_WRITE != 0;
        cursor = start.saturating_add(size);
    }
    Ok(writable)
}

// ----- notification port -----------------------------------------------------

/// An `IONotificationPort`: a receive right for IOKit notifications and async
/// completions. Destroyed on drop, which destroys the receive right and every
/// message still queued on it.
///
/// `Send` and `Sync`: IOKitLib's port object is plain heap memory with no
/// thread affinity (no run-loop source or dispatch queue is ever attached);
/// shared use only reads its mach port name, and it is destroyed once.
#[derive(Debug)]
pub(super) struct NotificationPort(NonNull<IONotificationPort>);

// SAFETY: see the type's documentation.
unsafe impl Send for NotificationPort {}
// SAFETY: see the type's documentation.
unsafe impl Sync for NotificationPort {}

impl NotificationPort {
    /// `IONotificationPortCreate(kIOMainPortDefault)`.
    pub(super) fn new() -> Option<NotificationPort> {
        // SAFETY: no preconditions; the result is checked for NULL.
        NonNull::new(unsafe { IONotificationPortCreate(MAIN_PORT_DEFAULT) }).map(NotificationPort)
    }

    /// `IONotificationPortGetMachPort`: the receive right's name.
    pub(super) fn mach_port(&self) -> mach_port_t {
        // SAFETY: the port is live; the call reads one field.
        unsafe { IONotificationPortGetMachPort(self.0.as_ptr()) }
    }
}

impl Drop for NotificationPort {
    fn drop(&mut self) {
        // SAFETY: the port is live and destroyed once; no run-loop source or
        // dispatch queue refers to it.
        unsafe { IONotificationPortDestroy(self.0.as_ptr()) };
    }
}

/// Room for one received message: the largest async completion is 232 bytes
/// (docs/driverkit.md §4.2-5), plus a trailer. Larger messages are dropped.
#[repr(C, align(8))]
pub(super) struct MessageBuffer([u8; 1024]);

impl MessageBuffer {
    pub(super) fn new() -> MessageBuffer {
        MessageBuffer([0; 1024])
    }
}

/// What one receive did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Received {
    /// A message arrived and was handed to the handler.
    Message,
    /// Nothing usable arrived in time (timed out, interrupted, or a message
    /// too large for the buffer, which the kernel dropped).
    Nothing,
    /// The port cannot be received from.
    Failed(kern_return_t),
}

/// Receives one message on `port` (a receive right this task holds), waiting
/// at most `timeout`, passes its bytes (`msgh_size` of them) to `handle`, then
/// destroys it, releasing any port rights it carried (a matching
/// notification carries a send right for its iterator).
pub(super) fn receive(
    port: mach_port_t,
    timeout: Duration,
    buffer: &mut MessageBuffer,
    handle: impl FnOnce(&[u8]),
) -> Received {
    let timeout_ms = timeout.as_nanos().div_ceil(1_000_000).min(u128::from(u32::MAX)) as u32;
    let capacity = buffer.0.len();
    let header = buffer.0.as_mut_ptr().cast::<mach_msg_header_t>();
    // SAFETY: `header` points to `capacity` writable bytes, aligned for
    // `mach_msg_header_t`; the kernel writes at most `capacity` bytes.
    let kr = unsafe {
        mach_msg(
            header,
            MACH_RCV_MSG | MACH_RCV_TIMEOUT,
            0,
            capacity as u32,
            port,
            timeout_ms,
            MACH_PORT_NULL,
        )
    };
    match kr {
        MACH_MSG_SUCCESS => {
            let size = u32::from_ne_bytes([buffer.0[4], buffer.0[5], buffer.0[6], buffer.0[7]]);
            handle(&buffer.0[..(size as usize).min(capacity)]);
            // SAFETY: the buffer holds the message just received, whose
            // rights and out-of-line memory nothing else refers to.
            unsafe { mach_msg_destroy(buffer.0.as_mut_ptr().cast()) };
            Received::Message
        }
        MACH_RCV_TIMED_OUT | MACH_RCV_INTERRUPTED | MACH_RCV_TOO_LARGE => Received::Nothing,
        kr => Received::Failed(kr),
    }
}

/// Queues a bare header with `id` on `port` (a receive right this task
/// holds), without blocking: wakes a thread blocked in [`receive`]. Whether
/// it was queued; it fails when the port's queue is full, and then the
/// receiver has messages to wake up for anyway.
pub(super) fn send_wake(port: mach_port_t, id: i32) -> bool {
    let size = size_of::<mach_msg_header_t>() as u32;
    let mut header = mach_msg_header_t {
        msgh_bits: MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0),
        msgh_size: size,
        msgh_remote_port: port,
        msgh_local_port: MACH_PORT_NULL,
        msgh_voucher_port: MACH_PORT_NULL,
        msgh_id: id,
    };
    // SAFETY: a complete message with no body; the destination send right is
    // made from our receive right and consumed by the delivery; a timeout of
    // 0 fails instead of blocking.
    let kr = unsafe {
        mach_msg(
            &mut header,
            MACH_SEND_MSG | MACH_SEND_TIMEOUT,
            size,
            0,
            MACH_PORT_NULL,
            0,
            MACH_PORT_NULL,
        )
    };
    if kr == MACH_SEND_TIMED_OUT {
        // The message was not sent and its destination right came back to
        // us (pseudo-receive): release that send right again.
        // SAFETY: releases one send reference to `port`, the one just returned.
        unsafe { mach_port_deallocate(task_self(), port) };
    }
    kr == MACH_MSG_SUCCESS
}
