// IOService: properties, the Start/Stop lifecycle, the named dispatch
// queues, user clients and Create by IOUserClass (docs/driverkit.md §9).
#ifndef DEXTLINK_DRIVERKIT_IOSERVICE_H
#define DEXTLINK_DRIVERKIT_IOSERVICE_H

#include <DriverKit/IODispatchQueue.h>
#include <DriverKit/OSObject.h>

class IOService;
class OSDictionary;
class OSArray;
class OSContainer;
class IOUserClient;
class IOMemoryDescriptor;
class IOBufferMemoryDescriptor;

typedef char IOServiceName[128];
typedef char IOPropertyName[128];
typedef char IORegistryPlaneName[128];

#define kIOServiceDefaultQueueName "Default"

#define IOService_Start_ID 0xab6f76dde6d693f2ULL
#define IOService_Stop_ID 0x98e715041c459fa5ULL
#define IOService_RegisterService_ID 0xe9722c2bb1347c28ULL
#define IOService_NewUserClient_ID 0xf669efffcb89ed9cULL
#define IOService_Create_ID 0xe1a46dbd68bbe09cULL
#define IOService_Terminate_ID 0xf7a595d9927810c8ULL
#define IOService_CopyProperties_ID 0x833ec8f92f8b5362ULL
#define IOService_SetProperties_ID 0xd8a753ea156f9162ULL

#define IOService_Start_Args IOService *provider
#define IOService_Stop_Args IOService *provider
#define IOService_RegisterService_Args
#define IOService_NewUserClient_Args uint32_t type, IOUserClient **userClient
#define IOService_Create_Args IOService *provider, const char *propertiesKey, IOService **result
#define IOService_Terminate_Args uint64_t options
#define IOService_CopyProperties_Args OSDictionary **properties
#define IOService_SetProperties_Args OSDictionary *properties

struct IOService_Start_Invocation {
    IOService* provider;
};
struct IOService_Stop_Invocation {
    IOService* provider;
};
struct IOService_RegisterService_Invocation {
    int unused;
};
struct IOService_NewUserClient_Invocation {
    uint32_t type;
    IOUserClient** userClient;
};
struct IOService_Create_Invocation {
    IOService* provider;
    const char* propertiesKey;
    IOService** result;
};
struct IOService_Terminate_Invocation {
    uint64_t options;
};
struct IOService_CopyProperties_Invocation {
    OSDictionary** properties;
};
struct IOService_SetProperties_Invocation {
    OSDictionary* properties;
};

class IOService : public OSObject {
    OSDeclareDefaultStructors(IOService)
public:
    using super = OSObject;

    bool init() override;
    void free() override;

    kern_return_t Start(IOService* provider, OSDispatchMethod supermethod = nullptr);
    kern_return_t Stop(IOService* provider, OSDispatchMethod supermethod = nullptr);
    kern_return_t RegisterService(OSDispatchMethod supermethod = nullptr);
    kern_return_t NewUserClient(uint32_t type, IOUserClient** userClient, OSDispatchMethod supermethod = nullptr);
    kern_return_t Create(IOService* provider, const IOPropertyName propertiesKey, IOService** result,
                         OSDispatchMethod supermethod = nullptr);
    kern_return_t Terminate(uint64_t options, OSDispatchMethod supermethod = nullptr);
    kern_return_t CopyProperties(OSDictionary** properties, OSDispatchMethod supermethod = nullptr);
    kern_return_t SetProperties(OSDictionary* properties, OSDispatchMethod supermethod = nullptr);

    // LOCALONLY in DriverKit? Not public there; this runtime's accessors.
    IOService* GetProvider() const;
    // Whether RegisterService ran (the service is findable; docs/driverkit.md §9-3).
    bool IsRegistered() const;
    // Whether Start succeeded and Stop has not run.
    bool IsStarted() const;
    // Runtime use: the properties the service was made with (retained by the service).
    void SetPropertiesInternal(OSDictionary* properties);
    OSDictionary* GetPropertiesInternal() const;
    void SetProviderInternal(IOService* provider);

protected:
    kern_return_t Start_Impl(IOService_Start_Args);
    kern_return_t Stop_Impl(IOService_Stop_Args);
    kern_return_t RegisterService_Impl(IOService_RegisterService_Args);
    kern_return_t NewUserClient_Impl(IOService_NewUserClient_Args);
    kern_return_t Create_Impl(IOService_Create_Args);
    kern_return_t Terminate_Impl(IOService_Terminate_Args);
    kern_return_t CopyProperties_Impl(IOService_CopyProperties_Args);
    kern_return_t SetProperties_Impl(IOService_SetProperties_Args);
    kern_return_t SetDispatchQueue_Impl(OSObject_SetDispatchQueue_Args);
    kern_return_t CopyDispatchQueue_Impl(OSObject_CopyDispatchQueue_Args);

private:
    struct State;
    State* state_;
};

#endif
