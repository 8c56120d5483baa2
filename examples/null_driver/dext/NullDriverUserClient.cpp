// NullDriverUserClient.cpp: the user client of Apple's NullDriver sample
// ("Communicating between a DriverKit extension and a client app"), written
// against the dextlink-generated NullDriverInterface.h.
//
// The sample hand-writes its selector enum, its `externalMethodChecks` table,
// one static trampoline per checked selector and the unpacking of every
// argument.  Here all of that comes from null_driver.dextlink:
//     dextlink gen null_driver.dextlink --cpp NullDriverInterface.h
// and this file only routes ExternalMethod to `null_driver::ExternalMethod`
// and implements the `null_driver::Handle…` functions -- with the sample's
// behaviour, minus its unchecked reads and one buffer overflow (see
// HandleStructure).  SampleChecks.h proves at compile time that the
// generated table applies exactly the sample's checks.
//
// Builds: with NullDriverUserClient.iig (iig, or `dextlink iig`, generates
// the class header NullDriverUserClient.h) and the dextlink-generated
// NullDriverInterface.h (named so because iig's header for the service class,
// NullDriver.h, takes the schema's default name):
//     dextlink gen null_driver.dextlink --cpp NullDriverInterface.h
// In Xcode, or on Linux against `dextlink-sim --print-cflags`
// (examples/null_driver/build.rs does the latter).
//
// Section numbers (§) refer to docs/driverkit.md, the project's DriverKit
// reference.

#include <os/log.h>

#include <DriverKit/IOLib.h>
#include <DriverKit/IOMemoryMap.h>
#include <DriverKit/IOTimerDispatchSource.h>
#include <DriverKit/IOUserClient.h>
#include <DriverKit/OSData.h>

#include <time.h>

#include "NullDriverInterface.h"
#include "NullDriverUserClient.h"
#include "SampleChecks.h"

// Every log line starts with the same prefix, so that `log stream` or
// Console.app can pick out this driver's messages.  (Written without
// `##__VA_ARGS__`, a GNU extension: the format is the first variadic
// argument and joins the prefix by string-literal concatenation.)
#define Log(...) os_log(OS_LOG_DEFAULT, "NullDriverUserClient - " __VA_ARGS__)

using null_driver::DataStruct;
// The "Large Struct" the sample's client sends: 4104 bytes, more than the
// 4096 that travel inline, so it arrives as structureInputDescriptor (§3.1-1,
// §3.2-5).
using null_driver_sample::OversizedDataStruct;

namespace {

// The sample's delay before the simulated device answers, and the leeway the
// timer may add to it.
constexpr uint64_t kFiveSecondsInNanoseconds = 5000000000ULL;
constexpr uint64_t kTwoSecondsInNanoseconds = 2000000000ULL;
// The leading "type" value of every simulated event's payload.
constexpr uint64_t kSimulatedEventType = 2;
// The sample's limit on the scalars its unchecked handler touches: the wire
// carries at most 16 each way (§1, limit 2), but an unchecked handler must
// not trust the counts it is given.
constexpr uint32_t kMaxScalars = 16;

}  // namespace

struct NullDriverUserClient_IVars {
    // The client's callback, registered with RegisterAsyncCallback and
    // retained here (a completion is only retained for the duration of the
    // call that delivered it, §4.1-2).
    OSAction* callbackAction = nullptr;
    // The queue the timer delivers on, and the timer that simulates the
    // device.
    IODispatchQueue* dispatchQueue = nullptr;
    IOTimerDispatchSource* dispatchSource = nullptr;
    // The timer's handler action; its reference area holds the DataStruct the
    // simulated event answers.
    OSAction* simulatedAsyncDeviceResponseAction = nullptr;
};

// MARK: - Lifecycle

bool NullDriverUserClient::init()
{
    Log("init()");

    if (!super::init()) {
        Log("init() - super::init failed.");
        return false;
    }

    ivars = IONewZero(NullDriverUserClient_IVars, 1);
    if (ivars == nullptr) {
        Log("init() - Failed to allocate memory for ivars.");
        return false;
    }

    Log("init() - Finished.");
    return true;
}

