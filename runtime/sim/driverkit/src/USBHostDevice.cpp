// IOUSBHostDevice and the descriptor walkers (AppleUSBDefinitions.h).
#include <DriverKit/IOLib.h>
#include <USBDriverKit/USBDriverKit.h>

#include <cstdlib>
#include <cstring>

#include "usb.h"

OSDefineMetaClassAndStructors(IOUSBHostDevice, IOService)

namespace {

const uint8_t* bytesOf(const void* p)
{
    return static_cast<const uint8_t*>(p);
}

uint16_t totalLength(const IOUSBConfigurationDescriptor* configuration)
{
    const uint8_t* b = bytesOf(configuration);
    return static_cast<uint16_t>(b[2] | (b[3] << 8));
}

void* copyBytes(const void* bytes, size_t length)
{
    void* copy = malloc(length);
    if (copy != nullptr) {
        memcpy(copy, bytes, length);
    }
    return copy;
}

}  // namespace

extern "C" const IOUSBDescriptorHeader* IOUSBGetNextDescriptor(const IOUSBConfigurationDescriptor* configuration,
                                                               const IOUSBDescriptorHeader* current)
{
    if (configuration == nullptr) {
        return nullptr;
    }
    const uint8_t* start = bytesOf(configuration);
    const uint8_t* end = start + totalLength(configuration);
    const uint8_t* at = current == nullptr ? start : bytesOf(current);
    if (at < start || at + 2 > end || at[0] < 2) {
        return nullptr;
    }
    const uint8_t* next = at + at[0];
    // A descriptor must fit whole inside wTotalLength, or the walk ends.
    if (next + 2 > end || next[0] < 2 || next + next[0] > end) {
        return nullptr;
    }
    return reinterpret_cast<const IOUSBDescriptorHeader*>(next);
}

extern "C" const IOUSBDescriptorHeader* IOUSBGetNextDescriptorWithType(
    const IOUSBConfigurationDescriptor* configuration, const IOUSBDescriptorHeader* current, const uint8_t type)
{
    const IOUSBDescriptorHeader* next = current;
    do {
        next = IOUSBGetNextDescriptor(configuration, next);
    } while (next != nullptr && next->bDescriptorType != type);
    return next;
}

extern "C" const IOUSBInterfaceDescriptor* IOUSBGetNextInterfaceDescriptor(
    const IOUSBConfigurationDescriptor* configuration, const IOUSBDescriptorHeader* current)
{
    return reinterpret_cast<const IOUSBInterfaceDescriptor*>(
        IOUSBGetNextDescriptorWithType(configuration, current, kIOUSBDescriptorTypeInterface));
}

extern "C" const IOUSBEndpointDescriptor* IOUSBGetNextEndpointDescriptor(
    const IOUSBConfigurationDescriptor* configuration, const IOUSBInterfaceDescriptor* interface,
    const IOUSBDescriptorHeader* current)
{
    if (interface == nullptr) {
        return nullptr;
    }
    const IOUSBDescriptorHeader* next =
        current == nullptr ? reinterpret_cast<const IOUSBDescriptorHeader*>(interface) : current;
    while ((next = IOUSBGetNextDescriptor(configuration, next)) != nullptr) {
        if (next->bDescriptorType == kIOUSBDescriptorTypeInterface) {
            return nullptr;
        }
        if (next->bDescriptorType == kIOUSBDescriptorTypeEndpoint &&
            next->bLength >= kIOUSBDescriptorSizeEndpoint) {
            return reinterpret_cast<const IOUSBEndpointDescriptor*>(next);
        }
    }
    return nullptr;
}

extern "C" void IOUSBHostFreeDescriptor(const void* descriptor)
{
    free(const_cast<void*>(descriptor));
}

const IOUSBInterfaceDescriptor* dextlink::usb::findInterface(const IOUSBConfigurationDescriptor* configuration,
                                                             uint8_t number)
{
    const IOUSBInterfaceDescriptor* interface = nullptr;
    while ((interface = IOUSBGetNextInterfaceDescriptor(
                configuration, reinterpret_cast<const IOUSBDescriptorHeader*>(interface))) != nullptr) {
        if (interface->bLength >= kIOUSBDescriptorSizeInterface && interface->bInterfaceNumber == number &&
            interface->bAlternateSetting == 0) {
            return interface;
        }
    }
    return nullptr;
}

