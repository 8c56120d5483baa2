// IOUSBHostPipe: transfers to the host's device model, and their
// completions (dextlink_host_usb_complete) delivered to the dext's action.
#include <DriverKit/IOLib.h>
#include <USBDriverKit/USBDriverKit.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "internal.h"
#include "usb.h"

OSDefineMetaClassAndStructors(IOUSBHostPipe, OSObject)

struct IOUSBHostPipe::State {
    IOUSBHostDevice* device = nullptr;
    IOUSBEndpointDescriptor endpoint = {};
};

namespace {

// A synchronous IO waiting for its completion.
struct SyncWait {
    bool done = false;
    int32_t status = kIOReturnSuccess;
    uint32_t actual = 0;
};

// A transfer the host holds. Cookies are numbers, never pointers: a
// completion for a transfer already ended finds nothing and is ignored.
struct PendingTransfer {
    IOUSBHostPipe* pipe;  // retained
    OSAction* action;     // retained; NULL for a synchronous IO
    SyncWait* wait;       // the waiting IO's, on its stack
};

std::mutex gPendingLock;
std::condition_variable gPendingChanged;
std::unordered_map<uint64_t, PendingTransfer> gPending;
uint64_t gNextCookie = 1;

uint64_t addPending(IOUSBHostPipe* pipe, OSAction* action, SyncWait* wait)
{
    pipe->retain();
    if (action != nullptr) {
        action->retain();
    }
    std::lock_guard<std::mutex> guard(gPendingLock);
    uint64_t cookie = gNextCookie++;
    gPending.emplace(cookie, PendingTransfer{pipe, action, wait});
    return cookie;
}

// Takes the transfer out of the table: true if it was there.
bool takePending(uint64_t cookie, PendingTransfer* transfer)
{
    std::lock_guard<std::mutex> guard(gPendingLock);
    auto found = gPending.find(cookie);
    if (found == gPending.end()) {
        return false;
    }
    *transfer = found->second;
    gPending.erase(found);
    gPendingChanged.notify_all();
    return true;
}

void releasePending(const PendingTransfer& transfer)
{
    OSSafeReleaseNULL(const_cast<PendingTransfer&>(transfer).action);
    transfer.pipe->release();
}

}  // namespace

extern "C" void dextlink_host_usb_complete(uint64_t cookie, int32_t status, uint32_t actual, uint64_t timestamp)
{
    PendingTransfer transfer = {};
    if (!takePending(cookie, &transfer)) {
        return;
    }
    if (timestamp == 0) {
        timestamp = mach_absolute_time();
    }
    if (transfer.wait != nullptr) {
        std::lock_guard<std::mutex> guard(gPendingLock);
        transfer.wait->done = true;
        transfer.wait->status = status;
        transfer.wait->actual = actual;
        gPendingChanged.notify_all();
    } else {
        IOUSBHostPipe_CompleteAsyncIO_Invocation invocation = {transfer.action, status, actual, timestamp};
        kern_return_t queued = transfer.action->Invoke(&invocation, sizeof invocation);
        if (queued != kIOReturnSuccess) {
            dextlink::runtimeError("a CompleteAsyncIO could not be delivered (0x%08x): its action was cancelled",
                                   static_cast<unsigned>(queued));
        }
    }
    releasePending(transfer);
}

extern "C" void dextlink_host_usb_disconnected(uint64_t cookie)
{
    IOUSBHostDevice* device = nullptr;
    {
        std::lock_guard<std::mutex> guard(gPendingLock);
        auto found = gPending.find(cookie);
        if (found == gPending.end()) {
            return;
        }
        device = dextlink::usb::deviceOf(found->second.pipe);
        device->retain();
    }
    dextlink::usb::deviceGone(device);
    device->release();
}

IOUSBHostDevice* dextlink::usb::deviceOf(const IOUSBHostPipe* pipe)
{
    return pipe->GetDeviceInternal();
}

IOUSBHostDevice* IOUSBHostPipe::GetDeviceInternal() const
{
    return state_->device;
}

void dextlink::usb::waitForPipeIdle(const IOUSBHostPipe* pipe)
{
    std::unique_lock<std::mutex> guard(gPendingLock);
    gPendingChanged.wait(guard, [pipe] {
        for (const auto& entry : gPending) {
            if (entry.second.pipe == pipe) {
                return false;
            }
        }
        return true;
    });
}

