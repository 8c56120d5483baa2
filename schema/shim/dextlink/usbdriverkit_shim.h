/*
 * dextlink/usbdriverkit_shim.h -- a USBDriverKit-shaped shim for Linux.
 *
 * WHAT THIS IS
 *   A header-only stand-in for the parts of Apple's USBDriverKit that a
 *   dext uploading over a bulk OUT pipe touches:
 *     <USBDriverKit/IOUSBHostInterface.h>, <USBDriverKit/IOUSBHostPipe.h>
 *   (the IOUSBHostInterface / IOUSBHostPipe classes, IOUSBAbortOptions,
 *   IOUSBDeviceRequest), plus IOMemoryDescriptor::CreateSubMemoryDescriptor,
 *   which dextlink/driverkit_shim.h lacks (see section 3).  It builds on
 *   dextlink/driverkit_shim.h (included below) and is included by the dext
 *   next to it, never from it:
 *       #ifdef DEXTLINK_DRIVERKIT_SHIM
 *       #include <dextlink/driverkit_shim.h>
 *       #include <dextlink/usbdriverkit_shim.h>
 *       #else
 *       #include <USBDriverKit/IOUSBHostInterface.h>
 *       #include <USBDriverKit/IOUSBHostPipe.h>
 *       #endif
 *
 * AUTHORITY
 *   USBDriverKit's .iig headers are not public (docs/driverkit.md §6).  Every
 *   declaration says where it comes from:
 *     "docs/driverkit.md §6"  -- verbatim from the DriverKit reference
 *                              (docs/driverkit.md), which took
 *                              it from Apple's documentation;
 *     "DOCS <page>"         -- not in the DriverKit reference; the signature is
 *                              verbatim from Apple's USBDriverKit / DriverKit
 *                              documentation page <page> (the reference's DOCS
 *                              source, theAppLaunchers/apple-docs-for-rag
 *                              `USBDriverKit/md/`, `driverkit/md/`);
 *     "xnu: <file>"         -- from the open-source kernel side;
 *     "UNVERIFIED: <why>"   -- best knowledge, no source found.
 *   Behaviour is given only where a test needs it and is tagged "[runtime]";
 *   every error code the shim picks without a source says UNVERIFIED.
 *   The USB status codes (kUSBHostReturnPipeStalled, kIOUSBPipeStalled, ...,
 *   docs/driverkit.md §6-7) are already defined by driverkit_shim.h.
 *
 * WHAT IS SIMPLIFIED VERSUS REAL USBDRIVERKIT
 *   - No hardware, no kernel, no messages.  A fake IOUSBHostInterface owns
 *     fake IOUSBHostPipes; a test registers the interface's endpoints
 *     (ShimAddEndpoint) and plugs in a fake device for the default control
 *     pipe (dextlink_shim::USBDeviceModel, ShimSetDevice).
 *   - IO (the synchronous transfer) is answered at once by a fake device
 *     for the pipe's endpoint (dextlink_shim::USBEndpointModel,
 *     ShimSetEndpointModel), which sees the bytes and picks the status and
 *     the byte count.
 *   - AsyncIO only records the request (it stays "pending").  The test plays
 *     the kernel and finishes a request by calling the pipe's
 *     CompleteAsyncIO(action, status, actualByteCount, timestamp): the pipe
 *     drops the pending request and delivers the completion through the
 *     action to the dext's TYPE(IOUSBHostPipe::CompleteAsyncIO) method
 *     (OSAction::ShimInvoke, three arguments: status, actualByteCount,
 *     completionTimestamp).
 *   - Abort and ClearStall do not deliver anything themselves.  On device
 *     the aborted requests' completions are messages to the dext's queue,
 *     which run after the dext's current method returns (DriverKit queues
 *     are serial, docs/driverkit.md §2.2-11).  The shim marks the pending
 *     requests aborted; the test delivers those completions with
 *     ShimDeliverAborted() when it chooses -- like the queue would, later.
 *   - Single-threaded, like driverkit_shim.h: calls run on the caller's
 *     thread.
 *   - Failures of resource creation can be injected (shim-only):
 *     IOUSBHostInterface::ShimFailCreateIOBuffer and
 *     dextlink_shim::ShimFailSubMemoryDescriptor, so that a test can fail
 *     each step of a dext's Start.
 *
 * ODR: every function is inline or defined in-class.
 */
#ifndef DEXTLINK_USBDRIVERKIT_SHIM_H
#define DEXTLINK_USBDRIVERKIT_SHIM_H

#include <dextlink/driverkit_shim.h>

#define DEXTLINK_USBDRIVERKIT_SHIM_VERSION 2

/* ======================================================================== */
/* 1. Status codes and constants                                            */
/* ======================================================================== */

// The stall codes come from driverkit_shim.h (docs/driverkit.md §6-7); this
// shim relies on their values.
static_assert(kUSBHostReturnPipeStalled == (IOReturn)0xE0005000, "docs/driverkit.md §6-7");
static_assert(kIOUSBPipeStalled == (IOReturn)0xE000404F, "docs/driverkit.md §6-7");
static_assert(kIOReturnAborted == (IOReturn)0xE00002EB, "docs/driverkit.md §7");

// DOCS usbdriverkit-iousbabortoptions.md: `enum IOUSBAbortOptions : unsigned
// int;` with kIOUSBAbortAsynchronous ("Enqueue the abort request and return
// immediately") and kIOUSBAbortSynchronous ("Enqueue the abort request and
// wait for it to finish").  The page shows no values.
// UNVERIFIED: the values are the kernel twin's (docs/driverkit.md §6-4).
enum IOUSBAbortOptions : unsigned int {
	kIOUSBAbortAsynchronous = 0x0,
	kIOUSBAbortSynchronous  = 0x1,
};

// docs/driverkit.md §6-4: the kernel twin's names (SDK IOUSBHostIOSource.h),
// which the Abort documentation also uses ("If the `options` argument
// includes `kAbortSynchronous`").  Dext code should prefer the documented
// USBDriverKit names above.
enum {
	kAbortAsynchronous = 0x0,
	kAbortSynchronous  = 0x1,
};
static_assert((unsigned)kIOUSBAbortSynchronous == (unsigned)kAbortSynchronous, "docs/driverkit.md §6-4");
static_assert((unsigned)kIOUSBAbortAsynchronous == (unsigned)kAbortAsynchronous, "docs/driverkit.md §6-4");

