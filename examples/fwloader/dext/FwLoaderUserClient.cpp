// FwLoaderUserClient.cpp: the fwloader dext's user client, written against
// the dextlink-generated FwLoader.h:
//     dextlink gen fwloader.dextlink --cpp FwLoader.h
// FwLoader.h brings the selectors, the shared structs, the argument-checking
// thunks, the IOUserClientMethodDispatch table and the typed completion
// sender; this file implements the `fw_loader::Handle…` functions and the
// USB side.  The Rust model of the same dext (examples/fwloader/src) does
// exactly what is written below; keep the two in step.
//
// Builds:
//   - In Xcode: with FwLoaderUserClient.iig (iig generates the class header
//     FwLoaderUserClient.h), FwLoaderDeviceProtocol.h and the generated
//     FwLoader.h.
//   - Off-device: -DDEXTLINK_DRIVERKIT_SHIM -I schema/shim
//     -I examples/fwloader/dext/shim -I examples/fwloader/dext
//     -I <dir with FwLoader.h>; dextlink's DriverKit and USBDriverKit shims
//     stand in for the SDK and shim/FwLoaderUserClient.h for the iig output
//     (examples/fwloader/tests/dext_sources.rs does this).
//
// Section numbers (§) refer to docs/driverkit.md, the project's DriverKit
// reference.  The device protocol (request codes, layouts, timeouts) is in
// FwLoaderDeviceProtocol.h.
//
// BEHAVIOUR
//
// Provider: the IOUSBHostInterface of the device's bootloader interface.
// Everything below runs on the user client's default queue: ExternalMethod
// runs there (no kIOUserClientQueueNameExternalMethod queue is set, §2.2-11)
// and so do the slot actions' SlotTransferComplete calls; DriverKit queues
// are serial, so no two of them ever overlap and nothing needs a lock.
//
// Start(provider):
//   1. super::Start; a provider that is not an IOUSBHostInterface ->
//      kIOReturnNoDevice.
//   2. interface->Open(this, 0, NULL); interface->CopyPipe(0x01) for the
//      bulk OUT endpoint.
//   3. The staging ring, allocated once (see "The staging ring" below):
//      interface->CreateIOBuffer(kIOMemoryDirectionInOut, SLOT_COUNT *
//      SLOT_SIZE), SetLength(SLOT_COUNT * SLOT_SIZE), GetAddressRange (a
//      range shorter than the ring -> kIOReturnNoMemory); then for each slot
//      i: IOMemoryDescriptor::CreateSubMemoryDescriptor(
//      kIOMemoryDirectionInOut, i * SLOT_SIZE, SLOT_SIZE, ring), its address
//      range {ring.address + i * SLOT_SIZE, SLOT_SIZE} cached, and one
//      OSAction for SlotTransferComplete (CreateActionSlotTransferComplete,
//      TYPE(IOUSBHostPipe::CompleteAsyncIO), §6-2) whose reference holds i.
//   4. The control buffer for the data stages of the vendor requests:
//      interface->CreateIOBuffer(kIOMemoryDirectionInOut, 64), SetLength,
//      GetAddressRange.
//   5. write's bounce buffer, allocated once:
//      interface->CreateIOBuffer(kIOMemoryDirectionInOut, SLOT_HEADER_SIZE +
//      4096), SetLength, GetAddressRange (cached).
//   Any failure undoes what was done (interface closed, actions cancelled)
//   and returns that error; the buffers and descriptors already made are
//   released by free().  Until Start succeeds, and after Stop, every
//   handler and CopyClientMemoryForType answers kIOReturnNotReady.
//
// ExternalMethod: straight to the generated fw_loader::ExternalMethod
//   (selector bounds, handshake, kDispatchTable checks, thunks).  The thunks
//   have checked every argument before a handler runs: submit's slot <
//   SLOT_COUNT and 1 <= len <= SLOT_SIZE, begin's ImageInfo size and format,
//   write's data at most 4096 bytes.
//
// Control requests (all synchronous, on the default pipe, with the 64-byte
// control buffer, timeout 5000 ms): an error from DeviceRequest is returned
// as is; a data stage shorter than its wLength -> kIOReturnUnderrun; a
// GET_STATE answer whose status is not a declared Status ->
// kIOReturnDeviceError (the device is not trusted either).
//
// begin(info):    BEGIN(info), then GET_STATE -> session = state.session,
//                 resume_offset = state.acknowledged.
// submit(slot, len):
//                 slot in flight -> kIOReturnBusy.  Otherwise the client's
//                 completion is retained (it is only retained for the call,
//                 §4.1-2) and the slot's descriptor goes to
//                 pipe->AsyncIO(slotBuffer[slot], len, slotAction[slot],
//                 2000 ms).  If AsyncIO fails: the completion is released
//                 and AsyncIO's error returned -- the client gets it
//                 synchronously and no completion follows.  Otherwise
//                 kIOReturnSuccess, and the submit completes later.
// finish(crc):    FINISH(crc), then GET_STATE -> status = state.status.
// status():       GET_STATE -> state.
// abort():        pipe->Abort(kIOUSBAbortSynchronous, kIOReturnAborted, NULL)
//                 (§6-3; forClient NULL: "specify NULL for other endpoint
//                 types" than control, DOCS IOUSBHostPipe::Abort), then ABORT.
//                 Returns Abort's error if it failed (ABORT is sent anyway),
//                 else ABORT's result.  The submits in flight complete
//                 through SlotTransferComplete with kIOReturnAborted.
// write(image_offset, data):
//                 the naive path, without the ring: one call, one
//                 synchronous transfer.  Empty data -> kIOReturnBadArgument
//                 (the thunk has checked data_length <= 4096).  The bounce
//                 buffer gets a SlotHeader {sequence 0, image_offset,
//                 length = data_length, crc32 = CRC-32 of the header's first
//                 20 bytes and the data} and the
//                 data after it; then pipe->IO(bounce, SLOT_HEADER_SIZE +
//                 data_length, &bytesTransferred, 2000 ms).  A stall (as in
//                 SlotTransferComplete) calls pipe->ClearStall(true), which
//                 also aborts the submits in flight (they complete through
//                 SlotTransferComplete with kIOReturnAborted); a ClearStall
//                 error is only logged.  IO's error is returned as is; fewer
//                 bytes than sent -> kIOReturnUnderrun.  Then GET_STATE ->
//                 acknowledged = state.acknowledged.  IO blocks the default
//                 queue, so no SlotTransferComplete runs meanwhile.
//
// SlotTransferComplete(action, status, actualByteCount, timestamp):
//   1. The slot is the index in the action's reference; an index out of
//      range, or an action that is not that slot's, is ignored.
//   2. A slot holding no client completion (Stop already answered it) is
//      ignored: no ClearStall, no GET_STATE.
//   3. The slot is free again (a submit from the client's completion
//      handler may reuse it).
//   4. A stall -- kUSBHostReturnPipeStalled (0xE0005000) or the legacy
//      kIOUSBPipeStalled (0xE000404F), §6-7 -- calls pipe->ClearStall(true)
//      so that the next transfers can run.  That aborts the other pending
//      transfers (§6-4), which then complete here on their own with
//      kIOReturnAborted.  A ClearStall error is only logged.
//   5. On success the device's progress is read with GET_STATE:
//      acknowledged = state.acknowledged; if GET_STATE fails, the
//      completion carries GET_STATE's error instead of success.  Any other
//      status is passed on as is with acknowledged = 0.
//   6. fw_loader::CompleteSubmit(this, completion, status, actualByteCount,
//      acknowledged) -- the typed AsyncCompletion (result, then the two
//      values transferred and acknowledged) -- and the completion is
//      released.
//
// CopyClientMemoryForType(0): the ring, retained for the caller (§5-1: one
//   reference consumed), the same descriptor every time, options 0 --
//   read-write, no kIOUserClientMemoryReadOnly.  Any other type ->
//   kIOReturnBadArgument.
//
// Stop(provider): not ready any more; pipe->Abort(kIOUSBAbortSynchronous,
//   kIOReturnAborted, NULL); every completion still held is completed with
//   kIOReturnAborted (transferred 0, acknowledged 0) and released;
//   interface->Close(this, 0); the slot actions are cancelled (a late
//   CompleteAsyncIO is dropped, and the actions let go of the user client);
//   then super::Stop.
// free(): a completion still held (Stop never ran) is completed with
//   kIOReturnAborted and released; everything is released (the ring, its
//   slot descriptors and actions, the control and bounce buffers, the pipe,
//   the interface).
//
// THE STAGING RING
//
// The client sees one memory type 0 of SLOT_COUNT * SLOT_SIZE bytes; the
// pipe gets one descriptor per slot.  Both are the same memory, so a submit
// copies nothing:
//   - one IOUSBHostInterface::CreateIOBuffer for the whole ring: a buffer
//     "optimized for use by the underlying controller hardware … isn't
//     bounced to perform DMA operations" (§6-5), kIOMemoryDirectionInOut so
//     that the client's mapping is writable (§5-5);
//   - per slot, a sub-descriptor of it (IOMemoryDescriptor::
//     CreateSubMemoryDescriptor, DriverKit 20+), created once at Start:
//     AsyncIO always starts at offset 0 of its dataBuffer, so each slot
//     needs a descriptor that starts at the slot;
//   - each slot's address range, cached at Start, is the dext's own view of
//     the slot (used to log the slot's SlotHeader; never trusted: the device
//     checks the header and the CRCs).
// The generated fw_loader::ClientMemory helper is not used: it allocates
// with IOBufferMemoryDescriptor::Create, and the ring must come from
// CreateIOBuffer to be DMA-ready for the pipe.
// SetLength is called explicitly because the sources disagree on a new
// buffer's length (zero or its capacity, §5-7), and the sub-descriptors are
// checked against it.
//
// THE BOUNCE BUFFER
//
// write's data arrives in the call (an OSData of at most 4096 bytes, or a
// mapping of the client's memory) and needs a SlotHeader in front of it, so
// it is copied into a buffer of the dext's own: one CreateIOBuffer at Start
// (DMA-ready like the ring, §6-5), reused by every write.  ExternalMethod
// calls never overlap (see BEHAVIOUR), so one buffer is enough.

