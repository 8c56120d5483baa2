#include <DriverKit/IOService.h>
#include <DriverKit/OSAction.h>

#include <cstdlib>
#include <cstring>

#include "blocks.h"
#include "internal.h"

OSDefineMetaClassAndStructors(OSAction, OSObject)

kern_return_t OSAction::_Dispatch(OSObject* self, const IORPC rpc)
{
    return OSObject::_Dispatch(self, rpc);
}

kern_return_t OSAction::Create(OSObject* target, uint64_t targetmsgid, uint64_t msgid, size_t referenceSize,
                               OSAction** action)
{
    if (action == nullptr) {
        return kIOReturnBadArgument;
    }
    *action = nullptr;
    if (target == nullptr) {
        return kIOReturnBadArgument;
    }
    auto* created = static_cast<OSAction*>(metaClass()->alloc());
    if (created == nullptr || !created->init()) {
        if (created != nullptr) {
            created->release();
        }
        return kIOReturnNoMemory;
    }
    if (referenceSize > 0) {
        created->reference_ = calloc(1, referenceSize);
        if (created->reference_ == nullptr) {
            created->release();
            return kIOReturnNoMemory;
        }
    }
    // The action keeps its target alive (UNVERIFIED: DriverKit's actions
    // reference their target too, as the samples' release order suggests).
    target->retain();
    created->target_ = target;
    created->targetmsgid_ = targetmsgid;
    created->msgid_ = msgid;
    created->referenceSize_ = referenceSize;
    *action = created;
    return kIOReturnSuccess;
}

void* OSAction::GetReference()
{
    return reference_;
}

bool OSAction::IsCancelled() const
{
    return __atomic_load_n(&cancelled_, __ATOMIC_ACQUIRE) != 0;
}

namespace {

struct PendingInvocation {
    OSAction* action;
    OSObject* target;
    uint64_t methodID;
    size_t size;
    unsigned char bytes[1];
};

void runInvocation(void* raw)
{
    auto* pending = static_cast<PendingInvocation*>(raw);
    if (!pending->action->IsCancelled()) {
        IORPC rpc = {pending->methodID, pending->bytes};
        kern_return_t result = pending->target->Dispatch(rpc);
        if (result == kIOReturnUnsupported) {
            dextlink::runtimeError("an OSAction's method 0x%llx is not dispatched by %s (its _Dispatch has no "
                                   "case for it)",
                                   static_cast<unsigned long long>(pending->methodID),
                                   pending->target->getMetaClass()->getClassName());
        }
    }
}

void releaseInvocation(void* raw)
{
    auto* pending = static_cast<PendingInvocation*>(raw);
    pending->action->release();
    free(pending);
}

// The queue an action's method runs on: its target's default queue.
IODispatchQueue* copyTargetQueue(OSObject* target)
{
    IODispatchQueue* queue = nullptr;
    if (OSDynamicCast(IOService, target) == nullptr ||
        target->CopyDispatchQueue(kIOServiceDefaultQueueName, &queue) != kIOReturnSuccess) {
        return nullptr;
    }
    return queue;
}

}  // namespace

kern_return_t OSAction::Invoke(const void* invocation, size_t invocationSize)
{
    if (IsCancelled()) {
        return kIOReturnAborted;
    }
    auto* pending = static_cast<PendingInvocation*>(malloc(sizeof(PendingInvocation) + invocationSize));
    if (pending == nullptr) {
        return kIOReturnNoMemory;
    }
    retain();
    pending->action = this;
    pending->target = target_;
    pending->methodID = targetmsgid_;
    pending->size = invocationSize;
    if (invocationSize > 0) {
        memcpy(pending->bytes, invocation, invocationSize);
    }
    IODispatchQueue* queue = copyTargetQueue(target_);
    if (queue != nullptr) {
        queue->DispatchAsyncFunction(pending, runInvocation, releaseInvocation);
        queue->release();
    } else {
        runInvocation(pending);
        releaseInvocation(pending);
    }
    return kIOReturnSuccess;
}

kern_return_t OSAction::CancelWithCallback(IODispatchCallback handler)
{
    __atomic_store_n(&cancelled_, 1, __ATOMIC_RELEASE);
    if (handler.function == nullptr) {
        dextlink::releaseCallback(handler);
        return kIOReturnSuccess;
    }
    // The handler runs after the invocations already queued on the target's
    // queue, so that it is the last thing the action does.
    IODispatchQueue* queue = copyTargetQueue(target_);
    if (queue != nullptr) {
        queue->DispatchAsyncFunction(handler.context, handler.function, handler.release);
        queue->release();
    } else {
        dextlink::runCallback(handler);
    }
    return kIOReturnSuccess;
}

kern_return_t OSAction::SetAbortedHandlerWithCallback(IODispatchCallback handler)
{
    dextlink::releaseCallback(abortedHandler_);
    // Kept for the action's lifetime; this runtime never aborts an action by
    // itself (UNVERIFIED when DriverKit does: when the client goes away).
    abortedHandler_ = handler;
    return kIOReturnSuccess;
}

void OSAction::free()
{
    dextlink::releaseCallback(abortedHandler_);
    abortedHandler_ = IODispatchCallback{nullptr, nullptr, nullptr};
    ::free(reference_);
    reference_ = nullptr;
    OSSafeReleaseNULL(target_);
    super::free();
}
