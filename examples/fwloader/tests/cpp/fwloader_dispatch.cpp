// Drives the fwloader user client (examples/fwloader/dext) off-device, on
// dextlink's DriverKit and USBDriverKit shims, through the generated
// dispatch.
//
// Each call goes through `dextlink_shim::CallBuilder::invoke`, which builds
// IOUserClientMethodArguments the way the kernel does for an app's
// IOConnectCall…Method (docs/driverkit.md §3.2/§3.3); the user client's
// ExternalMethod routes it through the generated FwLoader.h.  The USB side
// is the USBDriverKit shim's fake IOUSBHostInterface / IOUSBHostPipe: this
// program plays the kernel by completing the pipe's pending transfers with
// IOUSBHostPipe::CompleteAsyncIO, and plays the device's bootloader with a
// FakeBootloader behind the default control pipe.
//
// Checked: the staging ring (one CreateIOBuffer, per-slot sub-descriptors,
// memory type 0 read-write and the same descriptor every time); begin and
// resume against the bootloader; submit (the descriptor, length, action and
// timeout AsyncIO gets; the Busy refusal for a slot in flight; the thunk
// refusing an out-of-range slot or length before the handler; an AsyncIO
// failure answered synchronously); completions out of order with the
// client's values (transferred, acknowledged); timeouts and GET_STATE
// failures; a stall -> ClearStall(true) and the other transfers aborted;
// abort -> Abort(kIOUSBAbortSynchronous, kIOReturnAborted, NULL) before the
// ABORT request; finish and status; a misbehaving device; write (the bounce
// buffer, the SlotHeader with its CRC-32 against the standard check value,
// the synchronous IO a FakeBulkEndpoint answers, the acknowledged offset,
// empty and over-4096 blocks refused, a stall -> ClearStall, a short IO ->
// kIOReturnUnderrun); Stop with completions held -> each completed with
// kIOReturnAborted; Starts failing at each resource they create.
//
// Built by examples/fwloader/tests/dext_sources.rs together with
// dext/FwLoaderUserClient.cpp (a separate translation unit), with
//     -DDEXTLINK_DRIVERKIT_SHIM -I schema/shim -I dext/shim -I dext
//     -I <scratch dir holding the generated FwLoader.h>
// and -fsanitize=address,undefined where available.  Prints
// "fwloader-dispatch: N passed, M failed" and exits non-zero on failure.

#include "FwLoader.h"
#include "FwLoaderDeviceProtocol.h"
#include "FwLoaderUserClient.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

// CHECK and CHECK_EQ, and the pass/fail counts.
#include <dextlink/testing.h>

using dextlink_shim::CallBuilder;
using dextlink_shim::ShimAsyncRequest;
using fw_loader::ImageFormat;
using fw_loader::ImageInfo;
using fw_loader::Selector;
using fw_loader::SLOT_COUNT;
using fw_loader::SLOT_HEADER_SIZE;
using fw_loader::SLOT_SIZE;
using fw_loader::SlotHeader;
using fw_loader::Status;
using fw_loader::UploadState;

namespace device = fw_loader_device;

// ---------------------------------------------------------------------------
// The device's bootloader, behind the default control pipe
// ---------------------------------------------------------------------------

class FakeBootloader final : public dextlink_shim::USBDeviceModel {
public:
    UploadState state = {};
    // Requests received, by bRequest (1..4).
    uint32_t requests[5] = {};
    ImageInfo lastBegin = {};
    uint32_t lastFinishCrc = 0;
    // Every request had the protocol's bmRequestType, wValue, wIndex, wLength.
    bool wellFormed = true;
    // Fault injection: the next request `failRequest` fails with `failStatus`.
    uint8_t failRequest = 0;
    IOReturn failStatus = kIOReturnSuccess;
    // GET_STATE moves only this many bytes (0: all).
    uint16_t shortGetState = 0;
    // GET_STATE reports an undeclared status.
    bool badStatus = false;
    // The pipe's Abort count when ABORT arrived (to check the order).
    IOUSBHostPipe* pipe = nullptr;
    uint32_t pipeAbortsAtAbort = 0;

    uint32_t count(uint8_t request) const { return request < 5 ? requests[request] : 0; }

    IOReturn ControlRequest(const IOUSBDeviceRequest& r, uint8_t* data, uint16_t* transferred) override
    {
        *transferred = 0;
        if (r.bRequest < 5) {
            requests[r.bRequest]++;
        }
        if (r.wValue != device::kRequestValue || r.wIndex != device::kRequestIndex) {
            wellFormed = false;
            return kUSBHostReturnPipeStalled;
        }
        if (failRequest == r.bRequest && failStatus != kIOReturnSuccess) {
            failRequest = 0;
            IOReturn ret = failStatus;
            failStatus = kIOReturnSuccess;
            return ret;
        }
        switch (r.bRequest) {
        case device::kRequestBegin:
            if (!expect(r, device::kRequestTypeVendorOut, device::kBeginLength)) {
                return kUSBHostReturnPipeStalled;
            }
            memcpy(&lastBegin, data, sizeof(lastBegin));
            begin(lastBegin);
            *transferred = device::kBeginLength;
            return kIOReturnSuccess;
        case device::kRequestFinish:
            if (!expect(r, device::kRequestTypeVendorOut, device::kFinishLength)) {
                return kUSBHostReturnPipeStalled;
            }
            memcpy(&lastFinishCrc, data, sizeof(lastFinishCrc));
            finish(lastFinishCrc);
            *transferred = device::kFinishLength;
            return kIOReturnSuccess;
        case device::kRequestGetState: {
            if (!expect(r, device::kRequestTypeVendorIn, device::kGetStateLength)) {
                return kUSBHostReturnPipeStalled;
            }
            UploadState answer = state;
            if (badStatus) {
                uint32_t undeclared = 9;
                memcpy(&answer.status, &undeclared, sizeof(undeclared));
            }
            memcpy(data, &answer, sizeof(answer));
            *transferred = shortGetState != 0 ? shortGetState : device::kGetStateLength;
            return kIOReturnSuccess;
        }
        case device::kRequestAbort:
            if (!expect(r, device::kRequestTypeVendorOut, device::kAbortLength)) {
                return kUSBHostReturnPipeStalled;
            }
            pipeAbortsAtAbort = pipe != nullptr ? pipe->ShimAbortCount() : 0;
            if (state.status == Status::Receiving) {
                state.status = Status::Interrupted;
            }
            return kIOReturnSuccess;
        default:
            wellFormed = false;
            return kUSBHostReturnPipeStalled;   // Request Error (USB 2.0 §9.2.7)
        }
    }

private:
    bool expect(const IOUSBDeviceRequest& r, uint8_t requestType, uint16_t length)
    {
        if (r.bmRequestType != requestType || r.wLength != length) {
            wellFormed = false;
            return false;
        }
        return true;
    }

    void begin(const ImageInfo& info)
    {
        const bool sameImage = info.total_len == state.total_len && info.image_crc32 == state.image_crc32;
        if (sameImage && (state.status == Status::Receiving || state.status == Status::Interrupted)) {
            state.status = Status::Receiving;   // resume
            return;
        }
        state.session++;
        state.acknowledged = 0;
        state.total_len = info.total_len;
        state.image_crc32 = info.image_crc32;
        state.status = Status::Receiving;
    }

    void finish(uint32_t crc)
    {
        if (state.status == Status::Receiving && crc == state.image_crc32 && state.acknowledged == state.total_len) {
            state.status = Status::Committed;
            state.active_len = state.total_len;
            state.active_crc32 = crc;
            state.active_bank ^= 1U;
        } else {
            state.status = Status::Failed;
        }
    }
};

// ---------------------------------------------------------------------------
// The device's bulk OUT endpoint, for write's synchronous IO
// ---------------------------------------------------------------------------

// write's largest block (the schema's `data: &[u8; ..=4096]`).
static const uint32_t kWriteMax = 4096;

