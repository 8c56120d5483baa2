//! `IOReturn`: the status every DriverKit call answers with.

use std::fmt;

/// An `IOReturn` (`kern_return_t`) value. The named constants are every code
/// of docs/driverkit.md §7 (XNU `iokit/IOKit/IOReturn.h`) plus the USB host
/// stall codes of §6.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct IoReturn(pub i32);

macro_rules! io_returns {
    ($($name:ident = $value:literal, $c:literal, $comment:literal;)*) => {
        impl IoReturn {
            $(
                #[doc = concat!("`", $c, "`: ", $comment, ".")]
                pub const $name: IoReturn = IoReturn($value as u32 as i32);
            )*

            /// The C name of a known code (`kIOReturnBadArgument`).
            pub fn name(self) -> Option<&'static str> {
                match self.0 as u32 {
                    $($value => Some($c),)*
                    _ => None,
                }
            }
        }
    };
}

io_returns! {
    SUCCESS = 0x0000_0000, "kIOReturnSuccess", "OK";
    ERROR = 0xE000_02BC, "kIOReturnError", "general error";
    NO_MEMORY = 0xE000_02BD, "kIOReturnNoMemory", "can't allocate memory";
    NO_RESOURCES = 0xE000_02BE, "kIOReturnNoResources", "resource shortage";
    IPC_ERROR = 0xE000_02BF, "kIOReturnIPCError", "error during IPC";
    NO_DEVICE = 0xE000_02C0, "kIOReturnNoDevice", "no such device";
    NOT_PRIVILEGED = 0xE000_02C1, "kIOReturnNotPrivileged", "privilege violation";
    BAD_ARGUMENT = 0xE000_02C2, "kIOReturnBadArgument", "invalid argument";
    LOCKED_READ = 0xE000_02C3, "kIOReturnLockedRead", "device read locked";
    LOCKED_WRITE = 0xE000_02C4, "kIOReturnLockedWrite", "device write locked";
    EXCLUSIVE_ACCESS = 0xE000_02C5, "kIOReturnExclusiveAccess", "exclusive access and device already open";
    BAD_MESSAGE_ID = 0xE000_02C6, "kIOReturnBadMessageID", "sent/received messages had different msg_id";
    UNSUPPORTED = 0xE000_02C7, "kIOReturnUnsupported", "unsupported function";
    VM_ERROR = 0xE000_02C8, "kIOReturnVMError", "misc. VM failure";
    INTERNAL_ERROR = 0xE000_02C9, "kIOReturnInternalError", "internal error";
    IO_ERROR = 0xE000_02CA, "kIOReturnIOError", "General I/O error";
    CANNOT_LOCK = 0xE000_02CC, "kIOReturnCannotLock", "can't acquire lock";
    NOT_OPEN = 0xE000_02CD, "kIOReturnNotOpen", "device not open";
    NOT_READABLE = 0xE000_02CE, "kIOReturnNotReadable", "read not supported";
    NOT_WRITABLE = 0xE000_02CF, "kIOReturnNotWritable", "write not supported";
    NOT_ALIGNED = 0xE000_02D0, "kIOReturnNotAligned", "alignment error";
    BAD_MEDIA = 0xE000_02D1, "kIOReturnBadMedia", "Media Error";
    STILL_OPEN = 0xE000_02D2, "kIOReturnStillOpen", "device(s) still open";
    RLD_ERROR = 0xE000_02D3, "kIOReturnRLDError", "rld failure";
    DMA_ERROR = 0xE000_02D4, "kIOReturnDMAError", "DMA failure";
    BUSY = 0xE000_02D5, "kIOReturnBusy", "Device Busy";
    TIMEOUT = 0xE000_02D6, "kIOReturnTimeout", "I/O Timeout";
    OFFLINE = 0xE000_02D7, "kIOReturnOffline", "device offline";
    NOT_READY = 0xE000_02D8, "kIOReturnNotReady", "not ready";
    NOT_ATTACHED = 0xE000_02D9, "kIOReturnNotAttached", "device not attached";
    NO_CHANNELS = 0xE000_02DA, "kIOReturnNoChannels", "no DMA channels left";
    NO_SPACE = 0xE000_02DB, "kIOReturnNoSpace", "no space for data";
    PORT_EXISTS = 0xE000_02DD, "kIOReturnPortExists", "port already exists";
    CANNOT_WIRE = 0xE000_02DE, "kIOReturnCannotWire", "can't wire down physical memory";
    NO_INTERRUPT = 0xE000_02DF, "kIOReturnNoInterrupt", "no interrupt attached";
    NO_FRAMES = 0xE000_02E0, "kIOReturnNoFrames", "no DMA frames enqueued";
    MESSAGE_TOO_LARGE = 0xE000_02E1, "kIOReturnMessageTooLarge", "oversized msg received on interrupt port";
    NOT_PERMITTED = 0xE000_02E2, "kIOReturnNotPermitted", "not permitted";
    NO_POWER = 0xE000_02E3, "kIOReturnNoPower", "no power to device";
    NO_MEDIA = 0xE000_02E4, "kIOReturnNoMedia", "media not present";
    UNFORMATTED_MEDIA = 0xE000_02E5, "kIOReturnUnformattedMedia", "media not formatted";
    UNSUPPORTED_MODE = 0xE000_02E6, "kIOReturnUnsupportedMode", "no such mode";
    UNDERRUN = 0xE000_02E7, "kIOReturnUnderrun", "data underrun";
    OVERRUN = 0xE000_02E8, "kIOReturnOverrun", "data overrun";
    DEVICE_ERROR = 0xE000_02E9, "kIOReturnDeviceError", "the device is not working properly";
    NO_COMPLETION = 0xE000_02EA, "kIOReturnNoCompletion", "a completion routine is required";
    ABORTED = 0xE000_02EB, "kIOReturnAborted", "operation aborted";
    NO_BANDWIDTH = 0xE000_02EC, "kIOReturnNoBandwidth", "bus bandwidth would be exceeded";
    NOT_RESPONDING = 0xE000_02ED, "kIOReturnNotResponding", "device not responding";
    ISO_TOO_OLD = 0xE000_02EE, "kIOReturnIsoTooOld", "isochronous I/O request for distant past";
    ISO_TOO_NEW = 0xE000_02EF, "kIOReturnIsoTooNew", "isochronous I/O request for distant future";
    NOT_FOUND = 0xE000_02F0, "kIOReturnNotFound", "data was not found";
    INVALID = 0xE000_0001, "kIOReturnInvalid", "should never be seen";
    USB_HOST_PIPE_STALLED = 0xE000_5000, "kUSBHostReturnPipeStalled", "pipe has issued a STALL handshake";
    USB_PIPE_STALLED = 0xE000_404F, "kIOUSBPipeStalled", "pipe has stalled (legacy IOUSBFamily)";
    USB_TRANSACTION_TIMEOUT = 0xE000_4051, "kIOUSBTransactionTimeout", "transaction timed out (legacy IOUSBFamily)";
}

