// IOUSBHostInterface: the one session, the pipes of its endpoints, its
// descriptors and its device's control endpoint.
#include <DriverKit/IOLib.h>
#include <USBDriverKit/USBDriverKit.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "usb.h"

OSDefineMetaClassAndStructors(IOUSBHostInterface, IOService)

struct IOUSBHostInterface::State {
    std::mutex lock;
    IOUSBHostDevice* device = nullptr;
    uint8_t interfaceNumber = 0;
    // One pipe object per endpoint, made on the first CopyPipe.
    std::vector<IOUSBHostPipe*> pipes;
};

kern_return_t IOUSBHostInterface::_Dispatch(OSObject* self, const IORPC rpc)
{
    auto* interface = static_cast<IOUSBHostInterface*>(self);
    switch (rpc.methodID) {
    case IOUSBHostInterface_Open_ID: {
        auto* a = static_cast<IOUSBHostInterface_Open_Invocation*>(rpc.arguments);
        return interface->IOUSBHostInterface::Open_Impl(a->forClient, a->options, a->arg);
    }
    case IOUSBHostInterface_Close_ID: {
        auto* a = static_cast<IOUSBHostInterface_Close_Invocation*>(rpc.arguments);
        return interface->IOUSBHostInterface::Close_Impl(a->forClient, a->options);
    }
    case IOUSBHostInterface_CopyPipe_ID: {
        auto* a = static_cast<IOUSBHostInterface_CopyPipe_Invocation*>(rpc.arguments);
        return interface->IOUSBHostInterface::CopyPipe_Impl(a->address, a->pipe);
    }
    case IOUSBHostInterface_CopyDevice_ID:
        return interface->IOUSBHostInterface::CopyDevice_Impl(
            static_cast<IOUSBHostInterface_CopyDevice_Invocation*>(rpc.arguments)->device);
    default:
        return IOService::_Dispatch(self, rpc);
    }
}

bool IOUSBHostInterface::init()
{
    state_ = new State();
    return super::init();
}

void IOUSBHostInterface::free()
{
    if (state_ != nullptr) {
        for (IOUSBHostPipe* pipe : state_->pipes) {
            pipe->release();
        }
        OSSafeReleaseNULL(state_->device);
        delete state_;
        state_ = nullptr;
    }
    super::free();
}

void IOUSBHostInterface::SetDeviceInternal(IOUSBHostDevice* device, uint8_t interfaceNumber)
{
    if (device != nullptr) {
        device->retain();
    }
    std::lock_guard<std::mutex> guard(state_->lock);
    OSSafeReleaseNULL(state_->device);
    state_->device = device;
    state_->interfaceNumber = interfaceNumber;
}

IOUSBHostDevice* IOUSBHostInterface::GetDeviceInternal() const
{
    std::lock_guard<std::mutex> guard(state_->lock);
    return state_->device;
}

kern_return_t IOUSBHostInterface::Open(IOService* forClient, IOOptionBits options, uint8_t* arg,
                                       OSDispatchMethod supermethod)
{
    IOUSBHostInterface_Open_Invocation a = {forClient, options, arg};
    return OSObjectDispatchInvocation(this, supermethod, IOUSBHostInterface_Open_ID, &a);
}

kern_return_t IOUSBHostInterface::Close(IOService* forClient, IOOptionBits options, OSDispatchMethod supermethod)
{
    IOUSBHostInterface_Close_Invocation a = {forClient, options};
    return OSObjectDispatchInvocation(this, supermethod, IOUSBHostInterface_Close_ID, &a);
}

kern_return_t IOUSBHostInterface::CopyPipe(uint8_t address, IOUSBHostPipe** pipe, OSDispatchMethod supermethod)
{
    IOUSBHostInterface_CopyPipe_Invocation a = {address, pipe};
    return OSObjectDispatchInvocation(this, supermethod, IOUSBHostInterface_CopyPipe_ID, &a);
}

kern_return_t IOUSBHostInterface::CopyDevice(IOUSBHostDevice** device, OSDispatchMethod supermethod)
{
    IOUSBHostInterface_CopyDevice_Invocation a = {device};
    return OSObjectDispatchInvocation(this, supermethod, IOUSBHostInterface_CopyDevice_ID, &a);
}

