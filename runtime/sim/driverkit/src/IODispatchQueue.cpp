#include <DriverKit/IODispatchQueue.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "blocks.h"
#include "internal.h"

struct IODispatchQueue::State {
    struct Item {
        void* context;
        IODispatchFunction function;
        IODispatchFunction release;
    };
    std::string name;
    std::mutex lock;
    std::condition_variable wake;
    std::deque<Item> items;
    // Something runs on the queue now: an item on the queue's thread, or a
    // DispatchSync block on its caller's thread (see DispatchSyncFunction).
    bool busy = false;
    // The thread running a DispatchSync block in place, while it does.
    std::thread::id inlineRunner;
    bool cancelled = false;
    // Set when the queue was freed on its own thread: the thread then
    // deletes this state when it ends.
    bool orphaned = false;
    std::thread thread;

    void run()
    {
        for (;;) {
            Item item;
            {
                std::unique_lock<std::mutex> guard(lock);
                // An item waits for a DispatchSync block running in place:
                // the queue runs one thing at a time, wherever it runs.
                wake.wait(guard, [this] { return (cancelled && items.empty()) || (!items.empty() && !busy); });
                if (items.empty()) {
                    bool deleteSelf = orphaned;
                    guard.unlock();
                    if (deleteSelf) {
                        delete this;
                    }
                    return;
                }
                item = items.front();
                items.pop_front();
                busy = true;
            }
            item.function(item.context);
            if (item.release != nullptr) {
                item.release(item.context);
            }
            {
                std::lock_guard<std::mutex> guard(lock);
                busy = false;
            }
            wake.notify_all();
        }
    }
};

OSDefineMetaClassAndStructors(IODispatchQueue, OSObject)

kern_return_t IODispatchQueue::_Dispatch(OSObject* self, const IORPC rpc)
{
    return OSObject::_Dispatch(self, rpc);
}

bool IODispatchQueue::init()
{
    if (!super::init()) {
        return false;
    }
    state_ = new State();
    state_->thread = std::thread([state = state_] { state->run(); });
    return true;
}

void IODispatchQueue::free()
{
    if (state_ != nullptr) {
        if (state_->thread.get_id() == std::this_thread::get_id()) {
            // The last reference went in one of this queue's own blocks: the
            // thread cannot join itself, so it finishes what is queued, ends
            // on its own and deletes the state (UNVERIFIED what DriverKit does).
            {
                std::lock_guard<std::mutex> guard(state_->lock);
                state_->orphaned = true;
            }
            Cancel();
            state_->thread.detach();
        } else {
            Cancel();
            state_->thread.join();
            delete state_;
        }
        state_ = nullptr;
    }
    super::free();
}

kern_return_t IODispatchQueue::Create(const IODispatchQueueName name, uint64_t, uint64_t, IODispatchQueue** queue)
{
    if (queue == nullptr) {
        return kIOReturnBadArgument;
    }
    *queue = nullptr;
    auto* created = static_cast<IODispatchQueue*>(metaClass()->alloc());
    if (created == nullptr) {
        return kIOReturnNoMemory;
    }
    if (!created->init()) {
        created->release();
        return kIOReturnNoMemory;
    }
    created->state_->name = name == nullptr ? "" : std::string(name, strnlen(name, sizeof(IODispatchQueueName)));
    *queue = created;
    return kIOReturnSuccess;
}

const char* IODispatchQueue::GetName() const
{
    return state_ == nullptr ? "" : state_->name.c_str();
}

bool IODispatchQueue::OnQueue() const
{
    if (state_ == nullptr) {
        return false;
    }
    std::thread::id self = std::this_thread::get_id();
    if (state_->thread.get_id() == self) {
        return true;
    }
    std::lock_guard<std::mutex> guard(state_->lock);
    return state_->inlineRunner == self;
}

void IODispatchQueue::DispatchAsyncFunction(void* context, IODispatchFunction function, IODispatchFunction release)
{
    if (function == nullptr) {
        return;
    }
    bool accepted = false;
    if (state_ != nullptr) {
        std::lock_guard<std::mutex> guard(state_->lock);
        if (!state_->cancelled) {
            state_->items.push_back({context, function, release});
            accepted = true;
        }
    }
    if (accepted) {
        state_->wake.notify_all();
    } else if (release != nullptr) {
        release(context);
    }
}

namespace {

struct SyncCall {
    void* context;
    IODispatchFunction function;
    std::mutex lock;
    std::condition_variable done;
    bool finished = false;
};

void runSync(void* raw)
{
    auto* call = static_cast<SyncCall*>(raw);
    call->function(call->context);
    std::lock_guard<std::mutex> guard(call->lock);
    call->finished = true;
    call->done.notify_one();
}

}  // namespace

void IODispatchQueue::DispatchSyncFunction(void* context, IODispatchFunction function)
{
    if (function == nullptr) {
        return;
    }
    if (OnQueue()) {
        // libdispatch would deadlock here; running it in place keeps the
        // order (everything before it on this queue has run) and reports it.
        dextlink::runtimeError("DispatchSync onto the queue \"%s\" from that queue itself; ran in place",
                               GetName());
        function(context);
        return;
    }
    {
        // libdispatch's fast path: a block sent to an idle queue runs on the
        // caller's thread, still one at a time with the queue's other work
        // (the queue is busy until it returns, and its thread waits). This
        // keeps a host's call into a dext from costing two thread hand-offs,
        // while everything queued before it has run and nothing runs beside it.
        std::unique_lock<std::mutex> guard(state_->lock);
        if (state_->cancelled) {
            return;
        }
        if (!state_->busy && state_->items.empty()) {
            state_->busy = true;
            state_->inlineRunner = std::this_thread::get_id();
            guard.unlock();
            function(context);
            guard.lock();
            state_->inlineRunner = std::thread::id();
            state_->busy = false;
            guard.unlock();
            state_->wake.notify_all();
            return;
        }
    }
    SyncCall call;
    call.context = context;
    call.function = function;
    {
        std::unique_lock<std::mutex> guard(state_->lock);
        if (state_->cancelled) {
            return;
        }
        state_->items.push_back({&call, runSync, nullptr});
    }
    state_->wake.notify_all();
    std::unique_lock<std::mutex> guard(call.lock);
    call.done.wait(guard, [&call] { return call.finished; });
}

void IODispatchQueue::Cancel()
{
    if (state_ == nullptr) {
        return;
    }
    {
        std::lock_guard<std::mutex> guard(state_->lock);
        state_->cancelled = true;
    }
    state_->wake.notify_all();
}