// DOCS usbdriverkit-iousbdevicerequest.md: "A structure that defines a
// standard device request" (USB 2.0 §9.3), fields in this order.  The shim
// hands it to the fake device; 8 bytes, no padding.
struct IOUSBDeviceRequest {
	uint8_t  bmRequestType;
	uint8_t  bRequest;
	uint16_t wValue;
	uint16_t wIndex;
	uint16_t wLength;
};
static_assert(sizeof(IOUSBDeviceRequest) == 8, "USB 2.0 §9.3: the setup packet is 8 bytes");

class IOUSBHostPipe;
class IOUSBHostInterface;

namespace dextlink_shim {

// shim-only limits.
static constexpr uint32_t kShimMaxPendingIO  = 64;   // requests pending on one fake pipe
static constexpr uint32_t kShimMaxEndpoints  = 32;   // endpoints of one fake interface
static constexpr uint32_t kShimMaxIOBuffers  = 64;   // CreateIOBuffer calls remembered

/*
 * [runtime] shim-only: the device behind the default control pipe.  A test
 * implements it; IOUSBHostInterface::DeviceRequest forwards every request to
 * it.  `data` holds request.wLength bytes: the OUT data stage (host to
 * device), or room for the IN one (device to host).  Set *transferred to
 * the bytes of the data stage actually moved (<= wLength) and return the
 * request's status.  Not an OSObject: the test owns it and keeps it alive
 * while the interface points at it.
 */
class USBDeviceModel {
public:
	virtual ~USBDeviceModel() {}
	virtual IOReturn ControlRequest(const IOUSBDeviceRequest &request, uint8_t *data, uint16_t *transferred) = 0;
};

/*
 * [runtime] shim-only: the device behind a bulk or interrupt endpoint, for
 * the synchronous IOUSBHostPipe::IO.  A test implements it and plugs it into
 * the pipe (ShimSetEndpointModel).  `data` holds `length` bytes: what the
 * host sends on an OUT endpoint, or room for what the device returns on an
 * IN one.  Set *transferred to the bytes actually moved (more than `length`
 * is clipped) and return the transfer's status.  Not an OSObject: the test
 * owns it and keeps it alive while the pipe points at it.
 */
class USBEndpointModel {
public:
	virtual ~USBEndpointModel() {}
	virtual IOReturn Transfer(uint8_t endpointAddress, uint8_t *data, uint32_t length, uint32_t completionTimeoutMs,
	                          uint32_t *transferred) = 0;
};

// [runtime] shim-only: one AsyncIO request held by a fake pipe.
struct ShimAsyncRequest {
	IOMemoryDescriptor *dataBuffer;          // retained by the pipe while pending
	uint32_t            dataBufferLength;
	OSAction           *completion;          // retained by the pipe while pending
	uint32_t            completionTimeoutMs;
	bool                aborted;             // Abort / ClearStall / Close hit it
	IOReturn            abortStatus;         // the status its completion will carry
};

} // namespace dextlink_shim

/* ======================================================================== */
/* 2. IOUSBHostPipe and IOUSBHostInterface                                  */
/* ======================================================================== */
//
// Public API (shim-only members are marked "shim-only"):
//
//   IOUSBHostPipe (DOCS usbdriverkit-iousbhostpipe.md: inherits from OSObject):
//     [runtime] virtual kern_return_t AsyncIO(IOMemoryDescriptor *dataBuffer,
//         uint32_t dataBufferLength, OSAction *completion, uint32_t completionTimeoutMs);
//     [runtime] virtual void CompleteAsyncIO(OSAction *action, IOReturn status,
//         uint32_t actualByteCount, uint64_t completionTimestamp);
//     [runtime] virtual kern_return_t IO(IOMemoryDescriptor *dataBuffer,
//         uint32_t dataBufferLength, uint32_t *bytesTransferred, uint32_t completionTimeoutMs);
//     [runtime] kern_return_t Abort(IOOptionBits options, kern_return_t withError,
//         IOService *forClient);
//     [runtime] virtual kern_return_t ClearStall(bool withRequest);
//     shim-only: ShimPendingCount(), ShimPending(i), ShimFindPending(action),
//         ShimAsyncIOCount(), ShimFailNextAsyncIO(ret), ShimDeliverAborted(ts),
//         ShimIsHalted(), ShimAbortCount(), ShimLastAbortOptions(),
//         ShimLastAbortError(), ShimLastAbortClient(), ShimClearStallCount(),
//         ShimLastClearStallWithRequest(), ShimUnmatchedCompletions(),
//         ShimEndpointAddress(), ShimSetEndpointModel(model), ShimIOCount(),
//         ShimLastIOBuffer(), ShimLastIOLength(), ShimLastIOTimeoutMs().
//   IOUSBHostInterface (DOCS usbdriverkit-iousbhostinterface.md: inherits from IOService):
//     [runtime] kern_return_t Open(IOService *forClient, IOOptionBits options, uint8_t *arg);
//     [runtime] kern_return_t Close(IOService *forClient, IOOptionBits options);
//     [runtime] virtual kern_return_t CopyPipe(uint8_t address, IOUSBHostPipe **pipe);
//     [runtime] kern_return_t CreateIOBuffer(IOOptionBits options, uint64_t capacity,
//         IOBufferMemoryDescriptor **buffer);
//     [runtime] kern_return_t DeviceRequest(uint8_t bmRequestType, uint8_t bRequest,
//         uint16_t wValue, uint16_t wIndex, uint16_t wLength, IOMemoryDescriptor *dataBuffer,
//         uint16_t *bytesTransferred, uint32_t completionTimeoutMs);
//     shim-only: ShimAddEndpoint(address), ShimSetDevice(device), ShimPipe(address),
//         ShimIsOpen(), ShimOpenClient(), ShimOpenCount(), ShimCloseCount(),
//         ShimIOBufferCount(), ShimIOBuffer(i), ShimIOBufferOptions(i),
//         ShimIOBufferCapacity(i), ShimFailCreateIOBuffer(after, ret),
//         ShimDeviceRequestCount(), ShimLastDeviceRequest(),
//         ShimLastDeviceRequestTimeoutMs().