impl IoReturn {
    pub fn is_success(self) -> bool {
        self == IoReturn::SUCCESS
    }

    /// The code as the unsigned hex DriverKit logs print (`0xe00002c2`).
    pub fn hex(self) -> u32 {
        self.0 as u32
    }

    /// Either stall code: docs/driverkit.md §6-7 leaves open which one
    /// `CompleteAsyncIO` reports, so both count.
    pub fn is_stall(self) -> bool {
        self == IoReturn::USB_HOST_PIPE_STALLED || self == IoReturn::USB_PIPE_STALLED
    }

    /// `Ok(())` for success, the code otherwise.
    pub fn into_result(self) -> Result<(), IoReturn> {
        if self.is_success() { Ok(()) } else { Err(self) }
    }
}

impl From<u32> for IoReturn {
    fn from(value: u32) -> IoReturn {
        IoReturn(value as i32)
    }
}

/// `kIOReturnBadArgument (0xe00002c2)`; unknown codes print as `IOReturn 0x…`.
impl fmt::Display for IoReturn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:#010x})", self.hex()),
            None => write!(f, "IOReturn {:#010x}", self.hex()),
        }
    }
}

impl fmt::Debug for IoReturn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for IoReturn {}

#[cfg(test)]
mod tests {
    use super::IoReturn;

    #[test]
    fn displays_like_driverkit_logs() {
        assert_eq!(IoReturn::BAD_ARGUMENT.to_string(), "kIOReturnBadArgument (0xe00002c2)");
        assert_eq!(IoReturn(0x1234).to_string(), "IOReturn 0x00001234");
        assert_eq!(IoReturn::BAD_ARGUMENT.0, -536870206, "signed as in the DriverKit reference §7");
    }

    #[test]
    fn codes_follow_the_iokit_layout() {
        // sys_iokit | sub_iokit_common | code (docs/driverkit.md §7-2).
        let sys_iokit: u32 = 0x38 << 26;
        for (code, value) in [
            (0x2bc, IoReturn::ERROR),
            (0x2ea, IoReturn::NO_COMPLETION),
            (0x2f0, IoReturn::NOT_FOUND),
        ] {
            assert_eq!(value.hex(), sys_iokit | code);
        }
        // iokit_usbhost_err(0) = sys_iokit | sub_iokit_usb | (1 << 12)
        assert_eq!(IoReturn::USB_HOST_PIPE_STALLED.hex(), sys_iokit | (1 << 14) | (1 << 12));
    }
}