kern_return_t IOUSBHostDevice::_Dispatch(OSObject* self, const IORPC rpc)
{
    auto* device = static_cast<IOUSBHostDevice*>(self);
    switch (rpc.methodID) {
    case IOUSBHostDevice_DeviceRequest_ID: {
        auto* a = static_cast<IOUSBHostDevice_DeviceRequest_Invocation*>(rpc.arguments);
        return device->IOUSBHostDevice::DeviceRequest_Impl(a->forClient, a->bmRequestType, a->bRequest, a->wValue,
                                                           a->wIndex, a->wLength, a->dataBuffer,
                                                           a->bytesTransferred, a->completionTimeoutMs);
    }
    case IOUSBHostDevice_GetAddress_ID:
        return device->IOUSBHostDevice::GetAddress_Impl(
            static_cast<IOUSBHostDevice_GetAddress_Invocation*>(rpc.arguments)->address);
    case IOUSBHostDevice_GetSpeed_ID:
        return device->IOUSBHostDevice::GetSpeed_Impl(
            static_cast<IOUSBHostDevice_GetSpeed_Invocation*>(rpc.arguments)->speed);
    default:
        return IOService::_Dispatch(self, rpc);
    }
}

bool IOUSBHostDevice::init()
{
    backend_ = nullptr;
    return super::init();
}

void IOUSBHostDevice::free()
{
    if (backend_ != nullptr) {
        OSSafeReleaseNULL(backend_->sessionOwner);
        if (backend_->ops.release != nullptr) {
            backend_->ops.release(backend_->context);
        }
        delete backend_;
        backend_ = nullptr;
    }
    super::free();
}

void IOUSBHostDevice::SetBackendInternal(Backend* backend)
{
    backend_ = backend;
}

kern_return_t IOUSBHostDevice::DeviceRequest(IOService* forClient, uint8_t bmRequestType, uint8_t bRequest,
                                             uint16_t wValue, uint16_t wIndex, uint16_t wLength,
                                             IOMemoryDescriptor* dataBuffer, uint16_t* bytesTransferred,
                                             uint32_t completionTimeoutMs, OSDispatchMethod supermethod)
{
    IOUSBHostDevice_DeviceRequest_Invocation a = {forClient, bmRequestType, bRequest, wValue,
                                                  wIndex,    wLength,       dataBuffer, bytesTransferred,
                                                  completionTimeoutMs};
    return OSObjectDispatchInvocation(this, supermethod, IOUSBHostDevice_DeviceRequest_ID, &a);
}

kern_return_t IOUSBHostDevice::GetAddress(uint8_t* address, OSDispatchMethod supermethod) const
{
    IOUSBHostDevice_GetAddress_Invocation a = {address};
    return OSObjectDispatchInvocation(const_cast<IOUSBHostDevice*>(this), supermethod, IOUSBHostDevice_GetAddress_ID,
                                      &a);
}

kern_return_t IOUSBHostDevice::GetSpeed(uint8_t* speed, OSDispatchMethod supermethod) const
{
    IOUSBHostDevice_GetSpeed_Invocation a = {speed};
    return OSObjectDispatchInvocation(const_cast<IOUSBHostDevice*>(this), supermethod, IOUSBHostDevice_GetSpeed_ID,
                                      &a);
}

