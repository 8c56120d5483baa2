/* Generated per dextlink's iig contract (IIG.md) from TestUserClient.iig; written by hand. */
#ifndef _TESTUSERCLIENT_H
#define _TESTUSERCLIENT_H

#include <DriverKit/IOUserClient.h>
#include <DriverKit/IOTimerDispatchSource.h>

#define TestUserClient_TimerOccurred_ID 0x100c9d94df0e5eb1ULL

#define TestUserClient_Start_Args IOService_Start_Args
#define TestUserClient_Stop_Args IOService_Stop_Args
#define TestUserClient_CopyClientMemoryForType_Args IOUserClient_CopyClientMemoryForType_Args
#define TestUserClient_TimerOccurred_Args IOTimerDispatchSource_TimerOccurred_Args

struct TestUserClient_IVars;
struct TestUserClient_LocalIVars;

class TestUserClient : public IOUserClient {
    OSDeclareDefaultStructors(TestUserClient)

public:
    union {
        TestUserClient_IVars* ivars;
        TestUserClient_LocalIVars* lvars;
    };

    using super = IOUserClient;

    bool init() override;
    void free() override;
    kern_return_t ExternalMethod(uint64_t selector, IOUserClientMethodArguments* arguments,
                                 const IOUserClientMethodDispatch* dispatch, OSObject* target,
                                 void* reference) override;

    void TimerOccurred(OSAction* action, uint64_t time, OSDispatchMethod supermethod = nullptr);
    kern_return_t CreateActionTimerOccurred(size_t referenceSize, OSAction** action);

protected:
    kern_return_t Start_Impl(TestUserClient_Start_Args);
    kern_return_t Stop_Impl(TestUserClient_Stop_Args);
    kern_return_t CopyClientMemoryForType_Impl(TestUserClient_CopyClientMemoryForType_Args);
    void TimerOccurred_Impl(TestUserClient_TimerOccurred_Args);
};

#endif /* _TESTUSERCLIENT_H */