kern_return_t IOUSBHostPipe::_Dispatch(OSObject* self, const IORPC rpc)
{
    auto* pipe = static_cast<IOUSBHostPipe*>(self);
    switch (rpc.methodID) {
    case IOUSBHostPipe_GetSpeed_ID:
        return pipe->IOUSBHostPipe::GetSpeed_Impl(static_cast<IOUSBHostPipe_GetSpeed_Invocation*>(rpc.arguments)->speed);
    case IOUSBHostPipe_GetDeviceAddress_ID:
        return pipe->IOUSBHostPipe::GetDeviceAddress_Impl(
            static_cast<IOUSBHostPipe_GetDeviceAddress_Invocation*>(rpc.arguments)->address);
    case IOUSBHostPipe_Abort_ID: {
        auto* a = static_cast<IOUSBHostPipe_Abort_Invocation*>(rpc.arguments);
        return pipe->IOUSBHostPipe::Abort_Impl(a->options, a->withError, a->forClient);
    }
    case IOUSBHostPipe_GetDescriptors_ID: {
        auto* a = static_cast<IOUSBHostPipe_GetDescriptors_Invocation*>(rpc.arguments);
        return pipe->IOUSBHostPipe::GetDescriptors_Impl(a->descriptors, a->type);
    }
    case IOUSBHostPipe_ClearStall_ID:
        return pipe->IOUSBHostPipe::ClearStall_Impl(
            static_cast<IOUSBHostPipe_ClearStall_Invocation*>(rpc.arguments)->withRequest);
    case IOUSBHostPipe_AsyncIO_ID: {
        auto* a = static_cast<IOUSBHostPipe_AsyncIO_Invocation*>(rpc.arguments);
        return pipe->IOUSBHostPipe::AsyncIO_Impl(a->dataBuffer, a->dataBufferLength, a->completion,
                                                 a->completionTimeoutMs);
    }
    case IOUSBHostPipe_IO_ID: {
        auto* a = static_cast<IOUSBHostPipe_IO_Invocation*>(rpc.arguments);
        return pipe->IOUSBHostPipe::IO_Impl(a->dataBuffer, a->dataBufferLength, a->bytesTransferred,
                                            a->completionTimeoutMs);
    }
    default:
        return OSObject::_Dispatch(self, rpc);
    }
}

bool IOUSBHostPipe::init()
{
    state_ = new State();
    return super::init();
}

void IOUSBHostPipe::free()
{
    if (state_ != nullptr) {
        OSSafeReleaseNULL(state_->device);
        delete state_;
        state_ = nullptr;
    }
    super::free();
}

bool IOUSBHostPipe::InitInternal(IOUSBHostDevice* device, const IOUSBEndpointDescriptor* endpoint)
{
    if (device == nullptr || endpoint == nullptr) {
        return false;
    }
    device->retain();
    state_->device = device;
    memcpy(&state_->endpoint, endpoint, sizeof state_->endpoint);
    return true;
}

uint8_t IOUSBHostPipe::GetEndpointAddressInternal() const
{
    return state_->endpoint.bEndpointAddress;
}

kern_return_t IOUSBHostPipe::GetSpeed(uint8_t* speed, OSDispatchMethod supermethod) const
{
    IOUSBHostPipe_GetSpeed_Invocation a = {speed};
    return OSObjectDispatchInvocation(const_cast<IOUSBHostPipe*>(this), supermethod, IOUSBHostPipe_GetSpeed_ID, &a);
}

kern_return_t IOUSBHostPipe::GetDeviceAddress(uint8_t* address, OSDispatchMethod supermethod) const
{
    IOUSBHostPipe_GetDeviceAddress_Invocation a = {address};
    return OSObjectDispatchInvocation(const_cast<IOUSBHostPipe*>(this), supermethod,
                                      IOUSBHostPipe_GetDeviceAddress_ID, &a);
}

kern_return_t IOUSBHostPipe::Abort(IOOptionBits options, kern_return_t withError, IOService* forClient,
                                   OSDispatchMethod supermethod)
{
    IOUSBHostPipe_Abort_Invocation a = {options, withError, forClient};
    return OSObjectDispatchInvocation(this, supermethod, IOUSBHostPipe_Abort_ID, &a);
}

kern_return_t IOUSBHostPipe::GetDescriptors(IOUSBStandardEndpointDescriptors* descriptors,
                                            IOUSBGetEndpointDescriptorOptions type, OSDispatchMethod supermethod)
{
    IOUSBHostPipe_GetDescriptors_Invocation a = {descriptors, type};
    return OSObjectDispatchInvocation(this, supermethod, IOUSBHostPipe_GetDescriptors_ID, &a);
}

