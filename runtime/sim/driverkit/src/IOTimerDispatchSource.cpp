#include <DriverKit/IOLib.h>
#include <DriverKit/IOTimerDispatchSource.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "blocks.h"
#include "internal.h"

OSDefineMetaClassAndAbstractStructors(IODispatchSource, OSObject)

kern_return_t IODispatchSource::_Dispatch(OSObject* self, const IORPC rpc)
{
    return OSObject::_Dispatch(self, rpc);
}

kern_return_t IODispatchSource::SetEnableWithCompletionCallback(bool, IODispatchCallback handler)
{
    dextlink::releaseCallback(handler);
    return kIOReturnUnsupported;
}

kern_return_t IODispatchSource::CancelWithCallback(IODispatchCallback handler)
{
    dextlink::releaseCallback(handler);
    return kIOReturnUnsupported;
}

OSDefineMetaClassAndStructors(IOTimerDispatchSource, IODispatchSource)

kern_return_t IOTimerDispatchSource::_Dispatch(OSObject* self, const IORPC rpc)
{
    return IODispatchSource::_Dispatch(self, rpc);
}

// One waiting thread per source: it sleeps until the deadline (measured on
// CLOCK_MONOTONIC, converted from the deadline's clock when it is set), then
// queues the handler's invocation on the source's queue.
struct IOTimerDispatchSource::State {
    std::mutex lock;
    std::condition_variable wake;
    IODispatchQueue* queue = nullptr;
    OSAction* handler = nullptr;
    bool armed = false;
    // UNVERIFIED whether a new source starts enabled; the samples call
    // SetEnable(true) after WakeAtTime, which works either way.
    bool enabled = true;
    bool cancelled = false;
    bool exiting = false;
    // Set when the source was freed on its own thread (see free()).
    bool orphaned = false;
    uint64_t clock = 0;
    uint64_t monotonicDeadline = 0;
    std::thread thread;

    void run()
    {
        std::unique_lock<std::mutex> guard(lock);
        while (!exiting) {
            if (!armed || !enabled || cancelled) {
                wake.wait(guard);
                continue;
            }
            uint64_t now = clock_gettime_nsec_np(CLOCK_MONOTONIC);
            if (now < monotonicDeadline) {
                wake.wait_for(guard, std::chrono::nanoseconds(monotonicDeadline - now));
                continue;
            }
            armed = false;
            OSAction* action = handler;
            if (action == nullptr) {
                continue;
            }
            action->retain();
            IODispatchQueue* target = queue;
            target->retain();
            uint64_t firedAt = clock_gettime_nsec_np(static_cast<clockid_t>(clock & 0x3f));
            guard.unlock();
            IOTimerDispatchSource_TimerOccurred_Invocation invocation = {action, firedAt};
            deliver(target, action, invocation);
            target->release();
            action->release();
            guard.lock();
        }
        bool deleteSelf = orphaned;
        guard.unlock();
        if (deleteSelf) {
            delete this;
        }
    }

    static void deliver(IODispatchQueue* target, OSAction* action,
                        const IOTimerDispatchSource_TimerOccurred_Invocation& invocation);
};

namespace {

struct TimerDelivery {
    OSAction* action;
    IOTimerDispatchSource_TimerOccurred_Invocation invocation;
};

void runDelivery(void* raw)
{
    auto* delivery = static_cast<TimerDelivery*>(raw);
    if (!delivery->action->IsCancelled()) {
        IORPC rpc = {delivery->action->GetTargetMsgID(), &delivery->invocation};
        delivery->action->GetTarget()->Dispatch(rpc);
    }
}

void releaseDelivery(void* raw)
{
    auto* delivery = static_cast<TimerDelivery*>(raw);
    delivery->action->release();
    delete delivery;
}

}  // namespace

void IOTimerDispatchSource::State::deliver(IODispatchQueue* target, OSAction* action,
                                           const IOTimerDispatchSource_TimerOccurred_Invocation& invocation)
{
    auto* delivery = new TimerDelivery{action, invocation};
    action->retain();
    target->DispatchAsyncFunction(delivery, runDelivery, releaseDelivery);
}

bool IOTimerDispatchSource::init()
{
    if (!super::init()) {
        return false;
    }
    state_ = new State();
    state_->thread = std::thread([state = state_] { state->run(); });
    return true;
}