#ifdef DEXTLINK_DRIVERKIT_SHIM
#include <dextlink/driverkit_shim.h>
#include <dextlink/usbdriverkit_shim.h>
#else
#include <os/log.h>

#include <DriverKit/IOBufferMemoryDescriptor.h>
#include <DriverKit/IOLib.h>
#include <DriverKit/IOMemoryDescriptor.h>
#include <DriverKit/IOUserClient.h>
#include <DriverKit/OSAction.h>
#include <USBDriverKit/IOUSBHostInterface.h>
#include <USBDriverKit/IOUSBHostPipe.h>
#endif

#include "FwLoader.h"
#include "FwLoaderDeviceProtocol.h"
#include "FwLoaderUserClient.h"

// Every log line starts with the same prefix, so that `log stream` or
// Console.app can pick out this driver's messages.
#define Log(...) os_log(OS_LOG_DEFAULT, "FwLoaderUserClient - " __VA_ARGS__)

using fw_loader::ImageInfo;
using fw_loader::SLOT_COUNT;
using fw_loader::SLOT_HEADER_SIZE;
using fw_loader::SLOT_SIZE;
using fw_loader::SlotHeader;
using fw_loader::Status;
using fw_loader::UploadState;

namespace {

// The legacy IOUSBFamily stall code (§6-7).  USBDriverKit defines only the
// modern kUSBHostReturnPipeStalled; which one CompleteAsyncIO reports is
// UNVERIFIED (§6-7), so both count as a stall.
constexpr IOReturn kLegacyPipeStalled = static_cast<IOReturn>(0xE000404FU);

bool IsStall(IOReturn status)
{
    return status == kUSBHostReturnPipeStalled || status == kLegacyPipeStalled;
}

// write's largest block: the schema's `data: &[u8; ..=4096]`, which the
// generated thunk enforces before HandleWrite runs.
constexpr uint32_t kWriteMaxBytes = 4096;
// write's bounce buffer: a SlotHeader, then one block.
constexpr uint32_t kBounceSize = SLOT_HEADER_SIZE + kWriteMaxBytes;
static_assert(sizeof(SlotHeader) == SLOT_HEADER_SIZE, "write frames its block with one SlotHeader");

// MARK: - CRC-32
//
// The CRC-32 of write's SlotHeader: the IEEE 802.3 one that zlib's crc32()
// and the Rust side's crc32fast compute (reflected polynomial 0xEDB88320,
// initial value and final XOR 0xFFFFFFFF).  DriverKit has no zlib and no
// checksum API, so the dext carries its own: a byte at a time through a
// 256-entry table, which is plenty for blocks of at most 4 KiB.  The table
// is constexpr: the compiler builds it once, so it costs no start-up work,
// no lock and no writable memory in the dext.

struct Crc32Table {
    uint32_t entries[256];

