// The rules dext in C++: the same behaviour as the Rust model `RulesDriver`
// of runtime/tests/sim_rules.rs, written against the header `dextlink gen
// --cpp` makes from runtime/tests/sim_rules.dextlink, so that the rule tests
// hold a compiled dext to the same results.
//
// What all user clients share (held completions, the occupy counters, the
// two memory types) lives with the service, as in the Rust model; a user
// client reaches it through its provider (docs/driverkit.md §9-1).

#include <DriverKit/IOBufferMemoryDescriptor.h>
#include <DriverKit/IOLib.h>
#include <DriverKit/IOUserClient.h>
#include <DriverKit/OSAction.h>

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <vector>

#include "Rules.h"
#include "RulesDriver.h"
#include "RulesUserClient.h"

namespace {

struct Held {
    uint64_t tag;
    IOUserClient* client;  // retained
    OSAction* completion;  // retained
};

// What the user clients of one RulesDriver share.
struct Shared {
    std::atomic<uint32_t> inside{0};
    std::atomic<uint32_t> peak{0};
    std::mutex lock;
    std::vector<Held> held;
    IOBufferMemoryDescriptor* status = nullptr;
    IOBufferMemoryDescriptor* ring = nullptr;
};

uint8_t* bytesOf(IOBufferMemoryDescriptor* buffer)
{
    IOAddressSegment range = {};
    buffer->GetAddressRange(&range);
    return reinterpret_cast<uint8_t*>(range.address);
}

uint64_t nowNanoseconds()
{
    return clock_gettime_nsec_np(CLOCK_UPTIME_RAW);
}

}  // namespace

struct RulesDriver_IVars {
    Shared* shared;
};

namespace {

// The state of the service `target` (a user client) was made by.
Shared* sharedOf(OSObject* target)
{
    RulesDriver* driver = OSDynamicCast(RulesDriver, OSRequiredCast(IOService, target)->GetProvider());
    return driver == nullptr ? nullptr : driver->ivars->shared;
}

}  // namespace

struct RulesUserClient_IVars {
    // How the last structure input arrived (docs/driverkit.md §3.2-5).
    bool lastInputWasDescriptor;
};

// ---- the service

bool RulesDriver::init()
{
    if (!super::init()) {
        return false;
    }
    ivars = IONewZero(RulesDriver_IVars, 1);
    return ivars != nullptr;
}

void RulesDriver::free()
{
    IOSafeDeleteNULL(ivars, RulesDriver_IVars, 1);
    super::free();
}

kern_return_t IMPL(RulesDriver, Start)
{
    kern_return_t ret = Start(provider, SUPERDISPATCH);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    Shared* shared = new Shared();
    ivars->shared = shared;
    ret = IOBufferMemoryDescriptor::Create(kIOMemoryDirectionInOut, rules::kStatusSize, 0, &shared->status);
    if (ret == kIOReturnSuccess) {
        ret = IOBufferMemoryDescriptor::Create(kIOMemoryDirectionInOut, rules::kRingSize, 0, &shared->ring);
    }
    if (ret == kIOReturnSuccess) {
        ret = RegisterService();
    }
    return ret;
}

kern_return_t IMPL(RulesDriver, Stop)
{
    Shared* shared = ivars->shared;
    if (shared != nullptr) {
        std::vector<Held> held;
        {
            std::lock_guard<std::mutex> guard(shared->lock);
            held.swap(shared->held);
        }
        for (Held& h : held) {
            h.completion->release();
            h.client->release();
        }
        OSSafeReleaseNULL(shared->status);
        OSSafeReleaseNULL(shared->ring);
        delete shared;
        ivars->shared = nullptr;
    }
    return Stop(provider, SUPERDISPATCH);
}

kern_return_t IMPL(RulesDriver, NewUserClient)
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

// ---- the user client

bool RulesUserClient::init()
{
    if (!super::init()) {
        return false;
    }
    ivars = IONewZero(RulesUserClient_IVars, 1);
    return ivars != nullptr;
}

void RulesUserClient::free()
{
    IOSafeDeleteNULL(ivars, RulesUserClient_IVars, 1);
    super::free();
}

kern_return_t IMPL(RulesUserClient, Start)
{
    return Start(provider, SUPERDISPATCH);
}

kern_return_t IMPL(RulesUserClient, Stop)
{
    return Stop(provider, SUPERDISPATCH);
}

kern_return_t RulesUserClient::ExternalMethod(uint64_t selector, IOUserClientMethodArguments* arguments,
                                              const IOUserClientMethodDispatch* dispatch, OSObject* target,
                                              void* reference)
{
    (void)dispatch;
    (void)target;
    (void)reference;
    ivars->lastInputWasDescriptor = arguments->structureInputDescriptor != nullptr;
    return rules::ExternalMethod(this, selector, arguments);
}