class IOUSBHostPipe : public OSObject {
public:
	// docs/driverkit.md §6 (usbdriverkit-iousbhostpipe-asyncio.md), verbatim.
	// [runtime] Records the request and returns kIOReturnSuccess ("the
	// completion will be called in the future", §6-4).  Refused:
	//   - dataBuffer or completion NULL -> kIOReturnBadArgument (UNVERIFIED:
	//     code);
	//   - dataBufferLength > the descriptor's length -> kIOReturnBadArgument
	//     ("Must be <= dataBuffer->getLength()", §6-4; UNVERIFIED: code);
	//   - more than kShimMaxPendingIO pending -> kIOReturnNoResources
	//     (shim-only limit; the real one is NOT FOUND, §6-6);
	//   - a failure injected with ShimFailNextAsyncIO() (shim-only).
	// The pipe retains dataBuffer and completion while the request is
	// pending.  A halted pipe (see ShimIsHalted) still accepts requests
	// (UNVERIFIED).
	virtual kern_return_t AsyncIO(IOMemoryDescriptor *dataBuffer, uint32_t dataBufferLength,
	                              OSAction *completion, uint32_t completionTimeoutMs);

	// docs/driverkit.md §6 (usbdriverkit-iousbhostpipe-completeasyncio.md),
	// verbatim.  The prototype the dext's completion method matches with
	// TYPE(IOUSBHostPipe::CompleteAsyncIO) (§6-2).
	// [runtime] Called by the test in the kernel's place: finds the oldest
	// pending request whose completion is `action`, drops it, and delivers
	// (status, actualByteCount, completionTimestamp) through the action
	// (OSAction::ShimInvoke).  With no such request nothing is delivered and
	// ShimUnmatchedCompletions() counts it (the kernel only completes
	// requests it holds).  A completion with an error other than a timeout
	// or an abort leaves the endpoint halted until ClearStall (§6-4;
	// UNVERIFIED whether an abort halts it: the shim says no).
	virtual void CompleteAsyncIO(OSAction *action, IOReturn status, uint32_t actualByteCount,
	                             uint64_t completionTimestamp);

	// docs/driverkit.md §6 (usbdriverkit-iousbhostpipe-io.md), verbatim but
	// for `virtual`, which DOCS usbdriverkit-iousbhostpipe-io.md shows:
	// "Performs a synchronous request on a bulk or interrupt endpoint";
	// bytesTransferred "contains the number of bytes that were actually
	// transferred".
	// [runtime] *bytesTransferred (when not NULL) is set to 0 first.
	// Refused before the device sees anything:
	//   - dataBuffer NULL -> kIOReturnBadArgument (UNVERIFIED: code);
	//   - dataBufferLength > the descriptor's length -> kIOReturnBadArgument
	//     (the kernel twin's "Must be <= dataBuffer->getLength()", §6-4;
	//     UNVERIFIED: code, and that IO checks it like AsyncIO);
	//   - no USBEndpointModel plugged in -> kIOReturnNoDevice (shim-only).
	// Otherwise the call is recorded (ShimIOCount, ShimLastIO...) and the
	// model gets the descriptor's first dataBufferLength bytes; its status is
	// returned and its byte count (clipped to dataBufferLength) stored in
	// *bytesTransferred, also on error.  As with CompleteAsyncIO, an error
	// other than a timeout or an abort leaves the endpoint halted until
	// ClearStall (§6-4).  A halted pipe still takes the call (UNVERIFIED),
	// and pending AsyncIO requests are left alone.
	virtual kern_return_t IO(IOMemoryDescriptor * dataBuffer, uint32_t dataBufferLength,
	                         uint32_t * bytesTransferred, uint32_t completionTimeoutMs);

	// docs/driverkit.md §6 (usbdriverkit-iousbhostpipe-abort.md), verbatim.
	// DOCS usbdriverkit-iousbhostpipe-abort.md on forClient: "Specify a non
	// NULL value for this parameter only for pipes associated with a control
	// endpoint; specify NULL for other endpoint types."
	// [runtime] Records the call; every pending request is marked aborted
	// with `withError` (its completion is delivered by ShimDeliverAborted).
	// options other than kIOUSBAbortAsynchronous / kIOUSBAbortSynchronous
	// -> kIOReturnBadArgument (UNVERIFIED).
	kern_return_t Abort(IOOptionBits options, kern_return_t withError, IOService * forClient);

	// DOCS usbdriverkit-iousbhostpipe-clearstall.md: `kern_return_t
	// ClearStall(bool withRequest);` (developer.apple.com shows it
	// `virtual`).  "This method aborts all pending I/O on the endpoint and
	// resets its data toggle" (also docs/driverkit.md §6-4).
	// [runtime] Records the call, clears the halt, and marks every pending
	// request aborted with kIOReturnAborted (UNVERIFIED: the status the
	// aborted requests complete with; the kernel twin's abort uses
	// kIOReturnAborted).
	virtual kern_return_t ClearStall(bool withRequest);

