//! The async completion message the kernel sends to a wake port, parsed
//! from its bytes (docs/driverkit.md §4.2-4, §4.2-5, §4.3-4).
//!
//! Layout for a 64-bit receiver (XNU `OSMessageNotification.h`, the
//! `ReplyMsg` of `IOUserClient::_sendAsyncResult64`):
//!
//! | bytes | what |
//! | --- | --- |
//! | 0..24 | `mach_msg_header_t` (`msgh_bits` 0, `msgh_size` 4, `msgh_id` 20) |
//! | 24..96 | `OSNotificationHeader64 { u32 size; u32 type; u64 reference[8]; }` |
//! | 96..100 | `IOAsyncCompletionContent { IOReturn result; }` |
//! | 100.. | `numArgs` packed `u64` arguments |
//!
//! The argument count is computed exactly as IOKitLib's
//! `IODispatchCalloutFromCFMessage` does: `(msgh_size - 96 - sizeAdj - 4) / 8`,
//! where `sizeAdj` is the two bits of `type` above bit 30.
//!
//! This file has no dependencies (not even on the rest of the crate), so the
//! parser is also compiled and tested on Linux (`runtime/tests/iokit_message.rs`).

/// `kOSNotificationMessageID`: the `msgh_id` of every IOKit notification.
pub const NOTIFICATION_MESSAGE_ID: i32 = 53;
/// `kIOAsyncCompletionNotificationType`.
pub const ASYNC_COMPLETION_TYPE: u32 = 150;
/// `kIOKitNoticationTypeMask`.
const TYPE_MASK: u32 = 0x0FFF;
/// `kIOKitNoticationTypeSizeAdjShift`, `kIOKitNoticationMsgSizeMask`.
const SIZE_ADJ_SHIFT: u32 = 30;
const SIZE_ADJ_MASK: u32 = 3;
/// `MACH_MSGH_BITS_COMPLEX`: the message carries descriptors.
const MSGH_BITS_COMPLEX: u32 = 0x8000_0000;

/// `sizeof(mach_msg_header_t)`.
pub const MACH_HEADER_SIZE: usize = 24;
/// Where `OSNotificationHeader64::reference` starts.
const REFERENCE_OFFSET: usize = 32;
/// `kOSAsyncRef64Count`.
pub const REFERENCE_COUNT: usize = 8;
/// Where `IOAsyncCompletionContent::result` is: the end of the notification header.
const RESULT_OFFSET: usize = 96;
/// Where the arguments start.
const ARGS_OFFSET: usize = 100;
/// `kMaxAsyncArgs`.
pub const MAX_ARGS: usize = 16;

/// One async completion, as the kernel sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncCompletion {
    /// `reference[0..8]`; the kernel sends `[0]` as 0 and `[1..8]` as the
    /// client passed them to `IOConnectCallAsyncMethod`.
    pub reference: [u64; REFERENCE_COUNT],
    /// The `IOReturn` the dext completed with.
    pub result: i32,
    args: [u64; MAX_ARGS],
    count: usize,
}

impl AsyncCompletion {
    /// The arguments after the status (at most 16).
    pub fn args(&self) -> &[u64] {
        &self.args[..self.count]
    }
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(offset..offset + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(bytes.get(offset..offset + 8)?.try_into().ok()?))
}

/// Parses `bytes` (a received message: at least `msgh_size` bytes, in host
/// byte order) as an async completion. Anything else, or a message whose
/// sizes do not add up, gives `None`.
pub fn parse_async_completion(bytes: &[u8]) -> Option<AsyncCompletion> {
    let bits = u32_at(bytes, 0)?;
    let msgh_size = u32_at(bytes, 4)? as usize;
    let msgh_id = u32_at(bytes, 20)? as i32;
    if msgh_id != NOTIFICATION_MESSAGE_ID || bits & MSGH_BITS_COMPLEX != 0 {
        return None;
    }
    // Only what the sender declared counts, and it must all have arrived.
    let bytes = bytes.get(..msgh_size)?;
    let notify_type = u32_at(bytes, MACH_HEADER_SIZE + 4)?;
    if notify_type & TYPE_MASK != ASYNC_COMPLETION_TYPE {
        return None;
    }
    let size_adj = ((notify_type >> SIZE_ADJ_SHIFT) & SIZE_ADJ_MASK) as usize;
    // IOKitLib: leftOver = msgh_size - sizeof(header) - sizeAdj, then
    // (leftOver - sizeof(IOAsyncCompletionContent)) / sizeof(void *).
    let left_over = msgh_size.checked_sub(RESULT_OFFSET + size_adj)?;
    let count = left_over.checked_sub(ARGS_OFFSET - RESULT_OFFSET)? / 8;
    if count > MAX_ARGS {
        return None;
    }
    let mut reference = [0u64; REFERENCE_COUNT];
    for (i, r) in reference.iter_mut().enumerate() {
        *r = u64_at(bytes, REFERENCE_OFFSET + 8 * i)?;
    }
    let result = u32_at(bytes, RESULT_OFFSET)? as i32;
    let mut args = [0u64; MAX_ARGS];
    for (i, a) in args.iter_mut().take(count).enumerate() {
        *a = u64_at(bytes, ARGS_OFFSET + 8 * i)?;
    }
    Some(AsyncCompletion { reference, result, args, count })
}
