// IOUserClient: the dext side of a client connection (docs/driverkit.md §1-§5).
#ifndef DEXTLINK_DRIVERKIT_IOUSERCLIENT_H
#define DEXTLINK_DRIVERKIT_IOUSERCLIENT_H

#include <DriverKit/IOService.h>
#include <DriverKit/OSAction.h>

class OSData;
class IOMemoryDescriptor;

enum {
    kIOUserClientScalarArrayCountMax = 16,
};
typedef uint64_t IOUserClientScalarArray[kIOUserClientScalarArrayCountMax];

enum {
    kIOUserClientAsyncReferenceCountMax = 16,
};
typedef uint64_t IOUserClientAsyncReferenceArray[kIOUserClientAsyncReferenceCountMax];

enum {
    kIOUserClientAsyncArgumentsCountMax = 16,
};
typedef uint64_t IOUserClientAsyncArgumentsArray[kIOUserClientAsyncArgumentsCountMax];

enum {
    kIOUserClientMemoryReadOnly = 0x00000001,
};

#define kIOUserClientQueueNameExternalMethod "IOUserClientQueueExternalMethod"

enum {
    kIOUserClientVariableStructureSize = 0xffffffff
};

enum {
#define IO_USER_CLIENT_METHOD_ARGUMENTS_CURRENT_VERSION 2
    kIOUserClientMethodArgumentsCurrentVersion = IO_USER_CLIENT_METHOD_ARGUMENTS_CURRENT_VERSION
};

struct IOUserClientMethodArguments {
    uint64_t version;
    uint64_t selector;
    OSAction* completion;
    const uint64_t* scalarInput;
    uint32_t scalarInputCount;
    OSData* structureInput;
    IOMemoryDescriptor* structureInputDescriptor;
    uint64_t* scalarOutput;
    uint32_t scalarOutputCount;
    OSData* structureOutput;
    IOMemoryDescriptor* structureOutputDescriptor;
    uint64_t structureOutputMaximumSize;
    uint64_t __reserved[30];
};

typedef kern_return_t (*IOUserClientMethodFunction)(OSObject* target, void* reference,
                                                   IOUserClientMethodArguments* arguments);

struct IOUserClientMethodDispatch {
    IOUserClientMethodFunction function;
    uint32_t checkCompletionExists;
    uint32_t checkScalarInputCount;
    uint32_t checkStructureInputSize;
    uint32_t checkScalarOutputCount;
    uint32_t checkStructureOutputSize;
};

#define IOUserClient_AsyncCompletion_ID 0x076346509d413ee9ULL
#define IOUserClient_CopyClientMemoryForType_ID 0x1e35fa1823cc6883ULL

#define IOUserClient_AsyncCompletion_Args \
    OSAction *action, IOReturn status, const IOUserClientAsyncArgumentsArray asyncData, uint32_t asyncDataCount
#define IOUserClient_CopyClientMemoryForType_Args uint64_t type, uint64_t *options, IOMemoryDescriptor **memory

struct IOUserClient_AsyncCompletion_Invocation {
    OSAction* action;
    IOReturn status;
    const uint64_t* asyncData;
    uint32_t asyncDataCount;
};
struct IOUserClient_CopyClientMemoryForType_Invocation {
    uint64_t type;
    uint64_t* options;
    IOMemoryDescriptor** memory;
};

class IOUserClient : public IOService {
    OSDeclareDefaultStructors(IOUserClient)
public:
    using super = IOService;

    bool init() override;
    void free() override;

    // The base applies the dispatch entry's checks (the same rules as the
    // Rust simulator's, through dextlink_driverkit_check_dispatch), then
    // calls dispatch->function(target, reference, arguments), or returns
    // kIOReturnNoCompletion for a NULL function (docs/driverkit.md §2.2-6). A
    // NULL dispatch gives kIOReturnUnsupported (§2.2-10, UNVERIFIED).
    virtual kern_return_t ExternalMethod(uint64_t selector, IOUserClientMethodArguments* arguments,
                                         const IOUserClientMethodDispatch* dispatch, OSObject* target,
                                         void* reference) LOCALONLY QUEUENAME(IOUserClientQueueExternalMethod);

    // Sends `status` and up to 16 values to the client that made the async
    // call `action` came with; more than 16 are dropped (docs/driverkit.md §4.1-3).
    void AsyncCompletion(OSAction* action, IOReturn status, const IOUserClientAsyncArgumentsArray asyncData,
                         uint32_t asyncDataCount, OSDispatchMethod supermethod = nullptr);

    kern_return_t CopyClientMemoryForType(uint64_t type, uint64_t* options, IOMemoryDescriptor** memory,
                                          OSDispatchMethod supermethod = nullptr);

protected:
    void AsyncCompletion_Impl(IOUserClient_AsyncCompletion_Args);
    // No CopyClientMemoryForType_Impl: DriverKit's .iig declares the method
    // `= 0`, so IOUserClient has no implementation and its _Dispatch does not
    // handle the ID. A subclass that implements it declares its own
    // (non-virtual) _Impl and dispatches to it; one that does not (Apple's
    // NullDriver sample) answers the call with the dispatch chain's error.
};

#endif
