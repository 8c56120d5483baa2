// The USB part of the host ABI (dextlink_host.h): a device model as a
// dext's provider, services started on it, and its disconnection.
#include <dextlink_host.h>

#include <DriverKit/DriverKit.h>
#include <USBDriverKit/USBDriverKit.h>

#include <cstring>
#include <thread>

#include "host.h"
#include "internal.h"
#include "usb.h"

namespace {

OSObject* object(dextlink_host_object* o)
{
    return reinterpret_cast<OSObject*>(o);
}

dextlink_host_object* handle(OSObject* o)
{
    return reinterpret_cast<dextlink_host_object*>(o);
}

// The configuration's descriptors all lie inside it, each at least a
// header long, and every endpoint follows an interface.
bool configurationIsWellFormed(const uint8_t* bytes, size_t length)
{
    size_t at = 0;
    bool inInterface = false;
    while (at < length) {
        if (length - at < 2 || bytes[at] < 2 || bytes[at] > length - at) {
            return false;
        }
        uint8_t type = bytes[at + 1];
        if (type == kIOUSBDescriptorTypeInterface) {
            if (bytes[at] < kIOUSBDescriptorSizeInterface) {
                return false;
            }
            inInterface = true;
        } else if (type == kIOUSBDescriptorTypeEndpoint) {
            if (!inInterface || bytes[at] < kIOUSBDescriptorSizeEndpoint) {
                return false;
            }
        }
        at += bytes[at];
    }
    return true;
}

template <typename T>
T* make()
{
    auto* created = static_cast<T*>(T::metaClass()->alloc());
    if (created != nullptr && !created->init()) {
        created->release();
        return nullptr;
    }
    return created;
}

int32_t setNumber(OSDictionary* properties, const char* key, uint64_t value)
{
    OSNumber* number = OSNumber::withNumber(value, 64);
    if (number == nullptr) {
        return kIOReturnNoMemory;
    }
    bool set = properties->setObject(key, number);
    number->release();
    return set ? kIOReturnSuccess : kIOReturnNoMemory;
}

}  // namespace

extern "C" int32_t dextlink_host_usb_interface_create(const dextlink_host_usb_device_ops* ops, void* context,
                                                      const uint8_t* device_descriptor,
                                                      size_t device_descriptor_length, const uint8_t* configuration,
                                                      size_t configuration_length, uint8_t interface_number,
                                                      dextlink_host_object** interface)
{
    if (interface == nullptr) {
        return kIOReturnBadArgument;
    }
    *interface = nullptr;
    if (ops == nullptr || ops->control == nullptr || ops->bulk_out == nullptr || ops->abort == nullptr ||
        ops->clear_stall == nullptr || device_descriptor == nullptr ||
        device_descriptor_length < kIOUSBDescriptorSizeDevice || device_descriptor[0] < kIOUSBDescriptorSizeDevice ||
        device_descriptor[1] != kIOUSBDescriptorTypeDevice || configuration == nullptr ||
        configuration_length < kIOUSBDescriptorSizeConfiguration ||
        configuration[1] != kIOUSBDescriptorTypeConfiguration ||
        static_cast<size_t>(configuration[2] | (configuration[3] << 8)) != configuration_length ||
        !configurationIsWellFormed(configuration, configuration_length) ||
        dextlink::usb::findInterface(reinterpret_cast<const IOUSBConfigurationDescriptor*>(configuration),
                                     interface_number) == nullptr) {
        return kIOReturnBadArgument;
    }
    auto* backend = new IOUSBHostDevice::Backend();
    backend->ops = *ops;
    backend->context = context;
    backend->deviceDescriptor.assign(device_descriptor, device_descriptor + kIOUSBDescriptorSizeDevice);
    backend->configuration.assign(configuration, configuration + configuration_length);

    IOUSBHostDevice* device = make<IOUSBHostDevice>();
    if (device == nullptr) {
        delete backend;
        return kIOReturnNoMemory;
    }
    // From here the device owns the backend and calls ops->release when freed.
    device->SetBackendInternal(backend);
    IOUSBHostInterface* created = make<IOUSBHostInterface>();
    OSDictionary* properties = OSDictionary::withCapacity(4);
    if (created == nullptr || properties == nullptr) {
        OSSafeReleaseNULL(created);
        OSSafeReleaseNULL(properties);
        device->release();
        return kIOReturnNoMemory;
    }
    // The keys a USB personality matches on, as the interface nub has them.
    const auto* descriptor = reinterpret_cast<const IOUSBDeviceDescriptor*>(backend->deviceDescriptor.data());
    int32_t result = setNumber(properties, "idVendor", descriptor->idVendor);
    if (result == kIOReturnSuccess) {
        result = setNumber(properties, "idProduct", descriptor->idProduct);
    }
    if (result == kIOReturnSuccess) {
        result = setNumber(properties, "bConfigurationValue", configuration[5]);
    }
    if (result == kIOReturnSuccess) {
        result = setNumber(properties, "bInterfaceNumber", interface_number);
    }
    if (result != kIOReturnSuccess) {
        created->release();
        properties->release();
        device->release();
        return result;
    }
    created->SetPropertiesInternal(properties);
    properties->release();
    created->SetDeviceInternal(device, interface_number);
    created->SetProviderInternal(device);
    device->release();
    *interface = handle(created);
    return kIOReturnSuccess;
}

