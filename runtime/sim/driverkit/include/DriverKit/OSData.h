#ifndef DEXTLINK_DRIVERKIT_OSDATA_H
#define DEXTLINK_DRIVERKIT_OSDATA_H

#include <DriverKit/OSCollection.h>

class OSData : public OSContainer {
    OSDeclareDefaultStructors(OSData)
public:
    using super = OSContainer;

    static OSData* withCapacity(uint32_t capacity);
    static OSData* withBytes(const void* bytes, size_t length);
    // UNVERIFIED whether DriverKit copies here; this runtime does not: the
    // bytes must outlive the object, as with the kernel's OSData.
    static OSData* withBytesNoCopy(void* bytes, size_t length);
    static OSData* withData(const OSData* other);

    size_t getLength() const { return length_; }
    size_t getCapacity() const { return capacity_; }
    const void* getBytesNoCopy() const;
    // NULL unless [start, start + numBytes) lies inside the data.
    const void* getBytesNoCopy(size_t start, size_t numBytes) const;
    bool appendBytes(const void* bytes, size_t length);
    bool appendBytes(const OSData* other);
    bool isEqualTo(const OSData* other) const;
    bool isEqualTo(const void* bytes, size_t length) const;
    bool isEqualTo(const OSMetaClassBase* other) const override;
    void free() override;

private:
    unsigned char* bytes_;
    size_t length_;
    size_t capacity_;
    bool owned_;
};

#endif