kern_return_t IMPL(NullDriverUserClient, Start)
{
    kern_return_t ret = Start(provider, SUPERDISPATCH);
    if (ret != kIOReturnSuccess) {
        Log("Start() - super::Start failed with error: 0x%08x.", ret);
        return ret;
    }

    // The sample gives the timer a queue of its own.  This port delivers it
    // on the user client's default queue instead: ExternalMethod runs there
    // too (unless a kIOUserClientQueueNameExternalMethod queue is set,
    // §2.2-11), and DriverKit queues are serial, so SimulatedAsyncEvent never
    // runs while a handler is replacing ivars->callbackAction -- which,
    // unlike the sample, this port releases when it is replaced.
    ret = CopyDispatchQueue(kIOServiceDefaultQueueName, &ivars->dispatchQueue);
    if (ret != kIOReturnSuccess) {
        Log("Start() - Failed to get the default dispatch queue with error: 0x%08x.", ret);
        return ret;
    }

    ret = IOTimerDispatchSource::Create(ivars->dispatchQueue, &ivars->dispatchSource);
    if (ret != kIOReturnSuccess) {
        Log("Start() - Failed to create dispatch source with error: 0x%08x.", ret);
        return ret;
    }

    // The action the timer calls SimulatedAsyncEvent through, with room for
    // the DataStruct it will answer.  CreateActionSimulatedAsyncEvent is
    // generated by iig from the TYPE() annotation in the .iig file.
    ret = CreateActionSimulatedAsyncEvent(sizeof(DataStruct), &ivars->simulatedAsyncDeviceResponseAction);
    if (ret != kIOReturnSuccess) {
        Log("Start() - Failed to create action for simulated async event with error: 0x%08x.", ret);
        return ret;
    }

    ret = ivars->dispatchSource->SetHandler(ivars->simulatedAsyncDeviceResponseAction);
    if (ret != kIOReturnSuccess) {
        Log("Start() - Failed to assign simulated action to handler with error: 0x%08x.", ret);
        return ret;
    }

    Log("Start() - Finished.");
    return kIOReturnSuccess;
}

kern_return_t IMPL(NullDriverUserClient, Stop)
{
    Log("Stop()");

    // The default queue is the service's own: it is released in free(), not
    // cancelled.
#if defined(__BLOCKS__)
    // As the sample does: cancel the timer and both actions, and pass Stop
    // on to super only when the last cancellation has completed.
    __block uint32_t cancelCount = 0;
    if (ivars->dispatchSource != nullptr) {
        ++cancelCount;
    }
    if (ivars->simulatedAsyncDeviceResponseAction != nullptr) {
        ++cancelCount;
    }
    if (ivars->callbackAction != nullptr) {
        ++cancelCount;
    }

    if (cancelCount == 0) {
        kern_return_t ret = Stop(provider, SUPERDISPATCH);
        Log("Stop() - Finished with 0x%08x.", ret);
        return ret;
    }

    // Keep this object and the provider alive until the last cancellation
    // has stopped the service.
    this->retain();
    provider->retain();

    void (^finalize)(void) = ^{
        if (__atomic_sub_fetch(&cancelCount, 1U, __ATOMIC_ACQ_REL) == 0) {
            kern_return_t status = Stop(provider, SUPERDISPATCH);
            if (status != kIOReturnSuccess) {
                Log("Stop() - super::Stop failed with error: 0x%08x.", status);
            }
            Log("Stop() - Finished.");
            this->release();
            provider->release();
        }
    };

    if (ivars->dispatchSource != nullptr) {
        ivars->dispatchSource->Cancel(finalize);
    }
    if (ivars->simulatedAsyncDeviceResponseAction != nullptr) {
        ivars->simulatedAsyncDeviceResponseAction->Cancel(finalize);
    }
    if (ivars->callbackAction != nullptr) {
        ivars->callbackAction->Cancel(finalize);
    }

    Log("Stop() - Cancels started; the last one stops the service.");
    return kIOReturnSuccess;
#else
    // Without blocks (a g++ build against dextlink-sim's runtime; DriverKit
    // itself always has them), cancellation takes no handler: after Cancel
    // neither the timer nor the actions deliver again, so the user client
    // stops at once.
    if (ivars->dispatchSource != nullptr) {
        ivars->dispatchSource->Cancel(nullptr);
    }
    if (ivars->simulatedAsyncDeviceResponseAction != nullptr) {
        ivars->simulatedAsyncDeviceResponseAction->Cancel(nullptr);
    }
    if (ivars->callbackAction != nullptr) {
        ivars->callbackAction->Cancel(nullptr);
    }
    kern_return_t ret = Stop(provider, SUPERDISPATCH);
    Log("Stop() - Finished with 0x%08x.", ret);
    return ret;
#endif
}

