// IOUSBHostPipe: one endpoint of an interface (docs/driverkit.md §6). AsyncIO
// goes to the simulated device's bulk OUT pipe (its link model and faults,
// dextlink::sim::usb::BulkOutPipe); the completion runs the action's method
// (a TYPE(IOUSBHostPipe::CompleteAsyncIO) method) on its target's queue.
// Method ids are Apple's (iig-generated IOUSBHostPipe.h).
#ifndef DEXTLINK_USBDRIVERKIT_IOUSBHOSTPIPE_H
#define DEXTLINK_USBDRIVERKIT_IOUSBHOSTPIPE_H

#include <USBDriverKit/AppleUSBDefinitions.h>
#include <DriverKit/IOMemoryDescriptor.h>
#include <DriverKit/IOService.h>
#include <DriverKit/OSAction.h>

struct IOUSBStandardEndpointDescriptors {
    uint16_t bcdUSB;
    IOUSBEndpointDescriptor descriptor;
    IOUSBSuperSpeedEndpointCompanionDescriptor ssCompanionDescriptor;
    IOUSBSuperSpeedPlusIsochronousEndpointCompanionDescriptor sspCompanionDescriptor;
};

enum IOUSBGetEndpointDescriptorOptions {
    kIOUSBGetEndpointDescriptorOriginal = 0,
    kIOUSBGetEndpointDescriptorCurrentPolicy
};

enum { kIOUSBHostPipeBundlingMax = 16 };

#define IOUSBHostPipe_GetSpeed_ID 0xe1fe37db83c583acULL
#define IOUSBHostPipe_GetDeviceAddress_ID 0x87ac5eade26f9ccaULL
#define IOUSBHostPipe_Abort_ID 0xef24b2fbd2882133ULL
#define IOUSBHostPipe_AdjustPipe_ID 0xdcaaa80dbed30817ULL
#define IOUSBHostPipe_GetDescriptors_ID 0xce8972691e0c689fULL
#define IOUSBHostPipe_SetIdlePolicy_ID 0x9aeab42e58e7bf62ULL
#define IOUSBHostPipe_GetIdlePolicy_ID 0xd980a0f13532038dULL
#define IOUSBHostPipe_ClearStall_ID 0x9d34b4ab73444133ULL
#define IOUSBHostPipe_CompleteAsyncIO_ID 0xc320a3eea932c04aULL
#define IOUSBHostPipe_AsyncIO_ID 0xe566bead3d13d7e0ULL
#define IOUSBHostPipe_IO_ID 0x825d3f5b7ac4351eULL
#define IOUSBHostPipe_CompleteAsyncIsochIO_ID 0xd6c5e31fcec49c24ULL
#define IOUSBHostPipe_IsochIO_ID 0xe50e498877f210d7ULL
#define IOUSBHostPipe_CreateMemoryDescriptorRing_ID 0x96299f8363f330f3ULL
#define IOUSBHostPipe_SetMemoryDescriptor_ID 0xe0ce30d41957b747ULL
#define IOUSBHostPipe_AsyncIOBundled_ID 0xa67fb499d6f65f30ULL
#define IOUSBHostPipe_CompleteAsyncIOBundled_ID 0xdd0623caa00a3c04ULL

#define IOUSBHostPipe_GetSpeed_Args uint8_t *speed
#define IOUSBHostPipe_GetDeviceAddress_Args uint8_t *address
#define IOUSBHostPipe_Abort_Args IOOptionBits options, kern_return_t withError, IOService *forClient
#define IOUSBHostPipe_GetDescriptors_Args \
    IOUSBStandardEndpointDescriptors *descriptors, IOUSBGetEndpointDescriptorOptions type
#define IOUSBHostPipe_ClearStall_Args bool withRequest
#define IOUSBHostPipe_CompleteAsyncIO_Args \
    OSAction *action, IOReturn status, uint32_t actualByteCount, uint64_t completionTimestamp
#define IOUSBHostPipe_AsyncIO_Args \
    IOMemoryDescriptor *dataBuffer, uint32_t dataBufferLength, OSAction *completion, uint32_t completionTimeoutMs
#define IOUSBHostPipe_IO_Args \
    IOMemoryDescriptor *dataBuffer, uint32_t dataBufferLength, uint32_t *bytesTransferred, uint32_t completionTimeoutMs

