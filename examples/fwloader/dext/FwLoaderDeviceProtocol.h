// FwLoaderDeviceProtocol.h: how the fwloader dext talks to the device's USB
// bootloader -- the bulk OUT endpoint that takes staging slots, and the four
// vendor control requests on the default pipe.  The Rust model of the dext
// (examples/fwloader/src) and the simulated bootloader speak the same
// protocol; keep the three in step.
//
// Layout of every data stage: the schema's structures (fwloader.dextlink,
// generated into FwLoader.h) byte for byte, little-endian -- USB's byte
// order (USB 2.0 §8.1) and the host's (asserted below).
//
//   request      bmRequestType          bRequest  wValue wIndex wLength  data stage
//   BEGIN        0x40 (OUT|vendor|dev)  0x01      0      0      24       ImageInfo
//   FINISH       0x40                   0x02      0      0      4        uint32 image CRC-32
//   GET_STATE    0xC0 (IN|vendor|dev)   0x03      0      0      48       UploadState
//   ABORT        0x40                   0x04      0      0      0        none
//
//   bulk OUT endpoint 0x01: one transfer per submitted slot, the slot's first
//   `len` bytes (its SlotHeader, then the payload); and one per write, in the
//   same frame: a SlotHeader {sequence 0, image_offset, length, CRC-32 of
//   the block} and the block (at most 4096 bytes).
//
// The device answers a request it does not know, or one with the wrong
// length, by stalling the control pipe (USB 2.0 §9.2.7, "Request Error").
//
// Section numbers (§) without "USB 2.0" refer to docs/driverkit.md.

#ifndef FwLoaderDeviceProtocol_h
#define FwLoaderDeviceProtocol_h

#include <stdint.h>

#include "FwLoader.h"

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && (__BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__)
#error "the fwloader data stages are the schema structs in host order, which must be little-endian like USB"
#endif

namespace fw_loader_device {

// MARK: - Endpoints

/// bEndpointAddress of the bulk OUT endpoint that receives the slots: bit 7
/// clear = OUT (host to device), endpoint number 1 (USB 2.0 §9.6.6).
constexpr uint8_t kBulkOutEndpoint = 0x01;

// MARK: - Vendor control requests (USB 2.0 §9.3)

/// bmRequestType: D7 = 0 host-to-device, D6..5 = 2 vendor, D4..0 = 0 device.
constexpr uint8_t kRequestTypeVendorOut = 0x40;
/// bmRequestType: D7 = 1 device-to-host, D6..5 = 2 vendor, D4..0 = 0 device.
constexpr uint8_t kRequestTypeVendorIn = 0xC0;

/// bRequest codes.
enum : uint8_t {
    /// Start (or, for the same image, resume) an upload. Data: ImageInfo.
    kRequestBegin = 0x01,
    /// Check the whole image and commit it. Data: the image's CRC-32.
    kRequestFinish = 0x02,
    /// Read the device's view of the upload. Data (IN): UploadState.
    kRequestGetState = 0x03,
    /// Stop the upload; the previous image stays active. No data.
    kRequestAbort = 0x04,
};

/// wValue and wIndex of every request (device recipient: no interface or
/// endpoint number to name).
constexpr uint16_t kRequestValue = 0;
constexpr uint16_t kRequestIndex = 0;

/// wLength of each request's data stage.
constexpr uint16_t kBeginLength = static_cast<uint16_t>(sizeof(fw_loader::ImageInfo));
constexpr uint16_t kFinishLength = static_cast<uint16_t>(sizeof(uint32_t));
constexpr uint16_t kGetStateLength = static_cast<uint16_t>(sizeof(fw_loader::UploadState));
constexpr uint16_t kAbortLength = 0;

static_assert(kBeginLength == 24, "fwloader protocol: BEGIN carries the 24-byte ImageInfo");
static_assert(kFinishLength == 4, "fwloader protocol: FINISH carries a 4-byte CRC-32");
static_assert(kGetStateLength == 48, "fwloader protocol: GET_STATE returns the 48-byte UploadState");

/// Size of the dext's buffer for the data stages: the largest one, rounded
/// up to a 64-byte control packet.
constexpr uint32_t kControlBufferSize = 64;
static_assert(kControlBufferSize >= kBeginLength && kControlBufferSize >= kGetStateLength &&
                  kControlBufferSize >= kFinishLength,
              "fwloader protocol: the control buffer must hold every data stage");

// MARK: - Timeouts

/// Control requests: USB 2.0 §9.2.6.4 allows a device 5 s to complete a
/// request with a data stage.
constexpr uint32_t kControlTimeoutMs = 5000;
/// One slot's bulk OUT transfer (the bootloader must take a full slot within
/// this time; 0 would mean "never time out", §6-1).
constexpr uint32_t kTransferTimeoutMs = 2000;

}  // namespace fw_loader_device

#endif /* FwLoaderDeviceProtocol_h */
