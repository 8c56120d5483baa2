#ifndef DEXTLINK_DRIVERKIT_IOMEMORYMAP_H
#define DEXTLINK_DRIVERKIT_IOMEMORYMAP_H

#include <DriverKit/OSObject.h>

class IOMemoryDescriptor;

// A mapping of a descriptor into this process, unmapped when released.
class IOMemoryMap : public OSObject {
    OSDeclareDefaultStructors(IOMemoryMap)
public:
    using super = OSObject;

    uint64_t GetAddress() LOCALONLY;
    uint64_t GetLength() LOCALONLY;
    // The offset of the mapping in its descriptor.
    uint64_t GetOffset() LOCALONLY;
    // The options it was made with, kIOMemoryMapReadOnly set when the pages
    // are read-only (asked for, or forced by the descriptor).
    uint64_t GetOptions() const { return options_; }

    // Runtime use.
    static IOMemoryMap* CreateInternal(IOMemoryDescriptor* descriptor, void* region, uint64_t regionLength,
                                       uint64_t address, uint64_t offset, uint64_t length, uint64_t options);
    void free() override;

private:
    IOMemoryDescriptor* descriptor_;
    void* region_;
    uint64_t regionLength_;
    uint64_t address_;
    uint64_t offset_;
    uint64_t length_;
    uint64_t options_;
};

#endif
