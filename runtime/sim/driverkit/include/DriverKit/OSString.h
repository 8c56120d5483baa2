#ifndef DEXTLINK_DRIVERKIT_OSSTRING_H
#define DEXTLINK_DRIVERKIT_OSSTRING_H

#include <DriverKit/OSCollection.h>

class OSString : public OSContainer {
    OSDeclareDefaultStructors(OSString)
public:
    using super = OSContainer;

    static OSString* withCString(const char* cString);
    static OSString* withCString(const char* cString, size_t length);
    const char* getCStringNoCopy() const;
    size_t getLength() const { return length_; }
    bool isEqualTo(const char* cString) const;
    bool isEqualTo(const OSString* other) const;
    bool isEqualTo(const OSMetaClassBase* other) const override;
    void free() override;

private:
    char* chars_;
    size_t length_;
};

#endif
