// The test dext's user client. Selectors:
//   0 echo: 1 scalar in, 1 out: in + 1
//   1 an entry with a NULL function: kIOReturnNoCompletion
//   2 ticks (async): 1 scalar in (n); completes n times from a timer, with (i, n)
//   3 collections, casts and the calling queue: 1 scalar out, the bitmask of checks that held
//   4 log formats: writes os_log lines with Apple's annotations
//   5 queue order: DispatchAsync/DispatchSync on a serial queue; 8 scalars out
//   6 memory: checks mappings and sub-descriptors; 1 scalar out (bitmask)
//   7 poke: 2 scalars in (offset, value): writes a byte into memory type 0
//   8 peek: 1 scalar in (offset), 1 out: reads a byte from memory type 0
//   9 structure echo: any structure in, the same bytes out
//  10 test only: leaks an OSString and an IOMalloc block
//  11 test only: a use after free (for the sanitizer run)
//  12 cancel: makes an action and cancels it with a handler; 1 scalar out: IsCancelled
//  13 cancelled: 1 scalar out: whether that handler has run (it runs on the queue after 12)
//  14 test only: writes through a null pointer (a dext crash: SIGSEGV)
#include <DriverKit/DriverKit.h>

#include <stdlib.h>
#include <string.h>

#include "TestDriver.h"
#include "TestUserClient.h"

enum {
    kBufferSize = 8192,
    kSelectorCount = 15,
};

struct TestUserClient_IVars {
    IOBufferMemoryDescriptor* buffer;
    // An OSSharedPtr as Apple's samples keep them: IONewZero runs no
    // constructor (zero is its empty state) and IODelete no destructor, so
    // free() resets it (docs/driverkit.md §9-8).
    OSSharedPtr<IOBufferMemoryDescriptor> readOnlyBuffer;
    IOTimerDispatchSource* timer;
    OSAction* timerAction;
    OSAction* ticksCompletion;
    uint64_t ticksWanted;
    uint64_t ticksSent;
    bool cancelHandlerRan;
};

static kern_return_t Echo(OSObject*, void*, IOUserClientMethodArguments* arguments)
{
    arguments->scalarOutput[0] = arguments->scalarInput[0] + 1;
    return kIOReturnSuccess;
}

static kern_return_t Ticks(OSObject* target, void*, IOUserClientMethodArguments* arguments)
{
    TestUserClient* self = OSRequiredCast(TestUserClient, target);
    if (self->ivars->ticksCompletion != nullptr || arguments->scalarInput[0] == 0) {
        return kIOReturnBusy;
    }
    // Retained past ExternalMethod, as docs/driverkit.md §4.1-2 requires.
    arguments->completion->retain();
    self->ivars->ticksCompletion = arguments->completion;
    self->ivars->ticksWanted = arguments->scalarInput[0];
    self->ivars->ticksSent = 0;
    return self->ivars->timer->WakeAtTime(kIOTimerClockUptimeRaw, clock_gettime_nsec_np(CLOCK_UPTIME_RAW) + 1000000,
                                          0);
}

static bool CountObject(void* refcon, OSObject*)
{
    (*static_cast<uint32_t*>(refcon))++;
    return false;
}

