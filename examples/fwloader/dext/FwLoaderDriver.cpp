// FwLoaderDriver.cpp: the fwloader dext's driver. Matched on the
// bootloader's IOUSBHostInterface (Info.plist), it owns the USB work; its
// user client (FwLoaderUserClient.cpp) forwards the schema's external
// methods to the functions of FwLoaderDriverOps.h implemented here. The
// device protocol (request codes, layouts, timeouts) is in
// FwLoaderDeviceProtocol.h. Section numbers (§) refer to docs/driverkit.md.
//
// Start(provider): super::Start; the provider as an IOUSBHostInterface (any
//   other provider: kIOReturnNoDevice); Open(this) -- one session, so a
//   second driver on the same interface fails its Start with the
//   interface's kIOReturnExclusiveAccess; CopyPipe(0x01); the staging ring
//   from CreateIOBuffer (DMA-ready, §6-5) with one sub-descriptor and one
//   SlotTransferComplete action per slot; the control buffer for the vendor
//   requests' data stages; write's bounce buffer; RegisterService. Any
//   failure undoes the session and returns its error.
// NewUserClient: Create(this, "UserClientProperties") -- the personality
//   names FwLoaderUserClient. Any number of clients may connect (to read
//   the status, say), but one upload session runs at a time, as the
//   interface has one session: a client's begin makes it the session's
//   owner until its finish, abort or Stop; begin, submit and write from
//   another client meanwhile get kIOReturnExclusiveAccess.
// submit(slot, len): slot in flight -> kIOReturnBusy; else the client's
//   completion and the client are retained (§4.1-2) and the slot's
//   sub-descriptor goes to AsyncIO; an AsyncIO error is returned at once
//   and no completion follows.
// SlotTransferComplete: a stall (kUSBHostReturnPipeStalled, or the legacy
//   code, §6-7) calls ClearStall(true), which aborts the other transfers
//   (they complete here with kIOReturnAborted); on success GET_STATE gives
//   the acknowledged offset (a GET_STATE error replaces the status); then
//   CompleteSubmit to the client that submitted.
// abort: Abort(kIOUSBAbortSynchronous, kIOReturnAborted), then ABORT.
// write: one synchronous transfer of a SlotHeader and the block through the
//   bounce buffer, then GET_STATE.
// Stop: aborts the pipe, answers every submit still held with
//   kIOReturnAborted, closes the interface, releases the slot actions (they
//   hold this object). The ring stays until free, so a user client that
//   outlives its driver still answers CopyClientMemoryForType for the
//   kernel's unmap.

#include <DriverKit/DriverKit.h>
#include <USBDriverKit/USBDriverKit.h>

#include <string.h>

#include "FwLoader.h"
#include "FwLoaderDeviceProtocol.h"
#include "FwLoaderDriver.h"
#include "FwLoaderDriverOps.h"

#define Log(...) os_log(OS_LOG_DEFAULT, "FwLoaderDriver - " __VA_ARGS__)

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
    IOMemoryDescriptor* buffer;   // the slot's sub-descriptor of the ring
    IOAddressSegment range;       // its bytes in the dext
    OSAction* transferAction;     // SlotTransferComplete, index in the reference
    OSAction* completion;         // the client's submit completion; NULL: free
    IOUserClient* client;         // who submitted (retained with completion)
};

struct FwLoaderDriver_IVars {
    IOUSBHostInterface* usbInterface;
    bool interfaceOpen;
    IOUSBHostPipe* pipe;
    IOBufferMemoryDescriptor* ring;
    IOAddressSegment ringRange;
    IOBufferMemoryDescriptor* control;
    IOAddressSegment controlRange;
    IOBufferMemoryDescriptor* bounce;
    IOAddressSegment bounceRange;
    FwLoaderSlot slots[SLOT_COUNT];
    IOUserClient* owner;   // the upload session's client (not retained: it detaches in its Stop)
    bool ready;            // Start succeeded, Stop has not run
};

