/* Generated per dextlink's iig contract (IIG.md) from UsbTestDriver.iig; written by hand. */
#include "UsbTestDriver.h"

OSDefineMetaClassAndStructors(UsbTestDriver, IOService)

kern_return_t UsbTestDriver::_Dispatch(OSObject* self, const IORPC rpc)
{
    UsbTestDriver* object = static_cast<UsbTestDriver*>(self);
    switch (rpc.methodID) {
    case IOService_Start_ID: {
        IOService_Start_Invocation* a = static_cast<IOService_Start_Invocation*>(rpc.arguments);
        return object->UsbTestDriver::Start_Impl(a->provider);
    }
    case IOService_Stop_ID: {
        IOService_Stop_Invocation* a = static_cast<IOService_Stop_Invocation*>(rpc.arguments);
        return object->UsbTestDriver::Stop_Impl(a->provider);
    }
    case IOService_NewUserClient_ID: {
        IOService_NewUserClient_Invocation* a = static_cast<IOService_NewUserClient_Invocation*>(rpc.arguments);
        return object->UsbTestDriver::NewUserClient_Impl(a->type, a->userClient);
    }
    case UsbTestDriver_WriteComplete_ID: {
        IOUSBHostPipe_CompleteAsyncIO_Invocation* a =
            static_cast<IOUSBHostPipe_CompleteAsyncIO_Invocation*>(rpc.arguments);
        object->UsbTestDriver::WriteComplete_Impl(a->action, a->status, a->actualByteCount, a->completionTimestamp);
        return kIOReturnSuccess;
    }
    default:
        return super::_Dispatch(self, rpc);
    }
}

void UsbTestDriver::WriteComplete(OSAction* action, IOReturn status, uint32_t actualByteCount,
                                  uint64_t completionTimestamp, OSDispatchMethod supermethod)
{
    IOUSBHostPipe_CompleteAsyncIO_Invocation a = {action, status, actualByteCount, completionTimestamp};
    OSObjectDispatchInvocation(this, supermethod, UsbTestDriver_WriteComplete_ID, &a);
}

kern_return_t UsbTestDriver::CreateActionWriteComplete(size_t referenceSize, OSAction** action)
{
    return OSAction::Create(this, UsbTestDriver_WriteComplete_ID, IOUSBHostPipe_CompleteAsyncIO_ID, referenceSize,
                            action);
}
