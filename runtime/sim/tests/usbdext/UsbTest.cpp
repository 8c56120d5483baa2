// The USB test dext: a driver on an IOUSBHostInterface and the user client
// the test drives it with. Selectors of the user client:
//   0 submit (async): slot, length, fill byte, timeout ms: fills the slot's
//     buffer with fill, fill+1, … and AsyncIOs it on the bulk OUT pipe; the
//     call fails with AsyncIO's error; its completion sends
//     (status, actualByteCount, slot, timestamp != 0)
//   1 clear stall: ClearStall(true); 1 scalar out: its result
//   2 device request: bmRequestType, bRequest, wValue, wIndex, wLength;
//     2 scalars out: (bytesTransferred, the first 8 bytes little-endian)
//     or the request's error
//   3 bad arguments: 1 scalar in (which), 1 out: the IOReturn of the bad call
//   4 synchronous IO: slot, length, fill byte; 2 scalars out: (status, bytesTransferred)
//   5 abort: Abort(kIOUSBAbortSynchronous, kIOReturnAborted); 1 scalar out: its result
#include <DriverKit/DriverKit.h>
#include <USBDriverKit/USBDriverKit.h>

#include <string.h>

#include "UsbTestClient.h"
#include "UsbTestDriver.h"

enum {
    kSlotCount = 4,
    kSlotSize = 4096,
    kEndpointOut = 0x01,
    kSelectorCount = 6,
};

struct UsbTestDriver_IVars {
    IOUSBHostInterface* interface;
    IOUSBHostPipe* pipe;
    IOBufferMemoryDescriptor* slots[kSlotCount];
    OSAction* slotActions[kSlotCount];
    // The client's completion for the transfer in each slot.
    OSAction* clientCompletions[kSlotCount];
    IOUserClient* completionClients[kSlotCount];
    IOBufferMemoryDescriptor* control;
    bool open;
};

bool UsbTestDriver::init()
{
    if (!super::init()) {
        return false;
    }
    ivars = IONewZero(UsbTestDriver_IVars, 1);
    return ivars != nullptr;
}

void UsbTestDriver::free()
{
    if (ivars != nullptr) {
        for (int i = 0; i < kSlotCount; i++) {
            OSSafeReleaseNULL(ivars->slots[i]);
            OSSafeReleaseNULL(ivars->slotActions[i]);
            OSSafeReleaseNULL(ivars->clientCompletions[i]);
            OSSafeReleaseNULL(ivars->completionClients[i]);
        }
        OSSafeReleaseNULL(ivars->control);
        OSSafeReleaseNULL(ivars->pipe);
        OSSafeReleaseNULL(ivars->interface);
    }
    IOSafeDeleteNULL(ivars, UsbTestDriver_IVars, 1);
    super::free();
}

kern_return_t IMPL(UsbTestDriver, Start)
{
    kern_return_t ret = Start(provider, SUPERDISPATCH);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    ivars->interface = OSDynamicCast(IOUSBHostInterface, provider);
    if (ivars->interface == nullptr) {
        os_log_error(OS_LOG_DEFAULT, "UsbTestDriver: the provider is not an IOUSBHostInterface");
        return kIOReturnNoDevice;
    }
    ivars->interface->retain();
    ret = ivars->interface->Open(this, 0, nullptr);
    if (ret != kIOReturnSuccess) {
        os_log_error(OS_LOG_DEFAULT, "UsbTestDriver: Open failed: 0x%x", ret);
        return ret;
    }
    ivars->open = true;
    const IOUSBConfigurationDescriptor* configuration = ivars->interface->CopyConfigurationDescriptor();
    const IOUSBInterfaceDescriptor* interface =
        configuration == nullptr ? nullptr : ivars->interface->GetInterfaceDescriptor(configuration);
    const IOUSBEndpointDescriptor* endpoint =
        interface == nullptr ? nullptr : IOUSBGetNextEndpointDescriptor(configuration, interface, nullptr);
    uint8_t address = endpoint == nullptr ? 0 : endpoint->bEndpointAddress;
    if (configuration != nullptr) {
        IOUSBHostFreeDescriptor(configuration);
    }
    if (address != kEndpointOut) {
        os_log_error(OS_LOG_DEFAULT, "UsbTestDriver: the interface's first endpoint is 0x%x", address);
        return kIOReturnNotFound;
    }
    ret = ivars->interface->CopyPipe(address, &ivars->pipe);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    for (uint32_t i = 0; i < kSlotCount; i++) {
        ret = ivars->interface->CreateIOBuffer(kIOMemoryDirectionOut, kSlotSize, &ivars->slots[i]);
        if (ret != kIOReturnSuccess) {
            return ret;
        }
        ret = CreateActionWriteComplete(sizeof(uint32_t), &ivars->slotActions[i]);
        if (ret != kIOReturnSuccess) {
            return ret;
        }
        *static_cast<uint32_t*>(ivars->slotActions[i]->GetReference()) = i;
    }
    ret = ivars->interface->CreateIOBuffer(kIOMemoryDirectionInOut, 64, &ivars->control);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    return RegisterService();
}