	// ---- shim-only observation and control ----
	uint32_t ShimPendingCount() const { return pending_count_; }
	// The i-th pending request, oldest first (NULL past the end).
	const dextlink_shim::ShimAsyncRequest *ShimPending(uint32_t i) const
	{
		return i < pending_count_ ? &pending_[i] : nullptr;
	}
	// The oldest pending request whose completion is `action`, or NULL.
	const dextlink_shim::ShimAsyncRequest *ShimFindPending(const OSAction *action) const
	{
		int32_t i = findPending(action);
		return i >= 0 ? &pending_[i] : nullptr;
	}
	uint32_t ShimAsyncIOCount() const { return async_io_count_; }   // accepted AsyncIO calls
	// The next AsyncIO call fails with `ret` (kIOReturnSuccess cancels).
	void ShimFailNextAsyncIO(IOReturn ret) { fail_next_async_io_ = ret; }
	// Delivers the completions of the aborted requests, oldest first, with
	// actualByteCount 0; returns how many were delivered to a live action.
	uint32_t ShimDeliverAborted(uint64_t completionTimestamp);
	bool ShimIsHalted() const { return halted_; }
	uint32_t ShimAbortCount() const { return abort_count_; }
	IOOptionBits ShimLastAbortOptions() const { return last_abort_options_; }
	kern_return_t ShimLastAbortError() const { return last_abort_error_; }
	IOService *ShimLastAbortClient() const { return last_abort_client_; }   // identity only
	uint32_t ShimClearStallCount() const { return clear_stall_count_; }
	bool ShimLastClearStallWithRequest() const { return last_clear_stall_with_request_; }
	uint32_t ShimUnmatchedCompletions() const { return unmatched_completions_; }
	uint8_t ShimEndpointAddress() const { return address_; }
	// The fake device IO talks to (NULL: IO answers kIOReturnNoDevice).
	void ShimSetEndpointModel(dextlink_shim::USBEndpointModel *model) { endpoint_model_ = model; }
	uint32_t ShimIOCount() const { return io_count_; }   // IO calls that reached the model
	// The last such call's dataBuffer (identity only), length and timeout.
	const IOMemoryDescriptor *ShimLastIOBuffer() const { return last_io_buffer_; }
	uint32_t ShimLastIOLength() const { return last_io_length_; }
	uint32_t ShimLastIOTimeoutMs() const { return last_io_timeout_; }

protected:
	explicit IOUSBHostPipe(uint8_t address)
		: address_(address), pending_(), pending_count_(0), async_io_count_(0),
		  fail_next_async_io_(kIOReturnSuccess), halted_(false), abort_count_(0), last_abort_options_(0),
		  last_abort_error_(kIOReturnSuccess), last_abort_client_(nullptr), clear_stall_count_(0),
		  last_clear_stall_with_request_(false), unmatched_completions_(0), endpoint_model_(nullptr), io_count_(0),
		  last_io_buffer_(nullptr), last_io_length_(0), last_io_timeout_(0) {}
	void free() override;

private:
	friend class IOUSBHostInterface;

	int32_t findPending(const OSAction *action) const;
	// Removes pending_[i] (keeping the order) and hands back its references.
	dextlink_shim::ShimAsyncRequest take(uint32_t i);
	void abortPending(IOReturn status);

	uint8_t                         address_;
	dextlink_shim::ShimAsyncRequest pending_[dextlink_shim::kShimMaxPendingIO];
	uint32_t                        pending_count_;
	uint32_t                        async_io_count_;
	IOReturn                        fail_next_async_io_;
	bool                            halted_;
	uint32_t                        abort_count_;
	IOOptionBits                    last_abort_options_;
	kern_return_t                   last_abort_error_;
	IOService                      *last_abort_client_;
	uint32_t                        clear_stall_count_;
	bool                            last_clear_stall_with_request_;
	uint32_t                        unmatched_completions_;
	dextlink_shim::USBEndpointModel *endpoint_model_;
	uint32_t                        io_count_;
	const IOMemoryDescriptor       *last_io_buffer_;
	uint32_t                        last_io_length_;
	uint32_t                        last_io_timeout_;
};

class IOUSBHostInterface : public IOService {
public:
	// shim-only: an interface with no endpoints and no device; a test adds
	// them with ShimAddEndpoint / ShimSetDevice.
	IOUSBHostInterface()
		: endpoints_(), endpoint_count_(), pipes_(), device_(nullptr), open_client_(nullptr), open_count_(0),
		  close_count_(0), io_buffers_(), io_buffer_options_(), io_buffer_capacity_(), io_buffer_count_(0),
		  io_buffer_successes_before_failure_(UINT32_MAX), io_buffer_failure_(kIOReturnSuccess),
		  device_request_count_(0), last_device_request_(), last_device_request_timeout_(0) {}

	// DOCS usbdriverkit-iousbhostinterface-open.md, verbatim
	// (developer.apple.com shows it `virtual`).  "Only one service at a time
	// may open a session to the interface."
	// [runtime] Another client's session open -> kIOReturnExclusiveAccess
	// (UNVERIFIED: code); forClient NULL -> kIOReturnBadArgument
	// (UNVERIFIED); reopening by the same client succeeds (UNVERIFIED).
	kern_return_t Open(IOService * forClient, IOOptionBits options, uint8_t * arg);

	// DOCS usbdriverkit-iousbhostinterface-close.md, verbatim.  It "aborts
	// any I/O for the interface and its endpoints".
	// [runtime] Not the opener -> kIOReturnNotOpen (UNVERIFIED); marks the
	// pending requests of every pipe aborted with kIOReturnAborted.
	kern_return_t Close(IOService * forClient, IOOptionBits options);

	// DOCS usbdriverkit-iousbhostinterface-copypipe (developer.apple.com
	// documentation/usbdriverkit/iousbhostinterface/copypipe), verbatim.
	// "If the specified pipe doesn't exist yet, but is part of the
	// interface, this method creates the pipe before returning it"; the
	// caller releases it.
	// [runtime] Not open -> kIOReturnNotOpen (UNVERIFIED); an address not
	// added with ShimAddEndpoint -> kIOReturnNotFound (UNVERIFIED); pipe
	// NULL -> kIOReturnBadArgument (shim).  The same pipe object every time.
	virtual kern_return_t CopyPipe(uint8_t address, IOUSBHostPipe **pipe);

	// docs/driverkit.md §6 (usbdriverkit-iousbhostinterface-createiobuffer.md),
	// verbatim.  [runtime] IOBufferMemoryDescriptor::Create(options,
	// capacity, 0, buffer) -- its option and size rules (docs/driverkit.md
	// §5-7); the call is remembered for ShimIOBuffer().  A failure injected
	// with ShimFailCreateIOBuffer() returns its code with *buffer NULL
	// (shim-only).
	kern_return_t CreateIOBuffer(IOOptionBits options, uint64_t capacity, IOBufferMemoryDescriptor ** buffer);

