// NullDriver.cpp: the service of Apple's NullDriver sample. It only starts,
// registers, and hands each client connection a user client of the class
// that Info.plist's UserClientProperties names (NullDriverUserClient).
//
// Section numbers (§) refer to docs/driverkit.md, the project's DriverKit
// reference.

#include <os/log.h>

#include <DriverKit/IOLib.h>
#include <DriverKit/IOUserClient.h>

#include "NullDriver.h"

#define Log(...) os_log(OS_LOG_DEFAULT, "NullDriver - " __VA_ARGS__)

// The sample keeps no state in the service; the ivars exist because every
// iig class has them.
struct NullDriver_IVars {
    uint32_t userClients;
};

bool NullDriver::init()
{
    Log("init()");
    if (!super::init()) {
        Log("init() - super::init failed.");
        return false;
    }
    ivars = IONewZero(NullDriver_IVars, 1);
    if (ivars == nullptr) {
        Log("init() - Failed to allocate memory for ivars.");
        return false;
    }
    return true;
}

kern_return_t IMPL(NullDriver, Start)
{
    kern_return_t ret = Start(provider, SUPERDISPATCH);
    if (ret != kIOReturnSuccess) {
        Log("Start() - super::Start failed with error: 0x%08x.", ret);
        return ret;
    }
    // Until this runs, no client can find the service (§9-3).
    ret = RegisterService();
    if (ret != kIOReturnSuccess) {
        Log("Start() - Failed to register service with error: 0x%08x.", ret);
        return ret;
    }
    Log("Start() - Finished.");
    return kIOReturnSuccess;
}

kern_return_t IMPL(NullDriver, Stop)
{
    Log("Stop()");
    return Stop(provider, SUPERDISPATCH);
}

void NullDriver::free()
{
    Log("free()");
    IOSafeDeleteNULL(ivars, NullDriver_IVars, 1);
    super::free();
}

kern_return_t IMPL(NullDriver, NewUserClient)
{
    (void)type;
    IOService* client = nullptr;
    // Makes the IOUserClass that Info.plist's UserClientProperties names.
    kern_return_t ret = Create(this, "UserClientProperties", &client);
    if (ret != kIOReturnSuccess) {
        Log("NewUserClient() - Failed to create user client with error: 0x%08x.", ret);
        return ret;
    }
    *userClient = OSDynamicCast(IOUserClient, client);
    if (*userClient == nullptr) {
        Log("NewUserClient() - Failed to cast new client.");
        client->release();
        return kIOReturnError;
    }
    ivars->userClients++;
    Log("NewUserClient() - Finished.");
    return kIOReturnSuccess;
}
