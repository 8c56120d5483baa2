//! USBDriverKit on the simulated device: a [`UsbDevice`] (descriptors, the
//! control endpoint, bulk OUT pipes with their link model and faults) made
//! into the `IOUSBHostInterface` a USB dext's driver is started on
//! ([`UsbInterface::new`], [`Service::start_on`]).
//!
//! The C++ runtime calls the device through a table of callbacks
//! (`dextlink_host_usb_device_ops`, dextlink_host.h) whose context is a
//! boxed [`Adapter`], freed by the runtime's `release` when its
//! `IOUSBHostDevice` goes. A transfer's completion reaches the runtime with
//! a numeric cookie (`dextlink_host_usb_complete`), which the runtime looks
//! up in its table of pending transfers: a completion that comes late finds
//! nothing instead of freed memory.
//!
//! The faults keep the pipe's meaning ([`FaultPlan`](dextlink::sim::usb::FaultPlan)):
//! a stall completes with `kUSBHostReturnPipeStalled` and halts the pipe
//! until `ClearStall`; a timeout completes with `kIOReturnTimeout`; a short
//! transfer completes with fewer bytes; a bit flip changes what the device
//! receives; a disconnect ends every pending transfer with
//! `kIOReturnNoDevice` and terminates the device: the service holding the
//! interface's session is stopped (its `Stop` runs) and every later call
//! fails with `kIOReturnNoDevice` (a host unplugs the device itself with
//! [`UsbInterface::disconnect`]); kill-dext runs the pipe's hook
//! ([`BulkOutPipe::set_kill_dext_hook`]), which a hosting process sets to
//! end itself (without one it acts as a disconnect); kill-client is the
//! upload tool's.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::fs::File;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use dextlink::IoReturn;
use dextlink::sim::SharedMemory;
use dextlink::sim::usb::{BulkOutPipe, IoBuffer};

use super::{Dictionary, Object, Service, ffi, status};

/// A control request's setup packet (USB 2.0 §9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupPacket {
    pub request_type: u8,
    pub request: u8,
    pub value: u16,
    pub index: u16,
    pub length: u16,
}

impl SetupPacket {
    /// Bit 7 of bmRequestType: the device sends the data stage.
    pub fn is_device_to_host(&self) -> bool {
        self.request_type & 0x80 != 0
    }
}

/// bRequest of GET_DESCRIPTOR and CLEAR_FEATURE (USB 2.0 table 9-4).
pub const REQUEST_GET_DESCRIPTOR: u8 = 6;
pub const REQUEST_CLEAR_FEATURE: u8 = 1;

/// A simulated USB device, as a dext's provider sees it. The fwloader
/// bootloader is one (it already is a `BulkOutDevice` behind a pipe).
pub trait UsbDevice: Send + Sync + 'static {
    /// The 18-byte device descriptor.
    fn device_descriptor(&self) -> [u8; 18];
    /// The one configuration descriptor, whole (wTotalLength bytes:
    /// interfaces and endpoints included).
    fn configuration_descriptor(&self) -> Vec<u8>;
    /// A device-to-host control request (GET_DESCRIPTOR of the device and
    /// configuration descriptors is answered from the two methods above
    /// first). Returns how many bytes of `data` it wrote. The default
    /// STALLs, as a device does for a request it does not know.
    fn control_in(&self, setup: &SetupPacket, data: &mut [u8]) -> Result<usize, IoReturn> {
        let _ = (setup, data);
        Err(IoReturn::USB_HOST_PIPE_STALLED)
    }
    /// A host-to-device control request with its data stage. The default STALLs.
    fn control_out(&self, setup: &SetupPacket, data: &[u8]) -> Result<(), IoReturn> {
        let _ = (setup, data);
        Err(IoReturn::USB_HOST_PIPE_STALLED)
    }
    /// The pipe of a bulk OUT endpoint (`address` has bit 7 clear), if the
    /// device has one there.
    fn bulk_out_pipe(&self, address: u8) -> Option<BulkOutPipe>;
}

/// Builds the descriptors of a one-configuration, one-interface device
/// whose endpoints are bulk OUT (USB 2.0 high speed, 512-byte packets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleDescriptors {
    pub id_vendor: u16,
    pub id_product: u16,
    pub bcd_device: u16,
    pub configuration_value: u8,
    pub interface_number: u8,
    /// bInterfaceClass (0xff: vendor specific).
    pub interface_class: u8,
    pub bulk_out_endpoints: Vec<u8>,
}

impl SimpleDescriptors {
    pub fn device_descriptor(&self) -> [u8; 18] {
        let [vl, vh] = self.id_vendor.to_le_bytes();
        let [pl, ph] = self.id_product.to_le_bytes();
        let [dl, dh] = self.bcd_device.to_le_bytes();
        [18, 1, 0x00, 0x02, 0, 0, 0, 64, vl, vh, pl, ph, dl, dh, 0, 0, 0, 1]
    }

