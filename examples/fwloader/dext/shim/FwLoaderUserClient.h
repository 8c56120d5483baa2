// FwLoaderUserClient.h, off-device stand-in: what iig generates from
// ../FwLoaderUserClient.iig, cut down to what the fwloader user client needs
// when it is compiled against dextlink's DriverKit and USBDriverKit shims
// (-DDEXTLINK_DRIVERKIT_SHIM -I <this directory>).
//
// This file sits in its own directory so that it never shadows the real iig
// output in an Xcode build: `#include "FwLoaderUserClient.h"` in
// ../FwLoaderUserClient.cpp searches the .cpp's own directory first.
//
// What iig would generate, and what stands in for it here:
//   - `<Class>_<Method>_Args` for every method implemented with IMPL()
//     (the shim's IMPL/DEFN macros expand to `<Method>_Impl(<those args>)`);
//   - the `ivars` pointer and `using super = IOUserClient;`;
//   - CopyClientMemoryForType, which iig routes to
//     CopyClientMemoryForType_Impl (the shim's IOUserClient declares it as a
//     plain virtual, so the override forwards);
//   - `CreateActionSlotTransferComplete(referenceSize, &action)` for the
//     TYPE(IOUSBHostPipe::CompleteAsyncIO) method, whose action routes the
//     pipe's completion (status, actualByteCount, completionTimestamp) to
//     `SlotTransferComplete_Impl` -- on device through the class's iig
//     Dispatch, here through the shim's OSAction::ShimInvoke, which the fake
//     IOUSBHostPipe::CompleteAsyncIO calls;
//   - OSDynamicCast support (the shim uses dynamic_cast, so nothing to do).
// Also here, shim-only: the test hooks (Shim…), among them
// ShimFailActionCreation, which makes one CreateActionSlotTransferComplete
// fail so that a test can fail Start at its slot actions.
// Start/Stop are the shim's IOService::Start_Impl/Stop_Impl overrides.

#ifndef FwLoaderUserClient_h
#define FwLoaderUserClient_h

#ifndef DEXTLINK_DRIVERKIT_SHIM
#error "shim/FwLoaderUserClient.h is for off-device builds with -DDEXTLINK_DRIVERKIT_SHIM; on device iig generates FwLoaderUserClient.h from FwLoaderUserClient.iig"
#endif

#include <dextlink/driverkit_shim.h>
#include <dextlink/usbdriverkit_shim.h>

#define FwLoaderUserClient_Start_Args IOService * provider
#define FwLoaderUserClient_Stop_Args IOService * provider
#define FwLoaderUserClient_CopyClientMemoryForType_Args \
    uint64_t type, uint64_t * options, IOMemoryDescriptor ** memory
#define FwLoaderUserClient_SlotTransferComplete_Args \
    OSAction * action, IOReturn status, uint32_t actualByteCount, uint64_t completionTimestamp

// iig derives message IDs from a hash of the method; the shim ignores them.
#define FwLoaderUserClient_SlotTransferComplete_ID 0x46574c44534c4f54ULL
#define IOUSBHostPipe_CompleteAsyncIO_ID 0x5553424850495045ULL

struct FwLoaderUserClient_IVars;

class FwLoaderUserClient : public IOUserClient
{
public:
    using super = IOUserClient;

    FwLoaderUserClient_IVars* ivars = nullptr;

    bool init() override;
    void free() override;

    kern_return_t ExternalMethod(uint64_t selector,
                                 IOUserClientMethodArguments* arguments,
                                 const IOUserClientMethodDispatch* dispatch,
                                 OSObject* target,
                                 void* reference) override;

    kern_return_t CopyClientMemoryForType(uint64_t type, uint64_t* options, IOMemoryDescriptor** memory) override
    {
        return CopyClientMemoryForType_Impl(type, options, memory);
    }

    kern_return_t CreateActionSlotTransferComplete(size_t referenceSize, OSAction** action)
    {
        if (shimActionSuccessesBeforeFailure == 0) {
            const kern_return_t injected = shimActionFailure;
            ShimFailActionCreation(0, kIOReturnSuccess);
            *action = nullptr;
            return injected;
        }
        if (shimActionSuccessesBeforeFailure != UINT32_MAX) {
            --shimActionSuccessesBeforeFailure;
        }
        kern_return_t ret = OSAction::Create(this, FwLoaderUserClient_SlotTransferComplete_ID,
                                             IOUSBHostPipe_CompleteAsyncIO_ID, referenceSize, action);
        if (ret == kIOReturnSuccess) {
            (*action)->ShimSetHandler(&DispatchSlotTransferComplete);
        }
        return ret;
    }

    // Off-device test hooks, defined in FwLoaderUserClient.cpp (unretained;
    // NULL when absent or out of range).
    IOUSBHostInterface* ShimInterface();
    IOUSBHostPipe* ShimPipe();
    IOBufferMemoryDescriptor* ShimRing();
    IOMemoryDescriptor* ShimSlotBuffer(uint32_t slot);
    IOAddressSegment ShimSlotRange(uint32_t slot);
    OSAction* ShimSlotAction(uint32_t slot);
    // The client's submit completion the slot holds while its transfer is in
    // flight.
    OSAction* ShimSlotCompletion(uint32_t slot);
    // write's bounce buffer and the address range cached for it.
    IOBufferMemoryDescriptor* ShimBounce();
    IOAddressSegment ShimBounceRange();

    // After `after` more CreateActionSlotTransferComplete calls, the next
    // one fails with `ret`, once (kIOReturnSuccess cancels).
    void ShimFailActionCreation(uint32_t after, kern_return_t ret)
    {
        shimActionSuccessesBeforeFailure = ret != kIOReturnSuccess ? after : UINT32_MAX;
        shimActionFailure = ret;
    }

protected:
    kern_return_t Start_Impl(FwLoaderUserClient_Start_Args) override;
    kern_return_t Stop_Impl(FwLoaderUserClient_Stop_Args) override;
    kern_return_t CopyClientMemoryForType_Impl(FwLoaderUserClient_CopyClientMemoryForType_Args);
    void SlotTransferComplete_Impl(FwLoaderUserClient_SlotTransferComplete_Args);

private:
    uint32_t shimActionSuccessesBeforeFailure = UINT32_MAX;
    kern_return_t shimActionFailure = kIOReturnSuccess;

    // CompleteAsyncIO(action, status, actualByteCount, completionTimestamp)
    // arriving at the action: three arguments after the action.
    static void DispatchSlotTransferComplete(OSObject* target, OSAction* action, const uint64_t* args,
                                             uint32_t count)
    {
        FwLoaderUserClient* self = OSDynamicCast(FwLoaderUserClient, target);
        if (self != nullptr && count >= 3) {
            self->SlotTransferComplete_Impl(action, static_cast<IOReturn>(static_cast<uint32_t>(args[0])),
                                            static_cast<uint32_t>(args[1]), args[2]);
        }
    }
};

#endif /* FwLoaderUserClient_h */
