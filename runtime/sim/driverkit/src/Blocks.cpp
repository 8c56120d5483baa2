// Blocks through the documented Block ABI, without compiling the runtime
// with -fblocks: a block is a Block_layout whose `invoke` takes the block
// itself. Copying and releasing need the blocks runtime (_Block_copy,
// _Block_release), which a dext built with `clang -fblocks` links
// (-lBlocksRuntime): it is looked up in the process, not linked here.
#include "blocks.h"

#include <DriverKit/IODispatchQueue.h>

#include <dlfcn.h>

#include "internal.h"

namespace {

struct BlockLayout {
    void* isa;
    int flags;
    int reserved;
    void (*invoke)(void*);
    void* descriptor;
};

constexpr int kBlockIsGlobal = 1 << 28;

typedef void* (*BlockCopyFunction)(const void*);
typedef void (*BlockReleaseFunction)(const void*);

template <typename F>
F lookup(const char* name)
{
    // SAFETY of the cast: the symbol is the blocks runtime's function of that type.
    return reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
}

}  // namespace

void* dextlink::blockCopy(const void* block)
{
    if (block == nullptr) {
        return nullptr;
    }
    const auto* layout = static_cast<const BlockLayout*>(block);
    if ((layout->flags & kBlockIsGlobal) != 0) {
        return const_cast<void*>(block);
    }
    static BlockCopyFunction copy = lookup<BlockCopyFunction>("_Block_copy");
    if (copy == nullptr) {
        runtimeError("a block was passed by code built without blocks, and no blocks runtime (_Block_copy) "
                     "is loaded in the process to copy it; the block is dropped");
        return nullptr;
    }
    return copy(block);
}

void dextlink::blockRelease(const void* block)
{
    if (block == nullptr) {
        return;
    }
    const auto* layout = static_cast<const BlockLayout*>(block);
    if ((layout->flags & kBlockIsGlobal) != 0) {
        return;
    }
    static BlockReleaseFunction release = lookup<BlockReleaseFunction>("_Block_release");
    if (release != nullptr) {
        release(block);
    }
}

void dextlink::blockInvoke(const void* block)
{
    if (block == nullptr) {
        return;
    }
    const auto* layout = static_cast<const BlockLayout*>(block);
    layout->invoke(const_cast<void*>(block));
}

namespace {

void invokeCopiedBlock(void* block)
{
    dextlink::blockInvoke(block);
}

void releaseCopiedBlock(void* block)
{
    dextlink::blockRelease(block);
}

}  // namespace

IODispatchCallback DextlinkCopyBlock(IODispatchBlock block)
{
    void* copy = dextlink::blockCopy(reinterpret_cast<const void*>(block));
    if (copy == nullptr) {
        return IODispatchCallback{nullptr, nullptr, nullptr};
    }
    return IODispatchCallback{copy, invokeCopiedBlock, releaseCopiedBlock};
}

void DextlinkInvokeBlock(void* block)
{
    dextlink::blockInvoke(block);
}

void dextlink::runCallback(IODispatchCallback callback)
{
    if (callback.function != nullptr) {
        callback.function(callback.context);
    }
    releaseCallback(callback);
}

void dextlink::releaseCallback(IODispatchCallback callback)
{
    if (callback.release != nullptr) {
        callback.release(callback.context);
    }
}