    constexpr Crc32Table() : entries()
    {
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int bit = 0; bit < 8; ++bit) {
                c = (c & 1U) != 0 ? (c >> 1) ^ 0xEDB88320U : c >> 1;
            }
            entries[i] = c;
        }
    }
};

constexpr Crc32Table kCrc32Table;

// A template only so that the check below can run it at compile time on a
// string literal; the dext calls it with uint8_t.
template <typename Byte>
constexpr uint32_t Crc32(const Byte* data, uint32_t length, uint32_t previous = 0)
{
    uint32_t crc = previous ^ 0xFFFFFFFFU;
    for (uint32_t i = 0; i < length; ++i) {
        crc = kCrc32Table.entries[(crc ^ static_cast<uint8_t>(data[i])) & 0xFFU] ^ (crc >> 8);
    }
    return crc ^ 0xFFFFFFFFU;
}

// Continuing a CRC over a second buffer is the CRC of both, one after the other.
static_assert(Crc32("56789", 5, Crc32("1234", 4)) == 0xCBF43926U, "a CRC-32 continues");

// The standard check value of CRC-32/ISO-HDLC (zlib's crc32("123456789")).
static_assert(Crc32("123456789", 9) == 0xCBF43926U, "the dext's CRC-32 must be zlib's");
static_assert(Crc32("", 0) == 0, "the dext's CRC-32 must be zlib's");

}  // namespace

// One staging slot.
struct FwLoaderSlot {
    // The slot's sub-descriptor of the ring: AsyncIO's dataBuffer.
    IOMemoryDescriptor* buffer;
    // The slot's bytes in the dext's address space.
    IOAddressSegment range;
    // SlotTransferComplete, with the slot's index in its reference.
    OSAction* transferAction;
    // The client's submit completion, retained while the slot's transfer is
    // in flight; NULL when the slot is free.
    OSAction* completion;
};

struct FwLoaderUserClient_IVars {
    IOUSBHostInterface* usbInterface;   // the provider, retained
    bool interfaceOpen;
    IOUSBHostPipe* pipe;                // bulk OUT, from CopyPipe
    IOBufferMemoryDescriptor* ring;     // memory type 0
    IOAddressSegment ringRange;
    IOBufferMemoryDescriptor* control;  // the vendor requests' data stages
    IOAddressSegment controlRange;
    IOBufferMemoryDescriptor* bounce;   // write's SlotHeader and block
    IOAddressSegment bounceRange;
    FwLoaderSlot slots[SLOT_COUNT];
    // Start succeeded and Stop has not run.
    bool ready;
};