kern_return_t IMPL(UsbTestDriver, Stop)
{
    if (ivars->pipe != nullptr) {
        ivars->pipe->Abort(kIOUSBAbortSynchronous, kIOReturnAborted, this);
    }
    if (ivars->open) {
        ivars->interface->Close(this, 0);
        ivars->open = false;
    }
    // The actions hold this object: released here, or it never goes.
    for (int i = 0; i < kSlotCount; i++) {
        OSSafeReleaseNULL(ivars->slotActions[i]);
    }
    os_log(OS_LOG_DEFAULT, "UsbTestDriver: Stop");
    return Stop(provider, SUPERDISPATCH);
}

kern_return_t IMPL(UsbTestDriver, NewUserClient)
{
    (void)type;
    IOService* client = nullptr;
    kern_return_t ret = Create(this, "UserClientProperties", &client);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    *userClient = OSDynamicCast(IOUserClient, client);
    if (*userClient == nullptr) {
        client->release();
        return kIOReturnError;
    }
    return kIOReturnSuccess;
}

void IMPL(UsbTestDriver, WriteComplete)
{
    uint32_t slot = *static_cast<uint32_t*>(action->GetReference());
    if (slot >= kSlotCount) {
        return;
    }
    OSAction* completion = ivars->clientCompletions[slot];
    IOUserClient* client = ivars->completionClients[slot];
    ivars->clientCompletions[slot] = nullptr;
    ivars->completionClients[slot] = nullptr;
    if (completion != nullptr && client != nullptr) {
        IOUserClientAsyncArgumentsArray values = {static_cast<uint64_t>(static_cast<uint32_t>(status)),
                                                  actualByteCount, slot, completionTimestamp != 0};
        client->AsyncCompletion(completion, kIOReturnSuccess, values, 4);
    }
    OSSafeReleaseNULL(completion);
    OSSafeReleaseNULL(client);
}

// The driver's operations, as its user client calls them.
static kern_return_t Submit(UsbTestDriver* driver, IOUserClient* client, const uint64_t* in, OSAction* completion)
{
    UsbTestDriver_IVars* ivars = driver->ivars;
    uint64_t slot = in[0];
    if (slot >= kSlotCount || ivars->clientCompletions[slot] != nullptr) {
        return kIOReturnBusy;
    }
    if (ivars->slots[slot] != nullptr) {
        IOAddressSegment range = {};
        ivars->slots[slot]->GetAddressRange(&range);
        uint8_t* bytes = reinterpret_cast<uint8_t*>(range.address);
        for (uint64_t i = 0; i < range.length; i++) {
            bytes[i] = static_cast<uint8_t>(in[2] + i);
        }
    }
    completion->retain();
    client->retain();
    ivars->clientCompletions[slot] = completion;
    ivars->completionClients[slot] = client;
    kern_return_t ret = kIOReturnNotOpen;
    if (ivars->pipe != nullptr) {
        ret = ivars->pipe->AsyncIO(ivars->slots[slot], static_cast<uint32_t>(in[1]), ivars->slotActions[slot],
                                   static_cast<uint32_t>(in[3]));
    }
    if (ret != kIOReturnSuccess) {
        ivars->clientCompletions[slot] = nullptr;
        ivars->completionClients[slot] = nullptr;
        completion->release();
        client->release();
    }
    return ret;
}

static kern_return_t BadArgument(UsbTestDriver* driver, uint64_t which)
{
    UsbTestDriver_IVars* ivars = driver->ivars;
    switch (which) {
    case 0:  // longer than the buffer
        return ivars->pipe->AsyncIO(ivars->slots[0], kSlotSize + 1, ivars->slotActions[0], 0);
    case 1:  // no completion
        return ivars->pipe->AsyncIO(ivars->slots[0], 16, nullptr, 0);
    case 2: {  // an action of another type
        OSAction* wrong = nullptr;
        kern_return_t ret = OSAction::Create(driver, UsbTestDriver_WriteComplete_ID, IOService_Start_ID, 0, &wrong);
        if (ret == kIOReturnSuccess) {
            ret = ivars->pipe->AsyncIO(ivars->slots[0], 16, wrong, 0);
            wrong->release();
        }
        return ret;
    }
    case 3:  // no bytes
        return ivars->pipe->AsyncIO(ivars->slots[0], 0, ivars->slotActions[0], 0);
    case 4: {  // an endpoint the interface does not have
        IOUSBHostPipe* pipe = nullptr;
        kern_return_t ret = ivars->interface->CopyPipe(0x05, &pipe);
        OSSafeReleaseNULL(pipe);
        return ret;
    }
    case 5:  // a second session
        return ivars->interface->Open(driver, 0, nullptr);
    case 6:  // no buffer
        return ivars->pipe->AsyncIO(nullptr, 16, ivars->slotActions[0], 0);
    case 7:  // a control request longer than its buffer
        return ivars->interface->DeviceRequest(0xc0, 1, 0, 0, 65, ivars->control, nullptr, 0);
    default:
        return kIOReturnUnsupported;
    }
}

