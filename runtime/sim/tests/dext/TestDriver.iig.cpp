/* Generated per dextlink's iig contract (IIG.md) from TestDriver.iig; written by hand. */
#include "TestDriver.h"

OSDefineMetaClassAndStructors(TestDriver, IOService)

kern_return_t TestDriver::_Dispatch(OSObject* self, const IORPC rpc)
{
    TestDriver* object = static_cast<TestDriver*>(self);
    switch (rpc.methodID) {
    case IOService_Start_ID: {
        IOService_Start_Invocation* a = static_cast<IOService_Start_Invocation*>(rpc.arguments);
        return object->TestDriver::Start_Impl(a->provider);
    }
    case IOService_Stop_ID: {
        IOService_Stop_Invocation* a = static_cast<IOService_Stop_Invocation*>(rpc.arguments);
        return object->TestDriver::Stop_Impl(a->provider);
    }
    case IOService_NewUserClient_ID: {
        IOService_NewUserClient_Invocation* a = static_cast<IOService_NewUserClient_Invocation*>(rpc.arguments);
        return object->TestDriver::NewUserClient_Impl(a->type, a->userClient);
    }
    default:
        return super::_Dispatch(self, rpc);
    }
}