namespace {

// MARK: - Helpers

FwLoaderUserClient* UserClient(OSObject* target)
{
    return OSDynamicCast(FwLoaderUserClient, target);
}

// The handlers' user client, or NULL when it cannot take requests.
FwLoaderUserClient* ReadyUserClient(OSObject* target)
{
    FwLoaderUserClient* self = UserClient(target);
    if (self == nullptr || self->ivars == nullptr || !self->ivars->ready) {
        return nullptr;
    }
    return self;
}

void* ControlBytes(FwLoaderUserClient_IVars* ivars)
{
    return reinterpret_cast<void*>(static_cast<uintptr_t>(ivars->controlRange.address));
}

// One vendor request whose data stage (if any) is in the control buffer.
kern_return_t ControlRequest(FwLoaderUserClient_IVars* ivars, uint8_t requestType, uint8_t request, uint16_t length)
{
    uint16_t transferred = 0;
    kern_return_t ret = ivars->usbInterface->DeviceRequest(
        requestType, request, fw_loader_device::kRequestValue, fw_loader_device::kRequestIndex, length,
        length != 0 ? ivars->control : nullptr, &transferred, fw_loader_device::kControlTimeoutMs);
    if (ret != kIOReturnSuccess) {
        Log("Vendor request 0x%02x failed with error: 0x%08x.", request, ret);
        return ret;
    }
    if (transferred != length) {
        Log("Vendor request 0x%02x moved %u of %u bytes.", request, transferred, length);
        return kIOReturnUnderrun;
    }
    return kIOReturnSuccess;
}

kern_return_t SendBegin(FwLoaderUserClient_IVars* ivars, const ImageInfo& info)
{
    memset(ControlBytes(ivars), 0, fw_loader_device::kControlBufferSize);
    memcpy(ControlBytes(ivars), &info, sizeof(info));
    return ControlRequest(ivars, fw_loader_device::kRequestTypeVendorOut, fw_loader_device::kRequestBegin,
                          fw_loader_device::kBeginLength);
}

kern_return_t SendFinish(FwLoaderUserClient_IVars* ivars, uint32_t imageCrc32)
{
    memset(ControlBytes(ivars), 0, fw_loader_device::kControlBufferSize);
    memcpy(ControlBytes(ivars), &imageCrc32, sizeof(imageCrc32));
    return ControlRequest(ivars, fw_loader_device::kRequestTypeVendorOut, fw_loader_device::kRequestFinish,
                          fw_loader_device::kFinishLength);
}

kern_return_t SendAbort(FwLoaderUserClient_IVars* ivars)
{
    return ControlRequest(ivars, fw_loader_device::kRequestTypeVendorOut, fw_loader_device::kRequestAbort,
                          fw_loader_device::kAbortLength);
}

kern_return_t GetState(FwLoaderUserClient_IVars* ivars, UploadState* state)
{
    memset(ControlBytes(ivars), 0, fw_loader_device::kControlBufferSize);
    kern_return_t ret = ControlRequest(ivars, fw_loader_device::kRequestTypeVendorIn,
                                       fw_loader_device::kRequestGetState, fw_loader_device::kGetStateLength);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    // The generated validator: every enum field a declared value.
    const uint8_t* bytes = static_cast<const uint8_t*>(ControlBytes(ivars));
    if (!fw_loader::detail::IsValidUploadState(bytes)) {
        Log("GET_STATE answered an undeclared status.");
        return kIOReturnDeviceError;
    }
    memcpy(state, bytes, sizeof(*state));
    return kIOReturnSuccess;
}

// IOMemoryDescriptor::CreateSubMemoryDescriptor (DriverKit 20+).  The one
// call that differs off-device: dextlink's DriverKit shim has no such static
// member, and its USBDriverKit shim supplies the same call as a free
// function.
kern_return_t CreateSlotDescriptor(IOMemoryDescriptor* ring, uint64_t offset, IOMemoryDescriptor** slot)
{
#ifdef DEXTLINK_DRIVERKIT_SHIM
    return dextlink_shim::CreateSubMemoryDescriptor(kIOMemoryDirectionInOut, offset, SLOT_SIZE, ring, slot);
#else
    return IOMemoryDescriptor::CreateSubMemoryDescriptor(kIOMemoryDirectionInOut, offset, SLOT_SIZE, ring, slot);
#endif
}

// Answers every submit still in flight with kIOReturnAborted and frees its
// slot (Stop, free).
void AbortHeldCompletions(FwLoaderUserClient* self)
{
    for (uint32_t slot = 0; slot < SLOT_COUNT; ++slot) {
        OSAction* completion = self->ivars->slots[slot].completion;
        if (completion == nullptr) {
            continue;
        }
        self->ivars->slots[slot].completion = nullptr;
        fw_loader::CompleteSubmit(self, completion, kIOReturnAborted, 0, 0);
        completion->release();
    }
}

// Stops the transfers and gives the interface back: the first part of Stop,
// and the undoing of a failed Start.
void ShutDownTransfers(FwLoaderUserClient* self)
{
    FwLoaderUserClient_IVars* ivars = self->ivars;
    ivars->ready = false;
    if (ivars->pipe != nullptr) {
        kern_return_t ret = ivars->pipe->Abort(kIOUSBAbortSynchronous, kIOReturnAborted, nullptr);
        if (ret != kIOReturnSuccess) {
            Log("Aborting the bulk pipe failed with error: 0x%08x.", ret);
        }
    }
    AbortHeldCompletions(self);
    if (ivars->interfaceOpen) {
        kern_return_t ret = ivars->usbInterface->Close(self, 0);
        if (ret != kIOReturnSuccess) {
            Log("Closing the interface failed with error: 0x%08x.", ret);
        }
        ivars->interfaceOpen = false;
    }
}

// Cancels the slot actions at once, without waiting for the cancellation
// (the undoing of a failed Start, where no transfer was ever started).
void CancelSlotActions(FwLoaderUserClient_IVars* ivars)
{
    for (uint32_t slot = 0; slot < SLOT_COUNT; ++slot) {
        if (ivars->slots[slot].transferAction != nullptr) {
#if defined(__BLOCKS__)
            ivars->slots[slot].transferAction->Cancel(^{
            });
#else
            ivars->slots[slot].transferAction->Cancel(nullptr);
#endif
        }
    }
}

// A buffer for the pipes (CreateIOBuffer: DMA-ready, §6-5) of `size` bytes,
// its length set (see "The staging ring") and its address range cached.  A
// buffer created but unusable stays in *buffer for free() to release.
kern_return_t CreateTransferBuffer(IOUSBHostInterface* usbInterface, uint64_t size,
                                   IOBufferMemoryDescriptor** buffer, IOAddressSegment* range)
{
    kern_return_t ret = usbInterface->CreateIOBuffer(kIOMemoryDirectionInOut, size, buffer);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    ret = (*buffer)->SetLength(size);
    if (ret == kIOReturnSuccess) {
        ret = (*buffer)->GetAddressRange(range);
    }
    if (ret == kIOReturnSuccess && range->length < size) {
        ret = kIOReturnNoMemory;
    }
    return ret;
}

// Start's steps 2-5 (see the header comment).
kern_return_t SetUpTransfers(FwLoaderUserClient* self)
{
    FwLoaderUserClient_IVars* ivars = self->ivars;

    kern_return_t ret = ivars->usbInterface->Open(self, 0, nullptr);
    if (ret != kIOReturnSuccess) {
        Log("Start() - Failed to open the interface with error: 0x%08x.", ret);
        return ret;
    }
    ivars->interfaceOpen = true;

    ret = ivars->usbInterface->CopyPipe(fw_loader_device::kBulkOutEndpoint, &ivars->pipe);
    if (ret != kIOReturnSuccess) {
        Log("Start() - Failed to get the bulk OUT pipe with error: 0x%08x.", ret);
        return ret;
    }

    // The staging ring: allocated once, mapped by the client as memory type
    // 0 and handed to the pipe slot by slot.
    ret = CreateTransferBuffer(ivars->usbInterface, fw_loader::kStagingSize, &ivars->ring, &ivars->ringRange);
    if (ret != kIOReturnSuccess) {
        Log("Start() - Failed to set up the staging ring with error: 0x%08x.", ret);
        return ret;
    }

    for (uint32_t slot = 0; slot < SLOT_COUNT; ++slot) {
        FwLoaderSlot& s = ivars->slots[slot];
        const uint64_t offset = static_cast<uint64_t>(slot) * SLOT_SIZE;
        ret = CreateSlotDescriptor(ivars->ring, offset, &s.buffer);
        if (ret != kIOReturnSuccess) {
            Log("Start() - Failed to describe slot %u with error: 0x%08x.", slot, ret);
            return ret;
        }
        s.range.address = ivars->ringRange.address + offset;
        s.range.length = SLOT_SIZE;

        ret = self->CreateActionSlotTransferComplete(sizeof(uint32_t), &s.transferAction);
        if (ret != kIOReturnSuccess) {
            Log("Start() - Failed to create the action of slot %u with error: 0x%08x.", slot, ret);
            return ret;
        }
        void* reference = s.transferAction->GetReference();
        if (reference == nullptr) {
            return kIOReturnNoMemory;
        }
        memcpy(reference, &slot, sizeof(slot));
    }

    ret = CreateTransferBuffer(ivars->usbInterface, fw_loader_device::kControlBufferSize, &ivars->control,
                               &ivars->controlRange);
    if (ret != kIOReturnSuccess) {
        Log("Start() - Failed to set up the control buffer with error: 0x%08x.", ret);
        return ret;
    }

    // write's bounce buffer (see "The bounce buffer").
    ret = CreateTransferBuffer(ivars->usbInterface, kBounceSize, &ivars->bounce, &ivars->bounceRange);
    if (ret != kIOReturnSuccess) {
        Log("Start() - Failed to set up the bounce buffer with error: 0x%08x.", ret);
    }
    return ret;
}

}  // namespace

