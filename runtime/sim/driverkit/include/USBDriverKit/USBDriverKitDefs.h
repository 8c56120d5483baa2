// USBDriverKit's shared definitions under Apple's name: the options of
// IOUSBHostPipe::Abort (docs/driverkit.md §6: kIOUSBAbortAsynchronous = 0,
// kIOUSBAbortSynchronous = 0x1).
#ifndef DEXTLINK_USBDRIVERKIT_USBDRIVERKITDEFS_H
#define DEXTLINK_USBDRIVERKIT_USBDRIVERKITDEFS_H

enum IOUSBAbortOptions {
    kIOUSBAbortAsynchronous = 0,
    kIOUSBAbortSynchronous = 0x1,
};

#endif