extern "C" int32_t dextlink_host_service_start_on(dextlink_host_object* personality, dextlink_host_object* p,
                                                  dextlink_host_object** service)
{
    if (service == nullptr) {
        return kIOReturnBadArgument;
    }
    *service = nullptr;
    OSDictionary* properties = OSDynamicCast(OSDictionary, object(personality));
    IOService* provider = OSDynamicCast(IOService, object(p));
    if (properties == nullptr || provider == nullptr) {
        return kIOReturnBadArgument;
    }
    IOService* started = nullptr;
    kern_return_t ret = dextlink::host::startService(properties, provider, &started);
    if (ret == kIOReturnSuccess) {
        *service = handle(started);
    }
    return ret;
}

extern "C" int32_t dextlink_host_usb_terminate(dextlink_host_object* s)
{
    IOService* service = OSDynamicCast(IOService, object(s));
    if (service == nullptr) {
        return kIOReturnBadArgument;
    }
    IOUSBHostInterface* interface = OSDynamicCast(IOUSBHostInterface, service->GetProvider());
    if (interface == nullptr || interface->GetDeviceInternal() == nullptr) {
        return kIOReturnBadArgument;
    }
    IOUSBHostDevice::Backend* backend = interface->GetDeviceInternal()->GetBackendInternal();
    {
        std::lock_guard<std::mutex> guard(backend->lock);
        backend->terminated = true;
    }
    // Pending transfers end as the device's going ends them, before Stop:
    // their completions are queued ahead of it on the dext's queue.
    const auto* configuration = reinterpret_cast<const IOUSBConfigurationDescriptor*>(backend->configuration.data());
    const IOUSBEndpointDescriptor* endpoint = nullptr;
    const IOUSBInterfaceDescriptor* descriptor = interface->GetInterfaceDescriptor(configuration);
    while ((endpoint = IOUSBGetNextEndpointDescriptor(configuration, descriptor,
                                                      reinterpret_cast<const IOUSBDescriptorHeader*>(endpoint))) !=
           nullptr) {
        backend->ops.abort(backend->context, endpoint->bEndpointAddress, kIOReturnNoDevice);
    }
    if (!service->IsStarted()) {
        return kIOReturnSuccess;
    }
    kern_return_t result = kIOReturnSuccess;
    dextlink::host::runOnQueue(service, nullptr, [&] { result = service->Stop(interface); });
    return result;
}

void dextlink::usb::deviceGone(IOUSBHostDevice* device)
{
    IOUSBHostDevice::Backend* backend = device->GetBackendInternal();
    IOService* owner = nullptr;
    {
        std::lock_guard<std::mutex> guard(backend->lock);
        if (backend->terminated) {
            return;
        }
        backend->terminated = true;
        owner = backend->sessionOwner;
        if (owner != nullptr) {
            owner->retain();
        }
    }
    if (owner == nullptr) {
        return;
    }
    // Not on the caller's thread: that is the host's transfer thread, and
    // Stop's Abort waits for the completions it delivers.
    try {
        std::thread([owner] {
            if (owner->IsStarted()) {
                dextlink::host::runOnQueue(owner, nullptr, [owner] { owner->Stop(owner->GetProvider()); });
            }
            owner->release();
        }).detach();
    } catch (...) {
        dextlink::runtimeError("no thread to stop %s after its device went away",
                               owner->getMetaClass()->getClassName());
        owner->release();
    }
}