void IOTimerDispatchSource::free()
{
    if (state_ != nullptr) {
        // The last reference can go on the timer's own thread (the release
        // of a handler's action can free its target, and the target this
        // source): that thread cannot join itself, so it deletes the state.
        const bool ownThread = state_->thread.get_id() == std::this_thread::get_id();
        OSAction* handler;
        IODispatchQueue* queue;
        {
            std::lock_guard<std::mutex> guard(state_->lock);
            state_->exiting = true;
            state_->orphaned = ownThread;
            handler = state_->handler;
            queue = state_->queue;
            state_->handler = nullptr;
            state_->queue = nullptr;
        }
        state_->wake.notify_all();
        if (ownThread) {
            state_->thread.detach();
        } else {
            state_->thread.join();
            delete state_;
        }
        state_ = nullptr;
        OSSafeReleaseNULL(handler);
        OSSafeReleaseNULL(queue);
    }
    super::free();
}

kern_return_t IOTimerDispatchSource::Create(IODispatchQueue* queue, IOTimerDispatchSource** source)
{
    if (source == nullptr) {
        return kIOReturnBadArgument;
    }
    *source = nullptr;
    if (queue == nullptr) {
        return kIOReturnBadArgument;
    }
    auto* created = static_cast<IOTimerDispatchSource*>(metaClass()->alloc());
    if (created == nullptr || !created->init()) {
        if (created != nullptr) {
            created->release();
        }
        return kIOReturnNoMemory;
    }
    queue->retain();
    created->state_->queue = queue;
    *source = created;
    return kIOReturnSuccess;
}

kern_return_t IOTimerDispatchSource::SetHandler(OSAction* action)
{
    if (action != nullptr && action->GetMsgID() != IOTimerDispatchSource_TimerOccurred_ID) {
        dextlink::runtimeError("IOTimerDispatchSource::SetHandler: the action was not made for "
                               "IOTimerDispatchSource::TimerOccurred");
        return kIOReturnBadArgument;
    }
    if (action != nullptr) {
        action->retain();
    }
    OSAction* previous;
    {
        std::lock_guard<std::mutex> guard(state_->lock);
        previous = state_->handler;
        state_->handler = action;
    }
    if (previous != nullptr) {
        previous->release();
    }
    return kIOReturnSuccess;
}

kern_return_t IOTimerDispatchSource::WakeAtTime(uint64_t options, uint64_t deadline, uint64_t)
{
    const uint64_t clock = options & 0xff;
    if (clock != kIOTimerClockUptimeRaw && clock != kIOTimerClockMonotonicRaw && clock != kIOTimerClockRealTime &&
        clock != kIOTimerClockMachAbsoluteTime && clock != kIOTimerClockMachContinuousTime) {
        return kIOReturnBadArgument;
    }
    // The deadline as a distance from now on its own clock, then as a
    // deadline on the clock this thread waits with.
    uint64_t now = clock_gettime_nsec_np(static_cast<clockid_t>(clock & 0x3f));
    uint64_t delay = deadline > now ? deadline - now : 0;
    {
        std::lock_guard<std::mutex> guard(state_->lock);
        if (state_->cancelled) {
            return kIOReturnAborted;
        }
        state_->clock = clock;
        state_->monotonicDeadline = clock_gettime_nsec_np(CLOCK_MONOTONIC) + delay;
        state_->armed = true;
    }
    state_->wake.notify_all();
    return kIOReturnSuccess;
}

kern_return_t IOTimerDispatchSource::SetEnableWithCompletionCallback(bool enable, IODispatchCallback handler)
{
    {
        std::lock_guard<std::mutex> guard(state_->lock);
        state_->enabled = enable;
    }
    state_->wake.notify_all();
    if (handler.function != nullptr) {
        // After the handlers already queued, as the header promises.
        state_->queue->DispatchAsyncFunction(handler.context, handler.function, handler.release);
    } else {
        dextlink::releaseCallback(handler);
    }
    return kIOReturnSuccess;
}

kern_return_t IOTimerDispatchSource::CancelWithCallback(IODispatchCallback handler)
{
    OSAction* previous;
    {
        std::lock_guard<std::mutex> guard(state_->lock);
        state_->cancelled = true;
        state_->armed = false;
        previous = state_->handler;
        state_->handler = nullptr;
    }
    state_->wake.notify_all();
    if (previous != nullptr) {
        previous->release();
    }
    if (handler.function != nullptr) {
        state_->queue->DispatchAsyncFunction(handler.context, handler.function, handler.release);
    } else {
        dextlink::releaseCallback(handler);
    }
    return kIOReturnSuccess;
}