// MARK: - Lifecycle

bool FwLoaderUserClient::init()
{
    Log("init()");

    if (!super::init()) {
        Log("init() - super::init failed.");
        return false;
    }

    ivars = IONewZero(FwLoaderUserClient_IVars, 1);
    if (ivars == nullptr) {
        Log("init() - Failed to allocate memory for ivars.");
        return false;
    }
    return true;
}

kern_return_t IMPL(FwLoaderUserClient, Start)
{
    kern_return_t ret = Start(provider, SUPERDISPATCH);
    if (ret != kIOReturnSuccess) {
        Log("Start() - super::Start failed with error: 0x%08x.", ret);
        return ret;
    }

    ivars->usbInterface = OSDynamicCast(IOUSBHostInterface, provider);
    if (ivars->usbInterface == nullptr) {
        Log("Start() - The provider is not an IOUSBHostInterface.");
        return kIOReturnNoDevice;
    }
    ivars->usbInterface->retain();

    ret = SetUpTransfers(this);
    if (ret != kIOReturnSuccess) {
        ShutDownTransfers(this);
        CancelSlotActions(ivars);
        return ret;
    }

    ivars->ready = true;
    Log("Start() - Finished.");
    return kIOReturnSuccess;
}

kern_return_t IMPL(FwLoaderUserClient, Stop)
{
    Log("Stop()");

    // Abort the pipe, answer the submits still in flight, close the
    // interface.
    ShutDownTransfers(this);

#if defined(__BLOCKS__)
    // Cancel the slot actions, as Apple's NullDriver sample cancels its
    // actions, and pass Stop on to super only when the last cancellation has
    // completed.
    __block uint32_t cancelCount = 0;
    for (uint32_t slot = 0; slot < SLOT_COUNT; ++slot) {
        if (ivars->slots[slot].transferAction != nullptr) {
            ++cancelCount;
        }
    }
    if (cancelCount == 0) {
        kern_return_t ret = Stop(provider, SUPERDISPATCH);
        Log("Stop() - Finished with 0x%08x.", ret);
        return ret;
    }

    // Keep this object and the provider alive until the last cancellation
    // has stopped the service.
    this->retain();
    provider->retain();

    void (^finalize)(void) = ^{
        if (__atomic_sub_fetch(&cancelCount, 1U, __ATOMIC_ACQ_REL) == 0) {
            kern_return_t status = Stop(provider, SUPERDISPATCH);
            if (status != kIOReturnSuccess) {
                Log("Stop() - super::Stop failed with error: 0x%08x.", status);
            }
            Log("Stop() - Finished.");
            this->release();
            provider->release();
        }
    };

    for (uint32_t slot = 0; slot < SLOT_COUNT; ++slot) {
        if (ivars->slots[slot].transferAction != nullptr) {
            ivars->slots[slot].transferAction->Cancel(finalize);
        }
    }
    Log("Stop() - Cancels started; the last one stops the service.");
    return kIOReturnSuccess;
#else
    // Without blocks (the DriverKit shim built with g++; DriverKit itself
    // always has them), cancellation takes no handler.  The shim cancels
    // synchronously, so every action is cancelled once these calls return.
    CancelSlotActions(ivars);
    kern_return_t ret = Stop(provider, SUPERDISPATCH);
    Log("Stop() - Finished with 0x%08x.", ret);
    return ret;
#endif
}

