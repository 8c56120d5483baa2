#include <DriverKit/IOLib.h>
#include <os/log.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unistd.h>

#include "host.h"
#include "internal.h"

namespace {

struct Allocations {
    std::mutex lock;
    std::map<void*, size_t> sizes;
};

Allocations& allocations()
{
    static Allocations instance;
    return instance;
}

void* allocate(size_t length, bool zero)
{
    // DriverKit returns NULL for a zero-length request (UNVERIFIED); so does this.
    if (length == 0) {
        return nullptr;
    }
    void* block = zero ? calloc(1, length) : malloc(length);
    if (block != nullptr) {
        Allocations& a = allocations();
        std::lock_guard<std::mutex> guard(a.lock);
        a.sizes[block] = length;
    }
    return block;
}

std::string vformat(const char* format, va_list args)
{
    va_list copy;
    va_copy(copy, args);
    int needed = vsnprintf(nullptr, 0, format, copy);
    va_end(copy);
    if (needed < 0) {
        return std::string("(unformattable message: ") + format + ")";
    }
    std::string out(static_cast<size_t>(needed) + 1, '\0');
    vsnprintf(&out[0], out.size(), format, args);
    out.resize(static_cast<size_t>(needed));
    return out;
}

}  // namespace

extern "C" void* IOMalloc(size_t length)
{
    return allocate(length, false);
}

extern "C" void* IOMallocZero(size_t length)
{
    return allocate(length, true);
}

extern "C" void IOFree(void* address, size_t length)
{
    if (address == nullptr) {
        return;
    }
    size_t allocated = 0;
    {
        Allocations& a = allocations();
        std::lock_guard<std::mutex> guard(a.lock);
        auto found = a.sizes.find(address);
        if (found == a.sizes.end()) {
            dextlink::runtimeError("IOFree(%p, %zu): not a block from IOMalloc (or freed twice); left alone",
                                   address, length);
            return;
        }
        allocated = found->second;
        a.sizes.erase(found);
    }
    if (allocated != length) {
        dextlink::runtimeError("IOFree(%p, %zu): the block was allocated with %zu bytes", address, length,
                               allocated);
    }
    free(address);
}

std::string dextlink::mallocLeakReport()
{
    Allocations& a = allocations();
    std::lock_guard<std::mutex> guard(a.lock);
    if (a.sizes.empty()) {
        return std::string();
    }
    size_t bytes = 0;
    for (const auto& entry : a.sizes) {
        bytes += entry.second;
    }
    return "IOMalloc: " + std::to_string(a.sizes.size()) + " block" + (a.sizes.size() == 1 ? "" : "s") + " (" +
           std::to_string(bytes) + " bytes) not freed\n";
}

void dextlink::emitLog(int type, const std::string& message)
{
    if (!dextlink::host::deliverLog(type, message.c_str())) {
        fprintf(stderr, "%s\n", message.c_str());
    }
}

void dextlink::runtimeError(const char* format, ...)
{
    va_list args;
    va_start(args, format);
    std::string message = "dextlink DriverKit runtime: " + vformat(format, args);
    va_end(args);
    emitLog(OS_LOG_TYPE_FAULT, message);
}

extern "C" void IOLog(const char* format, ...)
{
    va_list args;
    va_start(args, format);
    std::string message = vformat(format, args);
    va_end(args);
    // IOLog lines usually end in a newline; the sink gets lines without one.
    while (!message.empty() && message.back() == '\n') {
        message.pop_back();
    }
    dextlink::emitLog(OS_LOG_TYPE_DEFAULT, message);
}

extern "C" os_log_t os_log_create(const char*, const char*)
{
    // One log for everything: subsystems and categories are not modelled.
    return OS_LOG_DEFAULT;
}

// Removes Apple's `{annotation}` after each `%`, so that `%{public}s` reads
// `%s`; `%%` is left alone. An unterminated `{` is kept verbatim.
static std::string stripAnnotations(const char* format)
{
    std::string out;
    for (const char* p = format; *p != '\0'; ++p) {
        out.push_back(*p);
        if (*p != '%') {
            continue;
        }
        if (p[1] == '%') {
            out.push_back('%');
            ++p;
            continue;
        }
        if (p[1] == '{') {
            const char* close = strchr(p + 2, '}');
            if (close != nullptr) {
                p = close;
            }
        }
    }
    return out;
}

extern "C" void dextlink_os_log_with_type(os_log_t, os_log_type_t type, const char* format, ...)
{
    if (format == nullptr) {
        return;
    }
    std::string plain = stripAnnotations(format);
    va_list args;
    va_start(args, format);
    std::string message = vformat(plain.c_str(), args);
    va_end(args);
    dextlink::emitLog(type, message);
}

extern "C" uint64_t clock_gettime_nsec_np(clockid_t clock)
{
    clockid_t linuxClock;
    switch (clock) {
    case 0:  // CLOCK_REALTIME (both)
        linuxClock = CLOCK_REALTIME;
        break;
    case 1:  // Linux CLOCK_MONOTONIC
    case 8:  // Apple CLOCK_UPTIME_RAW: monotonic, stops in sleep, as Linux's CLOCK_MONOTONIC
    case 9:  // Apple CLOCK_UPTIME_RAW_APPROX
        linuxClock = CLOCK_MONOTONIC;
        break;
    case 4:  // CLOCK_MONOTONIC_RAW (both)
    case 5:  // Apple CLOCK_MONOTONIC_RAW_APPROX
        linuxClock = CLOCK_MONOTONIC_RAW;
        break;
    case 6:  // Apple CLOCK_MONOTONIC: counts sleep, as Linux's CLOCK_BOOTTIME
        linuxClock = CLOCK_BOOTTIME;
        break;
    default:
        errno = EINVAL;
        return 0;
    }
    struct timespec now;
    if (clock_gettime(linuxClock, &now) != 0) {
        return 0;
    }
    return static_cast<uint64_t>(now.tv_sec) * 1000000000ULL + static_cast<uint64_t>(now.tv_nsec);
}

extern "C" uint64_t mach_absolute_time(void)
{
    // One tick per nanosecond (mach_timebase_info would say 1/1).
    return clock_gettime_nsec_np(CLOCK_UPTIME_RAW);
}

extern "C" void IOSleep(uint64_t milliseconds)
{
    usleep(static_cast<useconds_t>(milliseconds * 1000));
}

extern "C" void IODelay(uint64_t microseconds)
{
    usleep(static_cast<useconds_t>(microseconds));
}
