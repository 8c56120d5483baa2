// OSAction: a target object, the method to call on it, and a reference
// area of the size asked for at creation. An action may be invoked any number
// of times (docs/driverkit.md §9-7) until it is cancelled.
#ifndef DEXTLINK_DRIVERKIT_OSACTION_H
#define DEXTLINK_DRIVERKIT_OSACTION_H

#include <DriverKit/IODispatchQueue.h>

#ifdef __BLOCKS__
typedef void (^OSActionCancelHandler)(void);
typedef void (^OSActionAbortedHandler)(void);
#else
typedef struct DextlinkBlockLiteral* OSActionCancelHandler;
typedef struct DextlinkBlockLiteral* OSActionAbortedHandler;
#endif

class OSAction : public OSObject {
    OSDeclareDefaultStructors(OSAction)
public:
    using super = OSObject;

    // `targetmsgid` names the method of `target` the action calls (its
    // <Class>_<Method>_ID, what CreateAction<Method> passes); `msgid` the
    // method type it was made for (e.g. IOTimerDispatchSource_TimerOccurred_ID).
    static kern_return_t Create(OSObject* target, uint64_t targetmsgid, uint64_t msgid, size_t referenceSize,
                                OSAction** action);
    // The zeroed reference area (NULL if its size was 0).
    void* GetReference();
    OSObject* GetTarget() const { return target_; }
    uint64_t GetMsgID() const { return msgid_; }
    uint64_t GetTargetMsgID() const { return targetmsgid_; }
    // After Cancel, invocations do nothing; `handler` (may be NULL) runs once
    // on the target's default queue when the cancellation is done.
    kern_return_t Cancel(OSActionCancelHandler handler) { return CancelWithCallback(DextlinkCopyBlock(handler)); }
    kern_return_t SetAbortedHandler(OSActionAbortedHandler handler)
    {
        return SetAbortedHandlerWithCallback(DextlinkCopyBlock(handler));
    }
    // The block-free forms: the action owns `handler` (released after use).
    kern_return_t CancelWithCallback(IODispatchCallback handler);
    kern_return_t SetAbortedHandlerWithCallback(IODispatchCallback handler);
    bool IsCancelled() const;

    // Runtime use: runs the target's method (targetmsgid) with a copy of
    // `invocation` as its arguments, on the target's default queue (an
    // IOService's) or else on the calling thread; nothing once cancelled.
    kern_return_t Invoke(const void* invocation, size_t invocationSize);

    void free() override;

private:
    OSObject* target_;
    uint64_t targetmsgid_;
    uint64_t msgid_;
    void* reference_;
    size_t referenceSize_;
    int cancelled_;
    IODispatchCallback abortedHandler_;
};

#endif