static kern_return_t Collections(OSObject* target, void*, IOUserClientMethodArguments* arguments)
{
    uint64_t passed = 0;
    OSDictionary* dict = OSDictionary::withCapacity(1);
    OSString* name = OSString::withCString("dextlink");
    OSNumber* number = OSNumber::withNumber(0x1234567890ULL, 32);
    OSArray* array = OSArray::withCapacity(0);
    OSData* data = OSData::withBytes("abc", 3);
    if (dict != nullptr && name != nullptr && number != nullptr && array != nullptr && data != nullptr) {
        dict->setObject("name", name);
        dict->setObject("number", number);
        dict->setObject("flag", kOSBooleanTrue);
        dict->setObject("name", name);  // replaces, does not add
        if (dict->getCount() == 3) passed |= 1 << 0;
        OSString* found = OSDynamicCast(OSString, dict->getObject("name"));
        if (found != nullptr && found->isEqualTo("dextlink")) passed |= 1 << 1;
        if (OSDynamicCast(OSNumber, dict->getObject("name")) == nullptr) passed |= 1 << 2;
        OSNumber* n = OSDynamicCast(OSNumber, dict->getObject("number"));
        if (n != nullptr && n->unsigned64BitValue() == 0x34567890ULL) passed |= 1 << 3;
        if (dict->getObject("missing") == nullptr) passed |= 1 << 4;
        array->setObject(name);
        array->setObject(data);
        array->setObject(number);
        array->removeObject(0);
        uint32_t counted = 0;
        array->iterateObjects(&counted, CountObject);
        if (array->getCount() == 2 && counted == 2 && array->getObject(2) == nullptr) passed |= 1 << 5;
        if (data->appendBytes("de", 2) && data->isEqualTo("abcde", 5)) passed |= 1 << 6;
        if (name->getRetainCount() == 2) passed |= 1 << 7;  // ours and the dictionary's
        // Casts by class through the registry: up, down, and across.
        OSObject* asObject = dict;
        if (OSDynamicCast(OSCollection, asObject) == dict && OSDynamicCast(OSArray, asObject) == nullptr) {
            passed |= 1 << 8;
        }
        TestUserClient* self = OSDynamicCast(TestUserClient, target);
        if (self != nullptr && OSDynamicCast(TestDriver, self->GetProvider()) != nullptr &&
            OSDynamicCast(IOService, target) == self && OSDynamicCast(TestDriver, target) == nullptr) {
            passed |= 1 << 9;
        }
        if (OSDynamicCast(OSObject, static_cast<OSObject*>(nullptr)) == nullptr) passed |= 1 << 10;
        // ExternalMethod runs on the user client's default queue (docs/driverkit.md §2.2-11).
        IODispatchQueue* queue = nullptr;
        if (self != nullptr && self->CopyDispatchQueue(kIOServiceDefaultQueueName, &queue) == kIOReturnSuccess &&
            queue->OnQueue()) {
            passed |= 1 << 12;
        }
        OSSafeReleaseNULL(queue);
        // Clocks and IOReturn's fields.
        uint64_t before = clock_gettime_nsec_np(CLOCK_UPTIME_RAW);
        uint64_t after = clock_gettime_nsec_np(CLOCK_UPTIME_RAW);
        if (before != 0 && after >= before && clock_gettime_nsec_np(CLOCK_MONOTONIC_RAW) != 0 &&
            clock_gettime_nsec_np(static_cast<clockid_t>(77)) == 0) {
            passed |= 1 << 13;
        }
        if (err_get_system(kIOReturnBadArgument) == 0x38 && err_get_sub(kIOReturnBadArgument) == 0 &&
            err_get_code(kIOReturnBadArgument) == 0x2c2) {
            passed |= 1 << 14;
        }
        // Create's provider must be the service itself (docs/driverkit.md §9-1),
        // and a service without a NewUserClient of its own has no user clients (§9-2).
        IOService* driver = self == nullptr ? nullptr : self->GetProvider();
        IOService* created = nullptr;
        if (driver != nullptr && driver->Create(self, "UserClientProperties", &created) == kIOReturnUnsupported &&
            created == nullptr) {
            passed |= 1 << 15;
        }
        // Named queues: SetDispatchQueue, then CopyDispatchQueue gives it back.
        IODispatchQueue* named = nullptr;
        IODispatchQueue* copied = nullptr;
        IODispatchQueue* missing = nullptr;
        if (self != nullptr && IODispatchQueue::Create("TestNamed", 0, 0, &named) == kIOReturnSuccess &&
            self->SetDispatchQueue("TestNamed", named) == kIOReturnSuccess &&
            self->CopyDispatchQueue("TestNamed", &copied) == kIOReturnSuccess && copied == named &&
            self->CopyDispatchQueue("TestMissing", &missing) != kIOReturnSuccess && missing == nullptr) {
            passed |= 1 << 17;
        }
        OSSafeReleaseNULL(copied);
        OSSafeReleaseNULL(named);
        IOUserClient* none = nullptr;
        if (driver != nullptr && driver->GetProvider() != nullptr &&
            driver->GetProvider()->NewUserClient(0, &none) == kIOReturnError && none == nullptr) {
            passed |= 1 << 16;
        }
    }
    OSSafeReleaseNULL(dict);
    OSSafeReleaseNULL(name);
    OSSafeReleaseNULL(number);
    OSSafeReleaseNULL(array);
    OSSafeReleaseNULL(data);
    if (name == nullptr && dict == nullptr) passed |= 1 << 11;  // OSSafeReleaseNULL cleared them
    arguments->scalarOutput[0] = passed;
    return kIOReturnSuccess;
}