	// DOCS usbdriverkit-iousbhostinterface-devicerequest.md, verbatim: "Sends
	// a synchronous request to the device on the default control endpoint."
	// (The IOUSBHostDevice variant, DOCS iousbhostdevice/devicerequest, has a
	// leading `IOService *forClient`; the interface's page has none.)
	// [runtime] Forwards the request to the USBDeviceModel with the
	// descriptor's first wLength bytes.  Refused: not open -> kIOReturnNotOpen
	// (UNVERIFIED); no device model -> kIOReturnNoDevice (shim); wLength > 0
	// without a dataBuffer at least that long -> kIOReturnBadArgument
	// (UNVERIFIED).  *bytesTransferred (when not NULL) gets the device's
	// count, also on error.
	kern_return_t DeviceRequest(uint8_t bmRequestType, uint8_t bRequest, uint16_t wValue, uint16_t wIndex,
	                            uint16_t wLength, IOMemoryDescriptor * dataBuffer, uint16_t * bytesTransferred,
	                            uint32_t completionTimeoutMs);

	// ---- shim-only set-up and observation ----
	// Makes `address` an endpoint of this interface (CopyPipe finds it).
	kern_return_t ShimAddEndpoint(uint8_t address);
	void ShimSetDevice(dextlink_shim::USBDeviceModel *device) { device_ = device; }
	// The pipe for `address` if CopyPipe created it (not retained), else NULL.
	IOUSBHostPipe *ShimPipe(uint8_t address) const;
	bool ShimIsOpen() const { return open_client_ != nullptr; }
	IOService *ShimOpenClient() const { return open_client_; }   // identity only
	uint32_t ShimOpenCount() const { return open_count_; }
	uint32_t ShimCloseCount() const { return close_count_; }
	// CreateIOBuffer calls that succeeded, in order (buffers not retained:
	// identity only).
	uint32_t ShimIOBufferCount() const { return io_buffer_count_; }
	const IOBufferMemoryDescriptor *ShimIOBuffer(uint32_t i) const
	{
		return i < io_buffer_count_ ? io_buffers_[i] : nullptr;
	}
	IOOptionBits ShimIOBufferOptions(uint32_t i) const { return i < io_buffer_count_ ? io_buffer_options_[i] : 0; }
	uint64_t ShimIOBufferCapacity(uint32_t i) const { return i < io_buffer_count_ ? io_buffer_capacity_[i] : 0; }
	// After `after` more successful CreateIOBuffer calls, the next one fails
	// with `ret`, once (kIOReturnSuccess cancels).
	void ShimFailCreateIOBuffer(uint32_t after, IOReturn ret)
	{
		io_buffer_successes_before_failure_ = ret != kIOReturnSuccess ? after : UINT32_MAX;
		io_buffer_failure_ = ret;
	}
	uint32_t ShimDeviceRequestCount() const { return device_request_count_; }
	IOUSBDeviceRequest ShimLastDeviceRequest() const { return last_device_request_; }
	uint32_t ShimLastDeviceRequestTimeoutMs() const { return last_device_request_timeout_; }

protected:
	void free() override;

private:
	uint8_t                         endpoints_[dextlink_shim::kShimMaxEndpoints];
	uint32_t                        endpoint_count_;
	IOUSBHostPipe                  *pipes_[dextlink_shim::kShimMaxEndpoints];   // created by CopyPipe, owned
	dextlink_shim::USBDeviceModel  *device_;
	IOService                      *open_client_;                               // not retained
	uint32_t                        open_count_;
	uint32_t                        close_count_;
	const IOBufferMemoryDescriptor *io_buffers_[dextlink_shim::kShimMaxIOBuffers];
	IOOptionBits                    io_buffer_options_[dextlink_shim::kShimMaxIOBuffers];
	uint64_t                        io_buffer_capacity_[dextlink_shim::kShimMaxIOBuffers];
	uint32_t                        io_buffer_count_;
	uint32_t                        io_buffer_successes_before_failure_;   // UINT32_MAX: none
	IOReturn                        io_buffer_failure_;
	uint32_t                        device_request_count_;
	IOUSBDeviceRequest              last_device_request_;
	uint32_t                        last_device_request_timeout_;
};

/* ======================================================================== */
/* 3. IOMemoryDescriptor::CreateSubMemoryDescriptor                          */
/* ======================================================================== */
//
// DOCS driverkit-iomemorydescriptor-createsubmemorydescriptor.md (DriverKit
// 20.0+), verbatim:
//     static kern_return_t CreateSubMemoryDescriptor(uint64_t memoryDescriptorCreateOptions,
//         uint64_t offset, uint64_t length, IOMemoryDescriptor *ofDescriptor,
//         IOMemoryDescriptor **memory);
// xnu IOMemoryDescriptor.iig: "kIOMemoryDirectionIn memory described will be
// writable, kIOMemoryDirectionOut memory described will be readable"; the
// result has "+1 retain count".
//
// driverkit_shim.h's IOMemoryDescriptor has no such static member, and C++
// cannot add one from another header.  The shim therefore offers the same
// call as a free function, dextlink_shim::CreateSubMemoryDescriptor; dext
// code compiled against the shim calls that one instead (one #ifdef at the
// call site) until driverkit_shim.h declares the member.
//
// [runtime] Rules, from xnu IOUserServer.cpp CreateSubMemoryDescriptor_Impl:
//   - ofDescriptor NULL -> kIOReturnBadArgument;
//   - options other than the direction bits -> kIOReturnBadArgument;
//   - offset + length overflowing, or beyond ofDescriptor's length ->
//     kIOReturnBadArgument;
//   - length 0 -> kIOReturnBadArgument (shim: xnu would build an empty
//     descriptor; UNVERIFIED);
//   - memory NULL -> kIOReturnBadArgument (shim: real DriverKit would crash);
//   - a failure injected with dextlink_shim::ShimFailSubMemoryDescriptor
//     (shim-only) -> its code, *memory NULL.
// The sub-descriptor shares the parent's bytes (no copy) and keeps the
// parent alive (xnu IOSubMemoryDescriptor retains its parent).

