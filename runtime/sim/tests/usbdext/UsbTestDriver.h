/* Generated per dextlink's iig contract (IIG.md) from UsbTestDriver.iig; written by hand. */
#ifndef _USBTESTDRIVER_H
#define _USBTESTDRIVER_H

#include <DriverKit/IOService.h>
#include <USBDriverKit/IOUSBHostInterface.h>
#include <USBDriverKit/IOUSBHostPipe.h>

#define UsbTestDriver_WriteComplete_ID 0xbcc3f8e0695c6545ULL

#define UsbTestDriver_Start_Args IOService_Start_Args
#define UsbTestDriver_Stop_Args IOService_Stop_Args
#define UsbTestDriver_NewUserClient_Args IOService_NewUserClient_Args
#define UsbTestDriver_WriteComplete_Args IOUSBHostPipe_CompleteAsyncIO_Args

struct UsbTestDriver_IVars;
struct UsbTestDriver_LocalIVars;

class UsbTestDriver : public IOService {
    OSDeclareDefaultStructors(UsbTestDriver)

public:
    union {
        UsbTestDriver_IVars* ivars;
        UsbTestDriver_LocalIVars* lvars;
    };

    using super = IOService;

    bool init() override;
    void free() override;

    void WriteComplete(OSAction* action, IOReturn status, uint32_t actualByteCount, uint64_t completionTimestamp,
                       OSDispatchMethod supermethod = nullptr);
    kern_return_t CreateActionWriteComplete(size_t referenceSize, OSAction** action);

protected:
    kern_return_t Start_Impl(UsbTestDriver_Start_Args);
    kern_return_t Stop_Impl(UsbTestDriver_Stop_Args);
    kern_return_t NewUserClient_Impl(UsbTestDriver_NewUserClient_Args);
    void WriteComplete_Impl(UsbTestDriver_WriteComplete_Args);
};

#endif /* _USBTESTDRIVER_H */
