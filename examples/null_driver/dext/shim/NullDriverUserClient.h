// NullDriverUserClient.h, off-device stand-in: what iig generates from
// ../NullDriverUserClient.iig, cut down to what the NullDriver user client
// needs when it is compiled against dextlink's DriverKit shim
// (-DDEXTLINK_DRIVERKIT_SHIM -I <this directory>).
//
// This file sits in its own directory so that it never shadows the real iig
// output in an Xcode build: `#include "NullDriverUserClient.h"` in
// ../NullDriverUserClient.cpp searches the .cpp's own directory first.
//
// What iig would generate, and what stands in for it here:
//   - `<Class>_<Method>_Args` for every method implemented with IMPL()
//     (the shim's IMPL/DEFN macros expand to `<Method>_Impl(<those args>)`);
//   - the `ivars` pointer and `using super = IOUserClient;`;
//   - `CreateActionSimulatedAsyncEvent(referenceSize, &action)` for the
//     TYPE(IOTimerDispatchSource::TimerOccurred) method, whose action routes
//     the timer's message to `SimulatedAsyncEvent_Impl` -- on device through
//     the class's iig Dispatch, here through the shim's OSAction::ShimInvoke;
//   - OSDynamicCast support (the shim uses dynamic_cast, so nothing to do).
// Start/Stop are the shim's IOService::Start_Impl/Stop_Impl overrides.

#ifndef NullDriverUserClient_h
#define NullDriverUserClient_h

#ifndef DEXTLINK_DRIVERKIT_SHIM
#error "shim/NullDriverUserClient.h is for off-device builds with -DDEXTLINK_DRIVERKIT_SHIM; on device iig generates NullDriverUserClient.h from NullDriverUserClient.iig"
#endif

#include <dextlink/driverkit_shim.h>

#define NullDriverUserClient_Start_Args IOService * provider
#define NullDriverUserClient_Stop_Args IOService * provider
#define NullDriverUserClient_SimulatedAsyncEvent_Args OSAction * action, uint64_t time

// iig derives message IDs from a hash of the method; the shim ignores them.
#define NullDriverUserClient_SimulatedAsyncEvent_ID 0x4e554c4c44525631ULL
#define IOTimerDispatchSource_TimerOccurred_ID      0x0f4ab1c3cbb5ae47ULL

struct NullDriverUserClient_IVars;

class NullDriverUserClient : public IOUserClient
{
public:
    using super = IOUserClient;

    NullDriverUserClient_IVars* ivars = nullptr;

    bool init() override;
    void free() override;

    kern_return_t ExternalMethod(uint64_t selector,
                                 IOUserClientMethodArguments* arguments,
                                 const IOUserClientMethodDispatch* dispatch,
                                 OSObject* target,
                                 void* reference) override;

    kern_return_t CreateActionSimulatedAsyncEvent(size_t referenceSize, OSAction** action)
    {
        kern_return_t ret = OSAction::Create(this, NullDriverUserClient_SimulatedAsyncEvent_ID,
                                             IOTimerDispatchSource_TimerOccurred_ID, referenceSize, action);
        if (ret == kIOReturnSuccess) {
            (*action)->ShimSetHandler(&DispatchSimulatedAsyncEvent);
        }
        return ret;
    }

    // Off-device test hooks, defined in NullDriverUserClient.cpp: the timer
    // that stands in for the simulated device, and the client's registered
    // callback (both unretained, NULL when absent).
    IOTimerDispatchSource* ShimTimer();
    OSAction* ShimRegisteredCallback();

protected:
    kern_return_t Start_Impl(NullDriverUserClient_Start_Args) override;
    kern_return_t Stop_Impl(NullDriverUserClient_Stop_Args) override;
    void SimulatedAsyncEvent_Impl(NullDriverUserClient_SimulatedAsyncEvent_Args);

private:
    // TimerOccurred(action, time) arriving at the action: one argument, the time.
    static void DispatchSimulatedAsyncEvent(OSObject* target, OSAction* action, const uint64_t* args,
                                            uint32_t count)
    {
        NullDriverUserClient* self = OSDynamicCast(NullDriverUserClient, target);
        if (self != nullptr && count >= 1) {
            self->SimulatedAsyncEvent_Impl(action, args[0]);
        }
    }
};

#endif /* NullDriverUserClient_h */