class FakeBulkEndpoint final : public dextlink_shim::USBEndpointModel {
public:
    // The last transfer, as the device saw it.
    uint8_t endpoint = 0;
    uint32_t length = 0;
    uint32_t timeoutMs = 0;
    const uint8_t* address = nullptr;   // where the bytes were (identity only)
    uint8_t bytes[SLOT_HEADER_SIZE + kWriteMax] = {};
    // The answer: this status, and the whole length moved less `shortBy`.
    IOReturn status = kIOReturnSuccess;
    uint32_t shortBy = 0;
    // On success the device acknowledges the block: acknowledged = its
    // image_offset + length.
    FakeBootloader* device = nullptr;

    IOReturn Transfer(uint8_t endpointAddress, uint8_t* data, uint32_t dataLength, uint32_t completionTimeoutMs,
                      uint32_t* transferred) override
    {
        endpoint = endpointAddress;
        length = dataLength;
        timeoutMs = completionTimeoutMs;
        address = data;
        memset(bytes, 0, sizeof(bytes));
        if (data != nullptr) {
            memcpy(bytes, data, dataLength < sizeof(bytes) ? dataLength : sizeof(bytes));
        }
        *transferred = dataLength > shortBy ? dataLength - shortBy : 0;
        if (status == kIOReturnSuccess && device != nullptr && dataLength >= sizeof(SlotHeader)) {
            SlotHeader header;
            memcpy(&header, data, sizeof(header));
            device->state.acknowledged = header.image_offset + header.length;
        }
        return status;
    }

    SlotHeader header() const
    {
        SlotHeader h;
        memcpy(&h, bytes, sizeof(h));
        return h;
    }
};

// The test's own CRC-32 (zlib's), bit by bit without a table: an independent
// check of the dext's table-driven one.
static uint32_t referenceCrc32(const uint8_t* data, size_t length)
{
    uint32_t crc = 0xFFFFFFFFU;
    for (size_t i = 0; i < length; i++) {
        crc ^= data[i];
        for (int bit = 0; bit < 8; bit++) {
            crc = (crc >> 1) ^ (0xEDB88320U & (0U - (crc & 1U)));
        }
    }
    return ~crc;
}

// ---------------------------------------------------------------------------
// The user client, recording every completion it sends
// ---------------------------------------------------------------------------

struct SentCompletion {
    uint64_t refcon;   // the app's async reference [kIOAsyncCalloutRefconIndex]
    IOReturn status;
    uint32_t count;
    uint64_t transferred;
    uint64_t acknowledged;
};

class RecordingUserClient final : public FwLoaderUserClient {
public:
    static constexpr uint32_t kMaxRecords = 256;
    SentCompletion records[kMaxRecords] = {};
    uint32_t recordCount = 0;

    void AsyncCompletion(OSAction* action, IOReturn status, const IOUserClientAsyncArgumentsArray asyncData,
                         uint32_t asyncDataCount) override
    {
        if (action != nullptr && recordCount < kMaxRecords) {
            SentCompletion& r = records[recordCount++];
            const uint64_t* reference = static_cast<const uint64_t*>(action->GetReference());
            r.refcon = reference != nullptr ? reference[dextlink_shim::kIOAsyncCalloutRefconIndex] : 0;
            r.status = status;
            r.count = asyncDataCount;
            r.transferred = asyncDataCount > 0 ? asyncData[0] : 0;
            r.acknowledged = asyncDataCount > 1 ? asyncData[1] : 0;
        }
        FwLoaderUserClient::AsyncCompletion(action, status, asyncData, asyncDataCount);
    }
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

static uint64_t sel(Selector s)
{
    return static_cast<uint64_t>(s);
}

static const uint64_t kTimestamp = 0x123456789ULL;

// submit(slot, len) with a completion whose refcon is `refcon`.
static IOReturn submit(FwLoaderUserClient* uc, uint64_t slot, uint64_t len, uint64_t refcon)
{
    const uint64_t in[2] = {slot, len};
    const uint64_t reference[3] = {0, 0xCA11BAC4ULL, refcon};
    CallBuilder call(sel(Selector::Submit));
    call.scalarsIn(in, 2).withCompletion(reference, 3);
    return call.invoke(uc);
}

// The kernel finishing the transfer of `slot`.
static void complete(FwLoaderUserClient* uc, uint32_t slot, IOReturn status, uint32_t actualByteCount)
{
    uc->ShimPipe()->CompleteAsyncIO(uc->ShimSlotAction(slot), status, actualByteCount, kTimestamp);
}

// Checks that the `index`-th completion sent is `refcon`'s with these values.
static void checkSent(const RecordingUserClient* uc, uint32_t index, uint64_t refcon, IOReturn status,
                      uint64_t transferred, uint64_t acknowledged)
{
    CHECK(index < uc->recordCount);
    if (index >= uc->recordCount) {
        return;
    }
    const SentCompletion& r = uc->records[index];
    CHECK_EQ(r.refcon, refcon);
    CHECK_EQ(r.status, status);
    CHECK_EQ(r.count, 2);   // transferred, acknowledged
    CHECK_EQ(r.transferred, transferred);
    CHECK_EQ(r.acknowledged, acknowledged);
}

static IOReturn begin(FwLoaderUserClient* uc, const ImageInfo& info, uint64_t* session, uint64_t* resume)
{
    CallBuilder call(sel(Selector::Begin));
    call.structIn(&info, sizeof(info)).scalarsOut(2);
    IOReturn ret = call.invoke(uc);
    *session = call.outScalars[0];
    *resume = call.outScalars[1];
    return ret;
}

static IOReturn finish(FwLoaderUserClient* uc, uint32_t crc, uint64_t* status)
{
    const uint64_t in[1] = {crc};
    CallBuilder call(sel(Selector::Finish));
    call.scalarsIn(in, 1).scalarsOut(1);
    IOReturn ret = call.invoke(uc);
    *status = call.outScalars[0];
    return ret;
}

static IOReturn getStatus(FwLoaderUserClient* uc, UploadState* state)
{
    CallBuilder call(sel(Selector::Status));
    call.structOut(sizeof(UploadState));
    IOReturn ret = call.invoke(uc);
    if (ret == kIOReturnSuccess) {
        CHECK_EQ(call.outStructSize, sizeof(UploadState));
        memcpy(state, call.outStructBytes(), sizeof(*state));
    }
    return ret;
}

static IOReturn abortUpload(FwLoaderUserClient* uc)
{
    CallBuilder call(sel(Selector::Abort));
    return call.invoke(uc);
}

// write(image_offset, data); `size` 0 sends no structure input at all.
static IOReturn writeBlock(FwLoaderUserClient* uc, uint64_t offset, const void* data, size_t size,
                           uint64_t* acknowledged)
{
    const uint64_t in[1] = {offset};
    CallBuilder call(sel(Selector::Write));
    call.scalarsIn(in, 1).scalarsOut(1);
    if (size != 0) {
        call.structIn(data, size);
    }
    IOReturn ret = call.invoke(uc);
    *acknowledged = call.outScalars[0];
    return ret;
}

// The address a descriptor's bytes start at (through a mapping).
static uint64_t addressOf(IOMemoryDescriptor* md, uint64_t* length)
{
    IOMemoryMap* map = nullptr;
    uint64_t address = 0;
    *length = 0;
    if (md != nullptr && md->CreateMapping(0, 0, 0, 0, 0, &map) == kIOReturnSuccess) {
        address = map->GetAddress();
        *length = map->GetLength();
    }
    OSSafeReleaseNULL(map);
    return address;
}

static uint64_t ringBase(FwLoaderUserClient* uc)
{
    IOAddressSegment range = {0, 0};
    if (uc->ShimRing() == nullptr || uc->ShimRing()->GetAddressRange(&range) != kIOReturnSuccess) {
        return 0;
    }
    return range.address;
}

static ImageInfo image(uint64_t length, uint32_t crc)
{
    ImageInfo info = {};
    info.total_len = length;
    info.load_address = 0x08000000;
    info.format = ImageFormat::Raw;
    info.image_crc32 = crc;
    return info;
}

// ---------------------------------------------------------------------------
// Start: interface, pipe, ring, slots, memory type 0
// ---------------------------------------------------------------------------

static void testStart(RecordingUserClient* uc, IOUSBHostInterface* usb)
{
    CHECK(usb->ShimIsOpen());
    CHECK(usb->ShimOpenClient() == uc);
    CHECK(uc->ShimInterface() == usb);
    CHECK(uc->ShimPipe() != nullptr);
    CHECK(uc->ShimPipe() == usb->ShimPipe(device::kBulkOutEndpoint));
    CHECK(usb->ShimPipe(0x81) == nullptr);   // only the bulk OUT pipe is used

    // Three CreateIOBuffer calls: the ring, the control buffer, write's
    // bounce buffer.
    CHECK_EQ(usb->ShimIOBufferCount(), 3);
    CHECK(usb->ShimIOBuffer(0) == uc->ShimRing());
    CHECK_EQ(usb->ShimIOBufferOptions(0), kIOMemoryDirectionInOut);
    CHECK_EQ(usb->ShimIOBufferCapacity(0), SLOT_COUNT * static_cast<uint64_t>(SLOT_SIZE));
    CHECK_EQ(usb->ShimIOBufferCapacity(0), fw_loader::kStagingSize);
    CHECK_EQ(usb->ShimIOBufferOptions(1), kIOMemoryDirectionInOut);
    CHECK_EQ(usb->ShimIOBufferCapacity(1), device::kControlBufferSize);
    CHECK(usb->ShimIOBuffer(2) == uc->ShimBounce());
    CHECK_EQ(usb->ShimIOBufferOptions(2), kIOMemoryDirectionInOut);
    CHECK_EQ(usb->ShimIOBufferCapacity(2), SLOT_HEADER_SIZE + kWriteMax);
    {
        // Its length set and its range cached at Start.
        uint64_t bounceLength = 0;
        CHECK(uc->ShimBounce() != nullptr && uc->ShimBounce()->GetLength(&bounceLength) == kIOReturnSuccess);
        CHECK_EQ(bounceLength, SLOT_HEADER_SIZE + kWriteMax);
        uint64_t mappedLength = 0;
        CHECK_EQ(uc->ShimBounceRange().address, addressOf(uc->ShimBounce(), &mappedLength));
        CHECK(uc->ShimBounceRange().address != 0);
        CHECK_EQ(uc->ShimBounceRange().length, SLOT_HEADER_SIZE + kWriteMax);
    }

    // The slots: a sub-descriptor of the ring each, its range cached, an
    // action each with the slot's index.
    const uint64_t base = ringBase(uc);
    CHECK(base != 0);
    for (uint32_t slot = 0; slot < SLOT_COUNT; slot++) {
        uint64_t length = 0;
        const uint64_t address = addressOf(uc->ShimSlotBuffer(slot), &length);
        CHECK_EQ(address, base + static_cast<uint64_t>(slot) * SLOT_SIZE);
        CHECK_EQ(length, SLOT_SIZE);
        CHECK_EQ(uc->ShimSlotRange(slot).address, address);
        CHECK_EQ(uc->ShimSlotRange(slot).length, SLOT_SIZE);
        OSAction* action = uc->ShimSlotAction(slot);
        CHECK(action != nullptr);
        if (action != nullptr) {
            uint32_t index = SLOT_COUNT;
            memcpy(&index, action->GetReference(), sizeof(index));
            CHECK_EQ(index, slot);
            CHECK(!action->IsCancelled());
        }
        for (uint32_t other = 0; other < slot; other++) {
            CHECK(uc->ShimSlotAction(other) != action);
        }
        CHECK(uc->ShimSlotCompletion(slot) == nullptr);
    }
    CHECK(uc->ShimSlotBuffer(SLOT_COUNT) == nullptr);

    // Memory type 0: the ring, read-write, the same descriptor every time.
    IOMemoryDescriptor* md = nullptr;
    uint32_t mapOptions = 0xFFFF;
    CHECK_EQ(dextlink_shim::copyClientMemory(uc, 0, &md, &mapOptions), kIOReturnSuccess);
    CHECK(md == uc->ShimRing());
    CHECK_EQ(mapOptions, 0);   // not kIOMapReadOnly (§5-1)
    uint64_t length = 0;
    CHECK(md != nullptr && md->GetLength(&length) == kIOReturnSuccess);
    CHECK_EQ(length, fw_loader::kStagingSize);

    IOMemoryDescriptor* again = nullptr;
    CHECK_EQ(dextlink_shim::copyClientMemory(uc, 0, &again, &mapOptions), kIOReturnSuccess);
    CHECK(again == md);
    OSSafeReleaseNULL(again);

    // What the client writes into its mapping is what the pipe's slot
    // descriptor holds: the same memory, no copy.
    IOMemoryMap* clientMap = nullptr;
    CHECK(md != nullptr && md->CreateMapping(0, 0, 0, 0, 0, &clientMap) == kIOReturnSuccess);
    if (clientMap != nullptr) {
        CHECK(!clientMap->IsReadOnly());
        uint8_t* client = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(clientMap->GetAddress()));
        const uint64_t at = 3ULL * SLOT_SIZE + 100;
        for (uint32_t i = 0; i < 64; i++) {
            client[at + i] = static_cast<uint8_t>(0xA0 + i);
        }
        uint64_t slotLength = 0;
        const uint8_t* slot3 = reinterpret_cast<const uint8_t*>(
            static_cast<uintptr_t>(addressOf(uc->ShimSlotBuffer(3), &slotLength)));
        CHECK(slot3 != nullptr && memcmp(slot3 + 100, client + at, 64) == 0);
    }
    OSSafeReleaseNULL(clientMap);
    OSSafeReleaseNULL(md);