kern_return_t IMPL(RulesUserClient, CopyClientMemoryForType)
{
    // The same descriptor for a type, every time (docs/driverkit.md §5.1).
    Shared* shared = sharedOf(this);
    if (shared == nullptr) {
        return kIOReturnNotAttached;
    }
    IOBufferMemoryDescriptor* buffer = nullptr;
    uint64_t flags = 0;
    switch (type) {
    case static_cast<uint64_t>(rules::MemoryType::Status):
        buffer = shared->status;
        flags = kIOUserClientMemoryReadOnly;
        break;
    case static_cast<uint64_t>(rules::MemoryType::Ring):
        buffer = shared->ring;
        break;
    default:
        return kIOReturnBadArgument;
    }
    buffer->retain();
    *options = flags;
    *memory = buffer;
    return kIOReturnSuccess;
}

// ---- the handlers

kern_return_t rules::HandleAdd(OSObject*, uint64_t a, uint64_t b, uint64_t* sum)
{
    if (a > UINT64_MAX - b) {
        return kIOReturnOverrun;
    }
    *sum = a + b;
    return kIOReturnSuccess;
}

kern_return_t rules::HandleSwap(OSObject*, const Pair& pair, Pair* swapped)
{
    swapped->a = pair.b;
    swapped->b = pair.a;
    return kIOReturnSuccess;
}

kern_return_t rules::HandleSum(OSObject* target, const uint8_t* data, uint32_t data_length, uint64_t* sum,
                               bool* descriptor)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < data_length; i++) {
        total += data[i];
    }
    *sum = total;
    *descriptor = OSRequiredCast(RulesUserClient, target)->ivars->lastInputWasDescriptor;
    return kIOReturnSuccess;
}

kern_return_t rules::HandleLater(OSObject* target, uint64_t tag, OSAction* completion)
{
    IOUserClient* client = OSRequiredCast(IOUserClient, target);
    // Retained past ExternalMethod, as docs/driverkit.md §4.1-2 requires.
    client->retain();
    completion->retain();
    Shared* shared = sharedOf(target);
    std::lock_guard<std::mutex> guard(shared->lock);
    shared->held.push_back(Held{tag, client, completion});
    return kIOReturnSuccess;
}

kern_return_t rules::HandleRelease(OSObject* target, uint32_t* released)
{
    Shared* shared = sharedOf(target);
    std::vector<Held> held;
    {
        std::lock_guard<std::mutex> guard(shared->lock);
        held.swap(shared->held);
    }
    *released = static_cast<uint32_t>(held.size());
    // Newest first; a completion of a client that went away is a no-op (§4.3-5).
    for (auto it = held.rbegin(); it != held.rend(); ++it) {
        CompleteLater(it->client, it->completion, kIOReturnSuccess, it->tag);
        it->completion->release();
        it->client->release();
    }
    return kIOReturnSuccess;
}

kern_return_t rules::HandleOccupy(OSObject* target, uint32_t millis, uint32_t quorum, uint32_t* inside)
{
    Shared* shared = sharedOf(target);
    uint32_t now = shared->inside.fetch_add(1) + 1;
    uint32_t peak = shared->peak.load();
    while (now > peak && !shared->peak.compare_exchange_weak(peak, now)) {
    }
    const uint64_t deadline = nowNanoseconds() + uint64_t{millis} * 1000000;
    while (shared->peak.load() < quorum && nowNanoseconds() < deadline) {
        usleep(1000);
    }
    shared->inside.fetch_sub(1);
    *inside = shared->peak.load();
    return kIOReturnSuccess;
}

kern_return_t rules::HandleOverflow(OSObject* target, OSAction* completion)
{
    // Seventeen values: one more than DriverKit carries (§4.1-3).
    uint64_t values[17];
    for (uint64_t& value : values) {
        value = 7;
    }
    OSRequiredCast(IOUserClient, target)->AsyncCompletion(completion, kIOReturnSuccess, values, 17);
    return kIOReturnSuccess;
}

kern_return_t rules::HandlePeek(OSObject* target, uint32_t offset, uint8_t* value)
{
    *value = bytesOf(sharedOf(target)->ring)[offset];
    return kIOReturnSuccess;
}

kern_return_t rules::HandleSetStatus(OSObject* target, uint8_t value)
{
    bytesOf(sharedOf(target)->status)[0] = value;
    return kIOReturnSuccess;
}
