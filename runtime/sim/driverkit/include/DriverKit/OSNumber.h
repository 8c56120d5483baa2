#ifndef DEXTLINK_DRIVERKIT_OSNUMBER_H
#define DEXTLINK_DRIVERKIT_OSNUMBER_H

#include <DriverKit/OSCollection.h>

class OSNumber : public OSContainer {
    OSDeclareDefaultStructors(OSNumber)
public:
    using super = OSContainer;

    // `numberOfBits` is 8, 16, 32 or 64; the value is truncated to it.
    static OSNumber* withNumber(uint64_t value, size_t numberOfBits);
    uint8_t unsigned8BitValue() const { return static_cast<uint8_t>(value_); }
    uint16_t unsigned16BitValue() const { return static_cast<uint16_t>(value_); }
    uint32_t unsigned32BitValue() const { return static_cast<uint32_t>(value_); }
    uint64_t unsigned64BitValue() const { return value_; }
    size_t numberOfBits() const { return bits_; }
    bool isEqualTo(const OSNumber* other) const;
    bool isEqualTo(const OSMetaClassBase* other) const override;

private:
    uint64_t value_;
    size_t bits_;
};

#endif