static UsbTestDriver* DriverOf(OSObject* target)
{
    IOUserClient* client = OSRequiredCast(IOUserClient, target);
    return OSDynamicCast(UsbTestDriver, client->GetProvider());
}

static kern_return_t SubmitMethod(OSObject* target, void*, IOUserClientMethodArguments* arguments)
{
    UsbTestDriver* driver = DriverOf(target);
    return driver == nullptr ? kIOReturnNotAttached : Submit(driver, OSRequiredCast(IOUserClient, target), arguments->scalarInput, arguments->completion);
}

static kern_return_t ClearStallMethod(OSObject* target, void*, IOUserClientMethodArguments* arguments)
{
    UsbTestDriver* driver = DriverOf(target);
    if (driver == nullptr || driver->ivars->pipe == nullptr) {
        return kIOReturnNotAttached;
    }
    arguments->scalarOutput[0] = static_cast<uint32_t>(driver->ivars->pipe->ClearStall(true));
    return kIOReturnSuccess;
}

static kern_return_t DeviceRequestMethod(OSObject* target, void*, IOUserClientMethodArguments* arguments)
{
    UsbTestDriver* driver = DriverOf(target);
    if (driver == nullptr || driver->ivars->control == nullptr) {
        return kIOReturnNotAttached;
    }
    const uint64_t* in = arguments->scalarInput;
    uint16_t transferred = 0;
    kern_return_t ret = driver->ivars->interface->DeviceRequest(
        static_cast<uint8_t>(in[0]), static_cast<uint8_t>(in[1]), static_cast<uint16_t>(in[2]),
        static_cast<uint16_t>(in[3]), static_cast<uint16_t>(in[4]), driver->ivars->control, &transferred, 1000);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    IOAddressSegment range = {};
    driver->ivars->control->GetAddressRange(&range);
    uint64_t first = 0;
    memcpy(&first, reinterpret_cast<const void*>(range.address), sizeof first);
    arguments->scalarOutput[0] = transferred;
    arguments->scalarOutput[1] = first;
    return kIOReturnSuccess;
}

static kern_return_t BadArgumentMethod(OSObject* target, void*, IOUserClientMethodArguments* arguments)
{
    UsbTestDriver* driver = DriverOf(target);
    if (driver == nullptr || driver->ivars->pipe == nullptr) {
        return kIOReturnNotAttached;
    }
    arguments->scalarOutput[0] = static_cast<uint32_t>(BadArgument(driver, arguments->scalarInput[0]));
    return kIOReturnSuccess;
}

static kern_return_t SyncIOMethod(OSObject* target, void*, IOUserClientMethodArguments* arguments)
{
    UsbTestDriver* driver = DriverOf(target);
    if (driver == nullptr || driver->ivars->pipe == nullptr) {
        return kIOReturnNotAttached;
    }
    const uint64_t* in = arguments->scalarInput;
    if (in[0] >= kSlotCount) {
        return kIOReturnBadArgument;
    }
    IOBufferMemoryDescriptor* slot = driver->ivars->slots[in[0]];
    IOAddressSegment range = {};
    slot->GetAddressRange(&range);
    memset(reinterpret_cast<void*>(range.address), static_cast<int>(in[2]), range.length);
    uint32_t transferred = 0;
    kern_return_t ret = driver->ivars->pipe->IO(slot, static_cast<uint32_t>(in[1]), &transferred, 1000);
    arguments->scalarOutput[0] = static_cast<uint32_t>(ret);
    arguments->scalarOutput[1] = transferred;
    return kIOReturnSuccess;
}

static kern_return_t AbortMethod(OSObject* target, void*, IOUserClientMethodArguments* arguments)
{
    UsbTestDriver* driver = DriverOf(target);
    if (driver == nullptr || driver->ivars->pipe == nullptr) {
        return kIOReturnNotAttached;
    }
    arguments->scalarOutput[0] =
        static_cast<uint32_t>(driver->ivars->pipe->Abort(kIOUSBAbortSynchronous, kIOReturnAborted, driver));
    return kIOReturnSuccess;
}

static const IOUserClientMethodDispatch kMethods[kSelectorCount] = {
    {SubmitMethod, 1, 4, 0, 0, 0},
    {ClearStallMethod, 0, 0, 0, 1, 0},
    {DeviceRequestMethod, 0, 5, 0, 2, 0},
    {BadArgumentMethod, 0, 1, 0, 1, 0},
    {SyncIOMethod, 0, 3, 0, 2, 0},
    {AbortMethod, 0, 0, 0, 1, 0},
};

kern_return_t UsbTestClient::ExternalMethod(uint64_t selector, IOUserClientMethodArguments* arguments,
                                            const IOUserClientMethodDispatch*, OSObject*, void*)
{
    if (selector >= kSelectorCount) {
        return kIOReturnBadArgument;
    }
    return super::ExternalMethod(selector, arguments, &kMethods[selector], this, nullptr);
}

kern_return_t IMPL(UsbTestClient, CopyClientMemoryForType)
{
    (void)type;
    (void)options;
    (void)memory;
    return kIOReturnUnsupported;
}