    pub fn configuration_descriptor(&self) -> Vec<u8> {
        let count = u8::try_from(self.bulk_out_endpoints.len()).unwrap_or(u8::MAX);
        let mut bytes = vec![9, 2, 0, 0, 1, self.configuration_value, 0, 0x80, 50];
        bytes.extend_from_slice(&[
            9,
            4,
            self.interface_number,
            0,
            count,
            self.interface_class,
            0,
            0,
            0,
        ]);
        for &address in self.bulk_out_endpoints.iter().take(usize::from(count)) {
            bytes.extend_from_slice(&[7, 5, address & 0x0f, 0x02, 0x00, 0x02, 0]);
        }
        let total = u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_le_bytes();
        bytes[2..4].copy_from_slice(&total);
        bytes
    }
}

mod abi {
    use std::ffi::{c_int, c_void};

    use super::ffi::HostObject;

    #[repr(C)]
    pub struct UsbDeviceOps {
        pub control: Option<
            unsafe extern "C" fn(*mut c_void, u8, u8, u16, u16, u16, *mut c_void, *mut u16) -> i32,
        >,
        pub bulk_out:
            Option<unsafe extern "C" fn(*mut c_void, u8, c_int, u64, u32, u32, u64) -> i32>,
        pub abort: Option<unsafe extern "C" fn(*mut c_void, u8, i32) -> i32>,
        pub clear_stall: Option<unsafe extern "C" fn(*mut c_void, u8, c_int) -> i32>,
        pub release: Option<unsafe extern "C" fn(*mut c_void)>,
    }

    unsafe extern "C" {
        pub fn dextlink_host_usb_interface_create(
            ops: *const UsbDeviceOps,
            context: *mut c_void,
            device_descriptor: *const u8,
            device_descriptor_length: usize,
            configuration: *const u8,
            configuration_length: usize,
            interface_number: u8,
            interface: *mut *mut HostObject,
        ) -> i32;
        pub fn dextlink_host_usb_complete(cookie: u64, status: i32, actual: u32, timestamp: u64);
        pub fn dextlink_host_usb_disconnected(cookie: u64);
        pub fn dextlink_host_service_start_on(
            personality: *mut HostObject,
            provider: *mut HostObject,
            service: *mut *mut HostObject,
        ) -> i32;
        pub fn dextlink_host_usb_terminate(service: *mut HostObject) -> i32;
    }
}

/// How many dext buffers the adapter keeps mapped: a dext uploads from a
/// fixed ring of them, so this many covers the ring without mapping each
/// transfer's buffer anew.
const MAPPED_BUFFERS: usize = 64;

/// A file's identity: (st_dev, st_ino).
type FileKey = (u64, u64);

/// The callbacks' context: the device, and the dext's buffers mapped here.
struct Adapter {
    device: Arc<dyn UsbDevice>,
    /// Mappings of dext memfds, by (st_dev, st_ino): the held file keeps
    /// the inode alive, so a key cannot be reused while it is cached.
    buffers: Mutex<VecDeque<(FileKey, Arc<SharedMemory>)>>,
}

impl Adapter {
    fn control(&self, setup: &SetupPacket, data: &mut [u8]) -> Result<usize, IoReturn> {
        if setup.is_device_to_host()
            && setup.request_type & 0x60 == 0
            && setup.request == REQUEST_GET_DESCRIPTOR
        {
            let [index, kind] = setup.value.to_le_bytes();
            let descriptor = match (kind, index) {
                (1, 0) => Some(self.device.device_descriptor().to_vec()),
                (2, 0) => Some(self.device.configuration_descriptor()),
                _ => None,
            };
            if let Some(descriptor) = descriptor {
                let len = descriptor.len().min(data.len());
                data[..len].copy_from_slice(&descriptor[..len]);
                return Ok(len);
            }
        }
        if setup.is_device_to_host() {
            let written = self.device.control_in(setup, data)?;
            Ok(written.min(data.len()))
        } else {
            self.device.control_out(setup, data).map(|()| data.len())
        }
    }

