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
                wake.wait(guard, [this] { return cancelled || !items.empty(); });
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
            }
            item.function(item.context);
            if (item.release != nullptr) {
                item.release(item.context);
            }
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
    return state_ != nullptr && state_->thread.get_id() == std::this_thread::get_id();
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
        state_->wake.notify_one();
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
    state_->wake.notify_one();
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
    state_->wake.notify_one();
}
