// IOUSBHostDevice: the simulated device an interface belongs to; its
// descriptors and its control endpoint come from the host's device model
// (dextlink_host_usb_interface_create). Method ids are Apple's
// (iig-generated IOUSBHostDevice.h).
#ifndef DEXTLINK_USBDRIVERKIT_IOUSBHOSTDEVICE_H
#define DEXTLINK_USBDRIVERKIT_IOUSBHOSTDEVICE_H

#include <USBDriverKit/AppleUSBDefinitions.h>
#include <DriverKit/IOBufferMemoryDescriptor.h>
#include <DriverKit/IOMemoryDescriptor.h>
#include <DriverKit/IOService.h>
#include <DriverKit/OSAction.h>

class IOUSBHostInterface;

// Speeds GetSpeed reports.
enum {
    kIOUSBHostConnectionSpeedNone = 0,
    kIOUSBHostConnectionSpeedFull = 1,
    kIOUSBHostConnectionSpeedLow = 2,
    kIOUSBHostConnectionSpeedHigh = 3,
    kIOUSBHostConnectionSpeedSuper = 4,
    kIOUSBHostConnectionSpeedSuperPlus = 5,
    kIOUSBHostConnectionSpeedSuperPlusBy2 = 6,
};

#define IOUSBHostDevice__GetDescriptor_ID 0xc769617535436f0eULL
#define IOUSBHostDevice_Open_ID 0xe139dec6668972a6ULL
#define IOUSBHostDevice_Close_ID 0xf5b5354a1a05c969ULL
#define IOUSBHostDevice_CreateIOBuffer_ID 0xb5f78ffc0afa7e23ULL
#define IOUSBHostDevice_CompleteAsyncDeviceRequest_ID 0xc489759689d7d751ULL
#define IOUSBHostDevice_AsyncDeviceRequest_ID 0xb6ab02bb32783f83ULL
#define IOUSBHostDevice_DeviceRequest_ID 0x862ae6f7392b79feULL
#define IOUSBHostDevice_AbortDeviceRequests_ID 0xe0da9ed8caee6fbeULL
#define IOUSBHostDevice_SetConfiguration_ID 0xa67a186949eaf68cULL
#define IOUSBHostDevice_GetAddress_ID 0xb682fa0b4e80b1d3ULL
#define IOUSBHostDevice_GetSpeed_ID 0xa2715c4284f99e61ULL
#define IOUSBHostDevice_GetFrameNumber_ID 0xc660b158ed52fa93ULL
#define IOUSBHostDevice_GetPortStatus_ID 0xa04ec9e19b0a96b7ULL
#define IOUSBHostDevice_Reset_ID 0xd0fbe57a84270361ULL
#define IOUSBHostDevice_CreateInterfaceIterator_ID 0xa7d9f292889bbb05ULL
#define IOUSBHostDevice_DestroyInterfaceIterator_ID 0xc49102faaad2fb20ULL
#define IOUSBHostDevice_CopyInterface_ID 0xcdb581972196795fULL

#define IOUSBHostDevice_DeviceRequest_Args                                                              \
    IOService *forClient, uint8_t bmRequestType, uint8_t bRequest, uint16_t wValue, uint16_t wIndex,   \
        uint16_t wLength, IOMemoryDescriptor *dataBuffer, uint16_t *bytesTransferred,                  \
        uint32_t completionTimeoutMs
#define IOUSBHostDevice_GetAddress_Args uint8_t *address
#define IOUSBHostDevice_GetSpeed_Args uint8_t *speed

struct IOUSBHostDevice_DeviceRequest_Invocation {
    IOService* forClient;
    uint8_t bmRequestType;
    uint8_t bRequest;
    uint16_t wValue;
    uint16_t wIndex;
    uint16_t wLength;
    IOMemoryDescriptor* dataBuffer;
    uint16_t* bytesTransferred;
    uint32_t completionTimeoutMs;
};
struct IOUSBHostDevice_GetAddress_Invocation {
    uint8_t* address;
};
struct IOUSBHostDevice_GetSpeed_Invocation {
    uint8_t* speed;
};

// Frees what a Copy*Descriptor method returned.
extern "C" void IOUSBHostFreeDescriptor(const void* descriptor);

class IOUSBHostDevice : public IOService {
    OSDeclareDefaultStructors(IOUSBHostDevice)
public:
    using super = IOService;

    bool init() override;
    void free() override;

    // A control transfer on endpoint 0: bmRequestType bit 7 says whether
    // `dataBuffer` (at least wLength bytes; NULL when wLength is 0) is read
    // or written. A STALL of the device is kUSBHostReturnPipeStalled.
    kern_return_t DeviceRequest(IOService* forClient, uint8_t bmRequestType, uint8_t bRequest, uint16_t wValue,
                                uint16_t wIndex, uint16_t wLength, IOMemoryDescriptor* dataBuffer,
                                uint16_t* bytesTransferred, uint32_t completionTimeoutMs,
                                OSDispatchMethod supermethod = nullptr);
    kern_return_t GetAddress(uint8_t* address, OSDispatchMethod supermethod = nullptr) const;
    kern_return_t GetSpeed(uint8_t* speed, OSDispatchMethod supermethod = nullptr) const;

    // LOCALONLY: copies the caller frees with IOUSBHostFreeDescriptor.
    virtual const IOUSBDeviceDescriptor* CopyDeviceDescriptor() LOCALONLY;
    virtual const IOUSBConfigurationDescriptor* CopyConfigurationDescriptor(uint8_t index) LOCALONLY;
    virtual const IOUSBConfigurationDescriptor* CopyConfigurationDescriptorWithValue(
        uint8_t bConfigurationValue) LOCALONLY;
    virtual const IOUSBStringDescriptor* CopyStringDescriptor(uint8_t index, uint16_t languageID) LOCALONLY;
    virtual const IOUSBStringDescriptor* CopyStringDescriptor(uint8_t index) LOCALONLY;

    // Runtime use (USBHost.cpp): the device model behind this object.
    struct Backend;
    Backend* GetBackendInternal() const { return backend_; }
    void SetBackendInternal(Backend* backend);

protected:
    kern_return_t DeviceRequest_Impl(IOUSBHostDevice_DeviceRequest_Args);
    kern_return_t GetAddress_Impl(IOUSBHostDevice_GetAddress_Args);
    kern_return_t GetSpeed_Impl(IOUSBHostDevice_GetSpeed_Args);

private:
    Backend* backend_;
};

#endif
