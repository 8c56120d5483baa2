// FwLoaderDriverOps.h: what FwLoaderUserClient asks of its driver. The user
// client's handlers (FwLoaderUserClient.cpp) check nothing the generated
// thunks have not checked and forward every call here; FwLoaderDriver.cpp
// does the USB work. Every function runs on the driver's default queue:
// the user client shares it (see FwLoaderUserClient::Start), so these calls
// and SlotTransferComplete never overlap and nothing needs a lock.

#ifndef FwLoaderDriverOps_h
#define FwLoaderDriverOps_h

#include <DriverKit/DriverKit.h>

#include "FwLoader.h"

class FwLoaderDriver;

namespace fw_loader_driver {

/// A user client starts: kIOReturnNoDevice once the device is gone. One
/// upload session runs at a time (the interface allows one session): begin
/// makes its client the owner until its finish, abort or Detach, and begin,
/// submit, write, finish and abort from another client meanwhile answer
/// kIOReturnExclusiveAccess.
kern_return_t Attach(FwLoaderDriver* driver, IOUserClient* client);
/// The user client stops: its submits in flight are answered with
/// kIOReturnAborted and the session is free for the next client.
void Detach(FwLoaderDriver* driver, IOUserClient* client);
/// The staging ring (memory type 0), retained for the caller; NULL before
/// Start succeeded.
IOBufferMemoryDescriptor* CopyRing(FwLoaderDriver* driver);

kern_return_t Begin(FwLoaderDriver* driver, IOUserClient* client, const fw_loader::ImageInfo& info, uint64_t* session,
                    uint64_t* resumeOffset);
kern_return_t Submit(FwLoaderDriver* driver, IOUserClient* client, uint32_t slot, uint32_t len,
                     OSAction* completion);
kern_return_t Finish(FwLoaderDriver* driver, IOUserClient* client, uint32_t imageCrc32, fw_loader::Status* status);
kern_return_t GetStatus(FwLoaderDriver* driver, fw_loader::UploadState* state);
kern_return_t Abort(FwLoaderDriver* driver, IOUserClient* client);
kern_return_t Write(FwLoaderDriver* driver, IOUserClient* client, uint64_t imageOffset, const uint8_t* data, uint32_t dataLength,
                    uint64_t* acknowledged);

}  // namespace fw_loader_driver

#endif /* FwLoaderDriverOps_h */
