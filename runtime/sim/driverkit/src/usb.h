// What the USB sources share: the device model behind an IOUSBHostDevice.
#ifndef DEXTLINK_DRIVERKIT_USB_INTERNAL_H
#define DEXTLINK_DRIVERKIT_USB_INTERNAL_H

#include <USBDriverKit/USBDriverKit.h>
#include <dextlink_host.h>

#include <mutex>
#include <vector>

struct IOUSBHostDevice::Backend {
    dextlink_host_usb_device_ops ops;
    void* context;
    std::vector<uint8_t> deviceDescriptor;
    std::vector<uint8_t> configuration;

    std::mutex lock;
    // The device went away (dextlink_host_usb_terminate): calls fail with kIOReturnNoDevice.
    bool terminated = false;
    // Who holds the interface's one session (retained until Close).
    IOService* sessionOwner = nullptr;

    bool isTerminated()
    {
        std::lock_guard<std::mutex> guard(lock);
        return terminated;
    }
    bool isOpen()
    {
        std::lock_guard<std::mutex> guard(lock);
        return sessionOwner != nullptr;
    }
};

namespace dextlink {
namespace usb {

// The interface descriptor of `number`, alternate setting 0, or NULL.
const IOUSBInterfaceDescriptor* findInterface(const IOUSBConfigurationDescriptor* configuration, uint8_t number);
// Ends every pending transfer of `pipe` the host still holds (waits until
// their completions are queued).
void waitForPipeIdle(const IOUSBHostPipe* pipe);
// The device went away by itself (the host said so with
// dextlink_host_usb_disconnected): marks it terminated and stops the
// session's owner on a thread of its own.
void deviceGone(IOUSBHostDevice* device);
// The device a pipe belongs to.
IOUSBHostDevice* deviceOf(const IOUSBHostPipe* pipe);

}  // namespace usb
}  // namespace dextlink

#endif