static kern_return_t Logs(OSObject*, void*, IOUserClientMethodArguments*)
{
    os_log(OS_LOG_DEFAULT, "fmt: %{public}s %{private}d %{bool}d %{errno}d %d%% %s", "visible", 42, 1, 2, 100,
           "plain");
    os_log_error(OS_LOG_DEFAULT, "fmt error: 0x%{public}08x", 0xE00002C2u);
    IOLog("fmt IOLog: %u\n", 7u);
    return kIOReturnSuccess;
}

struct OrderRecord {
    uint64_t values[8];
    uint32_t count;
};

static void RecordOne(void* context)
{
    OrderRecord* record = static_cast<OrderRecord*>(context);
    if (record->count < 8) {
        record->values[record->count] = record->count + 1;
        record->count++;
    }
}

static kern_return_t QueueOrder(OSObject*, void*, IOUserClientMethodArguments* arguments)
{
    IODispatchQueue* queue = nullptr;
    kern_return_t ret = IODispatchQueue::Create("TestQueue", 0, 0, &queue);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    OrderRecord record = {};
    for (int i = 0; i < 7; i++) {
#ifdef __BLOCKS__
        OrderRecord* target = &record;
        queue->DispatchAsync(^{
          RecordOne(target);
        });
#else
        queue->DispatchAsyncFunction(&record, RecordOne);
#endif
    }
    // DispatchSync runs after everything queued before it, and returns
    // only when it has run: so all seven are recorded, in order, first.
#ifdef __BLOCKS__
    OrderRecord* target = &record;
    queue->DispatchSync(^{
      RecordOne(target);
    });
#else
    queue->DispatchSyncFunction(&record, RecordOne);
#endif
    for (uint32_t i = 0; i < 8; i++) {
        arguments->scalarOutput[i] = record.values[i];
    }
    queue->release();
    return kIOReturnSuccess;
}