    // Other memory types do not exist.
    CHECK_EQ(dextlink_shim::copyClientMemory(uc, 1, &md, &mapOptions), kIOReturnBadArgument);
    CHECK(md == nullptr);
}

// ---------------------------------------------------------------------------
// begin: BEGIN then GET_STATE; resume; the thunk's checks
// ---------------------------------------------------------------------------

static void testBegin(RecordingUserClient* uc, IOUSBHostInterface* usb, FakeBootloader* dev)
{
    const ImageInfo a = image(5 * 0x10000, 0xAAAA5555U);
    uint64_t session = 0;
    uint64_t resume = 99;
    const uint32_t before = usb->ShimDeviceRequestCount();
    CHECK_EQ(begin(uc, a, &session, &resume), kIOReturnSuccess);
    CHECK_EQ(usb->ShimDeviceRequestCount(), before + 2);
    CHECK_EQ(dev->count(device::kRequestBegin), 1);
    CHECK_EQ(dev->count(device::kRequestGetState), 1);
    CHECK(memcmp(&dev->lastBegin, &a, sizeof(a)) == 0);
    CHECK_EQ(session, 1);
    CHECK_EQ(resume, 0);
    // The last request was GET_STATE, with the protocol's setup packet.
    const IOUSBDeviceRequest last = usb->ShimLastDeviceRequest();
    CHECK_EQ(last.bmRequestType, 0xC0);
    CHECK_EQ(last.bRequest, device::kRequestGetState);
    CHECK_EQ(last.wLength, sizeof(UploadState));
    CHECK_EQ(usb->ShimLastDeviceRequestTimeoutMs(), device::kControlTimeoutMs);

    // The device has programmed 3 of the 5 chunks when the upload stops;
    // begin with the same image resumes there, in the same session.
    dev->state.acknowledged = 3 * 0x10000;
    CHECK_EQ(abortUpload(uc), kIOReturnSuccess);
    CHECK(dev->state.status == Status::Interrupted);
    CHECK_EQ(begin(uc, a, &session, &resume), kIOReturnSuccess);
    CHECK_EQ(session, 1);
    CHECK_EQ(resume, 3 * 0x10000);
    CHECK(dev->state.status == Status::Receiving);

    // A different image starts a new session from 0.
    const ImageInfo b = image(0x20000, 0xBBBB0000U);
    CHECK_EQ(begin(uc, b, &session, &resume), kIOReturnSuccess);
    CHECK_EQ(session, 2);
    CHECK_EQ(resume, 0);

    // Refused before the handler: an undeclared format (the thunk), a
    // struct of the wrong size (the table), a completion (the table).
    const uint32_t requests = usb->ShimDeviceRequestCount();
    ImageInfo bad = b;
    uint32_t undeclared = 7;
    memcpy(&bad.format, &undeclared, sizeof(undeclared));
    CHECK_EQ(begin(uc, bad, &session, &resume), kIOReturnBadArgument);
    {
        CallBuilder call(sel(Selector::Begin));
        call.structIn(&b, sizeof(b) - 1).scalarsOut(2);
        CHECK_EQ(call.invoke(uc), kIOReturnBadArgument);
    }
    {
        CallBuilder call(sel(Selector::Begin));
        call.structIn(&b, sizeof(b)).scalarsOut(2).withCompletion();
        CHECK_EQ(call.invoke(uc), kIOReturnBadArgument);
    }
    CHECK_EQ(usb->ShimDeviceRequestCount(), requests);

    // A device that stalls BEGIN: the error reaches the client, and no
    // GET_STATE follows.
    dev->failRequest = device::kRequestBegin;
    dev->failStatus = kUSBHostReturnPipeStalled;
    const uint32_t getStates = dev->count(device::kRequestGetState);
    CHECK_EQ(begin(uc, b, &session, &resume), kUSBHostReturnPipeStalled);
    CHECK_EQ(dev->count(device::kRequestGetState), getStates);
    CHECK(dev->wellFormed);
}