void FwLoaderUserClient::free()
{
    Log("free()");

    if (ivars != nullptr) {
        // Stop answers these; without a Stop, answer them here.
        AbortHeldCompletions(this);
        for (uint32_t slot = 0; slot < SLOT_COUNT; ++slot) {
            OSSafeReleaseNULL(ivars->slots[slot].transferAction);
            OSSafeReleaseNULL(ivars->slots[slot].buffer);
        }
        OSSafeReleaseNULL(ivars->bounce);
        OSSafeReleaseNULL(ivars->control);
        OSSafeReleaseNULL(ivars->ring);
        OSSafeReleaseNULL(ivars->pipe);
        OSSafeReleaseNULL(ivars->usbInterface);
    }
    IOSafeDeleteNULL(ivars, FwLoaderUserClient_IVars, 1);

    super::free();
}

// MARK: - ExternalMethod and client memory

// Called for every IOConnectCall…Method of the client.  DriverKit passes
// NULL for dispatch, target and reference (§2.1-5); the generated
// fw_loader::ExternalMethod bounds-checks the selector, answers dextlink's
// handshake and sends every other selector through DriverKit's checks with
// its kDispatchTable entry.
kern_return_t FwLoaderUserClient::ExternalMethod(uint64_t selector,
                                                 IOUserClientMethodArguments* arguments,
                                                 const IOUserClientMethodDispatch* dispatch,
                                                 OSObject* target,
                                                 void* reference)
{
    (void)dispatch;
    (void)target;
    (void)reference;
    return fw_loader::ExternalMethod(this, selector, arguments);
}

// Memory type 0 (MemoryType::Staging): the staging ring, read-write (§5-1).
kern_return_t IMPL(FwLoaderUserClient, CopyClientMemoryForType)
{
    if (options == nullptr || memory == nullptr) {
        return kIOReturnBadArgument;
    }
    if (type != static_cast<uint64_t>(fw_loader::MemoryType::Staging)) {
        Log("CopyClientMemoryForType() - Unknown memory type %llu.", static_cast<unsigned long long>(type));
        return kIOReturnBadArgument;
    }
    if (ivars == nullptr || !ivars->ready || ivars->ring == nullptr) {
        return kIOReturnNotReady;
    }
    // One reference is consumed by the caller (§5-1); no
    // kIOUserClientMemoryReadOnly: the client writes the slots.
    ivars->ring->retain();
    *options = 0;
    *memory = ivars->ring;
    return kIOReturnSuccess;
}