kern_return_t IOUSBHostDevice::DeviceRequest_Impl(IOService* forClient, uint8_t bmRequestType, uint8_t bRequest,
                                                  uint16_t wValue, uint16_t wIndex, uint16_t wLength,
                                                  IOMemoryDescriptor* dataBuffer, uint16_t* bytesTransferred,
                                                  uint32_t completionTimeoutMs)
{
    // Who asks and how long they wait change nothing here: the device model
    // answers at once (UNVERIFIED whether DriverKit checks forClient).
    (void)forClient;
    (void)completionTimeoutMs;
    if (bytesTransferred != nullptr) {
        *bytesTransferred = 0;
    }
    if (backend_ == nullptr) {
        return kIOReturnNotAttached;
    }
    if (backend_->isTerminated()) {
        return kIOReturnNoDevice;
    }
    void* data = nullptr;
    if (wLength > 0) {
        uint64_t length = 0;
        if (dataBuffer == nullptr || dataBuffer->GetLength(&length) != kIOReturnSuccess || length < wLength ||
            dataBuffer->GetBackingAddress() == nullptr) {
            return kIOReturnBadArgument;
        }
        data = dataBuffer->GetBackingAddress();
    }
    uint16_t actual = 0;
    int32_t result =
        backend_->ops.control(backend_->context, bmRequestType, bRequest, wValue, wIndex, wLength, data, &actual);
    if (bytesTransferred != nullptr) {
        *bytesTransferred = actual > wLength ? wLength : actual;
    }
    return result;
}

kern_return_t IOUSBHostDevice::GetAddress_Impl(uint8_t* address)
{
    if (address == nullptr) {
        return kIOReturnBadArgument;
    }
    // The one device on the simulated bus.
    *address = 1;
    return kIOReturnSuccess;
}

kern_return_t IOUSBHostDevice::GetSpeed_Impl(uint8_t* speed)
{
    if (speed == nullptr || backend_ == nullptr) {
        return kIOReturnBadArgument;
    }
    const IOUSBDeviceDescriptor* device =
        reinterpret_cast<const IOUSBDeviceDescriptor*>(backend_->deviceDescriptor.data());
    *speed = device->bcdUSB >= 0x0300 ? kIOUSBHostConnectionSpeedSuper : kIOUSBHostConnectionSpeedHigh;
    return kIOReturnSuccess;
}

const IOUSBDeviceDescriptor* IOUSBHostDevice::CopyDeviceDescriptor()
{
    if (backend_ == nullptr) {
        return nullptr;
    }
    return static_cast<const IOUSBDeviceDescriptor*>(
        copyBytes(backend_->deviceDescriptor.data(), backend_->deviceDescriptor.size()));
}

const IOUSBConfigurationDescriptor* IOUSBHostDevice::CopyConfigurationDescriptor(uint8_t index)
{
    // The simulated device has one configuration.
    if (backend_ == nullptr || index != 0) {
        return nullptr;
    }
    return static_cast<const IOUSBConfigurationDescriptor*>(
        copyBytes(backend_->configuration.data(), backend_->configuration.size()));
}

const IOUSBConfigurationDescriptor* IOUSBHostDevice::CopyConfigurationDescriptorWithValue(
    uint8_t bConfigurationValue)
{
    if (backend_ == nullptr || backend_->configuration[5] != bConfigurationValue) {
        return nullptr;
    }
    return CopyConfigurationDescriptor(0);
}

const IOUSBStringDescriptor* IOUSBHostDevice::CopyStringDescriptor(uint8_t index, uint16_t languageID)
{
    if (backend_ == nullptr || backend_->isTerminated()) {
        return nullptr;
    }
    uint8_t buffer[kIOUSBDescriptorSizeStringMaximum] = {};
    uint16_t actual = 0;
    uint8_t requestType = makeDeviceRequestbmRequestType(kIOUSBDeviceRequestDirectionValueIn,
                                                         kIOUSBDeviceRequestTypeValueStandard,
                                                         kIOUSBDeviceRequestRecipientValueDevice);
    int32_t result = backend_->ops.control(backend_->context, requestType, kIOUSBDeviceRequestGetDescriptor,
                                           static_cast<uint16_t>((kIOUSBDescriptorTypeString << 8) | index),
                                           languageID, sizeof buffer, buffer, &actual);
    if (result != kIOReturnSuccess || actual < 2 || actual > sizeof buffer || buffer[0] < 2 ||
        buffer[0] > actual || buffer[1] != kIOUSBDescriptorTypeString) {
        return nullptr;
    }
    return static_cast<const IOUSBStringDescriptor*>(copyBytes(buffer, buffer[0]));
}

const IOUSBStringDescriptor* IOUSBHostDevice::CopyStringDescriptor(uint8_t index)
{
    // US English, the language every device that has strings offers.
    return CopyStringDescriptor(index, 0x0409);
}
