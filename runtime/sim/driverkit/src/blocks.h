#ifndef DEXTLINK_DRIVERKIT_BLOCKS_H
#define DEXTLINK_DRIVERKIT_BLOCKS_H

#include <DriverKit/IODispatchQueue.h>

namespace dextlink {

// Runs a callback (if it has a function), then releases it.
void runCallback(IODispatchCallback callback);
void releaseCallback(IODispatchCallback callback);

// A heap copy of a `void (^)(void)` block (the same pointer for a global
// block); NULL when no blocks runtime is loaded (reported).
void* blockCopy(const void* block);
void blockRelease(const void* block);
// Calls a `void (^)(void)` block.
void blockInvoke(const void* block);

}  // namespace dextlink

#endif