static kern_return_t Memory(OSObject* target, void*, IOUserClientMethodArguments* arguments)
{
    TestUserClient* self = OSRequiredCast(TestUserClient, target);
    IOBufferMemoryDescriptor* buffer = self->ivars->buffer;
    uint64_t passed = 0;
    uint64_t length = 0;
    IOAddressSegment range = {};
    if (buffer->GetLength(&length) == kIOReturnSuccess && length == kBufferSize) passed |= 1 << 0;
    if (buffer->GetAddressRange(&range) == kIOReturnSuccess && range.length == kBufferSize && range.address != 0) {
        passed |= 1 << 1;
    }
    IOMemoryMap* map = nullptr;
    if (buffer->CreateMapping(0, 0, 0, 0, 0, &map) == kIOReturnSuccess) {
        uint8_t* bytes = reinterpret_cast<uint8_t*>(map->GetAddress());
        bytes[100] = 0x5a;
        if (reinterpret_cast<uint8_t*>(range.address)[100] == 0x5a && map->GetLength() == kBufferSize &&
            map->GetOffset() == 0 && (map->GetOptions() & kIOMemoryMapReadOnly) == 0) {
            passed |= 1 << 2;
        }
        map->release();
    }
    IOMemoryMap* readOnly = nullptr;
    if (buffer->CreateMapping(kIOMemoryMapReadOnly, 0, 4096, 16, 0, &readOnly) == kIOReturnSuccess) {
        if ((readOnly->GetOptions() & kIOMemoryMapReadOnly) != 0 && readOnly->GetOffset() == 4096 &&
            readOnly->GetLength() == 16) {
            passed |= 1 << 3;
        }
        readOnly->release();
    }
    IOMemoryDescriptor* sub = nullptr;
    if (IOMemoryDescriptor::CreateSubMemoryDescriptor(kIOMemoryDirectionInOut, 4000, 200, buffer, &sub) ==
        kIOReturnSuccess) {
        IOMemoryMap* subMap = nullptr;
        uint64_t subLength = 0;
        sub->GetLength(&subLength);
        if (subLength == 200 && sub->CreateMapping(0, 0, 0, 0, 0, &subMap) == kIOReturnSuccess) {
            reinterpret_cast<uint8_t*>(subMap->GetAddress())[1] = 0xa5;
            if (reinterpret_cast<uint8_t*>(range.address)[4001] == 0xa5) passed |= 1 << 4;
            subMap->release();
        }
        sub->release();
    }
    IOMemoryMap* outside = nullptr;
    if (buffer->CreateMapping(0, 0, kBufferSize - 8, 16, 0, &outside) == kIOReturnBadArgument && outside == nullptr) {
        passed |= 1 << 5;
    }
    IOMemoryDescriptor* tooLong = nullptr;
    if (IOMemoryDescriptor::CreateSubMemoryDescriptor(kIOMemoryDirectionInOut, 1, kBufferSize, buffer, &tooLong) ==
        kIOReturnBadArgument) {
        passed |= 1 << 6;
    }
    if (buffer->SetLength(100) == kIOReturnSuccess && buffer->GetLength(&length) == kIOReturnSuccess &&
        length == 100 && buffer->SetLength(kBufferSize * 2) == kIOReturnSuccess &&
        buffer->GetLength(&length) == kIOReturnSuccess && length == 100) {
        passed |= 1 << 7;
    }
    buffer->SetLength(kBufferSize);
    arguments->scalarOutput[0] = passed;
    return kIOReturnSuccess;
}

static kern_return_t Poke(OSObject* target, void*, IOUserClientMethodArguments* arguments)
{
    TestUserClient* self = OSRequiredCast(TestUserClient, target);
    if (arguments->scalarInput[0] >= kBufferSize || arguments->scalarInput[1] > 0xff) {
        return kIOReturnBadArgument;
    }
    IOAddressSegment range = {};
    self->ivars->buffer->GetAddressRange(&range);
    reinterpret_cast<uint8_t*>(range.address)[arguments->scalarInput[0]] =
        static_cast<uint8_t>(arguments->scalarInput[1]);
    return kIOReturnSuccess;
}

static kern_return_t Peek(OSObject* target, void*, IOUserClientMethodArguments* arguments)
{
    TestUserClient* self = OSRequiredCast(TestUserClient, target);
    if (arguments->scalarInput[0] >= kBufferSize) {
        return kIOReturnBadArgument;
    }
    IOAddressSegment range = {};
    self->ivars->buffer->GetAddressRange(&range);
    arguments->scalarOutput[0] = reinterpret_cast<uint8_t*>(range.address)[arguments->scalarInput[0]];
    return kIOReturnSuccess;
}

