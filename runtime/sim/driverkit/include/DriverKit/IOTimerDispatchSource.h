// Timers on the monotonic clocks, delivered to an OSAction of type
// IOTimerDispatchSource::TimerOccurred on the source's queue.
#ifndef DEXTLINK_DRIVERKIT_IOTIMERDISPATCHSOURCE_H
#define DEXTLINK_DRIVERKIT_IOTIMERDISPATCHSOURCE_H

#include <DriverKit/IODispatchSource.h>
#include <DriverKit/OSAction.h>

// The low bits are the clock id (IOLib.h), 0x40 means mach ticks (one tick
// is one nanosecond in this runtime).
enum {
    kIOTimerClockUptimeRaw = 0x88ull,
    kIOTimerClockMonotonicRaw = 0x84ull,
    kIOTimerClockRealTime = 0x80ull,
    kIOTimerClockWallTime = 0x80ull,
    kIOTimerClockMachAbsoluteTime = 0xC8ull,
    kIOTimerClockMachContinuousTime = 0xC4ull,
};

#define IOTimerDispatchSource_TimerOccurred_ID 0x0f4ab1c3cbb5ae47ULL
#define IOTimerDispatchSource_TimerOccurred_Args OSAction *action, uint64_t time

// What a TYPE(IOTimerDispatchSource::TimerOccurred) method receives.
struct IOTimerDispatchSource_TimerOccurred_Invocation {
    OSAction* action;
    uint64_t time;
};

class IOTimerDispatchSource : public IODispatchSource {
    OSDeclareDefaultStructors(IOTimerDispatchSource)
public:
    using super = IODispatchSource;

    static kern_return_t Create(IODispatchQueue* queue, IOTimerDispatchSource** source);
    // The action is retained until SetHandler is called again or the source
    // is cancelled; NULL clears it.
    kern_return_t SetHandler(OSAction* action);
    // Replaces a deadline not yet reached. `options` is a kIOTimerClock*
    // value; an unknown one is kIOReturnBadArgument. The timer fires once,
    // within `leeway` after `deadline` (this runtime fires as soon as it can).
    kern_return_t WakeAtTime(uint64_t options, uint64_t deadline, uint64_t leeway);

    kern_return_t SetEnableWithCompletionCallback(bool enable, IODispatchCallback handler) override;
    kern_return_t CancelWithCallback(IODispatchCallback handler) override;
    bool init() override;
    void free() override;

private:
    struct State;
    State* state_;
};

#endif