namespace dextlink_shim {

// shim-only: the injected CreateSubMemoryDescriptor failure (one for the
// whole program; a function-local static so that every translation unit
// shares it).
struct SubMemoryDescriptorFault {
	uint32_t successesBeforeFailure;   // UINT32_MAX: none
	IOReturn failure;
};

inline SubMemoryDescriptorFault &
ShimSubMemoryDescriptorFault()
{
	static SubMemoryDescriptorFault fault = {UINT32_MAX, kIOReturnSuccess};
	return fault;
}

// shim-only: after `after` more successful CreateSubMemoryDescriptor calls,
// the next one fails with `ret`, once (kIOReturnSuccess cancels).
inline void
ShimFailSubMemoryDescriptor(uint32_t after, IOReturn ret)
{
	ShimSubMemoryDescriptorFault().successesBeforeFailure = ret != kIOReturnSuccess ? after : UINT32_MAX;
	ShimSubMemoryDescriptorFault().failure = ret;
}

class SubMemoryDescriptor : public IOMemoryDescriptor {
public:
	static kern_return_t Create(uint64_t options, uint64_t offset, uint64_t length, IOMemoryDescriptor *ofDescriptor,
	                            IOMemoryDescriptor **memory);

	// shim-only: the range this descriptor covers in its parent.
	IOMemoryDescriptor *GetParent() const { return parent_; }
	uint64_t GetParentOffset() const { return parent_offset_; }

protected:
	SubMemoryDescriptor(uint8_t *bytes, uint64_t length, uint64_t options, IOMemoryMap *parentMap,
	                    IOMemoryDescriptor *parent, uint64_t parentOffset)
		: IOMemoryDescriptor(bytes, length, options, true, nullptr), parent_map_(parentMap), parent_(parent),
		  parent_offset_(parentOffset) {}

	void free() override
	{
		// The map holds the parent's reference.
		OSSafeReleaseNULL(parent_map_);
		parent_ = nullptr;
		IOMemoryDescriptor::free();
	}

private:
	IOMemoryMap        *parent_map_;   // retained; retains the parent
	IOMemoryDescriptor *parent_;       // kept alive by parent_map_
	uint64_t            parent_offset_;
};

inline kern_return_t
SubMemoryDescriptor::Create(uint64_t options, uint64_t offset, uint64_t length, IOMemoryDescriptor *ofDescriptor,
                            IOMemoryDescriptor **memory)
{
	if (memory == nullptr) {
		return kIOReturnBadArgument;   // shim: real DriverKit would crash
	}
	*memory = nullptr;
	SubMemoryDescriptorFault &fault = ShimSubMemoryDescriptorFault();
	if (fault.successesBeforeFailure == 0) {
		IOReturn injected = fault.failure;
		fault.successesBeforeFailure = UINT32_MAX;
		fault.failure = kIOReturnSuccess;
		return injected;   // shim-only
	}
	if (ofDescriptor == nullptr) {
		return kIOReturnBadArgument;   // xnu CreateSubMemoryDescriptor_Impl
	}
	if ((options & ~(uint64_t)kIOMemoryDirectionOutIn) != 0) {
		return kIOReturnBadArgument;   // xnu CreateSubMemoryDescriptor_Impl
	}
	uint64_t parentLength = 0;
	if (ofDescriptor->GetLength(&parentLength) != kIOReturnSuccess) {
		return kIOReturnBadArgument;
	}
	if (length == 0) {
		return kIOReturnBadArgument;   // shim, UNVERIFIED
	}
	if (offset > UINT64_MAX - length || offset + length > parentLength) {
		return kIOReturnBadArgument;   // xnu CreateSubMemoryDescriptor_Impl
	}
	// The parent's bytes for [offset, offset + length), through a mapping
	// that also keeps the parent alive.
	IOMemoryMap *map = nullptr;
	kern_return_t ret = ofDescriptor->CreateMapping(0, 0, offset, length, 0, &map);
	if (ret != kIOReturnSuccess || map == nullptr) {
		OSSafeReleaseNULL(map);
		return kIOReturnNoMemory;   // UNVERIFIED: code for a failed IOSubMemoryDescriptor
	}
	uint8_t *bytes = reinterpret_cast<uint8_t *>((uintptr_t)map->GetAddress());
	SubMemoryDescriptor *sub = new (std::nothrow) SubMemoryDescriptor(bytes, length, options, map, ofDescriptor, offset);
	if (sub == nullptr) {
		map->release();
		return kIOReturnNoMemory;
	}
	*memory = sub;
	if (fault.successesBeforeFailure != UINT32_MAX) {
		fault.successesBeforeFailure--;
	}
	return kIOReturnSuccess;
}

// The stand-in for IOMemoryDescriptor::CreateSubMemoryDescriptor (see above).
inline kern_return_t
CreateSubMemoryDescriptor(uint64_t memoryDescriptorCreateOptions, uint64_t offset, uint64_t length,
                          IOMemoryDescriptor *ofDescriptor, IOMemoryDescriptor **memory)
{
	return SubMemoryDescriptor::Create(memoryDescriptorCreateOptions, offset, length, ofDescriptor, memory);
}

} // namespace dextlink_shim

/* ======================================================================== */
/* 4. Inline definitions                                                    */
/* ======================================================================== */

// ---- IOUSBHostPipe -------------------------------------------------------

inline int32_t
IOUSBHostPipe::findPending(const OSAction *action) const
{
	for (uint32_t i = 0; i < pending_count_; i++) {
		if (pending_[i].completion == action) {
			return (int32_t)i;
		}
	}
	return -1;
}

inline dextlink_shim::ShimAsyncRequest
IOUSBHostPipe::take(uint32_t i)
{
	dextlink_shim::ShimAsyncRequest request = pending_[i];
	for (uint32_t j = i + 1; j < pending_count_; j++) {
		pending_[j - 1] = pending_[j];
	}
	pending_count_--;
	pending_[pending_count_] = dextlink_shim::ShimAsyncRequest();
	return request;
}

inline void
IOUSBHostPipe::abortPending(IOReturn status)
{
	for (uint32_t i = 0; i < pending_count_; i++) {
		if (!pending_[i].aborted) {
			pending_[i].aborted = true;
			pending_[i].abortStatus = status;
		}
	}
}