// ---------------------------------------------------------------------------
// submit: AsyncIO's arguments, Busy, the thunk's range checks, AsyncIO failure
// ---------------------------------------------------------------------------

static void checkPending(FwLoaderUserClient* uc, uint32_t slot, uint32_t len)
{
    const ShimAsyncRequest* request = uc->ShimPipe()->ShimFindPending(uc->ShimSlotAction(slot));
    CHECK(request != nullptr);
    if (request == nullptr) {
        return;
    }
    CHECK(request->dataBuffer == uc->ShimSlotBuffer(slot));
    CHECK_EQ(request->dataBufferLength, len);
    CHECK(request->completion == uc->ShimSlotAction(slot));
    CHECK_EQ(request->completionTimeoutMs, device::kTransferTimeoutMs);
    CHECK(!request->aborted);
}

static void testSubmit(RecordingUserClient* uc, FakeBootloader* dev)
{
    IOUSBHostPipe* pipe = uc->ShimPipe();
    const uint32_t ios = pipe->ShimAsyncIOCount();
    const uint32_t sent = uc->recordCount;
    const uint32_t getStates = dev->count(device::kRequestGetState);

    // A slot header in slot 0, as the client writes it (logged by the dext).
    SlotHeader header = {7, 0x30000, 1000, 0x1234};
    memcpy(reinterpret_cast<void*>(static_cast<uintptr_t>(uc->ShimSlotRange(0).address)), &header, sizeof(header));

    CHECK_EQ(submit(uc, 0, 1024, 0x100), kIOReturnSuccess);
    CHECK_EQ(pipe->ShimAsyncIOCount(), ios + 1);
    CHECK_EQ(pipe->ShimPendingCount(), 1);
    checkPending(uc, 0, 1024);
    OSAction* held = uc->ShimSlotCompletion(0);
    CHECK(held != nullptr);
    if (held != nullptr) {
        // Only the dext's reference is left after the call (§4.1-2).
        CHECK_EQ(held->getRetainCount(), 1);
        CHECK_EQ(static_cast<const uint64_t*>(held->GetReference())[dextlink_shim::kIOAsyncCalloutRefconIndex],
                 0x100);
    }

    // The same slot again while in flight: Busy, nothing sent, the first
    // completion untouched.
    CHECK_EQ(submit(uc, 0, 512, 0x101), kIOReturnBusy);
    CHECK_EQ(pipe->ShimAsyncIOCount(), ios + 1);
    CHECK(uc->ShimSlotCompletion(0) == held);

    // Refused by the thunk before the handler: nothing reaches the pipe.
    CHECK_EQ(submit(uc, SLOT_COUNT, 1, 0x102), kIOReturnBadArgument);
    CHECK_EQ(submit(uc, 1ULL << 32, 1, 0x103), kIOReturnBadArgument);   // would truncate to slot 0
    CHECK_EQ(submit(uc, 1, 0, 0x104), kIOReturnBadArgument);
    CHECK_EQ(submit(uc, 1, static_cast<uint64_t>(SLOT_SIZE) + 1, 0x105), kIOReturnBadArgument);
    CHECK_EQ(submit(uc, 1, (1ULL << 32) + 1, 0x106), kIOReturnBadArgument);
    {
        // Synchronous: the table requires a completion.
        const uint64_t in[2] = {1, 1};
        CallBuilder call(sel(Selector::Submit));
        call.scalarsIn(in, 2);
        CHECK_EQ(call.invoke(uc), kIOReturnBadArgument);
    }
    CHECK_EQ(pipe->ShimAsyncIOCount(), ios + 1);
    CHECK(uc->ShimSlotCompletion(1) == nullptr);

    // The limits themselves are accepted.
    CHECK_EQ(submit(uc, 1, 1, 0x110), kIOReturnSuccess);
    CHECK_EQ(submit(uc, SLOT_COUNT - 1, SLOT_SIZE, 0x111), kIOReturnSuccess);
    checkPending(uc, 1, 1);
    checkPending(uc, SLOT_COUNT - 1, SLOT_SIZE);

    // AsyncIO fails: the error comes back synchronously, the completion is
    // released (LeakSanitizer would see it otherwise), no completion is
    // sent, and the slot stays free.
    pipe->ShimFailNextAsyncIO(kIOReturnNoResources);
    CHECK_EQ(submit(uc, 4, 4096, 0x120), kIOReturnNoResources);
    CHECK(uc->ShimSlotCompletion(4) == nullptr);
    CHECK_EQ(pipe->ShimPendingCount(), 3);
    CHECK_EQ(submit(uc, 4, 4096, 0x121), kIOReturnSuccess);
    checkPending(uc, 4, 4096);

    CHECK_EQ(uc->recordCount, sent);   // nothing completed yet
    CHECK_EQ(dev->count(device::kRequestGetState), getStates);

    // Finish them (in any order) so the next test starts clean.
    dev->state.acknowledged = 0x40000;
    complete(uc, 4, kIOReturnSuccess, 4096);
    complete(uc, 0, kIOReturnSuccess, 1024);
    complete(uc, SLOT_COUNT - 1, kIOReturnSuccess, SLOT_SIZE);
    complete(uc, 1, kIOReturnSuccess, 1);
    CHECK_EQ(uc->recordCount, sent + 4);
    checkSent(uc, sent + 0, 0x121, kIOReturnSuccess, 4096, 0x40000);
    checkSent(uc, sent + 1, 0x100, kIOReturnSuccess, 1024, 0x40000);
    checkSent(uc, sent + 2, 0x111, kIOReturnSuccess, SLOT_SIZE, 0x40000);
    checkSent(uc, sent + 3, 0x110, kIOReturnSuccess, 1, 0x40000);
    CHECK_EQ(pipe->ShimPendingCount(), 0);
    CHECK_EQ(pipe->ShimUnmatchedCompletions(), 0);
}

// ---------------------------------------------------------------------------
// Completions out of order; timeouts; GET_STATE failures
// ---------------------------------------------------------------------------

