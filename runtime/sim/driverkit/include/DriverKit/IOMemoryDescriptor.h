// Memory descriptors backed by a memfd, so that the host can hand the same
// bytes to a client in another process (docs/driverkit.md §5).
#ifndef DEXTLINK_DRIVERKIT_IOMEMORYDESCRIPTOR_H
#define DEXTLINK_DRIVERKIT_IOMEMORYDESCRIPTOR_H

#include <DriverKit/OSObject.h>

class IOMemoryMap;

struct IOAddressSegment {
    uint64_t address;
    uint64_t length;
};

class IOMemoryDescriptor : public OSObject {
    OSDeclareDefaultStructors(IOMemoryDescriptor)
public:
    using super = OSObject;

    kern_return_t GetLength(uint64_t* returnLength) LOCALONLY;
    // Maps [offset, offset + length) of the descriptor (length 0: all of it
    // from `offset`). Options: kIOMemoryMapReadOnly (the map is PROT_READ);
    // cache modes are accepted and mean nothing here; an unknown cache mode,
    // kIOMemoryMapFixedAddress, a non-zero alignment or a range outside the
    // descriptor is kIOReturnBadArgument (docs/driverkit.md §5-6).
    kern_return_t CreateMapping(uint64_t options, uint64_t address, uint64_t offset, uint64_t length,
                                uint64_t alignment, IOMemoryMap** map);
    // [offset, offset + length) of `ofDescriptor`, sharing its bytes.
    static kern_return_t CreateSubMemoryDescriptor(uint64_t memoryDescriptorCreateOptions, uint64_t offset,
                                                   uint64_t length, IOMemoryDescriptor* ofDescriptor,
                                                   IOMemoryDescriptor** memory);

    // Runtime and host use: where the bytes are.
    int GetBackingFD() const;
    uint64_t GetBackingOffset() const;
    // The bytes in this process (read-write), or NULL for an empty descriptor.
    void* GetBackingAddress() const;
    // Every mapping of this descriptor is read-only (what the kernel does for
    // a kIODirectionOut descriptor it made from a client's buffer, §3.3-4).
    void SetMappingsReadOnlyInternal(bool readOnly);

    void free() override;

protected:
    friend class IOBufferMemoryDescriptor;
    struct Backing;
    Backing* backing_;
    uint64_t offset_;
    uint64_t length_;
    uint64_t direction_;
    bool mappingsReadOnly_;
    IOMemoryDescriptor* parent_;
};

#endif
