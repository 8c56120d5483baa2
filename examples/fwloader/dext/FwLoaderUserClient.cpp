// FwLoaderUserClient.cpp: the fwloader dext's user client, made by
// FwLoaderDriver::NewUserClient. Its provider is always that driver (a user
// client's provider is the service that created it), reached with
// OSDynamicCast; the generated FwLoader.h (`dextlink gen fwloader.dextlink
// --cpp FwLoader.h`) brings the selectors, the argument-checking thunks and
// the dispatch table, and every `fw_loader::Handle…` below forwards to the
// driver (FwLoaderDriverOps.h). Section numbers (§) refer to
// docs/driverkit.md.
//
// Start: super::Start; the provider as a FwLoaderDriver (else
//   kIOReturnNoDevice); the driver's default queue becomes this client's
//   too, so the external methods and the driver's transfer completions run
//   on one serial queue; Attach; the staging ring, retained for this
//   client's whole life. One upload session at a time: while another
//   client's upload runs, begin and the calls of an upload answer
//   kIOReturnExclusiveAccess (FwLoaderDriverOps.h).
// CopyClientMemoryForType(0): the ring (§5-1: one reference consumed,
//   read-write), for as long as this object lives -- after Stop too, as the
//   kernel calls it again to unmap. Any other type: kIOReturnBadArgument.
// Stop: Detach (this client's submits in flight are answered with
//   kIOReturnAborted), then super::Stop.

#include <DriverKit/DriverKit.h>

#include "FwLoader.h"
#include "FwLoaderDriver.h"
#include "FwLoaderDriverOps.h"
#include "FwLoaderUserClient.h"

struct FwLoaderUserClient_IVars {
    FwLoaderDriver* driver;           // the provider, retained
    IOBufferMemoryDescriptor* ring;   // memory type 0, retained
    bool attached;
};

namespace {

FwLoaderDriver* DriverOf(OSObject* target)
{
    FwLoaderUserClient* self = OSDynamicCast(FwLoaderUserClient, target);
    if (self == nullptr || self->ivars == nullptr || !self->ivars->attached) {
        return nullptr;
    }
    return self->ivars->driver;
}

}  // namespace

bool FwLoaderUserClient::init()
{
    if (!super::init()) {
        return false;
    }
    ivars = IONewZero(FwLoaderUserClient_IVars, 1);
    return ivars != nullptr;
}

void FwLoaderUserClient::free()
{
    if (ivars != nullptr) {
        OSSafeReleaseNULL(ivars->ring);
        OSSafeReleaseNULL(ivars->driver);
    }
    IOSafeDeleteNULL(ivars, FwLoaderUserClient_IVars, 1);
    super::free();
}

kern_return_t IMPL(FwLoaderUserClient, Start)
{
    kern_return_t ret = Start(provider, SUPERDISPATCH);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    FwLoaderDriver* driver = OSDynamicCast(FwLoaderDriver, provider);
    if (driver == nullptr) {
        os_log(OS_LOG_DEFAULT, "FwLoaderUserClient - Start() - The provider is not a FwLoaderDriver.");
        return kIOReturnNoDevice;
    }
    driver->retain();
    ivars->driver = driver;
    IODispatchQueue* queue = nullptr;
    ret = driver->CopyDispatchQueue(kIOServiceDefaultQueueName, &queue);
    if (ret == kIOReturnSuccess) {
        ret = SetDispatchQueue(kIOServiceDefaultQueueName, queue);
        queue->release();
    }
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    ret = fw_loader_driver::Attach(driver, this);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    ivars->attached = true;
    ivars->ring = fw_loader_driver::CopyRing(driver);
    return kIOReturnSuccess;
}

kern_return_t IMPL(FwLoaderUserClient, Stop)
{
    if (ivars->attached) {
        ivars->attached = false;
        fw_loader_driver::Detach(ivars->driver, this);
    }
    return Stop(provider, SUPERDISPATCH);
}

kern_return_t FwLoaderUserClient::ExternalMethod(uint64_t selector, IOUserClientMethodArguments* arguments,
                                                 const IOUserClientMethodDispatch* dispatch, OSObject* target,
                                                 void* reference)
{
    (void)dispatch;
    (void)target;
    (void)reference;
    return fw_loader::ExternalMethod(this, selector, arguments);
}

kern_return_t IMPL(FwLoaderUserClient, CopyClientMemoryForType)
{
    if (options == nullptr || memory == nullptr) {
        return kIOReturnBadArgument;
    }
    if (type != static_cast<uint64_t>(fw_loader::MemoryType::Staging)) {
        return kIOReturnBadArgument;
    }
    if (ivars == nullptr || ivars->ring == nullptr) {
        return kIOReturnNotReady;
    }
    ivars->ring->retain();
    *options = 0;
    *memory = ivars->ring;
    return kIOReturnSuccess;
}

// MARK: - Handlers: the thunks checked the arguments; the driver does the work.

kern_return_t fw_loader::HandleBegin(OSObject* target, const ImageInfo& info, uint64_t* session,
                                     uint64_t* resume_offset)
{
    FwLoaderDriver* driver = DriverOf(target);
    return driver == nullptr ? kIOReturnNotAttached
                             : fw_loader_driver::Begin(driver, OSRequiredCast(IOUserClient, target), info, session, resume_offset);
}

kern_return_t fw_loader::HandleSubmit(OSObject* target, uint32_t slot, uint32_t len, OSAction* completion)
{
    FwLoaderDriver* driver = DriverOf(target);
    return driver == nullptr
               ? kIOReturnNotAttached
               : fw_loader_driver::Submit(driver, OSRequiredCast(IOUserClient, target), slot, len, completion);
}

kern_return_t fw_loader::HandleFinish(OSObject* target, uint32_t image_crc32, Status* status)
{
    FwLoaderDriver* driver = DriverOf(target);
    return driver == nullptr ? kIOReturnNotAttached : fw_loader_driver::Finish(driver, OSRequiredCast(IOUserClient, target), image_crc32, status);
}

kern_return_t fw_loader::HandleStatus(OSObject* target, UploadState* state)
{
    FwLoaderDriver* driver = DriverOf(target);
    return driver == nullptr ? kIOReturnNotAttached : fw_loader_driver::GetStatus(driver, state);
}

kern_return_t fw_loader::HandleAbort(OSObject* target)
{
    FwLoaderDriver* driver = DriverOf(target);
    return driver == nullptr ? kIOReturnNotAttached : fw_loader_driver::Abort(driver, OSRequiredCast(IOUserClient, target));
}

kern_return_t fw_loader::HandleWrite(OSObject* target, uint64_t image_offset, const uint8_t* data,
                                     uint32_t data_length, uint64_t* acknowledged)
{
    FwLoaderDriver* driver = DriverOf(target);
    return driver == nullptr ? kIOReturnNotAttached
                             : fw_loader_driver::Write(driver, OSRequiredCast(IOUserClient, target), image_offset, data, data_length, acknowledged);
}
