#ifndef DEXTLINK_DRIVERKIT_RUNTIME_H
#define DEXTLINK_DRIVERKIT_RUNTIME_H

#include <stdint.h>

namespace dextlink {

// The method id of the action the host makes for an async call (the
// kernel's KernelCompletion): AsyncCompletion sends to the host with it.
constexpr uint64_t kHostCompletionMethodID = 0x646578746c696e6bULL;

// The reference area of such an action.
struct HostCompletionReference {
    uint64_t reference;
};

}  // namespace dextlink

#endif