inline kern_return_t
IOUSBHostPipe::AsyncIO(IOMemoryDescriptor *dataBuffer, uint32_t dataBufferLength, OSAction *completion,
                       uint32_t completionTimeoutMs)
{
	if (fail_next_async_io_ != kIOReturnSuccess) {
		IOReturn ret = fail_next_async_io_;
		fail_next_async_io_ = kIOReturnSuccess;
		return ret;
	}
	if (dataBuffer == nullptr || completion == nullptr) {
		return kIOReturnBadArgument;   // UNVERIFIED: code
	}
	uint64_t length = 0;
	if (dataBuffer->GetLength(&length) != kIOReturnSuccess || (uint64_t)dataBufferLength > length) {
		return kIOReturnBadArgument;   // docs/driverkit.md §6-4; UNVERIFIED: code
	}
	if (pending_count_ >= dextlink_shim::kShimMaxPendingIO) {
		return kIOReturnNoResources;   // shim-only limit (docs/driverkit.md §6-6)
	}
	dataBuffer->retain();
	completion->retain();
	dextlink_shim::ShimAsyncRequest &request = pending_[pending_count_++];
	request.dataBuffer = dataBuffer;
	request.dataBufferLength = dataBufferLength;
	request.completion = completion;
	request.completionTimeoutMs = completionTimeoutMs;
	request.aborted = false;
	request.abortStatus = kIOReturnSuccess;
	async_io_count_++;
	return kIOReturnSuccess;
}

inline void
IOUSBHostPipe::CompleteAsyncIO(OSAction *action, IOReturn status, uint32_t actualByteCount,
                               uint64_t completionTimestamp)
{
	int32_t i = findPending(action);
	if (i < 0) {
		unmatched_completions_++;
		return;
	}
	dextlink_shim::ShimAsyncRequest request = take((uint32_t)i);
	// Any IO error other than a timeout halts a bulk endpoint until
	// ClearStall (docs/driverkit.md §6-4).
	if (status != kIOReturnSuccess && status != kIOReturnTimeout && status != kIOReturnAborted) {
		halted_ = true;
	}
	// The message the kernel sends to the action: CompleteAsyncIO's three
	// arguments after the action.
	const uint64_t args[3] = {(uint64_t)(uint32_t)status, (uint64_t)actualByteCount, completionTimestamp};
	request.completion->ShimInvoke(args, 3);
	OSSafeReleaseNULL(request.completion);
	OSSafeReleaseNULL(request.dataBuffer);
}

inline kern_return_t
IOUSBHostPipe::IO(IOMemoryDescriptor *dataBuffer, uint32_t dataBufferLength, uint32_t *bytesTransferred,
                  uint32_t completionTimeoutMs)
{
	if (bytesTransferred != nullptr) {
		*bytesTransferred = 0;
	}
	if (dataBuffer == nullptr) {
		return kIOReturnBadArgument;   // UNVERIFIED: code
	}
	uint64_t length = 0;
	if (dataBuffer->GetLength(&length) != kIOReturnSuccess || (uint64_t)dataBufferLength > length) {
		return kIOReturnBadArgument;   // docs/driverkit.md §6-4; UNVERIFIED: code
	}
	if (endpoint_model_ == nullptr) {
		return kIOReturnNoDevice;   // shim-only
	}
	IOMemoryMap *map = nullptr;
	uint8_t *data = nullptr;
	if (dataBufferLength != 0) {
		if (dataBuffer->CreateMapping(0, 0, 0, dataBufferLength, 0, &map) != kIOReturnSuccess || map == nullptr) {
			OSSafeReleaseNULL(map);
			return kIOReturnNoMemory;   // shim
		}
		data = reinterpret_cast<uint8_t *>((uintptr_t)map->GetAddress());
	}
	io_count_++;
	last_io_buffer_ = dataBuffer;
	last_io_length_ = dataBufferLength;
	last_io_timeout_ = completionTimeoutMs;

	uint32_t transferred = 0;
	IOReturn status = endpoint_model_->Transfer(address_, data, dataBufferLength, completionTimeoutMs, &transferred);
	if (transferred > dataBufferLength) {
		transferred = dataBufferLength;
	}
	// Any IO error other than a timeout halts a bulk endpoint until
	// ClearStall (docs/driverkit.md §6-4), as in CompleteAsyncIO.
	if (status != kIOReturnSuccess && status != kIOReturnTimeout && status != kIOReturnAborted) {
		halted_ = true;
	}
	if (bytesTransferred != nullptr) {
		*bytesTransferred = transferred;
	}
	OSSafeReleaseNULL(map);
	return status;
}

inline kern_return_t
IOUSBHostPipe::Abort(IOOptionBits options, kern_return_t withError, IOService *forClient)
{
	if (options != kIOUSBAbortAsynchronous && options != kIOUSBAbortSynchronous) {
		return kIOReturnBadArgument;   // UNVERIFIED
	}
	abort_count_++;
	last_abort_options_ = options;
	last_abort_error_ = withError;
	last_abort_client_ = forClient;
	abortPending(withError);
	return kIOReturnSuccess;
}

inline kern_return_t
IOUSBHostPipe::ClearStall(bool withRequest)
{
	clear_stall_count_++;
	last_clear_stall_with_request_ = withRequest;
	halted_ = false;
	abortPending(kIOReturnAborted);   // "aborts all pending I/O on the endpoint"
	return kIOReturnSuccess;
}

inline uint32_t
IOUSBHostPipe::ShimDeliverAborted(uint64_t completionTimestamp)
{
	uint32_t delivered = 0;
	// Oldest first; the dext may submit new requests from its completion
	// method, so look for the next aborted one each time.
	for (;;) {
		uint32_t i = 0;
		while (i < pending_count_ && !pending_[i].aborted) {
			i++;
		}
		if (i == pending_count_) {
			break;
		}
		dextlink_shim::ShimAsyncRequest request = take(i);
		const uint64_t args[3] = {(uint64_t)(uint32_t)request.abortStatus, 0, completionTimestamp};
		if (request.completion->ShimInvoke(args, 3)) {
			delivered++;
		}
		OSSafeReleaseNULL(request.completion);
		OSSafeReleaseNULL(request.dataBuffer);
	}
	return delivered;
}

inline void
IOUSBHostPipe::free()
{
	while (pending_count_ != 0) {
		dextlink_shim::ShimAsyncRequest request = take(pending_count_ - 1);
		OSSafeReleaseNULL(request.completion);
		OSSafeReleaseNULL(request.dataBuffer);
	}
	OSObject::free();
}

// ---- IOUSBHostInterface --------------------------------------------------

