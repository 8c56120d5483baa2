// Serial dispatch queues: one thread each, blocks run one at a time in
// submission order (docs/driverkit.md §2.2-11).
#ifndef DEXTLINK_DRIVERKIT_IODISPATCHQUEUE_H
#define DEXTLINK_DRIVERKIT_IODISPATCHQUEUE_H

#include <DriverKit/OSObject.h>

#ifdef __BLOCKS__
typedef void (^IODispatchBlock)(void);
#else
// Without blocks (g++), a block is only passed through: a pointer to its
// Block ABI layout (Block_layout).
typedef struct DextlinkBlockLiteral* IODispatchBlock;
#endif

// The block-free form the runtime and the host use: `function(context)` runs
// on the queue, then `release(context)` if given.
typedef void (*IODispatchFunction)(void* context);

// A block as the runtime keeps one: a context with its call and release.
struct IODispatchCallback {
    void* context;
    IODispatchFunction function;
    IODispatchFunction release;
};

#ifdef __BLOCKS__
#include <Block.h>
// Code built with blocks copies and releases its blocks itself (the blocks
// runtime it links), so the runtime never needs one.
inline void DextlinkInvokeBlock(void* block)
{
    ((void (^)(void))block)();
}
inline void DextlinkReleaseBlock(void* block)
{
    _Block_release(block);
}
inline IODispatchCallback DextlinkCopyBlock(void (^block)(void))
{
    if (block == nullptr) {
        return IODispatchCallback{nullptr, nullptr, nullptr};
    }
    return IODispatchCallback{(void*)_Block_copy(block), DextlinkInvokeBlock, DextlinkReleaseBlock};
}
#else
// Without blocks a block can only be passed on: called through its Block
// ABI layout's `invoke`, copied with the process's _Block_copy if any.
IODispatchCallback DextlinkCopyBlock(IODispatchBlock block);
void DextlinkInvokeBlock(void* block);
#endif

class IODispatchQueue : public OSObject {
    OSDeclareDefaultStructors(IODispatchQueue)
public:
    using super = OSObject;

    static kern_return_t Create(const IODispatchQueueName name, uint64_t options, uint64_t priority,
                                IODispatchQueue** queue);
    // Inline, so that one runtime serves code built with and without blocks
    // (the two spell a block's type differently).
    void DispatchAsync(IODispatchBlock block)
    {
        IODispatchCallback callback = DextlinkCopyBlock(block);
        DispatchAsyncFunction(callback.context, callback.function, callback.release);
    }
    // The caller waits, so its block stays alive: no copy.
    void DispatchSync(IODispatchBlock block) { DispatchSyncFunction((void*)block, DextlinkInvokeBlock); }

    void DispatchAsyncFunction(void* context, IODispatchFunction function, IODispatchFunction release = nullptr);
    void DispatchSyncFunction(void* context, IODispatchFunction function);
    // True on this queue's own thread.
    bool OnQueue() const;
    const char* GetName() const;
    // Finishes the blocks already queued, then ends the thread; later
    // submissions are dropped (and released).
    void Cancel();

    bool init() override;
    void free() override;

private:
    struct State;
    State* state_;
};

#endif
