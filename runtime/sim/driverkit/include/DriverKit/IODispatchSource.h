#ifndef DEXTLINK_DRIVERKIT_IODISPATCHSOURCE_H
#define DEXTLINK_DRIVERKIT_IODISPATCHSOURCE_H

#include <DriverKit/IODispatchQueue.h>

#ifdef __BLOCKS__
typedef void (^IODispatchSourceCancelHandler)(void);
#else
typedef struct DextlinkBlockLiteral* IODispatchSourceCancelHandler;
#endif

class IODispatchSource : public OSObject {
    OSDeclareDefaultStructors(IODispatchSource)
public:
    using super = OSObject;

    kern_return_t SetEnable(bool enable) { return SetEnableWithCompletion(enable, nullptr); }
    // Inline for the same reason as IODispatchQueue::DispatchAsync.
    kern_return_t SetEnableWithCompletion(bool enable, IODispatchSourceCancelHandler handler)
    {
        return SetEnableWithCompletionCallback(enable, DextlinkCopyBlock(handler));
    }
    kern_return_t Cancel(IODispatchSourceCancelHandler handler) { return CancelWithCallback(DextlinkCopyBlock(handler)); }

    // The block-free forms: the source owns `handler` (released after use).
    virtual kern_return_t SetEnableWithCompletionCallback(bool enable, IODispatchCallback handler);
    virtual kern_return_t CancelWithCallback(IODispatchCallback handler);
};

#endif
