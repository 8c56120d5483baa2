#ifndef DEXTLINK_DRIVERKIT_OSDICTIONARY_H
#define DEXTLINK_DRIVERKIT_OSDICTIONARY_H

#include <DriverKit/OSCollection.h>

class OSString;

// Keys are strings, kept in insertion order; values are retained.
class OSDictionary : public OSCollection {
    OSDeclareDefaultStructors(OSDictionary)
public:
    using super = OSCollection;

    static OSDictionary* withCapacity(uint32_t capacity);
    uint32_t getCount() const override { return count_; }
    // Replaces an existing value under the same key.
    bool setObject(const char* key, const OSMetaClassBase* object);
    bool setObject(const OSString* key, const OSMetaClassBase* object);
    OSObject* getObject(const char* key) const;
    OSObject* getObject(const OSString* key) const;
    void removeObject(const char* key);
    bool iterateObjects(void* refcon, bool (*callback)(void* refcon, OSObject* key, OSObject* object)) const;
#ifdef __BLOCKS__
    // Inline, so that the block is called by code compiled with blocks.
    bool iterateObjects(bool (^block)(OSObject* key, OSObject* object)) const
    {
        return iterateObjects(static_cast<void*>(&block), [](void* refcon, OSObject* key, OSObject* object) {
            return (*static_cast<bool (^*)(OSObject*, OSObject*)>(refcon))(key, object);
        });
    }
#endif
    void free() override;

private:
    struct Entry {
        OSString* key;
        const OSMetaClassBase* value;
    };
    int indexOf(const char* key) const;
    Entry* entries_;
    uint32_t count_;
    uint32_t capacity_;
};

#endif