// MARK: - Handlers (DriverKit applied kDispatchTable's checks, and the
// generated thunk unpacked and checked the arguments)

kern_return_t fw_loader::HandleBegin(OSObject* target, const ImageInfo& info, uint64_t* session,
                                     uint64_t* resume_offset)
{
    FwLoaderUserClient* self = ReadyUserClient(target);
    if (self == nullptr) {
        return kIOReturnNotReady;
    }
    Log("begin: %llu bytes at 0x%llx, format %u.", static_cast<unsigned long long>(info.total_len),
        static_cast<unsigned long long>(info.load_address), static_cast<uint32_t>(info.format));

    kern_return_t ret = SendBegin(self->ivars, info);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    UploadState state;
    ret = GetState(self->ivars, &state);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    *session = state.session;
    *resume_offset = state.acknowledged;
    return kIOReturnSuccess;
}

kern_return_t fw_loader::HandleSubmit(OSObject* target, uint32_t slot, uint32_t len, OSAction* completion)
{
    FwLoaderUserClient* self = ReadyUserClient(target);
    if (self == nullptr) {
        return kIOReturnNotReady;
    }
    // The thunk checked slot < SLOT_COUNT, 1 <= len <= SLOT_SIZE and that a
    // completion exists (kDispatchTable: checkCompletionExists = 1).
    FwLoaderSlot& s = self->ivars->slots[slot];
    if (s.completion != nullptr) {
        Log("submit: slot %u is still in flight.", slot);
        return kIOReturnBusy;
    }

    if (len >= SLOT_HEADER_SIZE) {
        // The slot's header, as the client wrote it -- for the log only.
        SlotHeader header;
        memcpy(&header, reinterpret_cast<const void*>(static_cast<uintptr_t>(s.range.address)), sizeof(header));
        Log("submit: slot %u, %u bytes, sequence %llu, image offset %llu.", slot, len,
            static_cast<unsigned long long>(header.sequence), static_cast<unsigned long long>(header.image_offset));
    }

    // Keep the completion until the transfer ends: DriverKit only retains
    // it for the duration of this call (§4.1-2).
    completion->retain();
    s.completion = completion;
    kern_return_t ret = self->ivars->pipe->AsyncIO(s.buffer, len, s.transferAction,
                                                   fw_loader_device::kTransferTimeoutMs);
    if (ret != kIOReturnSuccess) {
        // No completion will come: the client gets the error now.
        Log("submit: AsyncIO of slot %u failed with error: 0x%08x.", slot, ret);
        s.completion = nullptr;
        completion->release();
        return ret;
    }
    return kIOReturnSuccess;
}

kern_return_t fw_loader::HandleFinish(OSObject* target, uint32_t image_crc32, Status* status)
{
    FwLoaderUserClient* self = ReadyUserClient(target);
    if (self == nullptr) {
        return kIOReturnNotReady;
    }
    kern_return_t ret = SendFinish(self->ivars, image_crc32);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    UploadState state;
    ret = GetState(self->ivars, &state);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    *status = state.status;
    return kIOReturnSuccess;
}

kern_return_t fw_loader::HandleStatus(OSObject* target, UploadState* state)
{
    FwLoaderUserClient* self = ReadyUserClient(target);
    if (self == nullptr) {
        return kIOReturnNotReady;
    }
    return GetState(self->ivars, state);
}

kern_return_t fw_loader::HandleAbort(OSObject* target)
{
    FwLoaderUserClient* self = ReadyUserClient(target);
    if (self == nullptr) {
        return kIOReturnNotReady;
    }
    // "Specify kIOReturnAborted" (§6-3).  The transfers in flight complete
    // through SlotTransferComplete with it.
    kern_return_t aborted = self->ivars->pipe->Abort(kIOUSBAbortSynchronous, kIOReturnAborted, nullptr);
    if (aborted != kIOReturnSuccess) {
        Log("abort: aborting the bulk pipe failed with error: 0x%08x.", aborted);
    }
    kern_return_t ret = SendAbort(self->ivars);
    return aborted != kIOReturnSuccess ? aborted : ret;
}

