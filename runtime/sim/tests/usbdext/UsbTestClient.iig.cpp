/* Generated per dextlink's iig contract (IIG.md) from UsbTestClient.iig; written by hand. */
#include "UsbTestClient.h"

OSDefineMetaClassAndStructors(UsbTestClient, IOUserClient)

kern_return_t UsbTestClient::_Dispatch(OSObject* self, const IORPC rpc)
{
    UsbTestClient* object = static_cast<UsbTestClient*>(self);
    switch (rpc.methodID) {
    case IOUserClient_CopyClientMemoryForType_ID: {
        IOUserClient_CopyClientMemoryForType_Invocation* a =
            static_cast<IOUserClient_CopyClientMemoryForType_Invocation*>(rpc.arguments);
        return object->UsbTestClient::CopyClientMemoryForType_Impl(a->type, a->options, a->memory);
    }
    default:
        return super::_Dispatch(self, rpc);
    }
}