static void testCompletions(RecordingUserClient* uc, FakeBootloader* dev)
{
    IOUSBHostPipe* pipe = uc->ShimPipe();
    const uint32_t lengths[4] = {0x1000, 0x2000, 0x3000, SLOT_SIZE};
    for (uint32_t slot = 0; slot < 4; slot++) {
        CHECK_EQ(submit(uc, slot, lengths[slot], 0x200 + slot), kIOReturnSuccess);
    }
    CHECK_EQ(pipe->ShimPendingCount(), 4);

    // The device's progress moves on between completions; each completion
    // carries the progress read right after its transfer.
    const uint32_t order[4] = {2, 0, 3, 1};
    const uint32_t sent = uc->recordCount;
    for (uint32_t i = 0; i < 4; i++) {
        const uint32_t slot = order[i];
        const uint32_t getStates = dev->count(device::kRequestGetState);
        dev->state.acknowledged = 0x100000ULL * (i + 1);
        complete(uc, slot, kIOReturnSuccess, lengths[slot]);
        CHECK_EQ(dev->count(device::kRequestGetState), getStates + 1);
        CHECK_EQ(uc->recordCount, sent + i + 1);
        checkSent(uc, sent + i, 0x200 + slot, kIOReturnSuccess, lengths[slot], 0x100000ULL * (i + 1));
        CHECK(uc->ShimSlotCompletion(slot) == nullptr);
        CHECK_EQ(pipe->ShimPendingCount(), 3 - i);
    }

    // A freed slot takes a new submit.
    CHECK_EQ(submit(uc, 2, 77, 0x210), kIOReturnSuccess);
    // A short transfer reports what moved.
    complete(uc, 2, kIOReturnSuccess, 50);
    checkSent(uc, uc->recordCount - 1, 0x210, kIOReturnSuccess, 50, 0x400000);

    // A timeout: passed on, acknowledged 0, no GET_STATE, no ClearStall.
    const uint32_t getStates = dev->count(device::kRequestGetState);
    const uint32_t clears = pipe->ShimClearStallCount();
    CHECK_EQ(submit(uc, 5, 4096, 0x220), kIOReturnSuccess);
    complete(uc, 5, kIOReturnTimeout, 512);
    checkSent(uc, uc->recordCount - 1, 0x220, kIOReturnTimeout, 512, 0);
    CHECK_EQ(dev->count(device::kRequestGetState), getStates);
    CHECK_EQ(pipe->ShimClearStallCount(), clears);
    CHECK(!pipe->ShimIsHalted());

    // The transfer succeeded but GET_STATE fails: the completion carries
    // GET_STATE's error.
    CHECK_EQ(submit(uc, 6, 4096, 0x230), kIOReturnSuccess);
    dev->failRequest = device::kRequestGetState;
    dev->failStatus = kIOReturnNotResponding;
    complete(uc, 6, kIOReturnSuccess, 4096);
    checkSent(uc, uc->recordCount - 1, 0x230, kIOReturnNotResponding, 4096, 0);

    // ... or answers short.
    CHECK_EQ(submit(uc, 6, 4096, 0x231), kIOReturnSuccess);
    dev->shortGetState = 40;
    complete(uc, 6, kIOReturnSuccess, 4096);
    dev->shortGetState = 0;
    checkSent(uc, uc->recordCount - 1, 0x231, kIOReturnUnderrun, 4096, 0);

    // A completion for a request the pipe does not hold is never delivered.
    const uint32_t before = uc->recordCount;
    complete(uc, 6, kIOReturnSuccess, 1);
    CHECK_EQ(uc->recordCount, before);
    CHECK_EQ(pipe->ShimUnmatchedCompletions(), 1);
    CHECK_EQ(pipe->ShimPendingCount(), 0);
}

// ---------------------------------------------------------------------------
// A stall: ClearStall(true), the others aborted
// ---------------------------------------------------------------------------

static void testStall(RecordingUserClient* uc, FakeBootloader* dev)
{
    IOUSBHostPipe* pipe = uc->ShimPipe();
    CHECK_EQ(submit(uc, 0, 0x800, 0x300), kIOReturnSuccess);
    CHECK_EQ(submit(uc, 1, 0x900, 0x301), kIOReturnSuccess);
    CHECK_EQ(submit(uc, 2, 0xA00, 0x302), kIOReturnSuccess);

    const uint32_t clears = pipe->ShimClearStallCount();
    const uint32_t getStates = dev->count(device::kRequestGetState);
    const uint32_t sent = uc->recordCount;
    complete(uc, 1, kUSBHostReturnPipeStalled, 0x40);
    CHECK_EQ(pipe->ShimClearStallCount(), clears + 1);
    CHECK(pipe->ShimLastClearStallWithRequest());
    CHECK(!pipe->ShimIsHalted());
    CHECK_EQ(dev->count(device::kRequestGetState), getStates);
    CHECK_EQ(uc->recordCount, sent + 1);
    checkSent(uc, sent, 0x301, kUSBHostReturnPipeStalled, 0x40, 0);
    CHECK(uc->ShimSlotCompletion(1) == nullptr);

    // ClearStall aborted the other two; their completions arrive later, on
    // their own, and answer their submits with kIOReturnAborted.
    CHECK_EQ(pipe->ShimPendingCount(), 2);
    CHECK(pipe->ShimPending(0) != nullptr && pipe->ShimPending(0)->aborted);
    CHECK(pipe->ShimPending(1) != nullptr && pipe->ShimPending(1)->aborted);
    CHECK(uc->ShimSlotCompletion(0) != nullptr);
    CHECK_EQ(pipe->ShimDeliverAborted(kTimestamp), 2);
    CHECK_EQ(uc->recordCount, sent + 3);
    checkSent(uc, sent + 1, 0x300, kIOReturnAborted, 0, 0);
    checkSent(uc, sent + 2, 0x302, kIOReturnAborted, 0, 0);
    CHECK_EQ(pipe->ShimClearStallCount(), clears + 1);   // aborts do not clear again
    CHECK_EQ(dev->count(device::kRequestGetState), getStates);
    for (uint32_t slot = 0; slot < 3; slot++) {
        CHECK(uc->ShimSlotCompletion(slot) == nullptr);
    }

    // The legacy stall code counts as a stall too (§6-7).
    CHECK_EQ(submit(uc, 3, 0x10, 0x310), kIOReturnSuccess);
    complete(uc, 3, kIOUSBPipeStalled, 0);
    CHECK_EQ(pipe->ShimClearStallCount(), clears + 2);
    checkSent(uc, uc->recordCount - 1, 0x310, kIOUSBPipeStalled, 0, 0);

    // The pipe runs again.
    dev->state.acknowledged = 0x1234;
    CHECK_EQ(submit(uc, 1, 0x900, 0x320), kIOReturnSuccess);
    complete(uc, 1, kIOReturnSuccess, 0x900);
    checkSent(uc, uc->recordCount - 1, 0x320, kIOReturnSuccess, 0x900, 0x1234);
    CHECK_EQ(pipe->ShimPendingCount(), 0);
}

// ---------------------------------------------------------------------------
// abort; finish; status; a misbehaving device
// ---------------------------------------------------------------------------

static void testAbort(RecordingUserClient* uc, FakeBootloader* dev)
{
    IOUSBHostPipe* pipe = uc->ShimPipe();
    uint64_t session = 0;
    uint64_t resume = 0;
    CHECK_EQ(begin(uc, image(0x50000, 0x5EED), &session, &resume), kIOReturnSuccess);
    CHECK_EQ(submit(uc, 5, 0x100, 0x400), kIOReturnSuccess);
    CHECK_EQ(submit(uc, 6, 0x200, 0x401), kIOReturnSuccess);

    const uint32_t aborts = pipe->ShimAbortCount();
    const uint32_t sent = uc->recordCount;
    CHECK_EQ(abortUpload(uc), kIOReturnSuccess);
    CHECK_EQ(pipe->ShimAbortCount(), aborts + 1);
    CHECK_EQ(pipe->ShimLastAbortOptions(), kIOUSBAbortSynchronous);
    CHECK_EQ(pipe->ShimLastAbortOptions(), kAbortSynchronous);
    CHECK_EQ(pipe->ShimLastAbortError(), kIOReturnAborted);
    CHECK(pipe->ShimLastAbortClient() == nullptr);   // a bulk pipe: forClient NULL
    // The pipe was aborted before the device was told.
    CHECK_EQ(dev->pipeAbortsAtAbort, aborts + 1);
    CHECK(dev->state.status == Status::Interrupted);

    // The transfers in flight complete on their own with kIOReturnAborted.
    CHECK_EQ(uc->recordCount, sent);
    CHECK_EQ(pipe->ShimDeliverAborted(kTimestamp), 2);
    CHECK_EQ(uc->recordCount, sent + 2);
    checkSent(uc, sent + 0, 0x400, kIOReturnAborted, 0, 0);
    checkSent(uc, sent + 1, 0x401, kIOReturnAborted, 0, 0);
    CHECK(uc->ShimSlotCompletion(5) == nullptr && uc->ShimSlotCompletion(6) == nullptr);

    // status reports it.
    UploadState state = {};
    CHECK_EQ(getStatus(uc, &state), kIOReturnSuccess);
    CHECK(state.status == Status::Interrupted);
    CHECK_EQ(state.session, session);

    // A device that refuses ABORT: the pipe is still aborted, the error
    // reaches the client.
    dev->failRequest = device::kRequestAbort;
    dev->failStatus = kIOReturnNotResponding;
    CHECK_EQ(abortUpload(uc), kIOReturnNotResponding);
    CHECK_EQ(pipe->ShimAbortCount(), aborts + 2);
}

