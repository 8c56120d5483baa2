// Memory allocation, IOLog and the clocks, as DriverKit's IOLib.h has them.
//
// IOMalloc'd blocks are counted (the leak report lists what is still
// allocated) and IOFree checks the size it is given against the allocation,
// as DriverKit requires the size to match (UNVERIFIED what DriverKit does on
// a mismatch; this runtime reports it and frees the block anyway).
#ifndef DEXTLINK_DRIVERKIT_IOLIB_H
#define DEXTLINK_DRIVERKIT_IOLIB_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <DriverKit/IOReturn.h>

#ifdef __cplusplus
extern "C" {
#endif

void* IOMalloc(size_t length);
void* IOMallocZero(size_t length);
void IOFree(void* address, size_t length);
void IOLog(const char* format, ...) __attribute__((format(printf, 1, 2)));
void IOSleep(uint64_t milliseconds);
void IODelay(uint64_t microseconds);

// Apple's clock ids where Linux has none of that name (Linux's own
// CLOCK_REALTIME, CLOCK_MONOTONIC and CLOCK_MONOTONIC_RAW are accepted too).
#ifndef CLOCK_MONOTONIC_RAW_APPROX
#define CLOCK_MONOTONIC_RAW_APPROX 5
#endif
#ifndef CLOCK_UPTIME_RAW
#define CLOCK_UPTIME_RAW 8
#endif
#ifndef CLOCK_UPTIME_RAW_APPROX
#define CLOCK_UPTIME_RAW_APPROX 9
#endif

// Nanoseconds on `clock`, Apple's numbering; 0 (errno EINVAL) for an unknown clock.
uint64_t clock_gettime_nsec_np(clockid_t clock);
uint64_t mach_absolute_time(void);

#ifdef __cplusplus
}

template <typename T>
inline size_t DextlinkArrayBytes(size_t count)
{
    // An overflowing count allocates nothing, so IONew returns NULL.
    return count > SIZE_MAX / sizeof(T) ? 0 : sizeof(T) * count;
}

#define IONew(type, count) \
    ((count) == 0 || DextlinkArrayBytes<type>(count) == 0 ? nullptr : static_cast<type*>(IOMalloc(DextlinkArrayBytes<type>(count))))
#define IONewZero(type, count) \
    ((count) == 0 || DextlinkArrayBytes<type>(count) == 0 ? nullptr : static_cast<type*>(IOMallocZero(DextlinkArrayBytes<type>(count))))
#define IODelete(ptr, type, count) IOFree((ptr), DextlinkArrayBytes<type>(count))
#define IOSafeDeleteNULL(ptr, type, count)          \
    do {                                            \
        if ((ptr) != nullptr) {                     \
            IODelete((ptr), type, (count));         \
        }                                           \
        (ptr) = nullptr;                            \
    } while (0)
#endif

#endif