kern_return_t IOUSBHostPipe::ClearStall(bool withRequest, OSDispatchMethod supermethod)
{
    IOUSBHostPipe_ClearStall_Invocation a = {withRequest};
    return OSObjectDispatchInvocation(this, supermethod, IOUSBHostPipe_ClearStall_ID, &a);
}

void IOUSBHostPipe::CompleteAsyncIO(OSAction* action, IOReturn status, uint32_t actualByteCount,
                                    uint64_t completionTimestamp, OSDispatchMethod supermethod)
{
    IOUSBHostPipe_CompleteAsyncIO_Invocation a = {action, status, actualByteCount, completionTimestamp};
    OSObjectDispatchInvocation(this, supermethod, IOUSBHostPipe_CompleteAsyncIO_ID, &a);
}

kern_return_t IOUSBHostPipe::AsyncIO(IOMemoryDescriptor* dataBuffer, uint32_t dataBufferLength, OSAction* completion,
                                     uint32_t completionTimeoutMs, OSDispatchMethod supermethod)
{
    IOUSBHostPipe_AsyncIO_Invocation a = {dataBuffer, dataBufferLength, completion, completionTimeoutMs};
    return OSObjectDispatchInvocation(this, supermethod, IOUSBHostPipe_AsyncIO_ID, &a);
}

kern_return_t IOUSBHostPipe::IO(IOMemoryDescriptor* dataBuffer, uint32_t dataBufferLength,
                                uint32_t* bytesTransferred, uint32_t completionTimeoutMs,
                                OSDispatchMethod supermethod)
{
    IOUSBHostPipe_IO_Invocation a = {dataBuffer, dataBufferLength, bytesTransferred, completionTimeoutMs};
    return OSObjectDispatchInvocation(this, supermethod, IOUSBHostPipe_IO_ID, &a);
}

kern_return_t IOUSBHostPipe::GetSpeed_Impl(uint8_t* speed)
{
    return state_->device->GetSpeed(speed);
}

kern_return_t IOUSBHostPipe::GetDeviceAddress_Impl(uint8_t* address)
{
    return state_->device->GetAddress(address);
}

kern_return_t IOUSBHostPipe::GetDescriptors_Impl(IOUSBStandardEndpointDescriptors* descriptors,
                                                 IOUSBGetEndpointDescriptorOptions type)
{
    if (descriptors == nullptr ||
        (type != kIOUSBGetEndpointDescriptorOriginal && type != kIOUSBGetEndpointDescriptorCurrentPolicy)) {
        return kIOReturnBadArgument;
    }
    memset(descriptors, 0, sizeof *descriptors);
    const auto* device =
        reinterpret_cast<const IOUSBDeviceDescriptor*>(state_->device->GetBackendInternal()->deviceDescriptor.data());
    descriptors->bcdUSB = device->bcdUSB;
    descriptors->descriptor = state_->endpoint;
    return kIOReturnSuccess;
}

kern_return_t IOUSBHostPipe::Abort_Impl(IOOptionBits options, kern_return_t withError, IOService* forClient)
{
    (void)forClient;
    if (options != kIOUSBAbortAsynchronous && options != kIOUSBAbortSynchronous) {
        return kIOReturnBadArgument;
    }
    IOUSBHostDevice::Backend* backend = state_->device->GetBackendInternal();
    int32_t result = backend->ops.abort(backend->context, state_->endpoint.bEndpointAddress, withError);
    // kIOUSBAbortSynchronous: returns once every aborted transfer's
    // completion is queued on the dext's queue. Waiting for the completions
    // to run would deadlock a caller on that queue (UNVERIFIED which one
    // DriverKit waits for; §6-3).
    if (result == kIOReturnSuccess && options == kIOUSBAbortSynchronous) {
        dextlink::usb::waitForPipeIdle(this);
    }
    return result;
}

kern_return_t IOUSBHostPipe::ClearStall_Impl(bool withRequest)
{
    IOUSBHostDevice::Backend* backend = state_->device->GetBackendInternal();
    if (backend->isTerminated()) {
        return kIOReturnNoDevice;
    }
    return backend->ops.clear_stall(backend->context, state_->endpoint.bEndpointAddress, withRequest ? 1 : 0);
}

