// OSContainer: the base of every value a property dictionary holds;
// OSCollection: the base of OSArray and OSDictionary.
#ifndef DEXTLINK_DRIVERKIT_OSCOLLECTION_H
#define DEXTLINK_DRIVERKIT_OSCOLLECTION_H

#include <DriverKit/OSObject.h>

class OSContainer : public OSObject {
    OSDeclareDefaultStructors(OSContainer)
public:
    using super = OSObject;
};

class OSCollection : public OSContainer {
    OSDeclareDefaultStructors(OSCollection)
public:
    using super = OSContainer;
    virtual uint32_t getCount() const { return 0; }
};

#endif