void NullDriverUserClient::free()
{
    Log("free()");

    if (ivars != nullptr) {
        OSSafeReleaseNULL(ivars->simulatedAsyncDeviceResponseAction);
        OSSafeReleaseNULL(ivars->dispatchSource);
        OSSafeReleaseNULL(ivars->dispatchQueue);
        OSSafeReleaseNULL(ivars->callbackAction);
    }
    IOSafeDeleteNULL(ivars, NullDriverUserClient_IVars, 1);

    super::free();
}

// MARK: - ExternalMethod

// Called for every IOConnectCall…Method of the client app.  DriverKit passes
// NULL for dispatch, target and reference (§2.1-5); the generated
// null_driver::ExternalMethod bounds-checks the selector, answers dextlink's
// handshake, calls HandleScalar / HandleStructure directly (they are
// #[unchecked], as in the sample) and sends every other selector through
// DriverKit's checks with its kDispatchTable entry -- the entries
// SampleChecks.h compares with the sample's.
kern_return_t NullDriverUserClient::ExternalMethod(uint64_t selector,
                                                   IOUserClientMethodArguments* arguments,
                                                   const IOUserClientMethodDispatch* dispatch,
                                                   OSObject* target,
                                                   void* reference)
{
    (void)dispatch;
    (void)target;
    (void)reference;
    return null_driver::ExternalMethod(this, selector, arguments);
}

// MARK: - Helpers

namespace {

// The user client a handler was called for: the generated code passes the
// client itself as the target.
NullDriverUserClient* UserClient(OSObject* target)
{
    return OSDynamicCast(NullDriverUserClient, target);
}

// Remembers `input` in the simulated event's action and (re)arms the timer to
// fire five seconds from now, with two seconds of leeway.  An earlier,
// unfired deadline is replaced.
kern_return_t ArmSimulatedEvent(NullDriverUserClient* self, const DataStruct& input)
{
    NullDriverUserClient_IVars* ivars = self->ivars;
    if (ivars == nullptr || ivars->dispatchSource == nullptr ||
        ivars->simulatedAsyncDeviceResponseAction == nullptr) {
        Log("The simulated device is not set up (Start has not run).");
        return kIOReturnNotReady;
    }

    void* retained = ivars->simulatedAsyncDeviceResponseAction->GetReference();
    if (retained == nullptr) {
        return kIOReturnNoMemory;
    }
    memcpy(retained, &input, sizeof(input));

    const uint64_t now = clock_gettime_nsec_np(CLOCK_MONOTONIC_RAW);
    Log("Sleeping async...");
    kern_return_t ret = ivars->dispatchSource->WakeAtTime(kIOTimerClockMonotonicRaw, now + kFiveSecondsInNanoseconds,
                                                          kTwoSecondsInNanoseconds);
    if (ret != kIOReturnSuccess) {
        Log("Failed to arm the timer with error: 0x%08x.", ret);
    }
    return ret;
}

}  // namespace

// MARK: - Unchecked handlers (no dispatch-table checks: validate everything)

kern_return_t null_driver::HandleScalar(OSObject* target, IOUserClientMethodArguments* arguments)
{
    (void)target;
    Log("Got action type scalar");

    if (arguments == nullptr) {
        Log("Arguments were null.");
        return kIOReturnBadArgument;
    }
    // Pointers and counts come from the caller: never trust them.
    if (arguments->scalarInput == nullptr) {
        Log("Scalar input memory is null.");
        return kIOReturnBadArgument;
    }
    if (arguments->scalarOutput == nullptr) {
        Log("Scalar output memory is null.");
        return kIOReturnBadArgument;
    }

    // (The sample keeps the counts in uint8_t, which would wrap a count of
    // 256 or more to a small number before clamping; uint32_t cannot.)
    uint32_t inputCount = arguments->scalarInputCount;
    if (inputCount > kMaxScalars) {
        Log("Only allowing a maximum number of 16 inputs.");
        inputCount = kMaxScalars;
    }
    uint32_t outputCount = arguments->scalarOutputCount;
    if (outputCount > kMaxScalars) {
        Log("Only allowing a maximum number of 16 outputs.");
        outputCount = kMaxScalars;
    }

    // The smaller of the two, so neither array is overrun.
    const uint32_t count = inputCount < outputCount ? inputCount : outputCount;
    for (uint32_t index = 0; index < count; ++index) {
        arguments->scalarOutput[index] = arguments->scalarInput[index] + 1;
        Log("%llu %llu", static_cast<unsigned long long>(arguments->scalarInput[index]),
            static_cast<unsigned long long>(arguments->scalarOutput[index]));
    }
    return kIOReturnSuccess;
}