static kern_return_t StructEcho(OSObject*, void*, IOUserClientMethodArguments* arguments)
{
    const void* bytes = nullptr;
    uint64_t length = 0;
    IOMemoryMap* map = nullptr;
    if (arguments->structureInput != nullptr) {
        bytes = arguments->structureInput->getBytesNoCopy();
        length = arguments->structureInput->getLength();
    } else if (arguments->structureInputDescriptor != nullptr) {
        kern_return_t ret = arguments->structureInputDescriptor->CreateMapping(0, 0, 0, 0, 0, &map);
        if (ret != kIOReturnSuccess) {
            return ret;
        }
        bytes = reinterpret_cast<const void*>(map->GetAddress());
        length = map->GetLength();
    }
    kern_return_t ret = kIOReturnSuccess;
    if (arguments->structureOutputDescriptor != nullptr) {
        IOMemoryMap* out = nullptr;
        ret = arguments->structureOutputDescriptor->CreateMapping(0, 0, 0, 0, 0, &out);
        if (ret == kIOReturnSuccess) {
            memcpy(reinterpret_cast<void*>(out->GetAddress()), bytes,
                   length < out->GetLength() ? length : out->GetLength());
            out->release();
        }
    } else {
        arguments->structureOutput = OSData::withBytes(bytes, length);
    }
    OSSafeReleaseNULL(map);
    return ret;
}

static kern_return_t PlantLeak(OSObject*, void*, IOUserClientMethodArguments*)
{
    OSString* leaked = OSString::withCString("planted leak");
    void* block = IOMalloc(24);
    (void)leaked;
    (void)block;
    return kIOReturnSuccess;
}

static kern_return_t UseAfterFree(OSObject*, void*, IOUserClientMethodArguments* arguments)
{
    // Plain malloc, so that the sanitizer sees the freed block; free through
    // a volatile pointer so that the compiler does not see the bug coming.
    void (*volatile release)(void*) = free;
    volatile uint8_t* block = static_cast<volatile uint8_t*>(malloc(32));
    block[0] = 1;
    release(const_cast<uint8_t*>(block));
    arguments->scalarOutput[0] = block[0];
    return kIOReturnSuccess;
}

static kern_return_t Crash(OSObject*, void*, IOUserClientMethodArguments* arguments)
{
    // Through a volatile pointer, so that the compiler keeps the store.
    uint64_t* volatile nowhere = nullptr;
    *nowhere = arguments->selector;
    return kIOReturnSuccess;
}

static void MarkCancelled(void* context)
{
    static_cast<TestUserClient_IVars*>(context)->cancelHandlerRan = true;
}

static kern_return_t Cancel(OSObject* target, void*, IOUserClientMethodArguments* arguments)
{
    TestUserClient* self = OSRequiredCast(TestUserClient, target);
    OSAction* action = nullptr;
    kern_return_t ret = self->CreateActionTimerOccurred(sizeof(uint64_t), &action);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    self->ivars->cancelHandlerRan = false;
#ifdef __BLOCKS__
    TestUserClient_IVars* ivars = self->ivars;
    ret = action->Cancel(^{
      MarkCancelled(ivars);
    });
#else
    ret = action->CancelWithCallback(IODispatchCallback{self->ivars, MarkCancelled, nullptr});
#endif
    arguments->scalarOutput[0] = action->IsCancelled();
    action->release();
    return ret;
}

static kern_return_t Cancelled(OSObject* target, void*, IOUserClientMethodArguments* arguments)
{
    arguments->scalarOutput[0] = OSRequiredCast(TestUserClient, target)->ivars->cancelHandlerRan;
    return kIOReturnSuccess;
}

static const IOUserClientMethodDispatch kMethods[kSelectorCount] = {
    {Echo, 0, 1, 0, 1, 0},
    {nullptr, 0, 0, 0, 0, 0},
    {Ticks, 1, 1, 0, 0, 0},
    {Collections, 0, 0, 0, 1, 0},
    {Logs, 0, 0, 0, 0, 0},
    {QueueOrder, 0, 0, 0, 8, 0},
    {Memory, 0, 0, 0, 1, 0},
    {Poke, 0, 2, 0, 0, 0},
    {Peek, 0, 1, 0, 1, 0},
    {StructEcho, 0, 0, kIOUserClientVariableStructureSize, 0, kIOUserClientVariableStructureSize},
    {PlantLeak, 0, 0, 0, 0, 0},
    {UseAfterFree, 0, 0, 0, 1, 0},
    {Cancel, 0, 0, 0, 1, 0},
    {Cancelled, 0, 0, 0, 1, 0},
    {Crash, 0, 0, 0, 0, 0},
};