kern_return_t fw_loader::HandleWrite(OSObject* target, uint64_t image_offset, const uint8_t* data,
                                     uint32_t data_length, uint64_t* acknowledged)
{
    FwLoaderUserClient* self = ReadyUserClient(target);
    if (self == nullptr) {
        return kIOReturnNotReady;
    }
    // The thunk checked data_length <= 4096; the second test only keeps the
    // copy below inside the bounce buffer should the schema's bound grow.
    if (data_length == 0 || data_length > kWriteMaxBytes || data == nullptr) {
        return kIOReturnBadArgument;
    }
    FwLoaderUserClient_IVars* ivars = self->ivars;

    // The block, framed like a slot: its SlotHeader, then the data.
    SlotHeader header = {};
    header.sequence = 0;
    header.image_offset = image_offset;
    header.length = data_length;
    // Over the header's first 20 bytes (sequence, image_offset, length;
    // little-endian, as every DriverKit target is), then the data: the
    // device catches a flipped bit in the fields as in the data.
    const uint32_t fieldsCrc = Crc32(reinterpret_cast<const uint8_t*>(&header), offsetof(SlotHeader, crc32));
    header.crc32 = Crc32(data, data_length, fieldsCrc);
    uint8_t* bounce = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(ivars->bounceRange.address));
    memcpy(bounce, &header, sizeof(header));
    memcpy(bounce + SLOT_HEADER_SIZE, data, data_length);
    const uint32_t length = SLOT_HEADER_SIZE + data_length;

    uint32_t transferred = 0;
    kern_return_t ret = ivars->pipe->IO(ivars->bounce, length, &transferred, fw_loader_device::kTransferTimeoutMs);
    if (IsStall(ret)) {
        // As in SlotTransferComplete: the endpoint is halted until the stall
        // is cleared (§6-4); clearing it also aborts the submits in flight.
        kern_return_t cleared = ivars->pipe->ClearStall(true);
        if (cleared != kIOReturnSuccess) {
            Log("write: ClearStall failed with error: 0x%08x.", cleared);
        }
    }
    if (ret != kIOReturnSuccess) {
        Log("write: IO of %u bytes at image offset %llu failed with error: 0x%08x.", length,
            static_cast<unsigned long long>(image_offset), ret);
        return ret;
    }
    if (transferred < length) {
        Log("write: IO moved %u of %u bytes.", transferred, length);
        return kIOReturnUnderrun;
    }

    // What the device has received and programmed so far.
    UploadState state;
    ret = GetState(ivars, &state);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    *acknowledged = state.acknowledged;
    return kIOReturnSuccess;
}

// MARK: - Transfer completions

void IMPL(FwLoaderUserClient, SlotTransferComplete)
{
    (void)completionTimestamp;

    uint32_t slot = SLOT_COUNT;
    const void* reference = action != nullptr ? action->GetReference() : nullptr;
    if (reference != nullptr) {
        memcpy(&slot, reference, sizeof(slot));
    }
    if (ivars == nullptr || slot >= SLOT_COUNT || ivars->slots[slot].transferAction != action) {
        Log("A transfer completed for an unknown action.");
        return;
    }
    FwLoaderSlot& s = ivars->slots[slot];
    OSAction* completion = s.completion;
    if (completion == nullptr) {
        // Stop has already answered this submit.
        Log("Slot %u completed with 0x%08x after its submit was answered.", slot, status);
        return;
    }
    // The slot is free again from here on.
    s.completion = nullptr;

    if (IsStall(status)) {
        // The endpoint is halted until the stall is cleared (§6-4); clearing
        // it aborts the other pending transfers, which complete here later
        // with kIOReturnAborted.
        kern_return_t ret = ivars->pipe->ClearStall(true);
        if (ret != kIOReturnSuccess) {
            Log("ClearStall failed with error: 0x%08x.", ret);
        }
    }

    IOReturn result = status;
    uint64_t acknowledged = 0;
    if (status == kIOReturnSuccess) {
        // What the device has received and programmed so far.
        UploadState state;
        result = GetState(ivars, &state);
        if (result == kIOReturnSuccess) {
            acknowledged = state.acknowledged;
        }
    }
    fw_loader::CompleteSubmit(this, completion, result, actualByteCount, acknowledged);
    completion->release();
}

// MARK: - Off-device test hooks

#ifdef DEXTLINK_DRIVERKIT_SHIM
IOUSBHostInterface* FwLoaderUserClient::ShimInterface()
{
    return ivars != nullptr ? ivars->usbInterface : nullptr;
}

IOUSBHostPipe* FwLoaderUserClient::ShimPipe()
{
    return ivars != nullptr ? ivars->pipe : nullptr;
}

IOBufferMemoryDescriptor* FwLoaderUserClient::ShimRing()
{
    return ivars != nullptr ? ivars->ring : nullptr;
}

IOMemoryDescriptor* FwLoaderUserClient::ShimSlotBuffer(uint32_t slot)
{
    return ivars != nullptr && slot < SLOT_COUNT ? ivars->slots[slot].buffer : nullptr;
}

IOAddressSegment FwLoaderUserClient::ShimSlotRange(uint32_t slot)
{
    IOAddressSegment none = {0, 0};
    return ivars != nullptr && slot < SLOT_COUNT ? ivars->slots[slot].range : none;
}

OSAction* FwLoaderUserClient::ShimSlotAction(uint32_t slot)
{
    return ivars != nullptr && slot < SLOT_COUNT ? ivars->slots[slot].transferAction : nullptr;
}

OSAction* FwLoaderUserClient::ShimSlotCompletion(uint32_t slot)
{
    return ivars != nullptr && slot < SLOT_COUNT ? ivars->slots[slot].completion : nullptr;
}

IOBufferMemoryDescriptor* FwLoaderUserClient::ShimBounce()
{
    return ivars != nullptr ? ivars->bounce : nullptr;
}

IOAddressSegment FwLoaderUserClient::ShimBounceRange()
{
    IOAddressSegment none = {0, 0};
    return ivars != nullptr ? ivars->bounceRange : none;
}
#endif