kern_return_t null_driver::HandleStructure(OSObject* target, IOUserClientMethodArguments* arguments)
{
    (void)target;
    Log("Got action type struct");

    if (arguments == nullptr) {
        Log("Arguments were null.");
        return kIOReturnBadArgument;
    }

    kern_return_t ret = kIOReturnSuccess;
    DataStruct input = {};
    DataStruct output = {};
    IOMemoryMap* inputMap = nullptr;
    IOMemoryMap* outputMap = nullptr;

    if (arguments->structureInput != nullptr) {
        // Up to 4096 bytes arrive inline, as OSData (§3.2-5).  The sample
        // casts the bytes to DataStruct* unchecked, reading past the end of a
        // shorter input; check the length first.
        const void* bytes = arguments->structureInput->getBytesNoCopy();
        if (bytes == nullptr || arguments->structureInput->getLength() < sizeof(DataStruct)) {
            Log("Structure input is shorter than DataStruct.");
            ret = kIOReturnBadArgument;
            goto Exit;
        }
        memcpy(&input, bytes, sizeof(input));
    } else if (arguments->structureInputDescriptor != nullptr) {
        // Larger inputs -- the sample's OversizedDataStruct -- arrive as a
        // memory descriptor, which must be mapped to be read.  The mapping
        // is read-only whatever is asked (§3.3-4); ask for that.
        ret = arguments->structureInputDescriptor->CreateMapping(kIOMemoryMapReadOnly, 0, 0, 0, 0, &inputMap);
        if (ret != kIOReturnSuccess) {
            Log("Failed to create mapping for descriptor with error: 0x%08x", ret);
            ret = kIOReturnBadArgument;
            goto Exit;
        }
        if (inputMap->GetAddress() == 0 || inputMap->GetLength() < sizeof(DataStruct)) {
            Log("Structure input descriptor is shorter than DataStruct.");
            ret = kIOReturnBadArgument;
            goto Exit;
        }
        memcpy(&input, reinterpret_cast<const void*>(inputMap->GetAddress()), sizeof(input));
    } else {
        Log("Both structureInput and structureInputDescriptor were null.");
        ret = kIOReturnBadArgument;
        goto Exit;
    }
    Log("Input - %llu, %llu", static_cast<unsigned long long>(input.foo),
        static_cast<unsigned long long>(input.bar));

    output.foo = input.foo + 1;
    output.bar = input.bar + 10;
    Log("Output - %llu, %llu", static_cast<unsigned long long>(output.foo),
        static_cast<unsigned long long>(output.bar));

    if (arguments->structureOutputDescriptor != nullptr) {
        // The caller offered more than 4096 bytes of output: they arrive as a
        // writable descriptor of exactly that length (§3.2-3, §3.3-2), and
        // the answer is written through a mapping of it -- the DataStruct,
        // then zeros up to sizeof(OversizedDataStruct).
        //
        // The sample logs when the buffer is smaller than that and then writes
        // sizeof(OversizedDataStruct) bytes anyway: a caller offering 4097
        // bytes gets 7 bytes written past its buffer.  Refuse instead.
        ret = arguments->structureOutputDescriptor->CreateMapping(0, 0, 0, 0, 0, &outputMap);
        if (ret != kIOReturnSuccess) {
            Log("Failed to create mapping for output descriptor with error: 0x%08x", ret);
            ret = kIOReturnBadArgument;
            goto Exit;
        }
        if (outputMap->GetAddress() == 0 || arguments->structureOutputMaximumSize < sizeof(OversizedDataStruct) ||
            outputMap->GetLength() < sizeof(OversizedDataStruct)) {
            Log("Required output size of %llu is larger than the given maximum size of %llu. Failing.",
                static_cast<unsigned long long>(sizeof(OversizedDataStruct)),
                static_cast<unsigned long long>(arguments->structureOutputMaximumSize));
            ret = kIOReturnBadArgument;
            goto Exit;
        }
        uint8_t* outputBytes = reinterpret_cast<uint8_t*>(outputMap->GetAddress());
        memcpy(outputBytes, &output, sizeof(output));
        memset(outputBytes + sizeof(output), 0, sizeof(OversizedDataStruct) - sizeof(output));
    } else {
        // Inline output: the dext hands back an OSData it created; DriverKit
        // releases it, and refuses it with kIOReturnBadArgument if it is
        // longer than the caller's buffer (§3.3-1).
        arguments->structureOutput = OSData::withBytes(&output, sizeof(output));
        if (arguments->structureOutput == nullptr) {
            ret = kIOReturnNoMemory;
        }
    }

Exit:
    OSSafeReleaseNULL(inputMap);
    OSSafeReleaseNULL(outputMap);
    return ret;
}

