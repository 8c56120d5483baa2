// What the runtime's source files share, and nothing a dext sees.
#ifndef DEXTLINK_DRIVERKIT_INTERNAL_H
#define DEXTLINK_DRIVERKIT_INTERNAL_H

#include <DriverKit/OSObject.h>
#include <string>

namespace dextlink {

// Writes one log line to the host's sink, or stderr when none is installed.
void emitLog(int type, const std::string& message);
// The same for messages of the runtime itself (misuse it detected).
void runtimeError(const char* format, ...) __attribute__((format(printf, 1, 2)));
// Every registered class's live count, and the outstanding IOMalloc blocks.
std::string leakReport();
std::string mallocLeakReport();

}  // namespace dextlink

#endif
