// A test-only stand-in: dextlink's DriverKit runtime has no USBDriverKit yet,
// so this declares just what `dextlink iig` output for a
// TYPE(IOUSBHostPipe::CompleteAsyncIO) method names, in the runtime's
// conventions (IIG.md): the action type's id, parameter list and invocation.
// The prototype is CompleteAsyncIO's (docs/driverkit.md §6); the id's value is
// arbitrary, as only compiling is tested.
#ifndef DEXTLINK_TEST_IOUSBHOSTPIPE_H
#define DEXTLINK_TEST_IOUSBHOSTPIPE_H

#include <DriverKit/IOService.h>

#define IOUSBHostPipe_CompleteAsyncIO_ID 0x0000000000000001ULL
#define IOUSBHostPipe_CompleteAsyncIO_Args \
    OSAction *action, IOReturn status, uint32_t actualByteCount, uint64_t completionTimestamp

struct IOUSBHostPipe_CompleteAsyncIO_Invocation {
    OSAction* action;
    IOReturn status;
    uint32_t actualByteCount;
    uint64_t completionTimestamp;
};

#endif
