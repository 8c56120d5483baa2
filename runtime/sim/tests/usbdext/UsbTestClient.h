/* Generated per dextlink's iig contract (IIG.md) from UsbTestClient.iig; written by hand. */
#ifndef _USBTESTCLIENT_H
#define _USBTESTCLIENT_H

#include <DriverKit/IOUserClient.h>

#define UsbTestClient_CopyClientMemoryForType_Args IOUserClient_CopyClientMemoryForType_Args

struct UsbTestClient_IVars;
struct UsbTestClient_LocalIVars;

class UsbTestClient : public IOUserClient {
    OSDeclareDefaultStructors(UsbTestClient)

public:
    union {
        UsbTestClient_IVars* ivars;
        UsbTestClient_LocalIVars* lvars;
    };

    using super = IOUserClient;

    kern_return_t ExternalMethod(uint64_t selector, IOUserClientMethodArguments* arguments,
                                 const IOUserClientMethodDispatch* dispatch, OSObject* target,
                                 void* reference) override;

protected:
    kern_return_t CopyClientMemoryForType_Impl(UsbTestClient_CopyClientMemoryForType_Args);
};

#endif /* _USBTESTCLIENT_H */
