// Basic DriverKit types and the option bits this runtime understands.
#ifndef DEXTLINK_DRIVERKIT_IOTYPES_H
#define DEXTLINK_DRIVERKIT_IOTYPES_H

#include <stddef.h>
#include <stdint.h>
#include <DriverKit/IOReturn.h>

typedef uint32_t IOOptionBits;
typedef uint64_t IOVirtualAddress;
typedef uint64_t IOByteCount;
typedef uint64_t IOPhysicalAddress;

// IOMemoryDescriptor directions (docs/driverkit.md §5).
enum {
    kIOMemoryDirectionNone = 0x00000000,
    kIOMemoryDirectionIn = 0x00000001,
    kIOMemoryDirectionOut = 0x00000002,
    kIOMemoryDirectionOutIn = 0x00000003,
    kIOMemoryDirectionInOut = kIOMemoryDirectionOutIn,
    kIOMemoryDisableCopyOnWrite = 0x00000010,
};

// CreateMapping options (docs/driverkit.md §5-6).
enum {
    kIOMemoryMapFixedAddress = 0x00000001,
    kIOMemoryMapReadOnly = 0x00000002,
    kIOMemoryMapGuardedMask = 0x0000001C,
    kIOMemoryMapGuardedDefault = 0x00000000,
    kIOMemoryMapGuardedNone = 0x00000004,
    kIOMemoryMapGuardedSmall = 0x00000008,
    kIOMemoryMapGuardedLarge = 0x0000000C,
    kIOMemoryMapCacheModeDefault = 0x00000000,
    kIOMemoryMapCacheModeInhibit = 0x00000100,
    kIOMemoryMapCacheModeCopyback = 0x00000200,
    kIOMemoryMapCacheModeWriteThrough = 0x00000400,
    kIOMemoryMapCacheModeRealTime = 0x00000800,
};

#endif