static void testFinishAndStatus(RecordingUserClient* uc, FakeBootloader* dev)
{
    uint64_t session = 0;
    uint64_t resume = 0;
    uint64_t result = 0;
    const ImageInfo info = image(0x30000, 0xC0FFEE00U);
    CHECK_EQ(begin(uc, info, &session, &resume), kIOReturnSuccess);
    dev->state.acknowledged = info.total_len;

    // A wrong CRC: Failed; the previous image stays active.
    const uint32_t activeBank = dev->state.active_bank;
    CHECK_EQ(finish(uc, 0xC0FFEE01U, &result), kIOReturnSuccess);
    CHECK_EQ(dev->lastFinishCrc, 0xC0FFEE01U);
    CHECK_EQ(result, static_cast<uint64_t>(Status::Failed));
    CHECK_EQ(dev->state.active_bank, activeBank);

    // The right one: Committed, banks switched.
    CHECK_EQ(begin(uc, info, &session, &resume), kIOReturnSuccess);
    CHECK_EQ(resume, 0);   // a failed upload starts over
    dev->state.acknowledged = info.total_len;
    CHECK_EQ(finish(uc, info.image_crc32, &result), kIOReturnSuccess);
    CHECK_EQ(dev->lastFinishCrc, info.image_crc32);
    CHECK_EQ(result, static_cast<uint64_t>(Status::Committed));
    CHECK_EQ(dev->state.active_bank, activeBank ^ 1U);

    // status: the device's UploadState, byte for byte.
    UploadState state = {};
    CHECK_EQ(getStatus(uc, &state), kIOReturnSuccess);
    CHECK(memcmp(&state, &dev->state, sizeof(state)) == 0);
    CHECK(state.status == Status::Committed);
    CHECK_EQ(state.active_len, info.total_len);
    CHECK_EQ(state.active_crc32, info.image_crc32);

    // finish's CRC is a u32 scalar: larger values never reach the handler.
    {
        const uint32_t finishes = dev->count(device::kRequestFinish);
        const uint64_t in[1] = {1ULL << 32};
        CallBuilder call(sel(Selector::Finish));
        call.scalarsIn(in, 1).scalarsOut(1);
        CHECK_EQ(call.invoke(uc), kIOReturnBadArgument);
        CHECK_EQ(dev->count(device::kRequestFinish), finishes);
    }
    // status wants exactly sizeof(UploadState) of output (the table).
    {
        CallBuilder call(sel(Selector::Status));
        call.structOut(sizeof(UploadState) + 8);
        CHECK_EQ(call.invoke(uc), kIOReturnBadArgument);
    }

    // A misbehaving device: a short answer, an undeclared status.
    dev->shortGetState = 47;
    CHECK_EQ(getStatus(uc, &state), kIOReturnUnderrun);
    dev->shortGetState = 0;
    dev->badStatus = true;
    CHECK_EQ(getStatus(uc, &state), kIOReturnDeviceError);
    CHECK_EQ(finish(uc, info.image_crc32, &result), kIOReturnDeviceError);
    dev->badStatus = false;
    CHECK(dev->wellFormed);
}

// ---------------------------------------------------------------------------
// write: the bounce buffer, IO, the acknowledged offset
// ---------------------------------------------------------------------------

// The last IO carried `data` at `offset` in the bounce buffer, framed by its
// SlotHeader.
static void checkWritten(FwLoaderUserClient* uc, const FakeBulkEndpoint* ep, uint64_t offset, const uint8_t* data,
                         uint32_t size)
{
    IOUSBHostPipe* pipe = uc->ShimPipe();
    CHECK(pipe->ShimLastIOBuffer() == uc->ShimBounce());
    CHECK_EQ(pipe->ShimLastIOLength(), SLOT_HEADER_SIZE + size);
    CHECK_EQ(pipe->ShimLastIOTimeoutMs(), device::kTransferTimeoutMs);
    CHECK_EQ(ep->endpoint, device::kBulkOutEndpoint);
    CHECK_EQ(ep->length, SLOT_HEADER_SIZE + size);
    CHECK_EQ(ep->timeoutMs, device::kTransferTimeoutMs);
    CHECK_EQ(reinterpret_cast<uintptr_t>(ep->address), uc->ShimBounceRange().address);
    const SlotHeader header = ep->header();
    CHECK_EQ(header.sequence, 0);
    CHECK_EQ(header.image_offset, offset);
    CHECK_EQ(header.length, size);
    // The CRC covers the header's first 20 bytes, then the data.
    uint8_t covered[20 + 4096];
    CHECK(size <= 4096);
    memcpy(covered, ep->bytes, 20);
    memcpy(covered + 20, data, size);
    CHECK_EQ(header.crc32, referenceCrc32(covered, 20 + size));
    CHECK(memcmp(ep->bytes + SLOT_HEADER_SIZE, data, size) == 0);
}

