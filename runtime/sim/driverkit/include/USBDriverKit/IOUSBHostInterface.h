// IOUSBHostInterface: the provider a USB dext's driver is matched on.
// One session at a time (docs/driverkit.md §6: "Only one service may open a
// session at a time"): a second Open is kIOReturnExclusiveAccess. Method
// ids are Apple's (iig-generated IOUSBHostInterface.h).
#ifndef DEXTLINK_USBDRIVERKIT_IOUSBHOSTINTERFACE_H
#define DEXTLINK_USBDRIVERKIT_IOUSBHOSTINTERFACE_H

#include <USBDriverKit/AppleUSBDefinitions.h>
#include <DriverKit/IOBufferMemoryDescriptor.h>
#include <DriverKit/IOMemoryDescriptor.h>
#include <DriverKit/IOService.h>
#include <DriverKit/OSAction.h>
#include <USBDriverKit/IOUSBHostDevice.h>
#include <USBDriverKit/IOUSBHostPipe.h>

#define IOUSBHostInterface__GetInterfaceDescriptorHeader_ID 0x9434ede8968ad899ULL
#define IOUSBHostInterface_Open_ID 0xe1d4ddd5e2cbe425ULL
#define IOUSBHostInterface_Close_ID 0xcc4d8955a6ca402dULL
#define IOUSBHostInterface_GetFrameNumber_ID 0xa54dc3018b39ad1dULL
#define IOUSBHostInterface_CopyPipe_ID 0x86bb6756a5becea0ULL
#define IOUSBHostInterface_SelectAlternateSetting_ID 0xbf28ca8ee6edc0d3ULL
#define IOUSBHostInterface_GetPortStatus_ID 0xbed0143a5a239d9cULL
#define IOUSBHostInterface_SetIdlePolicy_ID 0x832000ee4e988f9fULL
#define IOUSBHostInterface_GetIdlePolicy_ID 0xc5f9b873ec9e7322ULL
#define IOUSBHostInterface_CopyDevice_ID 0xba535ca623a6536cULL

#define IOUSBHostInterface_Open_Args IOService *forClient, IOOptionBits options, uint8_t *arg
#define IOUSBHostInterface_Close_Args IOService *forClient, IOOptionBits options
#define IOUSBHostInterface_CopyPipe_Args uint8_t address, IOUSBHostPipe **pipe
#define IOUSBHostInterface_CopyDevice_Args IOUSBHostDevice **device

struct IOUSBHostInterface_Open_Invocation {
    IOService* forClient;
    IOOptionBits options;
    uint8_t* arg;
};
struct IOUSBHostInterface_Close_Invocation {
    IOService* forClient;
    IOOptionBits options;
};
struct IOUSBHostInterface_CopyPipe_Invocation {
    uint8_t address;
    IOUSBHostPipe** pipe;
};
struct IOUSBHostInterface_CopyDevice_Invocation {
    IOUSBHostDevice** device;
};

class IOUSBHostInterface : public IOService {
    OSDeclareDefaultStructors(IOUSBHostInterface)
public:
    using super = IOService;

    bool init() override;
    void free() override;

    // Opens the one session: kIOReturnExclusiveAccess while a session is
    // open (whoever holds it), kIOReturnNoDevice once the device is gone.
    kern_return_t Open(IOService* forClient, IOOptionBits options, uint8_t* arg,
                       OSDispatchMethod supermethod = nullptr);
    // Ends the session of `forClient`: kIOReturnNotOpen if it holds none.
    kern_return_t Close(IOService* forClient, IOOptionBits options, OSDispatchMethod supermethod = nullptr);
    // The pipe of an endpoint of this interface (retained for the caller):
    // kIOReturnNotOpen without a session, kIOReturnNotFound for an address
    // the interface has no endpoint for.
    kern_return_t CopyPipe(uint8_t address, IOUSBHostPipe** pipe, OSDispatchMethod supermethod = nullptr);
    kern_return_t CopyDevice(IOUSBHostDevice** device, OSDispatchMethod supermethod = nullptr);

    // LOCALONLY (plain virtuals). Copy* results are freed with IOUSBHostFreeDescriptor.
    virtual const IOUSBConfigurationDescriptor* CopyConfigurationDescriptor() LOCALONLY;
    // This interface's descriptor inside `configurationDescriptor` (a pointer into it), or NULL.
    virtual const IOUSBInterfaceDescriptor* GetInterfaceDescriptor(
        const IOUSBConfigurationDescriptor* configurationDescriptor) LOCALONLY;
    virtual const IOUSBStringDescriptor* CopyStringDescriptor(uint8_t index, uint16_t languageID) LOCALONLY;
    virtual const IOUSBStringDescriptor* CopyStringDescriptor(uint8_t index) LOCALONLY;
    // A memfd-backed IOBufferMemoryDescriptor of `capacity` bytes (§6-5).
    virtual kern_return_t CreateIOBuffer(IOOptionBits options, uint64_t capacity,
                                         IOBufferMemoryDescriptor** buffer) LOCALONLY;
    // Not modelled: kIOReturnUnsupported.
    virtual kern_return_t AsyncDeviceRequest(uint8_t bmRequestType, uint8_t bRequest, uint16_t wValue,
                                             uint16_t wIndex, uint16_t wLength, IOMemoryDescriptor* dataBuffer,
                                             OSAction* completion, uint32_t completionTimeoutMs) LOCALONLY;
    // IOUSBHostDevice::DeviceRequest for this interface's session.
    virtual kern_return_t DeviceRequest(uint8_t bmRequestType, uint8_t bRequest, uint16_t wValue, uint16_t wIndex,
                                        uint16_t wLength, IOMemoryDescriptor* dataBuffer,
                                        uint16_t* bytesTransferred, uint32_t completionTimeoutMs) LOCALONLY;
    // Control transfers complete before DeviceRequest returns: nothing to abort.
    virtual kern_return_t AbortDeviceRequests(IOOptionBits options, IOReturn withError) LOCALONLY;

    // Runtime use: the device this interface belongs to (not retained).
    void SetDeviceInternal(IOUSBHostDevice* device, uint8_t interfaceNumber);
    IOUSBHostDevice* GetDeviceInternal() const;

protected:
    kern_return_t Open_Impl(IOUSBHostInterface_Open_Args);
    kern_return_t Close_Impl(IOUSBHostInterface_Close_Args);
    kern_return_t CopyPipe_Impl(IOUSBHostInterface_CopyPipe_Args);
    kern_return_t CopyDevice_Impl(IOUSBHostInterface_CopyDevice_Args);

private:
    struct State;
    State* state_;
};

#endif