struct IOUSBHostPipe_GetSpeed_Invocation {
    uint8_t* speed;
};
struct IOUSBHostPipe_GetDeviceAddress_Invocation {
    uint8_t* address;
};
struct IOUSBHostPipe_Abort_Invocation {
    IOOptionBits options;
    kern_return_t withError;
    IOService* forClient;
};
struct IOUSBHostPipe_GetDescriptors_Invocation {
    IOUSBStandardEndpointDescriptors* descriptors;
    IOUSBGetEndpointDescriptorOptions type;
};
struct IOUSBHostPipe_ClearStall_Invocation {
    bool withRequest;
};
// What a TYPE(IOUSBHostPipe::CompleteAsyncIO) method receives.
struct IOUSBHostPipe_CompleteAsyncIO_Invocation {
    OSAction* action;
    IOReturn status;
    uint32_t actualByteCount;
    uint64_t completionTimestamp;
};
struct IOUSBHostPipe_AsyncIO_Invocation {
    IOMemoryDescriptor* dataBuffer;
    uint32_t dataBufferLength;
    OSAction* completion;
    uint32_t completionTimeoutMs;
};
struct IOUSBHostPipe_IO_Invocation {
    IOMemoryDescriptor* dataBuffer;
    uint32_t dataBufferLength;
    uint32_t* bytesTransferred;
    uint32_t completionTimeoutMs;
};

class IOUSBHostDevice;

class IOUSBHostPipe : public OSObject {
    OSDeclareDefaultStructors(IOUSBHostPipe)
public:
    using super = OSObject;

    bool init() override;
    void free() override;

    // USB speed of the device (kIOUSBHostConnectionSpeed*; the simulated device is high speed).
    kern_return_t GetSpeed(uint8_t* speed, OSDispatchMethod supermethod = nullptr) const;
    kern_return_t GetDeviceAddress(uint8_t* address, OSDispatchMethod supermethod = nullptr) const;
    // Every pending transfer completes with `withError` (pass kIOReturnAborted,
    // §6-3); kIOUSBAbortSynchronous returns once their completions are queued.
    kern_return_t Abort(IOOptionBits options, kern_return_t withError, IOService* forClient,
                        OSDispatchMethod supermethod = nullptr);
    kern_return_t GetDescriptors(IOUSBStandardEndpointDescriptors* descriptors, IOUSBGetEndpointDescriptorOptions type,
                                 OSDispatchMethod supermethod = nullptr);
    // Aborts all pending IO with kIOReturnAborted, then clears the halt
    // (§6-4); `withRequest` also sends CLEAR_FEATURE(ENDPOINT_HALT) to the device.
    kern_return_t ClearStall(bool withRequest, OSDispatchMethod supermethod = nullptr);
    // The action type of AsyncIO's completion; a pipe never implements it.
    void CompleteAsyncIO(OSAction* action, IOReturn status, uint32_t actualByteCount, uint64_t completionTimestamp,
                         OSDispatchMethod supermethod = nullptr);
    // Queues `dataBufferLength` bytes from the start of `dataBuffer`;
    // kIOReturnSuccess means `completion` will be called, once (§6-4).
    kern_return_t AsyncIO(IOMemoryDescriptor* dataBuffer, uint32_t dataBufferLength, OSAction* completion,
                          uint32_t completionTimeoutMs, OSDispatchMethod supermethod = nullptr);
    // AsyncIO, waited for.
    kern_return_t IO(IOMemoryDescriptor* dataBuffer, uint32_t dataBufferLength, uint32_t* bytesTransferred,
                     uint32_t completionTimeoutMs, OSDispatchMethod supermethod = nullptr);

    // Runtime use: the endpoint the pipe is (its descriptor, copied), on `device`.
    bool InitInternal(IOUSBHostDevice* device, const IOUSBEndpointDescriptor* endpoint);
    uint8_t GetEndpointAddressInternal() const;

protected:
    kern_return_t GetSpeed_Impl(IOUSBHostPipe_GetSpeed_Args);
    kern_return_t GetDeviceAddress_Impl(IOUSBHostPipe_GetDeviceAddress_Args);
    kern_return_t Abort_Impl(IOUSBHostPipe_Abort_Args);
    kern_return_t GetDescriptors_Impl(IOUSBHostPipe_GetDescriptors_Args);
    kern_return_t ClearStall_Impl(IOUSBHostPipe_ClearStall_Args);
    kern_return_t AsyncIO_Impl(IOUSBHostPipe_AsyncIO_Args);
    kern_return_t IO_Impl(IOUSBHostPipe_IO_Args);

private:
    struct State;
    State* state_;

public:
    // Runtime use: the device the pipe belongs to (not retained).
    IOUSBHostDevice* GetDeviceInternal() const;
};

#endif