namespace {

// The checks AsyncIO and IO share (docs/driverkit.md §6-4); kIOReturnSuccess
// with the buffer's memfd and offset when the transfer may go.
kern_return_t checkTransfer(IOUSBHostDevice::Backend* backend, const IOUSBEndpointDescriptor& endpoint,
                            IOMemoryDescriptor* dataBuffer, uint32_t dataBufferLength, int* fd, uint64_t* offset)
{
    if (backend->isTerminated()) {
        return kIOReturnNoDevice;
    }
    if (!backend->isOpen()) {
        return kIOReturnNotOpen;
    }
    // Only bulk OUT endpoints are modelled.
    if ((endpoint.bEndpointAddress & kIOUSBEndpointDescriptorDirection) != kIOUSBEndpointDescriptorDirectionOut ||
        (endpoint.bmAttributes & kIOUSBEndpointDescriptorTransferType) != kIOUSBEndpointDescriptorTransferTypeBulk) {
        return kIOReturnUnsupported;
    }
    uint64_t length = 0;
    if (dataBuffer == nullptr || dataBuffer->GetLength(&length) != kIOReturnSuccess) {
        return kIOReturnBadArgument;
    }
    // "Must be <= dataBuffer->getLength()" (§6-4); an empty transfer is
    // refused as the simulator's pipe refuses it.
    if (dataBufferLength == 0 || dataBufferLength > length || dataBuffer->GetBackingFD() < 0) {
        return kIOReturnBadArgument;
    }
    *fd = dataBuffer->GetBackingFD();
    *offset = dataBuffer->GetBackingOffset();
    return kIOReturnSuccess;
}

}  // namespace

kern_return_t IOUSBHostPipe::AsyncIO_Impl(IOMemoryDescriptor* dataBuffer, uint32_t dataBufferLength,
                                          OSAction* completion, uint32_t completionTimeoutMs)
{
    IOUSBHostDevice::Backend* backend = state_->device->GetBackendInternal();
    int fd = -1;
    uint64_t offset = 0;
    kern_return_t checked = checkTransfer(backend, state_->endpoint, dataBuffer, dataBufferLength, &fd, &offset);
    if (checked != kIOReturnSuccess) {
        return checked;
    }
    // The completion must be an action of type IOUSBHostPipe::CompleteAsyncIO
    // (§6-2); UNVERIFIED that DriverKit checks the type, the safer reading.
    if (completion == nullptr || completion->GetMsgID() != IOUSBHostPipe_CompleteAsyncIO_ID) {
        return kIOReturnBadArgument;
    }
    uint64_t cookie = addPending(this, completion, nullptr);
    int32_t queued = backend->ops.bulk_out(backend->context, state_->endpoint.bEndpointAddress, fd, offset,
                                           dataBufferLength, completionTimeoutMs, cookie);
    if (queued != kIOReturnSuccess) {
        PendingTransfer transfer = {};
        if (takePending(cookie, &transfer)) {
            releasePending(transfer);
        }
    }
    return queued;
}

kern_return_t IOUSBHostPipe::IO_Impl(IOMemoryDescriptor* dataBuffer, uint32_t dataBufferLength,
                                     uint32_t* bytesTransferred, uint32_t completionTimeoutMs)
{
    if (bytesTransferred != nullptr) {
        *bytesTransferred = 0;
    }
    IOUSBHostDevice::Backend* backend = state_->device->GetBackendInternal();
    int fd = -1;
    uint64_t offset = 0;
    kern_return_t checked = checkTransfer(backend, state_->endpoint, dataBuffer, dataBufferLength, &fd, &offset);
    if (checked != kIOReturnSuccess) {
        return checked;
    }
    SyncWait wait;
    uint64_t cookie = addPending(this, nullptr, &wait);
    int32_t queued = backend->ops.bulk_out(backend->context, state_->endpoint.bEndpointAddress, fd, offset,
                                           dataBufferLength, completionTimeoutMs, cookie);
    if (queued != kIOReturnSuccess) {
        PendingTransfer transfer = {};
        if (takePending(cookie, &transfer)) {
            releasePending(transfer);
        }
        return queued;
    }
    std::unique_lock<std::mutex> guard(gPendingLock);
    gPendingChanged.wait(guard, [&wait] { return wait.done; });
    if (bytesTransferred != nullptr) {
        *bytesTransferred = wait.actual;
    }
    return wait.status;
}