kern_return_t IOUSBHostInterface::Open_Impl(IOService* forClient, IOOptionBits options, uint8_t* arg)
{
    (void)options;
    (void)arg;
    IOUSBHostDevice* device = GetDeviceInternal();
    if (forClient == nullptr || device == nullptr) {
        return kIOReturnBadArgument;
    }
    IOUSBHostDevice::Backend* backend = device->GetBackendInternal();
    std::lock_guard<std::mutex> guard(backend->lock);
    if (backend->terminated) {
        return kIOReturnNoDevice;
    }
    // "Only one service may open a session at a time" (docs/driverkit.md §6);
    // the same service opening twice is refused too (UNVERIFIED: the safer
    // reading, a session is not counted).
    if (backend->sessionOwner != nullptr) {
        return kIOReturnExclusiveAccess;
    }
    // The session holds its owner until Close (so a disconnect can still
    // stop it); a dext closes in Stop.
    forClient->retain();
    backend->sessionOwner = forClient;
    return kIOReturnSuccess;
}

kern_return_t IOUSBHostInterface::Close_Impl(IOService* forClient, IOOptionBits options)
{
    (void)options;
    IOUSBHostDevice* device = GetDeviceInternal();
    if (forClient == nullptr || device == nullptr) {
        return kIOReturnBadArgument;
    }
    IOUSBHostDevice::Backend* backend = device->GetBackendInternal();
    {
        std::lock_guard<std::mutex> guard(backend->lock);
        if (backend->sessionOwner != forClient) {
            return kIOReturnNotOpen;
        }
        backend->sessionOwner = nullptr;
    }
    forClient->release();
    // The session's transfers end with it (UNVERIFIED: the safer reading;
    // no completion of a closed session's transfer arrives later).
    std::vector<IOUSBHostPipe*> pipes;
    {
        std::lock_guard<std::mutex> guard(state_->lock);
        pipes = state_->pipes;
        for (IOUSBHostPipe* pipe : pipes) {
            pipe->retain();
        }
    }
    for (IOUSBHostPipe* pipe : pipes) {
        backend->ops.abort(backend->context, pipe->GetEndpointAddressInternal(), kIOReturnAborted);
        dextlink::usb::waitForPipeIdle(pipe);
        pipe->release();
    }
    return kIOReturnSuccess;
}

kern_return_t IOUSBHostInterface::CopyPipe_Impl(uint8_t address, IOUSBHostPipe** pipe)
{
    if (pipe == nullptr) {
        return kIOReturnBadArgument;
    }
    *pipe = nullptr;
    IOUSBHostDevice* device = GetDeviceInternal();
    if (device == nullptr) {
        return kIOReturnNotAttached;
    }
    IOUSBHostDevice::Backend* backend = device->GetBackendInternal();
    if (backend->isTerminated()) {
        return kIOReturnNoDevice;
    }
    // UNVERIFIED: pipes without an open session; the safer reading refuses.
    if (!backend->isOpen()) {
        return kIOReturnNotOpen;
    }
    std::lock_guard<std::mutex> guard(state_->lock);
    for (IOUSBHostPipe* existing : state_->pipes) {
        if (existing->GetEndpointAddressInternal() == address) {
            existing->retain();
            *pipe = existing;
            return kIOReturnSuccess;
        }
    }
    const auto* configuration = reinterpret_cast<const IOUSBConfigurationDescriptor*>(backend->configuration.data());
    const IOUSBInterfaceDescriptor* interface = dextlink::usb::findInterface(configuration, state_->interfaceNumber);
    const IOUSBEndpointDescriptor* endpoint = nullptr;
    while ((endpoint = IOUSBGetNextEndpointDescriptor(configuration, interface,
                                                      reinterpret_cast<const IOUSBDescriptorHeader*>(endpoint))) !=
           nullptr) {
        if (endpoint->bEndpointAddress == address) {
            break;
        }
    }
    if (endpoint == nullptr) {
        return kIOReturnNotFound;
    }
    auto* created = static_cast<IOUSBHostPipe*>(IOUSBHostPipe::metaClass()->alloc());
    if (created == nullptr || !created->init() || !created->InitInternal(device, endpoint)) {
        if (created != nullptr) {
            created->release();
        }
        return kIOReturnNoMemory;
    }
    state_->pipes.push_back(created);
    created->retain();
    *pipe = created;
    return kIOReturnSuccess;
}

