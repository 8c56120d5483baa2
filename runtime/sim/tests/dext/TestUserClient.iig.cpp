/* Generated per dextlink's iig contract (IIG.md) from TestUserClient.iig; written by hand. */
#include "TestUserClient.h"

OSDefineMetaClassAndStructors(TestUserClient, IOUserClient)

kern_return_t TestUserClient::_Dispatch(OSObject* self, const IORPC rpc)
{
    TestUserClient* object = static_cast<TestUserClient*>(self);
    switch (rpc.methodID) {
    case IOService_Start_ID: {
        IOService_Start_Invocation* a = static_cast<IOService_Start_Invocation*>(rpc.arguments);
        return object->TestUserClient::Start_Impl(a->provider);
    }
    case IOService_Stop_ID: {
        IOService_Stop_Invocation* a = static_cast<IOService_Stop_Invocation*>(rpc.arguments);
        return object->TestUserClient::Stop_Impl(a->provider);
    }
    case IOUserClient_CopyClientMemoryForType_ID: {
        IOUserClient_CopyClientMemoryForType_Invocation* a =
            static_cast<IOUserClient_CopyClientMemoryForType_Invocation*>(rpc.arguments);
        return object->TestUserClient::CopyClientMemoryForType_Impl(a->type, a->options, a->memory);
    }
    case TestUserClient_TimerOccurred_ID: {
        IOTimerDispatchSource_TimerOccurred_Invocation* a =
            static_cast<IOTimerDispatchSource_TimerOccurred_Invocation*>(rpc.arguments);
        object->TestUserClient::TimerOccurred_Impl(a->action, a->time);
        return kIOReturnSuccess;
    }
    default:
        return super::_Dispatch(self, rpc);
    }
}

void TestUserClient::TimerOccurred(OSAction* action, uint64_t time, OSDispatchMethod supermethod)
{
    IOTimerDispatchSource_TimerOccurred_Invocation a = {action, time};
    OSObjectDispatchInvocation(this, supermethod, TestUserClient_TimerOccurred_ID, &a);
}

kern_return_t TestUserClient::CreateActionTimerOccurred(size_t referenceSize, OSAction** action)
{
    return OSAction::Create(this, TestUserClient_TimerOccurred_ID, IOTimerDispatchSource_TimerOccurred_ID,
                            referenceSize, action);
}
