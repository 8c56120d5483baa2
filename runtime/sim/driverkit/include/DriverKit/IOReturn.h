// IOReturn codes, with DriverKit's names and values (docs/driverkit.md §7).
#ifndef DEXTLINK_DRIVERKIT_IORETURN_H
#define DEXTLINK_DRIVERKIT_IORETURN_H

#include <stdint.h>

typedef int32_t kern_return_t;
typedef kern_return_t IOReturn;

#ifndef KERN_SUCCESS
#define KERN_SUCCESS 0
#endif

// | system(6) | subsystem(12) | code(14) |
#define err_system(x) ((int32_t)((((uint32_t)(x)) & 0x3f) << 26))
#define err_sub(x) ((int32_t)((((uint32_t)(x)) & 0xfff) << 14))
#define err_get_system(err) ((((uint32_t)(err)) >> 26) & 0x3f)
#define err_get_sub(err) ((((uint32_t)(err)) >> 14) & 0xfff)
#define err_get_code(err) (((uint32_t)(err)) & 0x3fff)

#define sys_iokit err_system(0x38)
#define sub_iokit_common err_sub(0)
#define sub_iokit_usb err_sub(1)
#define sub_iokit_vendor_specific err_sub(-2)
#define iokit_common_err(return) ((IOReturn)(sys_iokit | sub_iokit_common | (return)))
#define iokit_family_err(sub, return) ((IOReturn)(sys_iokit | (sub) | (return)))
#define iokit_vendor_specific_err(return) ((IOReturn)(sys_iokit | sub_iokit_vendor_specific | (return)))

#define kIOReturnSuccess KERN_SUCCESS
#define kIOReturnError              iokit_common_err(0x2bc) // general error
#define kIOReturnNoMemory           iokit_common_err(0x2bd) // can't allocate memory
#define kIOReturnNoResources        iokit_common_err(0x2be) // resource shortage
#define kIOReturnIPCError           iokit_common_err(0x2bf) // error during IPC
#define kIOReturnNoDevice           iokit_common_err(0x2c0) // no such device
#define kIOReturnNotPrivileged      iokit_common_err(0x2c1) // privilege violation
#define kIOReturnBadArgument        iokit_common_err(0x2c2) // invalid argument
#define kIOReturnLockedRead         iokit_common_err(0x2c3) // device read locked
#define kIOReturnLockedWrite        iokit_common_err(0x2c4) // device write locked
#define kIOReturnExclusiveAccess    iokit_common_err(0x2c5) // exclusive access and device already open
#define kIOReturnBadMessageID       iokit_common_err(0x2c6) // sent/received messages had different msg_id
#define kIOReturnUnsupported        iokit_common_err(0x2c7) // unsupported function
#define kIOReturnVMError            iokit_common_err(0x2c8) // misc. VM failure
#define kIOReturnInternalError      iokit_common_err(0x2c9) // internal error
#define kIOReturnIOError            iokit_common_err(0x2ca) // General I/O error
#define kIOReturnCannotLock         iokit_common_err(0x2cc) // can't acquire lock
#define kIOReturnNotOpen            iokit_common_err(0x2cd) // device not open
#define kIOReturnNotReadable        iokit_common_err(0x2ce) // read not supported
#define kIOReturnNotWritable        iokit_common_err(0x2cf) // write not supported
#define kIOReturnNotAligned         iokit_common_err(0x2d0) // alignment error
#define kIOReturnBadMedia           iokit_common_err(0x2d1) // Media Error
#define kIOReturnStillOpen          iokit_common_err(0x2d2) // device(s) still open
#define kIOReturnRLDError           iokit_common_err(0x2d3) // rld failure
#define kIOReturnDMAError           iokit_common_err(0x2d4) // DMA failure
#define kIOReturnBusy               iokit_common_err(0x2d5) // Device Busy
#define kIOReturnTimeout            iokit_common_err(0x2d6) // I/O Timeout
#define kIOReturnOffline            iokit_common_err(0x2d7) // device offline
#define kIOReturnNotReady           iokit_common_err(0x2d8) // not ready
#define kIOReturnNotAttached        iokit_common_err(0x2d9) // device not attached
#define kIOReturnNoChannels         iokit_common_err(0x2da) // no DMA channels left
#define kIOReturnNoSpace            iokit_common_err(0x2db) // no space for data
#define kIOReturnPortExists         iokit_common_err(0x2dd) // port already exists
#define kIOReturnCannotWire         iokit_common_err(0x2de) // can't wire down physical memory
#define kIOReturnNoInterrupt        iokit_common_err(0x2df) // no interrupt attached
#define kIOReturnNoFrames           iokit_common_err(0x2e0) // no DMA frames enqueued
#define kIOReturnMessageTooLarge    iokit_common_err(0x2e1) // oversized msg received on interrupt port
#define kIOReturnNotPermitted       iokit_common_err(0x2e2) // not permitted
#define kIOReturnNoPower            iokit_common_err(0x2e3) // no power to device
#define kIOReturnNoMedia            iokit_common_err(0x2e4) // media not present
#define kIOReturnUnformattedMedia   iokit_common_err(0x2e5) // media not formatted
#define kIOReturnUnsupportedMode    iokit_common_err(0x2e6) // no such mode
#define kIOReturnUnderrun           iokit_common_err(0x2e7) // data underrun
#define kIOReturnOverrun            iokit_common_err(0x2e8) // data overrun
#define kIOReturnDeviceError        iokit_common_err(0x2e9) // the device is not working properly
#define kIOReturnNoCompletion       iokit_common_err(0x2ea) // a completion routine is required
#define kIOReturnAborted            iokit_common_err(0x2eb) // operation aborted
#define kIOReturnNoBandwidth        iokit_common_err(0x2ec) // bus bandwidth would be exceeded
#define kIOReturnNotResponding      iokit_common_err(0x2ed) // device not responding
#define kIOReturnIsoTooOld          iokit_common_err(0x2ee) // isochronous I/O request for distant past
#define kIOReturnIsoTooNew          iokit_common_err(0x2ef) // isochronous I/O request for distant future
#define kIOReturnNotFound           iokit_common_err(0x2f0) // data was not found
#define kIOReturnInvalid            iokit_common_err(0x1) // should never be seen

#endif