namespace {

void* ControlBytes(FwLoaderDriver_IVars* ivars)
{
    return reinterpret_cast<void*>(static_cast<uintptr_t>(ivars->controlRange.address));
}

kern_return_t ControlRequest(FwLoaderDriver_IVars* ivars, uint8_t requestType, uint8_t request, uint16_t length)
{
    uint16_t transferred = 0;
    kern_return_t ret = ivars->usbInterface->DeviceRequest(
        requestType, request, fw_loader_device::kRequestValue, fw_loader_device::kRequestIndex, length,
        length != 0 ? ivars->control : nullptr, &transferred, fw_loader_device::kControlTimeoutMs);
    if (ret != kIOReturnSuccess) {
        // An unplugged device is no news: every call says so.
        if (ret != kIOReturnNoDevice) {
            Log("Vendor request 0x%02x failed with 0x%08x.", request, ret);
        }
        return ret;
    }
    if (transferred != length) {
        Log("Vendor request 0x%02x moved %u of %u bytes.", request, transferred, length);
        return kIOReturnUnderrun;
    }
    return kIOReturnSuccess;
}

kern_return_t GetState(FwLoaderDriver_IVars* ivars, UploadState* state)
{
    memset(ControlBytes(ivars), 0, fw_loader_device::kControlBufferSize);
    kern_return_t ret = ControlRequest(ivars, fw_loader_device::kRequestTypeVendorIn,
                                       fw_loader_device::kRequestGetState, fw_loader_device::kGetStateLength);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    const uint8_t* bytes = static_cast<const uint8_t*>(ControlBytes(ivars));
    if (!fw_loader::detail::IsValidUploadState(bytes)) {
        Log("GET_STATE answered an undeclared status.");
        return kIOReturnDeviceError;
    }
    memcpy(state, bytes, sizeof(*state));
    return kIOReturnSuccess;
}

// Whether `client` may drive the upload: no session runs, or it is its own.
bool MayUpload(FwLoaderDriver_IVars* ivars, IOUserClient* client)
{
    return ivars->owner == nullptr || ivars->owner == client;
}

FwLoaderDriver_IVars* Ready(FwLoaderDriver* driver)
{
    if (driver == nullptr || driver->ivars == nullptr) {
        return nullptr;
    }
    return driver->ivars->ready ? driver->ivars : nullptr;
}

// Answers the submits in flight (of `client`, or of everyone with NULL) with
// kIOReturnAborted and frees their slots.
void AbortHeldCompletions(FwLoaderDriver_IVars* ivars, IOUserClient* client)
{
    for (uint32_t slot = 0; slot < SLOT_COUNT; ++slot) {
        FwLoaderSlot& s = ivars->slots[slot];
        if (s.completion == nullptr || (client != nullptr && s.client != client)) {
            continue;
        }
        OSAction* completion = s.completion;
        IOUserClient* owner = s.client;
        s.completion = nullptr;
        s.client = nullptr;
        fw_loader::CompleteSubmit(owner, completion, kIOReturnAborted, 0, 0);
        completion->release();
        OSSafeReleaseNULL(owner);
    }
}

void ShutDownTransfers(FwLoaderDriver_IVars* ivars, IOService* owner)
{
    ivars->ready = false;
    if (ivars->pipe != nullptr) {
        kern_return_t ret = ivars->pipe->Abort(kIOUSBAbortSynchronous, kIOReturnAborted, owner);
        if (ret != kIOReturnSuccess && ret != kIOReturnNoDevice) {
            Log("Aborting the bulk pipe failed with 0x%08x.", ret);
        }
    }
    AbortHeldCompletions(ivars, nullptr);
    if (ivars->interfaceOpen) {
        kern_return_t ret = ivars->usbInterface->Close(owner, 0);
        if (ret != kIOReturnSuccess && ret != kIOReturnNoDevice) {
            Log("Closing the interface failed with 0x%08x.", ret);
        }
        ivars->interfaceOpen = false;
    }
    // The actions hold this object: released here, or it never goes.
    for (uint32_t slot = 0; slot < SLOT_COUNT; ++slot) {
        OSSafeReleaseNULL(ivars->slots[slot].transferAction);
    }
}

kern_return_t CreateTransferBuffer(IOUSBHostInterface* usbInterface, uint64_t size,
                                   IOBufferMemoryDescriptor** buffer, IOAddressSegment* range)
{
    kern_return_t ret = usbInterface->CreateIOBuffer(kIOMemoryDirectionInOut, size, buffer);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    // The sources disagree on a new buffer's length (zero or its capacity,
    // §5-7); the sub-descriptors are checked against it.
    ret = (*buffer)->SetLength(size);
    if (ret == kIOReturnSuccess) {
        ret = (*buffer)->GetAddressRange(range);
    }
    if (ret == kIOReturnSuccess && range->length < size) {
        ret = kIOReturnNoMemory;
    }
    return ret;
}

kern_return_t SetUpTransfers(FwLoaderDriver* self)
{
    FwLoaderDriver_IVars* ivars = self->ivars;
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
    ret = CreateTransferBuffer(ivars->usbInterface, fw_loader::kStagingSize, &ivars->ring, &ivars->ringRange);
    if (ret != kIOReturnSuccess) {
        Log("Start() - Failed to set up the staging ring with error: 0x%08x.", ret);
        return ret;
    }
    for (uint32_t slot = 0; slot < SLOT_COUNT; ++slot) {
        FwLoaderSlot& s = ivars->slots[slot];
        const uint64_t offset = static_cast<uint64_t>(slot) * SLOT_SIZE;
        // AsyncIO starts at offset 0 of its buffer, so each slot needs a
        // descriptor that starts at the slot.
        ret = IOMemoryDescriptor::CreateSubMemoryDescriptor(kIOMemoryDirectionInOut, offset, SLOT_SIZE, ivars->ring,
                                                            &s.buffer);
        if (ret != kIOReturnSuccess) {
            Log("Start() - Failed to describe slot %u with error: 0x%08x.", slot, ret);
            return ret;
        }
        s.range.address = ivars->ringRange.address + offset;
        s.range.length = SLOT_SIZE;
        ret = self->CreateActionSlotTransferComplete(sizeof(uint32_t), &s.transferAction);
        if (ret != kIOReturnSuccess) {
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
        return ret;
    }
    return CreateTransferBuffer(ivars->usbInterface, kBounceSize, &ivars->bounce, &ivars->bounceRange);
}

}  // namespace

// MARK: - Lifecycle

bool FwLoaderDriver::init()
{
    if (!super::init()) {
        return false;
    }
    ivars = IONewZero(FwLoaderDriver_IVars, 1);
    return ivars != nullptr;
}

void FwLoaderDriver::free()
{
    if (ivars != nullptr) {
        AbortHeldCompletions(ivars, nullptr);
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
    IOSafeDeleteNULL(ivars, FwLoaderDriver_IVars, 1);
    super::free();
}

kern_return_t IMPL(FwLoaderDriver, Start)
{
    kern_return_t ret = Start(provider, SUPERDISPATCH);
    if (ret != kIOReturnSuccess) {
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
        ShutDownTransfers(ivars, this);
        return ret;
    }
    ivars->ready = true;
    return RegisterService();
}

kern_return_t IMPL(FwLoaderDriver, Stop)
{
    ShutDownTransfers(ivars, this);
    return Stop(provider, SUPERDISPATCH);
}

kern_return_t IMPL(FwLoaderDriver, NewUserClient)
{
    (void)type;
    IOService* client = nullptr;
    kern_return_t ret = Create(this, "UserClientProperties", &client);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    *userClient = OSDynamicCast(IOUserClient, client);
    if (*userClient == nullptr) {
        client->release();
        return kIOReturnError;
    }
    return kIOReturnSuccess;
}

// MARK: - What the user client asks

kern_return_t fw_loader_driver::Attach(FwLoaderDriver* driver, IOUserClient* client)
{
    FwLoaderDriver_IVars* ivars = Ready(driver);
    if (ivars == nullptr) {
        return kIOReturnNoDevice;
    }
    (void)client;
    return kIOReturnSuccess;
}

void fw_loader_driver::Detach(FwLoaderDriver* driver, IOUserClient* client)
{
    if (driver == nullptr || driver->ivars == nullptr) {
        return;
    }
    FwLoaderDriver_IVars* ivars = driver->ivars;
    if (ivars->ready && ivars->pipe != nullptr) {
        // A client that goes mid-upload leaves no transfer behind.
        bool held = false;
        for (uint32_t slot = 0; slot < SLOT_COUNT; ++slot) {
            held = held || ivars->slots[slot].client == client;
        }
        if (held) {
            ivars->pipe->Abort(kIOUSBAbortSynchronous, kIOReturnAborted, driver);
        }
    }
    AbortHeldCompletions(ivars, client);
    if (ivars->owner == client) {
        ivars->owner = nullptr;
    }
}

IOBufferMemoryDescriptor* fw_loader_driver::CopyRing(FwLoaderDriver* driver)
{
    if (driver == nullptr || driver->ivars == nullptr || driver->ivars->ring == nullptr) {
        return nullptr;
    }
    driver->ivars->ring->retain();
    return driver->ivars->ring;
}

kern_return_t fw_loader_driver::Begin(FwLoaderDriver* driver, IOUserClient* client, const ImageInfo& info, uint64_t* session,
                                      uint64_t* resumeOffset)
{
    FwLoaderDriver_IVars* ivars = Ready(driver);
    if (ivars == nullptr) {
        return kIOReturnNoDevice;
    }
    if (!MayUpload(ivars, client)) {
        return kIOReturnExclusiveAccess;
    }
    memset(ControlBytes(ivars), 0, fw_loader_device::kControlBufferSize);
    memcpy(ControlBytes(ivars), &info, sizeof(info));
    kern_return_t ret = ControlRequest(ivars, fw_loader_device::kRequestTypeVendorOut,
                                       fw_loader_device::kRequestBegin, fw_loader_device::kBeginLength);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    UploadState state;
    ret = GetState(ivars, &state);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    *session = state.session;
    *resumeOffset = state.acknowledged;
    ivars->owner = client;
    return kIOReturnSuccess;
}

kern_return_t fw_loader_driver::Submit(FwLoaderDriver* driver, IOUserClient* client, uint32_t slot, uint32_t len,
                                       OSAction* completion)
{
    FwLoaderDriver_IVars* ivars = Ready(driver);
    if (ivars == nullptr) {
        return kIOReturnNoDevice;
    }
    if (!MayUpload(ivars, client)) {
        return kIOReturnExclusiveAccess;
    }
    if (slot >= SLOT_COUNT) {
        return kIOReturnBadArgument;
    }
    FwLoaderSlot& s = ivars->slots[slot];
    if (s.completion != nullptr) {
        return kIOReturnBusy;
    }
    completion->retain();
    client->retain();
    s.completion = completion;
    s.client = client;
    kern_return_t ret = ivars->pipe->AsyncIO(s.buffer, len, s.transferAction, fw_loader_device::kTransferTimeoutMs);
    if (ret != kIOReturnSuccess) {
        s.completion = nullptr;
        s.client = nullptr;
        completion->release();
        client->release();
    }
    return ret;
}

kern_return_t fw_loader_driver::Finish(FwLoaderDriver* driver, IOUserClient* client, uint32_t imageCrc32, Status* status)
{
    FwLoaderDriver_IVars* ivars = Ready(driver);
    if (ivars == nullptr) {
        return kIOReturnNoDevice;
    }
    if (!MayUpload(ivars, client)) {
        return kIOReturnExclusiveAccess;
    }
    memset(ControlBytes(ivars), 0, fw_loader_device::kControlBufferSize);
    memcpy(ControlBytes(ivars), &imageCrc32, sizeof(imageCrc32));
    kern_return_t ret = ControlRequest(ivars, fw_loader_device::kRequestTypeVendorOut,
                                       fw_loader_device::kRequestFinish, fw_loader_device::kFinishLength);
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    UploadState state;
    ret = GetState(ivars, &state);
    if (ret == kIOReturnSuccess) {
        *status = state.status;
        // Committed or refused, the session is over.
        ivars->owner = nullptr;
    }
    return ret;
}

kern_return_t fw_loader_driver::GetStatus(FwLoaderDriver* driver, UploadState* state)
{
    FwLoaderDriver_IVars* ivars = Ready(driver);
    return ivars == nullptr ? kIOReturnNoDevice : GetState(ivars, state);
}

kern_return_t fw_loader_driver::Abort(FwLoaderDriver* driver, IOUserClient* client)
{
    FwLoaderDriver_IVars* ivars = Ready(driver);
    if (ivars == nullptr) {
        return kIOReturnNoDevice;
    }
    if (!MayUpload(ivars, client)) {
        return kIOReturnExclusiveAccess;
    }
    // "Specify kIOReturnAborted" (§6-3); the transfers in flight complete
    // through SlotTransferComplete with it.
    kern_return_t aborted = ivars->pipe->Abort(kIOUSBAbortSynchronous, kIOReturnAborted, driver);
    kern_return_t ret = ControlRequest(ivars, fw_loader_device::kRequestTypeVendorOut,
                                       fw_loader_device::kRequestAbort, fw_loader_device::kAbortLength);
    ivars->owner = nullptr;
    return aborted != kIOReturnSuccess ? aborted : ret;
}

kern_return_t fw_loader_driver::Write(FwLoaderDriver* driver, IOUserClient* client, uint64_t imageOffset, const uint8_t* data,
                                      uint32_t dataLength, uint64_t* acknowledged)
{
    FwLoaderDriver_IVars* ivars = Ready(driver);
    if (ivars == nullptr) {
        return kIOReturnNoDevice;
    }
    if (!MayUpload(ivars, client)) {
        return kIOReturnExclusiveAccess;
    }
    if (dataLength == 0 || dataLength > kWriteMaxBytes || data == nullptr) {
        return kIOReturnBadArgument;
    }
    SlotHeader header = {};
    header.sequence = 0;
    header.image_offset = imageOffset;
    header.length = dataLength;
    // Over the header's first 20 bytes, then the data: the device catches a
    // flipped bit in the fields as in the data.
    const uint32_t fieldsCrc = Crc32(reinterpret_cast<const uint8_t*>(&header), offsetof(SlotHeader, crc32));
    header.crc32 = Crc32(data, dataLength, fieldsCrc);
    uint8_t* bounce = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(ivars->bounceRange.address));
    memcpy(bounce, &header, sizeof(header));
    memcpy(bounce + SLOT_HEADER_SIZE, data, dataLength);
    const uint32_t length = SLOT_HEADER_SIZE + dataLength;
    uint32_t transferred = 0;
    kern_return_t ret = ivars->pipe->IO(ivars->bounce, length, &transferred, fw_loader_device::kTransferTimeoutMs);
    if (IsStall(ret)) {
        kern_return_t cleared = ivars->pipe->ClearStall(true);
        if (cleared != kIOReturnSuccess) {
            Log("write: ClearStall failed with 0x%08x.", cleared);
        }
    }
    if (ret != kIOReturnSuccess) {
        return ret;
    }
    if (transferred < length) {
        return kIOReturnUnderrun;
    }
    UploadState state;
    ret = GetState(ivars, &state);
    if (ret == kIOReturnSuccess) {
        *acknowledged = state.acknowledged;
    }
    return ret;
}

// MARK: - Transfer completions

void IMPL(FwLoaderDriver, SlotTransferComplete)
{
    (void)completionTimestamp;
    uint32_t slot = SLOT_COUNT;
    const void* reference = action != nullptr ? action->GetReference() : nullptr;
    if (reference != nullptr) {
        memcpy(&slot, reference, sizeof(slot));
    }
    if (ivars == nullptr || slot >= SLOT_COUNT) {
        return;
    }
    FwLoaderSlot& s = ivars->slots[slot];
    OSAction* completion = s.completion;
    IOUserClient* client = s.client;
    if (completion == nullptr) {
        // Stop or the client's Detach has already answered this submit.
        return;
    }
    s.completion = nullptr;
    s.client = nullptr;
    if (IsStall(status) && ivars->pipe != nullptr) {
        // The endpoint is halted until the stall is cleared (§6-4); clearing
        // it aborts the other pending transfers.
        kern_return_t ret = ivars->pipe->ClearStall(true);
        if (ret != kIOReturnSuccess) {
            Log("ClearStall failed with 0x%08x.", ret);
        }
    }
    IOReturn result = status;
    uint64_t acknowledged = 0;
    if (status == kIOReturnSuccess) {
        UploadState state;
        result = ivars->ready ? GetState(ivars, &state) : kIOReturnNoDevice;
        if (result == kIOReturnSuccess) {
            acknowledged = state.acknowledged;
        }
    }
    fw_loader::CompleteSubmit(client, completion, result, actualByteCount, acknowledged);
    completion->release();
    OSSafeReleaseNULL(client);
}
