#ifndef DEXTLINK_DRIVERKIT_OSBOOLEAN_H
#define DEXTLINK_DRIVERKIT_OSBOOLEAN_H

#include <DriverKit/OSCollection.h>

// Two shared instances, kOSBooleanTrue and kOSBooleanFalse; retain and
// release on them are no-ops so that they are never freed.
class OSBoolean : public OSContainer {
    OSDeclareDefaultStructors(OSBoolean)
public:
    using super = OSContainer;

    static OSBoolean* withBoolean(bool value);
    bool isTrue() const { return value_; }
    bool isFalse() const { return !value_; }
    bool getValue() const { return value_; }
    void retain() const override {}
    void release() const override {}

private:
    friend OSBoolean* DextlinkMakeBoolean(bool value);
    bool value_;
};

extern OSBoolean* const kOSBooleanTrue;
extern OSBoolean* const kOSBooleanFalse;

#endif
