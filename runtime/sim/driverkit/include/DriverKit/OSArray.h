#ifndef DEXTLINK_DRIVERKIT_OSARRAY_H
#define DEXTLINK_DRIVERKIT_OSARRAY_H

#include <DriverKit/OSCollection.h>

// Holds a reference to each element. UNVERIFIED: DriverKit's iteration API
// beyond getCount/getObject; `iterateObjects` takes a callback here (and a
// block when compiled with blocks), returning early when it returns true.
class OSArray : public OSCollection {
    OSDeclareDefaultStructors(OSArray)
public:
    using super = OSCollection;

    static OSArray* withCapacity(uint32_t capacity);
    uint32_t getCount() const override { return count_; }
    // Appends; false (and nothing retained) when `object` is NULL or memory runs out.
    bool setObject(const OSMetaClassBase* object);
    bool setObject(uint32_t index, const OSMetaClassBase* object);
    // NULL past the end; the reference stays with the array.
    OSObject* getObject(uint32_t index) const;
    void removeObject(uint32_t index);
    bool iterateObjects(void* refcon, bool (*callback)(void* refcon, OSObject* object)) const;
#ifdef __BLOCKS__
    // Inline, so that the block is called by code compiled with blocks.
    bool iterateObjects(bool (^block)(OSObject* object)) const
    {
        return iterateObjects(static_cast<void*>(&block), [](void* refcon, OSObject* object) {
            return (*static_cast<bool (^*)(OSObject*)>(refcon))(object);
        });
    }
#endif
    void free() override;

private:
    bool grow(uint32_t minimum);
    const OSMetaClassBase** items_;
    uint32_t count_;
    uint32_t capacity_;
};

#endif