inline kern_return_t
IOUSBHostInterface::Open(IOService *forClient, IOOptionBits options, uint8_t *arg)
{
	(void)options;
	(void)arg;
	if (forClient == nullptr) {
		return kIOReturnBadArgument;   // UNVERIFIED
	}
	if (open_client_ != nullptr && open_client_ != forClient) {
		return kIOReturnExclusiveAccess;   // UNVERIFIED: code
	}
	open_client_ = forClient;
	open_count_++;
	return kIOReturnSuccess;
}

inline kern_return_t
IOUSBHostInterface::Close(IOService *forClient, IOOptionBits options)
{
	(void)options;
	if (open_client_ == nullptr || open_client_ != forClient) {
		return kIOReturnNotOpen;   // UNVERIFIED
	}
	// "aborts any I/O for the interface and its endpoints"
	for (uint32_t i = 0; i < endpoint_count_; i++) {
		if (pipes_[i] != nullptr) {
			pipes_[i]->abortPending(kIOReturnAborted);
		}
	}
	open_client_ = nullptr;
	close_count_++;
	return kIOReturnSuccess;
}

inline kern_return_t
IOUSBHostInterface::CopyPipe(uint8_t address, IOUSBHostPipe **pipe)
{
	if (pipe == nullptr) {
		return kIOReturnBadArgument;   // shim: real DriverKit would crash
	}
	*pipe = nullptr;
	if (open_client_ == nullptr) {
		return kIOReturnNotOpen;   // UNVERIFIED
	}
	for (uint32_t i = 0; i < endpoint_count_; i++) {
		if (endpoints_[i] != address) {
			continue;
		}
		if (pipes_[i] == nullptr) {
			pipes_[i] = new (std::nothrow) IOUSBHostPipe(address);
			if (pipes_[i] == nullptr) {
				return kIOReturnNoMemory;
			}
		}
		pipes_[i]->retain();   // "It's your responsibility to release this object"
		*pipe = pipes_[i];
		return kIOReturnSuccess;
	}
	return kIOReturnNotFound;   // UNVERIFIED
}

inline kern_return_t
IOUSBHostInterface::CreateIOBuffer(IOOptionBits options, uint64_t capacity, IOBufferMemoryDescriptor **buffer)
{
	if (io_buffer_successes_before_failure_ == 0) {
		IOReturn injected = io_buffer_failure_;
		io_buffer_successes_before_failure_ = UINT32_MAX;
		io_buffer_failure_ = kIOReturnSuccess;
		if (buffer != nullptr) {
			*buffer = nullptr;
		}
		return injected;   // shim-only
	}
	kern_return_t ret = IOBufferMemoryDescriptor::Create(options, capacity, 0, buffer);
	if (ret != kIOReturnSuccess) {
		return ret;
	}
	if (io_buffer_successes_before_failure_ != UINT32_MAX) {
		io_buffer_successes_before_failure_--;
	}
	if (io_buffer_count_ < dextlink_shim::kShimMaxIOBuffers) {
		io_buffers_[io_buffer_count_] = *buffer;
		io_buffer_options_[io_buffer_count_] = options;
		io_buffer_capacity_[io_buffer_count_] = capacity;
		io_buffer_count_++;
	}
	return ret;
}

inline kern_return_t
IOUSBHostInterface::DeviceRequest(uint8_t bmRequestType, uint8_t bRequest, uint16_t wValue, uint16_t wIndex,
                                  uint16_t wLength, IOMemoryDescriptor *dataBuffer, uint16_t *bytesTransferred,
                                  uint32_t completionTimeoutMs)
{
	if (bytesTransferred != nullptr) {
		*bytesTransferred = 0;
	}
	if (open_client_ == nullptr) {
		return kIOReturnNotOpen;   // UNVERIFIED
	}
	if (device_ == nullptr) {
		return kIOReturnNoDevice;   // shim
	}
	IOMemoryMap *map = nullptr;
	uint8_t *data = nullptr;
	if (wLength != 0) {
		uint64_t length = 0;
		if (dataBuffer == nullptr || dataBuffer->GetLength(&length) != kIOReturnSuccess || length < wLength) {
			return kIOReturnBadArgument;   // UNVERIFIED
		}
		if (dataBuffer->CreateMapping(0, 0, 0, wLength, 0, &map) != kIOReturnSuccess || map == nullptr) {
			OSSafeReleaseNULL(map);
			return kIOReturnNoMemory;   // shim
		}
		data = reinterpret_cast<uint8_t *>((uintptr_t)map->GetAddress());
	}
	IOUSBDeviceRequest request;
	request.bmRequestType = bmRequestType;
	request.bRequest = bRequest;
	request.wValue = wValue;
	request.wIndex = wIndex;
	request.wLength = wLength;
	device_request_count_++;
	last_device_request_ = request;
	last_device_request_timeout_ = completionTimeoutMs;

	uint16_t transferred = 0;
	IOReturn ret = device_->ControlRequest(request, data, &transferred);
	if (transferred > wLength) {
		transferred = wLength;   // a data stage never exceeds wLength (USB 2.0 §9.3.5)
	}
	if (bytesTransferred != nullptr) {
		*bytesTransferred = transferred;
	}
	OSSafeReleaseNULL(map);
	return ret;
}

inline kern_return_t
IOUSBHostInterface::ShimAddEndpoint(uint8_t address)
{
	for (uint32_t i = 0; i < endpoint_count_; i++) {
		if (endpoints_[i] == address) {
			return kIOReturnSuccess;
		}
	}
	if (endpoint_count_ >= dextlink_shim::kShimMaxEndpoints) {
		return kIOReturnNoResources;
	}
	endpoints_[endpoint_count_] = address;
	pipes_[endpoint_count_] = nullptr;
	endpoint_count_++;
	return kIOReturnSuccess;
}

inline IOUSBHostPipe *
IOUSBHostInterface::ShimPipe(uint8_t address) const
{
	for (uint32_t i = 0; i < endpoint_count_; i++) {
		if (endpoints_[i] == address) {
			return pipes_[i];
		}
	}
	return nullptr;
}

inline void
IOUSBHostInterface::free()
{
	for (uint32_t i = 0; i < endpoint_count_; i++) {
		OSSafeReleaseNULL(pipes_[i]);
	}
	IOService::free();
}

#endif /* DEXTLINK_USBDRIVERKIT_SHIM_H */