// MARK: - Checked handlers (DriverKit applied kDispatchTable's checks, and the
// generated thunk unpacked and checked the arguments)

kern_return_t null_driver::HandleCheckedScalar(OSObject* target,
                                               uint64_t s0, uint64_t s1, uint64_t s2, uint64_t s3,
                                               uint64_t s4, uint64_t s5, uint64_t s6, uint64_t s7,
                                               uint64_t s8, uint64_t s9, uint64_t s10, uint64_t s11,
                                               uint64_t s12, uint64_t s13, uint64_t s14, uint64_t s15,
                                               uint64_t* r0, uint64_t* r1, uint64_t* r2, uint64_t* r3,
                                               uint64_t* r4, uint64_t* r5, uint64_t* r6, uint64_t* r7,
                                               uint64_t* r8, uint64_t* r9, uint64_t* r10, uint64_t* r11,
                                               uint64_t* r12, uint64_t* r13, uint64_t* r14, uint64_t* r15)
{
    (void)target;
    Log("Got action type checked scalar");

    *r0 = s0 + 1;
    *r1 = s1 + 1;
    *r2 = s2 + 1;
    *r3 = s3 + 1;
    *r4 = s4 + 1;
    *r5 = s5 + 1;
    *r6 = s6 + 1;
    *r7 = s7 + 1;
    *r8 = s8 + 1;
    *r9 = s9 + 1;
    *r10 = s10 + 1;
    *r11 = s11 + 1;
    *r12 = s12 + 1;
    *r13 = s13 + 1;
    *r14 = s14 + 1;
    *r15 = s15 + 1;
    return kIOReturnSuccess;
}

kern_return_t null_driver::HandleCheckedStruct(OSObject* target, const DataStruct& input, DataStruct* output)
{
    (void)target;
    Log("Got action type checked struct");

    output->foo = input.foo + 1;
    output->bar = input.bar + 10;
    return kIOReturnSuccess;
}

// MARK: - Async handlers

kern_return_t null_driver::HandleRegisterAsyncCallback(OSObject* target,
                                                       const DataStruct& input,
                                                       DataStruct* output,
                                                       OSAction* completion)
{
    Log("Got new async callback");

    NullDriverUserClient* self = UserClient(target);
    if (self == nullptr || self->ivars == nullptr) {
        return kIOReturnError;
    }
    // The table requires a completion (checkCompletionExists = true); the
    // sample checks again, and so does this.
    if (completion == nullptr) {
        Log("Got a null completion.");
        return kIOReturnBadArgument;
    }

    // Keep the completion for the simulated events: DriverKit only retains
    // it for the duration of this call (§4.1-2).  A new registration replaces
    // the previous one, which is released (the sample leaks it).
    completion->retain();
    OSSafeReleaseNULL(self->ivars->callbackAction);
    self->ivars->callbackAction = completion;

    // Answered synchronously, for the sake of the example.
    output->foo = input.foo + 1;
    output->bar = input.bar + 10;

    // The simulated device answers through the callback in five to seven
    // seconds.
    return ArmSimulatedEvent(self, input);
}

kern_return_t null_driver::HandleAsyncRequest(OSObject* target, const DataStruct& input, OSAction* completion)
{
    Log("Got action type async.");

    // As in the sample, the request's own completion (if any; the table does
    // not care, checkCompletionExists = -1U) is not used: the answer goes
    // through the callback registered earlier.
    (void)completion;

    NullDriverUserClient* self = UserClient(target);
    if (self == nullptr || self->ivars == nullptr) {
        return kIOReturnError;
    }
    if (self->ivars->callbackAction == nullptr) {
        Log("Callback action not available.");
        return kIOReturnError;
    }
    return ArmSimulatedEvent(self, input);
}

// MARK: - The simulated device

// The timer fired: answer the remembered input through the registered
// callback with the sample's payload {2, foo + 1, bar + 10}.
void IMPL(NullDriverUserClient, SimulatedAsyncEvent)
{
    Log("Woke async at time: %llu!", static_cast<unsigned long long>(time));

    const void* retained = action != nullptr ? action->GetReference() : nullptr;
    if (retained == nullptr) {
        Log("The simulated event carries no data.");
        return;
    }
    DataStruct input;
    memcpy(&input, retained, sizeof(input));

    if (ivars->callbackAction != nullptr) {
        null_driver::CompleteRegisterAsyncCallback(this, ivars->callbackAction, kIOReturnSuccess,
                                                   kSimulatedEventType, input.foo + 1, input.bar + 10);
    }
}