bool TestUserClient::init()
{
    if (!super::init()) {
        return false;
    }
    ivars = IONewZero(TestUserClient_IVars, 1);
    return ivars != nullptr;
}

void TestUserClient::free()
{
    if (ivars != nullptr) {
        OSSafeReleaseNULL(ivars->buffer);
        ivars->readOnlyBuffer.reset();
        OSSafeReleaseNULL(ivars->timer);
        OSSafeReleaseNULL(ivars->timerAction);
        OSSafeReleaseNULL(ivars->ticksCompletion);
    }
    IOSafeDeleteNULL(ivars, TestUserClient_IVars, 1);
    super::free();
}

kern_return_t IMPL(TestUserClient, Start)
{
    kern_return_t ret = Start(provider, SUPERDISPATCH);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    ret = IOBufferMemoryDescriptor::Create(kIOMemoryDirectionInOut, kBufferSize, 0, &ivars->buffer);
    if (ret == kIOReturnSuccess) {
        ret = IOBufferMemoryDescriptor::Create(kIOMemoryDirectionInOut, 4096, 0, ivars->readOnlyBuffer.attach());
    }
    IODispatchQueue* queue = nullptr;
    if (ret == kIOReturnSuccess) {
        ret = CopyDispatchQueue(kIOServiceDefaultQueueName, &queue);
    }
    if (ret == kIOReturnSuccess) {
        ret = IOTimerDispatchSource::Create(queue, &ivars->timer);
    }
    OSSafeReleaseNULL(queue);
    if (ret == kIOReturnSuccess) {
        ret = CreateActionTimerOccurred(0, &ivars->timerAction);
    }
    if (ret == kIOReturnSuccess) {
        ret = ivars->timer->SetHandler(ivars->timerAction);
    }
    return ret;
}

kern_return_t IMPL(TestUserClient, Stop)
{
    if (ivars->timer != nullptr) {
        ivars->timer->Cancel(nullptr);
    }
    // The actions refer to this object: release them here, not in free()
    // (a ticks call still running when the client closes holds one too).
    OSSafeReleaseNULL(ivars->timerAction);
    OSSafeReleaseNULL(ivars->ticksCompletion);
    return Stop(provider, SUPERDISPATCH);
}

kern_return_t TestUserClient::ExternalMethod(uint64_t selector, IOUserClientMethodArguments* arguments,
                                             const IOUserClientMethodDispatch* dispatch, OSObject* target,
                                             void* reference)
{
    if (selector >= kSelectorCount) {
        return kIOReturnBadArgument;
    }
    dispatch = &kMethods[selector];
    if (target == nullptr) {
        target = this;
    }
    return super::ExternalMethod(selector, arguments, dispatch, target, reference);
}

kern_return_t IMPL(TestUserClient, CopyClientMemoryForType)
{
    switch (type) {
    case 0:
        *options = 0;
        ivars->buffer->retain();
        *memory = ivars->buffer;
        return kIOReturnSuccess;
    case 1:
        *options = kIOUserClientMemoryReadOnly;
        *memory = OSSharedPtr<IOBufferMemoryDescriptor>(ivars->readOnlyBuffer).detach();
        return kIOReturnSuccess;
    default:
        return kIOReturnBadArgument;
    }
}

void IMPL(TestUserClient, TimerOccurred)
{
    (void)action;
    (void)time;
    if (ivars->ticksCompletion == nullptr) {
        return;
    }
    ivars->ticksSent++;
    IOUserClientAsyncArgumentsArray values = {ivars->ticksSent, ivars->ticksWanted};
    AsyncCompletion(ivars->ticksCompletion, kIOReturnSuccess, values, 2);
    if (ivars->ticksSent < ivars->ticksWanted) {
        ivars->timer->WakeAtTime(kIOTimerClockMonotonicRaw, clock_gettime_nsec_np(CLOCK_MONOTONIC_RAW) + 1000000, 0);
    } else {
        OSSafeReleaseNULL(ivars->ticksCompletion);
    }
}
