#ifndef DEXTLINK_DRIVERKIT_IOBUFFERMEMORYDESCRIPTOR_H
#define DEXTLINK_DRIVERKIT_IOBUFFERMEMORYDESCRIPTOR_H

#include <DriverKit/IOMemoryDescriptor.h>

// A zeroed buffer of `capacity` bytes in a memfd. Its initial length is the
// capacity (docs/driverkit.md §5-7: the sources disagree; xnu and the docs say
// so); SetLength above the capacity is ignored, as the kernel ignores it.
class IOBufferMemoryDescriptor : public IOMemoryDescriptor {
    OSDeclareDefaultStructors(IOBufferMemoryDescriptor)
public:
    using super = IOMemoryDescriptor;

    // Options other than the direction bits are kIOReturnBadArgument (§5-7).
    static kern_return_t Create(uint64_t options, uint64_t capacity, uint64_t alignment,
                                IOBufferMemoryDescriptor** memory);
    kern_return_t GetAddressRange(IOAddressSegment* range) LOCALONLY;
    virtual kern_return_t SetLength(uint64_t length);
    uint64_t GetCapacity() const { return capacity_; }

private:
    uint64_t capacity_;
};

#endif