static void testWrite(RecordingUserClient* uc, FakeBootloader* dev, FakeBulkEndpoint* ep)
{
    IOUSBHostPipe* pipe = uc->ShimPipe();
    CHECK_EQ(pipe->ShimPendingCount(), 0);
    uint64_t acknowledged = 0;

    // The standard check value: CRC-32("123456789") = 0xCBF43926.
    static const char kCheck[] = "123456789";
    const uint8_t* check = reinterpret_cast<const uint8_t*>(kCheck);
    CHECK_EQ(referenceCrc32(check, 9), 0xCBF43926U);
    uint32_t ios = pipe->ShimIOCount();
    uint32_t getStates = dev->count(device::kRequestGetState);
    const uint32_t asyncIOs = pipe->ShimAsyncIOCount();
    CHECK_EQ(writeBlock(uc, 0x1000, kCheck, 9, &acknowledged), kIOReturnSuccess);
    CHECK_EQ(pipe->ShimIOCount(), ios + 1);
    checkWritten(uc, ep, 0x1000, check, 9);
    // zlib.crc32(struct.pack('<QQI', 0, 0x1000, 9) + b'123456789'), from Python.
    CHECK_EQ(ep->header().crc32, 0x41FA4963U);
    // The device's acknowledged offset, read with GET_STATE after the IO.
    CHECK_EQ(dev->count(device::kRequestGetState), getStates + 1);
    CHECK_EQ(acknowledged, 0x1009);
    CHECK_EQ(pipe->ShimAsyncIOCount(), asyncIOs);   // not through the ring
    CHECK_EQ(pipe->ShimPendingCount(), 0);

    // The largest block; the bounce buffer is reused.
    static uint8_t block[kWriteMax + 1];
    for (uint32_t i = 0; i < sizeof(block); i++) {
        block[i] = static_cast<uint8_t>((i * 7U + 3U) ^ (i >> 8));
    }
    const uint32_t buffers = uc->ShimInterface()->ShimIOBufferCount();
    CHECK_EQ(writeBlock(uc, 0x20000, block, kWriteMax, &acknowledged), kIOReturnSuccess);
    checkWritten(uc, ep, 0x20000, block, kWriteMax);
    CHECK_EQ(acknowledged, 0x20000 + kWriteMax);
    // ... and a shorter one after it: only its own bytes go out.
    CHECK_EQ(writeBlock(uc, 0x21000, block + 1, 100, &acknowledged), kIOReturnSuccess);
    checkWritten(uc, ep, 0x21000, block + 1, 100);
    CHECK_EQ(acknowledged, 0x21000 + 100);
    CHECK_EQ(uc->ShimInterface()->ShimIOBufferCount(), buffers);

    // Refused, nothing sent: empty data (the handler), over 4096 bytes (the
    // generated thunk, before the handler), no scalar output (the table).
    ios = pipe->ShimIOCount();
    getStates = dev->count(device::kRequestGetState);
    acknowledged = 99;
    CHECK_EQ(writeBlock(uc, 0, nullptr, 0, &acknowledged), kIOReturnBadArgument);
    CHECK_EQ(acknowledged, 0);
    CHECK_EQ(writeBlock(uc, 0, block, kWriteMax + 1, &acknowledged), kIOReturnBadArgument);
    {
        const uint64_t in[1] = {0};
        CallBuilder call(sel(Selector::Write));
        call.scalarsIn(in, 1).structIn(block, 16);
        CHECK_EQ(call.invoke(uc), kIOReturnBadArgument);
    }
    CHECK_EQ(pipe->ShimIOCount(), ios);
    CHECK_EQ(dev->count(device::kRequestGetState), getStates);

    // A stall: ClearStall(true), the stall code back to the client, no
    // GET_STATE; a submit in flight is aborted by the ClearStall and
    // completes on its own with kIOReturnAborted.
    CHECK_EQ(submit(uc, 2, 0x100, 0x600), kIOReturnSuccess);
    const uint32_t clears = pipe->ShimClearStallCount();
    const uint32_t sent = uc->recordCount;
    ep->status = kUSBHostReturnPipeStalled;
    CHECK_EQ(writeBlock(uc, 0x30000, block, 64, &acknowledged), kUSBHostReturnPipeStalled);
    CHECK_EQ(pipe->ShimIOCount(), ios + 1);
    CHECK_EQ(pipe->ShimClearStallCount(), clears + 1);
    CHECK(pipe->ShimLastClearStallWithRequest());
    CHECK(!pipe->ShimIsHalted());
    CHECK_EQ(dev->count(device::kRequestGetState), getStates);
    CHECK(pipe->ShimPending(0) != nullptr && pipe->ShimPending(0)->aborted);
    CHECK_EQ(pipe->ShimDeliverAborted(kTimestamp), 1);
    CHECK_EQ(uc->recordCount, sent + 1);
    checkSent(uc, sent, 0x600, kIOReturnAborted, 0, 0);
    // The legacy stall code too (§6-7).
    ep->status = kIOUSBPipeStalled;
    CHECK_EQ(writeBlock(uc, 0x30000, block, 64, &acknowledged), kIOUSBPipeStalled);
    CHECK_EQ(pipe->ShimClearStallCount(), clears + 2);

    // Another error: passed on, no ClearStall, no GET_STATE.
    ep->status = kIOReturnTimeout;
    CHECK_EQ(writeBlock(uc, 0x30000, block, 64, &acknowledged), kIOReturnTimeout);
    CHECK_EQ(pipe->ShimClearStallCount(), clears + 2);
    CHECK_EQ(dev->count(device::kRequestGetState), getStates);
    ep->status = kIOReturnSuccess;

    // A short IO: kIOReturnUnderrun, no GET_STATE.
    ep->shortBy = 1;
    CHECK_EQ(writeBlock(uc, 0x30000, block, 64, &acknowledged), kIOReturnUnderrun);
    CHECK_EQ(dev->count(device::kRequestGetState), getStates);
    // Short by the whole block: only the header went out.
    ep->shortBy = 64;
    CHECK_EQ(writeBlock(uc, 0x30000, block, 64, &acknowledged), kIOReturnUnderrun);
    ep->shortBy = 0;

    // The IO went through but GET_STATE fails: its error.
    dev->failRequest = device::kRequestGetState;
    dev->failStatus = kIOReturnNotResponding;
    CHECK_EQ(writeBlock(uc, 0x30000, block, 64, &acknowledged), kIOReturnNotResponding);
    CHECK_EQ(dev->count(device::kRequestGetState), getStates + 1);

    // And the pipe runs again.
    CHECK_EQ(writeBlock(uc, 0x30000, block, 64, &acknowledged), kIOReturnSuccess);
    checkWritten(uc, ep, 0x30000, block, 64);
    CHECK_EQ(acknowledged, 0x30000 + 64);
    CHECK_EQ(pipe->ShimPendingCount(), 0);
    CHECK(dev->wellFormed);
}

// ---------------------------------------------------------------------------
// Selectors outside the schema
// ---------------------------------------------------------------------------

static void testOtherSelectors(FwLoaderUserClient* uc)
{
    {
        CallBuilder call(fw_loader::kHandshakeSelector);
        call.scalarsOut(2);
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        CHECK_EQ(call.outScalars[0], fw_loader::kFingerprint);
        CHECK_EQ(call.outScalars[1], fw_loader::kVersion);
    }
    {
        CallBuilder call(fw_loader::kSelectorCount);
        CHECK_EQ(call.invoke(uc), kIOReturnUnsupported);
    }
}

// ---------------------------------------------------------------------------
// Stop with completions held
// ---------------------------------------------------------------------------

static void testStop(RecordingUserClient* uc, IOUSBHostInterface* usb)
{
    IOUSBHostPipe* pipe = uc->ShimPipe();
    CHECK_EQ(submit(uc, 0, 0x10, 0x500), kIOReturnSuccess);
    CHECK_EQ(submit(uc, 3, 0x20, 0x501), kIOReturnSuccess);
    CHECK_EQ(submit(uc, SLOT_COUNT - 1, 0x30, 0x502), kIOReturnSuccess);
    // Ours, plus one per slot action (each targets the user client).
    CHECK_EQ(uc->getRetainCount(), 1 + SLOT_COUNT);

    const uint32_t aborts = pipe->ShimAbortCount();
    const uint32_t sent = uc->recordCount;
    CHECK_EQ(uc->Stop(usb), kIOReturnSuccess);
    CHECK_EQ(pipe->ShimAbortCount(), aborts + 1);
    CHECK_EQ(pipe->ShimLastAbortOptions(), kIOUSBAbortSynchronous);
    CHECK_EQ(pipe->ShimLastAbortError(), kIOReturnAborted);
    CHECK(pipe->ShimLastAbortClient() == nullptr);

    // Every held completion answered with kIOReturnAborted, slot order.
    CHECK_EQ(uc->recordCount, sent + 3);
    checkSent(uc, sent + 0, 0x500, kIOReturnAborted, 0, 0);
    checkSent(uc, sent + 1, 0x501, kIOReturnAborted, 0, 0);
    checkSent(uc, sent + 2, 0x502, kIOReturnAborted, 0, 0);
    for (uint32_t slot = 0; slot < SLOT_COUNT; slot++) {
        CHECK(uc->ShimSlotCompletion(slot) == nullptr);
        CHECK(uc->ShimSlotAction(slot) != nullptr && uc->ShimSlotAction(slot)->IsCancelled());
    }
    CHECK(!usb->ShimIsOpen());
    CHECK_EQ(usb->ShimCloseCount(), 1);

    // The aborted transfers' own completions find cancelled actions.
    CHECK_EQ(pipe->ShimDeliverAborted(kTimestamp), 0);
    CHECK_EQ(uc->recordCount, sent + 3);
    // The actions let go of the user client.
    CHECK_EQ(uc->getRetainCount(), 1);

    // Stopped: nothing more is taken.
    UploadState state = {};
    CHECK_EQ(getStatus(uc, &state), kIOReturnNotReady);
    CHECK_EQ(submit(uc, 0, 1, 0x510), kIOReturnNotReady);
    uint64_t acknowledged = 0;
    const uint8_t byte = 0x5A;
    CHECK_EQ(writeBlock(uc, 0, &byte, 1, &acknowledged), kIOReturnNotReady);
    IOMemoryDescriptor* md = nullptr;
    uint32_t mapOptions = 0;
    CHECK_EQ(dextlink_shim::copyClientMemory(uc, 0, &md, &mapOptions), kIOReturnNotReady);
}

// ---------------------------------------------------------------------------
// Starts that fail
// ---------------------------------------------------------------------------

