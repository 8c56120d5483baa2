#include <DriverKit/IOBufferMemoryDescriptor.h>
#include <DriverKit/IOMemoryDescriptor.h>
#include <DriverKit/IOMemoryMap.h>

#include <cerrno>
#include <cstring>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

// The memfd and the runtime's own read-write mapping of all of it, shared by
// a buffer and its sub-descriptors (each holds a reference on its parent).
struct IOMemoryDescriptor::Backing {
    int fd = -1;
    void* address = nullptr;
    uint64_t size = 0;
};

OSDefineMetaClassAndStructors(IOMemoryDescriptor, OSObject)

kern_return_t IOMemoryDescriptor::_Dispatch(OSObject* self, const IORPC rpc)
{
    return OSObject::_Dispatch(self, rpc);
}

OSDefineMetaClassAndStructors(IOBufferMemoryDescriptor, IOMemoryDescriptor)

kern_return_t IOBufferMemoryDescriptor::_Dispatch(OSObject* self, const IORPC rpc)
{
    return IOMemoryDescriptor::_Dispatch(self, rpc);
}

OSDefineMetaClassAndStructors(IOMemoryMap, OSObject)

kern_return_t IOMemoryMap::_Dispatch(OSObject* self, const IORPC rpc)
{
    return OSObject::_Dispatch(self, rpc);
}

static uint64_t pageSize()
{
    long size = sysconf(_SC_PAGESIZE);
    return size > 0 ? static_cast<uint64_t>(size) : 4096;
}

kern_return_t IOMemoryDescriptor::GetLength(uint64_t* returnLength)
{
    if (returnLength == nullptr) {
        return kIOReturnBadArgument;
    }
    *returnLength = length_;
    return kIOReturnSuccess;
}

int IOMemoryDescriptor::GetBackingFD() const
{
    return backing_ == nullptr ? -1 : backing_->fd;
}

uint64_t IOMemoryDescriptor::GetBackingOffset() const
{
    return offset_;
}

void* IOMemoryDescriptor::GetBackingAddress() const
{
    if (backing_ == nullptr || backing_->address == nullptr) {
        return nullptr;
    }
    return static_cast<unsigned char*>(backing_->address) + offset_;
}

void IOMemoryDescriptor::SetMappingsReadOnlyInternal(bool readOnly)
{
    mappingsReadOnly_ = readOnly;
}

kern_return_t IOMemoryDescriptor::CreateMapping(uint64_t options, uint64_t address, uint64_t offset,
                                                uint64_t length, uint64_t alignment, IOMemoryMap** map)
{
    if (map == nullptr) {
        return kIOReturnBadArgument;
    }
    *map = nullptr;
    const uint64_t cacheMode = options & 0xf00;
    if (cacheMode != kIOMemoryMapCacheModeDefault && cacheMode != kIOMemoryMapCacheModeInhibit &&
        cacheMode != kIOMemoryMapCacheModeCopyback && cacheMode != kIOMemoryMapCacheModeWriteThrough &&
        cacheMode != kIOMemoryMapCacheModeRealTime) {
        return kIOReturnBadArgument;
    }
    // "Only zero for no alignment is supported"; a fixed address is not
    // offered by this runtime (UNVERIFIED what DriverKit does with one).
    if (alignment != 0 || (options & kIOMemoryMapFixedAddress) != 0 || address != 0) {
        return kIOReturnBadArgument;
    }
    if (offset > length_) {
        return kIOReturnBadArgument;
    }
    if (length == 0) {
        length = length_ - offset;
    }
    if (length > length_ - offset || length == 0 || backing_ == nullptr) {
        return kIOReturnBadArgument;
    }
    const bool readOnly = (options & kIOMemoryMapReadOnly) != 0 || mappingsReadOnly_;
    // A mapping of its own (not the runtime's), so that a read-only one
    // really is read-only: mmap needs a page-aligned file offset.
    const uint64_t fileOffset = offset_ + offset;
    const uint64_t page = pageSize();
    const uint64_t start = fileOffset - fileOffset % page;
    const uint64_t regionLength = fileOffset + length - start;
    void* region = mmap(nullptr, regionLength, readOnly ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED,
                        backing_->fd, static_cast<off_t>(start));
    if (region == MAP_FAILED) {
        return kIOReturnError;
    }
    uint64_t mapOptions = options | (readOnly ? kIOMemoryMapReadOnly : 0);
    IOMemoryMap* created = IOMemoryMap::CreateInternal(
        this, region, regionLength, reinterpret_cast<uint64_t>(region) + (fileOffset - start), offset, length,
        mapOptions);
    if (created == nullptr) {
        munmap(region, regionLength);
        return kIOReturnNoMemory;
    }
    *map = created;
    return kIOReturnSuccess;
}