    /// The dext's memfd `fd` mapped here (cached).
    fn map(&self, fd: RawFd) -> Result<Arc<SharedMemory>, IoReturn> {
        // SAFETY: the runtime passes the descriptor's memfd, open for the
        // duration of this call (dextlink_host.h: borrowed); it is only
        // duplicated here, never closed.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let file = File::from(borrowed.try_clone_to_owned().map_err(|_| IoReturn::BAD_ARGUMENT)?);
        let meta = file.metadata().map_err(|_| IoReturn::BAD_ARGUMENT)?;
        let key = (meta.dev(), meta.ino());
        let mut buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, memory)) = buffers.iter().find(|(k, _)| *k == key) {
            return Ok(Arc::clone(memory));
        }
        let memory = Arc::new(SharedMemory::from_file(file).map_err(|_| IoReturn::NO_MEMORY)?);
        if buffers.len() == MAPPED_BUFFERS {
            buffers.pop_front();
        }
        buffers.push_back((key, Arc::clone(&memory)));
        Ok(memory)
    }

    fn bulk_out(
        &self,
        address: u8,
        fd: RawFd,
        offset: u64,
        length: u32,
        timeout_ms: u32,
        cookie: u64,
    ) -> Result<(), IoReturn> {
        let pipe = self.device.bulk_out_pipe(address).ok_or(IoReturn::NOT_FOUND)?;
        let memory = self.map(fd)?;
        let offset = usize::try_from(offset).map_err(|_| IoReturn::BAD_ARGUMENT)?;
        let len = usize::try_from(length).map_err(|_| IoReturn::BAD_ARGUMENT)?;
        let buffer = IoBuffer::new(memory, offset, len).ok_or(IoReturn::BAD_ARGUMENT)?;
        let weak = pipe.downgrade();
        pipe.async_io(
            &buffer,
            length,
            timeout_ms,
            Box::new(move |status, actual| {
                // The device went away (a `disconnect` or `kill-dext` fault
                // without a hook): the runtime terminates it, so the
                // dext's Stop runs, before this completion is delivered.
                let unplugged = status == IoReturn::NO_DEVICE
                    && weak.upgrade().is_some_and(|pipe| !pipe.is_connected());
                if unplugged {
                    // SAFETY: a plain call with a number the runtime looks up.
                    unsafe { abi::dextlink_host_usb_disconnected(cookie) }
                }
                // SAFETY: a plain call into the runtime with values; the
                // cookie is a number the runtime looks up, so a stale one is
                // ignored there.
                unsafe { abi::dextlink_host_usb_complete(cookie, status.0, actual, 0) }
            }),
        )
    }
}

/// Runs a callback body, turning a panic of the device model into an
/// error: a panic must not unwind into the C++ runtime.
fn guarded(body: impl FnOnce() -> Result<(), IoReturn>) -> i32 {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => 0,
        Ok(Err(error)) => error.0,
        Err(_) => IoReturn::INTERNAL_ERROR.0,
    }
}

/// # Safety
/// `context` is the `Adapter` the runtime was given (alive until `release`).
unsafe fn adapter<'a>(context: *mut c_void) -> &'a Adapter {
    // SAFETY: per this function's contract.
    unsafe { &*context.cast::<Adapter>() }
}

unsafe extern "C" fn control_trampoline(
    context: *mut c_void,
    request_type: u8,
    request: u8,
    value: u16,
    index: u16,
    length: u16,
    data: *mut c_void,
    actual: *mut u16,
) -> i32 {
    // SAFETY: the runtime's context (see `adapter`).
    let adapter = unsafe { adapter(context) };
    let setup = SetupPacket { request_type, request, value, index, length };
    let mut moved = 0usize;
    let result = guarded(|| {
        let buffer: &mut [u8] = if length == 0 || data.is_null() {
            &mut []
        } else {
            // SAFETY: the runtime checked that `data` is a descriptor's
            // bytes of at least `length` bytes, mapped in this process for
            // the call (IOUSBHostDevice::DeviceRequest_Impl).
            unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), usize::from(length)) }
        };
        // A device model is safe code and may claim more than the buffer
        // holds; the runtime copies `actual` bytes, so it never gets more.
        moved = adapter.control(&setup, buffer)?.min(usize::from(length));
        Ok(())
    });
    if !actual.is_null() {
        // SAFETY: a valid out pointer from the runtime.
        unsafe { *actual = u16::try_from(moved).unwrap_or(u16::MAX) };
    }
    result
}

unsafe extern "C" fn bulk_out_trampoline(
    context: *mut c_void,
    address: u8,
    fd: RawFd,
    offset: u64,
    length: u32,
    timeout_ms: u32,
    cookie: u64,
) -> i32 {
    // SAFETY: the runtime's context (see `adapter`).
    let adapter = unsafe { adapter(context) };
    guarded(|| adapter.bulk_out(address, fd, offset, length, timeout_ms, cookie))
}

unsafe extern "C" fn abort_trampoline(context: *mut c_void, address: u8, with_error: i32) -> i32 {
    // SAFETY: the runtime's context (see `adapter`).
    let adapter = unsafe { adapter(context) };
    guarded(|| {
        let pipe = adapter.device.bulk_out_pipe(address).ok_or(IoReturn::NOT_FOUND)?;
        pipe.abort(IoReturn(with_error));
        Ok(())
    })
}