// Where a Start fails, among the resources it creates in order.
enum class StartFault { Ring, SlotDescriptor, SlotAction, ControlBuffer, BounceBuffer };

// A Start that fails at `fault` (at slot `slot` for the per-slot ones)
// returns the injected error and undoes what it did: the interface closed
// again, the actions made so far cancelled (they let go of the user client),
// the pipe aborted, nothing taken afterwards.  free() releases the rest
// (LeakSanitizer checks).
static void testStartFailingAt(StartFault fault, uint32_t slot, IOReturn error)
{
    IOUSBHostInterface* usb = new IOUSBHostInterface();
    CHECK_EQ(usb->ShimAddEndpoint(device::kBulkOutEndpoint), kIOReturnSuccess);
    FakeBootloader dev;
    usb->ShimSetDevice(&dev);
    RecordingUserClient* uc = new RecordingUserClient();
    CHECK(uc->init());

    // The CreateIOBuffer calls and the slots (descriptor and action each)
    // that succeed before the failure.
    uint32_t buffers = 0;
    uint32_t slotsDone = 0;
    switch (fault) {
    case StartFault::Ring:
        usb->ShimFailCreateIOBuffer(0, error);
        break;
    case StartFault::SlotDescriptor:
        dextlink_shim::ShimFailSubMemoryDescriptor(slot, error);
        buffers = 1;
        slotsDone = slot;
        break;
    case StartFault::SlotAction:
        uc->ShimFailActionCreation(slot, error);
        buffers = 1;
        slotsDone = slot;
        break;
    case StartFault::ControlBuffer:
        usb->ShimFailCreateIOBuffer(1, error);
        buffers = 1;
        slotsDone = SLOT_COUNT;
        break;
    case StartFault::BounceBuffer:
        usb->ShimFailCreateIOBuffer(2, error);
        buffers = 2;
        slotsDone = SLOT_COUNT;
        break;
    }

    CHECK_EQ(uc->Start(usb), error);
    CHECK_EQ(usb->ShimIOBufferCount(), buffers);
    CHECK(!usb->ShimIsOpen());
    CHECK_EQ(usb->ShimOpenCount(), 1);
    CHECK_EQ(usb->ShimCloseCount(), 1);
    IOUSBHostPipe* pipe = usb->ShimPipe(device::kBulkOutEndpoint);
    CHECK(pipe != nullptr && pipe->ShimAbortCount() == 1);
    for (uint32_t i = 0; i < SLOT_COUNT; i++) {
        OSAction* action = uc->ShimSlotAction(i);
        CHECK_EQ(action != nullptr, i < slotsDone);
        CHECK(action == nullptr || action->IsCancelled());
        CHECK_EQ(uc->ShimSlotBuffer(i) != nullptr, i < slotsDone || (fault == StartFault::SlotAction && i == slot));
    }
    CHECK(uc->ShimBounce() == nullptr);
    // Only our reference is left: the cancelled actions let go.
    CHECK_EQ(uc->getRetainCount(), 1);

    // Not ready: nothing is taken, nothing reaches the device.
    UploadState state = {};
    CHECK_EQ(getStatus(uc, &state), kIOReturnNotReady);
    uint64_t acknowledged = 0;
    const uint8_t byte = 0x5A;
    CHECK_EQ(writeBlock(uc, 0, &byte, 1, &acknowledged), kIOReturnNotReady);
    CHECK_EQ(submit(uc, 0, 1, 0x700), kIOReturnNotReady);
    IOMemoryDescriptor* md = nullptr;
    uint32_t mapOptions = 0;
    CHECK_EQ(dextlink_shim::copyClientMemory(uc, 0, &md, &mapOptions), kIOReturnNotReady);
    CHECK_EQ(usb->ShimDeviceRequestCount(), 0);
    CHECK_EQ(uc->recordCount, 0);

    uc->release();
    usb->release();
    // The injections were used up.
    dextlink_shim::ShimFailSubMemoryDescriptor(0, kIOReturnSuccess);
}

static void testFailedStarts()
{
    // Each resource Start creates, in order.
    testStartFailingAt(StartFault::Ring, 0, kIOReturnNoMemory);
    testStartFailingAt(StartFault::SlotDescriptor, 0, kIOReturnNoMemory);
    testStartFailingAt(StartFault::SlotDescriptor, 3, kIOReturnNoResources);
    testStartFailingAt(StartFault::SlotAction, 0, kIOReturnNoMemory);
    testStartFailingAt(StartFault::SlotAction, SLOT_COUNT - 1, kIOReturnNoResources);
    testStartFailingAt(StartFault::ControlBuffer, 0, kIOReturnNoMemory);
    testStartFailingAt(StartFault::BounceBuffer, 0, kIOReturnNoResources);

    {
        // The provider is not an IOUSBHostInterface.
        IOService* notUsb = new IOService();
        RecordingUserClient* uc = new RecordingUserClient();
        CHECK(uc->init());
        CHECK_EQ(uc->Start(notUsb), kIOReturnNoDevice);
        uc->release();
        notUsb->release();
    }
    {
        // The interface has no bulk OUT endpoint 0x01: the session opened
        // for CopyPipe is closed again.
        IOUSBHostInterface* usb = new IOUSBHostInterface();
        CHECK_EQ(usb->ShimAddEndpoint(0x81), kIOReturnSuccess);
        RecordingUserClient* uc = new RecordingUserClient();
        CHECK(uc->init());
        CHECK_EQ(uc->Start(usb), kIOReturnNotFound);
        CHECK(!usb->ShimIsOpen());
        CHECK_EQ(usb->ShimOpenCount(), 1);
        CHECK_EQ(usb->ShimCloseCount(), 1);
        CHECK_EQ(uc->getRetainCount(), 1);
        UploadState state = {};
        CHECK_EQ(getStatus(uc, &state), kIOReturnNotReady);
        uc->release();
        usb->release();
    }
    {
        // Someone else has the interface open.
        IOUSBHostInterface* usb = new IOUSBHostInterface();
        CHECK_EQ(usb->ShimAddEndpoint(device::kBulkOutEndpoint), kIOReturnSuccess);
        IOService* other = new IOService();
        CHECK_EQ(usb->Open(other, 0, nullptr), kIOReturnSuccess);
        RecordingUserClient* uc = new RecordingUserClient();
        CHECK(uc->init());
        CHECK_EQ(uc->Start(usb), kIOReturnExclusiveAccess);
        CHECK(usb->ShimOpenClient() == other);
        CHECK_EQ(usb->ShimIOBufferCount(), 0);
        uc->release();
        CHECK_EQ(usb->Close(other, 0), kIOReturnSuccess);
        usb->release();
        other->release();
    }
}

int main()
{
    IOUSBHostInterface* usb = new IOUSBHostInterface();
    CHECK_EQ(usb->ShimAddEndpoint(0x81), kIOReturnSuccess);   // an IN endpoint the dext leaves alone
    CHECK_EQ(usb->ShimAddEndpoint(device::kBulkOutEndpoint), kIOReturnSuccess);
    FakeBootloader dev;
    usb->ShimSetDevice(&dev);
    FakeBulkEndpoint bulk;
    bulk.device = &dev;

    RecordingUserClient* uc = new RecordingUserClient();
    CHECK(uc->init());
    CHECK_EQ(uc->Start(usb), kIOReturnSuccess);
    dev.pipe = uc->ShimPipe();
    if (uc->ShimPipe() != nullptr) {
        uc->ShimPipe()->ShimSetEndpointModel(&bulk);
    }

    if (uc->ShimPipe() != nullptr) {
        testStart(uc, usb);
        testBegin(uc, usb, &dev);
        testSubmit(uc, &dev);
        testCompletions(uc, &dev);
        testStall(uc, &dev);
        testAbort(uc, &dev);
        testFinishAndStatus(uc, &dev);
        testWrite(uc, &dev, &bulk);
        testOtherSelectors(uc);
        testStop(uc, usb);
    }

    uc->release();   // free(): releases the slots, the ring, the buffers, the pipe, the interface
    usb->release();

    testFailedStarts();

    printf("fwloader-dispatch: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
