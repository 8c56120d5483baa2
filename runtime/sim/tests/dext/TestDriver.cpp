// The test dext's service: written as a dext author writes one for a Mac.
#include <DriverKit/DriverKit.h>

#include "TestDriver.h"
#include "TestUserClient.h"

struct TestDriver_IVars {
    uint32_t userClients;
};

bool TestDriver::init()
{
    if (!super::init()) {
        return false;
    }
    ivars = IONewZero(TestDriver_IVars, 1);
    return ivars != nullptr;
}

void TestDriver::free()
{
    IOSafeDeleteNULL(ivars, TestDriver_IVars, 1);
    super::free();
}

kern_return_t IMPL(TestDriver, Start)
{
    kern_return_t ret = Start(provider, SUPERDISPATCH);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    OSDictionary* properties = nullptr;
    ret = CopyProperties(&properties);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    // A personality with "TestSkipRegister" models a driver that forgets
    // RegisterService: it must stay invisible to clients (docs/driverkit.md §9-3).
    OSBoolean* skip = OSDynamicCast(OSBoolean, properties->getObject("TestSkipRegister"));
    bool skipRegister = skip != nullptr && skip->isTrue();
    // "TestStartFails" models a Start that fails: it returns that IOReturn.
    OSNumber* fails = OSDynamicCast(OSNumber, properties->getObject("TestStartFails"));
    kern_return_t failure = fails == nullptr ? kIOReturnSuccess : static_cast<kern_return_t>(fails->unsigned32BitValue());
    OSSafeReleaseNULL(properties);
    if (failure != kIOReturnSuccess) {
        return failure;
    }
    os_log(OS_LOG_DEFAULT, "TestDriver: started on %{public}s", provider->getMetaClass()->getClassName());
    if (!skipRegister) {
        ret = RegisterService();
    }
    return ret;
}

kern_return_t IMPL(TestDriver, Stop)
{
    return Stop(provider, SUPERDISPATCH);
}

kern_return_t IMPL(TestDriver, NewUserClient)
{
    (void)type;
    IOService* client = nullptr;
    kern_return_t ret = Create(this, "UserClientProperties", &client);
    if (ret != kIOReturnSuccess) {
        os_log_error(OS_LOG_DEFAULT, "TestDriver: Create failed: 0x%{public}x", ret);
        return ret;
    }
    *userClient = OSDynamicCast(IOUserClient, client);
    if (*userClient == nullptr) {
        client->release();
        return kIOReturnError;
    }
    ivars->userClients++;
    return kIOReturnSuccess;
}
