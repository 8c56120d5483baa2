// The host's callbacks, as the runtime's own code reaches them.
#ifndef DEXTLINK_DRIVERKIT_HOST_INTERNAL_H
#define DEXTLINK_DRIVERKIT_HOST_INTERNAL_H

#include <stdint.h>

#include <DriverKit/IODispatchQueue.h>
#include <DriverKit/IOService.h>
#include <DriverKit/OSDictionary.h>

namespace dextlink {
namespace host {

// False when no sink is installed (the caller then writes to stderr).
bool deliverLog(int type, const char* message);
void deliverCompletion(uint64_t reference, int32_t status, const uint64_t* values, uint32_t count);

// Runs `work` on the service's queue named `queueName` (NULL: the default
// queue), or its default queue when it has no such queue, and waits:
// DriverKit runs a service's methods on its queues (docs/driverkit.md
// §2.2-11), so a dext's timer handlers and its external methods never run at
// the same time.
template <typename Work>
void runOnQueue(IOService* service, const char* queueName, Work work)
{
    IODispatchQueue* queue = nullptr;
    if (queueName == nullptr || service->CopyDispatchQueue(queueName, &queue) != kIOReturnSuccess) {
        service->CopyDispatchQueue(kIOServiceDefaultQueueName, &queue);
    }
    if (queue == nullptr) {
        work();
        return;
    }
    queue->DispatchSyncFunction(&work, [](void* context) { (*static_cast<Work*>(context))(); });
    queue->release();
}

// Makes the service a personality names (its "IOUserClass", with the
// personality as its properties) on `provider`, then init and Start on its
// queue. kIOReturnBadArgument without IOUserClass or for a class that is not
// a service (or is a user client), kIOReturnNotFound for an unknown class,
// kIOReturnNoMemory when init fails, or Start's own error; `*service` holds
// the started service (one reference) on success.
kern_return_t startService(OSDictionary* properties, IOService* provider, IOService** service);

}  // namespace host
}  // namespace dextlink

// Implemented in Rust (dextlink_sim::rules), the one copy of DriverKit's
// dispatch checks (docs/driverkit.md §2.2): kIOReturnSuccess when the entry's
// function may run, else the error to return. `checks` NULL: no entry.
struct dextlink_dispatch_checks {
    uint32_t completion_exists;
    uint32_t scalar_input_count;
    uint32_t structure_input_size;
    uint32_t scalar_output_count;
    uint32_t structure_output_size;
};
struct dextlink_call_shape {
    uint32_t has_completion;
    uint64_t scalar_input_count;
    uint64_t structure_input_length;
    uint64_t scalar_output_count;
    uint64_t structure_output_maximum_size;
};
extern "C" int32_t dextlink_driverkit_check_dispatch(const dextlink_dispatch_checks* checks,
                                                     const dextlink_call_shape* shape);

#endif