unsafe extern "C" fn clear_stall_trampoline(
    context: *mut c_void,
    address: u8,
    with_request: i32,
) -> i32 {
    // SAFETY: the runtime's context (see `adapter`).
    let adapter = unsafe { adapter(context) };
    guarded(|| {
        let pipe = adapter.device.bulk_out_pipe(address).ok_or(IoReturn::NOT_FOUND)?;
        pipe.clear_stall();
        if with_request != 0 {
            // CLEAR_FEATURE(ENDPOINT_HALT) to the endpoint (USB 2.0 §9.4.1).
            let setup = SetupPacket {
                request_type: 0x02,
                request: REQUEST_CLEAR_FEATURE,
                value: 0,
                index: u16::from(address),
                length: 0,
            };
            match adapter.device.control_out(&setup, &[]) {
                // A device model without control requests has no halt to clear.
                Ok(()) | Err(IoReturn::USB_HOST_PIPE_STALLED) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    })
}

unsafe extern "C" fn release_trampoline(context: *mut c_void) {
    // SAFETY: `context` came from Box::into_raw in UsbInterface::new and the
    // runtime calls release once, after its last use.
    drop(unsafe { Box::from_raw(context.cast::<Adapter>()) });
}

static OPS: abi::UsbDeviceOps = abi::UsbDeviceOps {
    control: Some(control_trampoline),
    bulk_out: Some(bulk_out_trampoline),
    abort: Some(abort_trampoline),
    clear_stall: Some(clear_stall_trampoline),
    release: Some(release_trampoline),
};

/// A simulated device's interface as an `IOUSBHostInterface` (with its
/// `IOUSBHostDevice`): the provider a USB dext's driver starts on.
#[derive(Debug)]
pub struct UsbInterface(Object);

impl UsbInterface {
    /// The interface `interface_number` of `device`. `kIOReturnBadArgument`
    /// when the device's descriptors are malformed or have no such interface.
    pub fn new(device: Arc<dyn UsbDevice>, interface_number: u8) -> Result<UsbInterface, IoReturn> {
        let device_descriptor = device.device_descriptor();
        let configuration = device.configuration_descriptor();
        let context = Box::into_raw(Box::new(Adapter {
            device,
            buffers: Mutex::new(VecDeque::with_capacity(MAPPED_BUFFERS)),
        }));
        let mut raw = std::ptr::null_mut();
        // SAFETY: OPS is static; the descriptors are valid for the call (the
        // runtime copies them); `context` stays valid until the runtime
        // calls release, or is freed below if it refuses.
        let result = unsafe {
            abi::dextlink_host_usb_interface_create(
                &OPS,
                context.cast(),
                device_descriptor.as_ptr(),
                device_descriptor.len(),
                configuration.as_ptr(),
                configuration.len(),
                interface_number,
                &mut raw,
            )
        };
        if result != 0 {
            // SAFETY: the runtime refused, so it never took the context.
            drop(unsafe { Box::from_raw(context) });
            return Err(IoReturn(result));
        }
        Ok(UsbInterface(Object::from_raw(raw).ok_or(IoReturn::INTERNAL_ERROR)?))
    }

    pub fn class_name(&self) -> String {
        self.0.class_name()
    }

    /// The device went away for good: every later call of the dext on this
    /// interface, its device and pipes fails with `kIOReturnNoDevice`, the
    /// pending transfers complete with it, then `service`'s `Stop` runs
    /// (and this waits for it). `service` must have been started on this
    /// interface.
    pub fn disconnect(&self, service: &Service) -> Result<(), IoReturn> {
        // SAFETY: live objects; the provider is read only to compare it.
        let provider = unsafe { ffi::dextlink_host_provider(service.0.as_ptr()) };
        if provider != self.0.as_ptr() {
            return Err(IoReturn::BAD_ARGUMENT);
        }
        // SAFETY: a live service.
        status(unsafe { abi::dextlink_host_usb_terminate(service.0.as_ptr()) })
    }
}

impl Service {
    /// Makes the personality's `IOUserClass` on `provider`, then init and
    /// Start (the errors of [`Service::start`], and Start's own).
    pub fn start_on(
        personality: &Dictionary,
        provider: &UsbInterface,
    ) -> Result<Service, IoReturn> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: a live dictionary and provider, and a valid out pointer.
        status(unsafe {
            abi::dextlink_host_service_start_on(
                personality.0.as_ptr(),
                provider.0.as_ptr(),
                &mut raw,
            )
        })?;
        Ok(Service(Object::from_raw(raw).ok_or(IoReturn::INTERNAL_ERROR)?))
    }
}