kern_return_t IOUSBHostInterface::CopyDevice_Impl(IOUSBHostDevice** device)
{
    if (device == nullptr) {
        return kIOReturnBadArgument;
    }
    *device = GetDeviceInternal();
    if (*device == nullptr) {
        return kIOReturnNotAttached;
    }
    (*device)->retain();
    return kIOReturnSuccess;
}

const IOUSBConfigurationDescriptor* IOUSBHostInterface::CopyConfigurationDescriptor()
{
    IOUSBHostDevice* device = GetDeviceInternal();
    return device == nullptr ? nullptr : device->CopyConfigurationDescriptor(0);
}

const IOUSBInterfaceDescriptor* IOUSBHostInterface::GetInterfaceDescriptor(
    const IOUSBConfigurationDescriptor* configurationDescriptor)
{
    uint8_t number = 0;
    {
        std::lock_guard<std::mutex> guard(state_->lock);
        number = state_->interfaceNumber;
    }
    return dextlink::usb::findInterface(configurationDescriptor, number);
}

const IOUSBStringDescriptor* IOUSBHostInterface::CopyStringDescriptor(uint8_t index, uint16_t languageID)
{
    IOUSBHostDevice* device = GetDeviceInternal();
    return device == nullptr ? nullptr : device->CopyStringDescriptor(index, languageID);
}

const IOUSBStringDescriptor* IOUSBHostInterface::CopyStringDescriptor(uint8_t index)
{
    IOUSBHostDevice* device = GetDeviceInternal();
    return device == nullptr ? nullptr : device->CopyStringDescriptor(index);
}

kern_return_t IOUSBHostInterface::CreateIOBuffer(IOOptionBits options, uint64_t capacity,
                                                 IOBufferMemoryDescriptor** buffer)
{
    if (buffer == nullptr) {
        return kIOReturnBadArgument;
    }
    *buffer = nullptr;
    IOUSBHostDevice* device = GetDeviceInternal();
    if (device == nullptr || device->GetBackendInternal()->isTerminated()) {
        return kIOReturnNoDevice;
    }
    // A plain memfd buffer: nothing is bounced here (§6-5).
    return IOBufferMemoryDescriptor::Create(options, capacity, 0, buffer);
}

kern_return_t IOUSBHostInterface::AsyncDeviceRequest(uint8_t bmRequestType, uint8_t bRequest, uint16_t wValue,
                                                     uint16_t wIndex, uint16_t wLength,
                                                     IOMemoryDescriptor* dataBuffer, OSAction* completion,
                                                     uint32_t completionTimeoutMs)
{
    (void)bmRequestType;
    (void)bRequest;
    (void)wValue;
    (void)wIndex;
    (void)wLength;
    (void)dataBuffer;
    (void)completion;
    (void)completionTimeoutMs;
    return kIOReturnUnsupported;
}

kern_return_t IOUSBHostInterface::DeviceRequest(uint8_t bmRequestType, uint8_t bRequest, uint16_t wValue,
                                                uint16_t wIndex, uint16_t wLength, IOMemoryDescriptor* dataBuffer,
                                                uint16_t* bytesTransferred, uint32_t completionTimeoutMs)
{
    if (bytesTransferred != nullptr) {
        *bytesTransferred = 0;
    }
    IOUSBHostDevice* device = GetDeviceInternal();
    if (device == nullptr) {
        return kIOReturnNotAttached;
    }
    IOUSBHostDevice::Backend* backend = device->GetBackendInternal();
    if (backend->isTerminated()) {
        return kIOReturnNoDevice;
    }
    IOService* owner = nullptr;
    {
        std::lock_guard<std::mutex> guard(backend->lock);
        owner = backend->sessionOwner;
    }
    // UNVERIFIED: requests without a session; the safer reading refuses.
    if (owner == nullptr) {
        return kIOReturnNotOpen;
    }
    return device->DeviceRequest(owner, bmRequestType, bRequest, wValue, wIndex, wLength,
                                 dataBuffer, bytesTransferred, completionTimeoutMs);
}

kern_return_t IOUSBHostInterface::AbortDeviceRequests(IOOptionBits options, IOReturn withError)
{
    (void)options;
    (void)withError;
    return kIOReturnSuccess;
}