kern_return_t IOMemoryDescriptor::CreateSubMemoryDescriptor(uint64_t memoryDescriptorCreateOptions, uint64_t offset,
                                                            uint64_t length, IOMemoryDescriptor* ofDescriptor,
                                                            IOMemoryDescriptor** memory)
{
    if (memory == nullptr) {
        return kIOReturnBadArgument;
    }
    *memory = nullptr;
    if (ofDescriptor == nullptr || (memoryDescriptorCreateOptions & ~static_cast<uint64_t>(kIOMemoryDirectionOutIn)) != 0 ||
        offset > ofDescriptor->length_ || length > ofDescriptor->length_ - offset) {
        return kIOReturnBadArgument;
    }
    auto* created = static_cast<IOMemoryDescriptor*>(metaClass()->alloc());
    if (created == nullptr || !created->init()) {
        if (created != nullptr) {
            created->release();
        }
        return kIOReturnNoMemory;
    }
    ofDescriptor->retain();
    created->parent_ = ofDescriptor;
    created->backing_ = ofDescriptor->backing_;
    created->offset_ = ofDescriptor->offset_ + offset;
    created->length_ = length;
    created->direction_ = memoryDescriptorCreateOptions;
    created->mappingsReadOnly_ = ofDescriptor->mappingsReadOnly_;
    *memory = created;
    return kIOReturnSuccess;
}

void IOMemoryDescriptor::free()
{
    if (parent_ != nullptr) {
        OSSafeReleaseNULL(parent_);
    } else if (backing_ != nullptr) {
        if (backing_->address != nullptr) {
            munmap(backing_->address, backing_->size);
        }
        if (backing_->fd >= 0) {
            close(backing_->fd);
        }
        delete backing_;
    }
    backing_ = nullptr;
    super::free();
}

kern_return_t IOBufferMemoryDescriptor::Create(uint64_t options, uint64_t capacity, uint64_t alignment,
                                               IOBufferMemoryDescriptor** memory)
{
    (void)alignment;  // memfd pages are page-aligned, which satisfies any alignment asked of a dext
    if (memory == nullptr) {
        return kIOReturnBadArgument;
    }
    *memory = nullptr;
    if ((options & ~static_cast<uint64_t>(kIOMemoryDirectionOutIn)) != 0) {
        return kIOReturnBadArgument;
    }
    auto* created = static_cast<IOBufferMemoryDescriptor*>(metaClass()->alloc());
    if (created == nullptr || !created->init()) {
        if (created != nullptr) {
            created->release();
        }
        return kIOReturnNoMemory;
    }
    auto* backing = new Backing();
    created->backing_ = backing;
    created->capacity_ = capacity;
    created->length_ = capacity;
    created->direction_ = options;
    if (capacity > 0) {
        const uint64_t page = pageSize();
        backing->size = (capacity + page - 1) / page * page;
        backing->fd = memfd_create("dextlink-IOBufferMemoryDescriptor", MFD_CLOEXEC);
        if (backing->fd < 0 || ftruncate(backing->fd, static_cast<off_t>(backing->size)) != 0) {
            created->release();
            return kIOReturnNoMemory;
        }
        void* address = mmap(nullptr, backing->size, PROT_READ | PROT_WRITE, MAP_SHARED, backing->fd, 0);
        if (address == MAP_FAILED) {
            created->release();
            return kIOReturnNoMemory;
        }
        backing->address = address;
    }
    *memory = created;
    return kIOReturnSuccess;
}

kern_return_t IOBufferMemoryDescriptor::GetAddressRange(IOAddressSegment* range)
{
    if (range == nullptr) {
        return kIOReturnBadArgument;
    }
    range->address = reinterpret_cast<uint64_t>(GetBackingAddress());
    range->length = length_;
    return kIOReturnSuccess;
}

kern_return_t IOBufferMemoryDescriptor::SetLength(uint64_t length)
{
    if (length <= capacity_) {
        length_ = length;
    }
    return kIOReturnSuccess;
}

IOMemoryMap* IOMemoryMap::CreateInternal(IOMemoryDescriptor* descriptor, void* region, uint64_t regionLength,
                                         uint64_t address, uint64_t offset, uint64_t length, uint64_t options)
{
    auto* map = static_cast<IOMemoryMap*>(metaClass()->alloc());
    if (map == nullptr || !map->init()) {
        if (map != nullptr) {
            map->release();
        }
        return nullptr;
    }
    descriptor->retain();
    map->descriptor_ = descriptor;
    map->region_ = region;
    map->regionLength_ = regionLength;
    map->address_ = address;
    map->offset_ = offset;
    map->length_ = length;
    map->options_ = options;
    return map;
}

uint64_t IOMemoryMap::GetAddress()
{
    return address_;
}

uint64_t IOMemoryMap::GetLength()
{
    return length_;
}

uint64_t IOMemoryMap::GetOffset()
{
    return offset_;
}

void IOMemoryMap::free()
{
    if (region_ != nullptr) {
        munmap(region_, regionLength_);
        region_ = nullptr;
    }
    OSSafeReleaseNULL(descriptor_);
    super::free();
}
