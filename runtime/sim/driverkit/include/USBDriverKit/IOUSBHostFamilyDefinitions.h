// The IOUSBHostFamily status codes USBDriverKit reports (docs/driverkit.md §6-7).
#ifndef DEXTLINK_USBDRIVERKIT_IOUSBHOSTFAMILYDEFINITIONS_H
#define DEXTLINK_USBDRIVERKIT_IOUSBHOSTFAMILYDEFINITIONS_H

#include <DriverKit/IOReturn.h>

#define iokit_usbhost_err(message) ((IOReturn)(iokit_family_err(sub_iokit_usb, (1 << 12) | ((message) & 0xfff))))

// 0xe0005000: the pipe answered with a STALL handshake; ClearStall clears it.
#define kUSBHostReturnPipeStalled iokit_usbhost_err(0x0)

#endif
