#include <DriverKit/OSArray.h>
#include <DriverKit/OSBoolean.h>
#include <DriverKit/OSData.h>
#include <DriverKit/OSDictionary.h>
#include <DriverKit/OSNumber.h>
#include <DriverKit/OSString.h>

#include <cstdlib>
#include <cstring>

#include "internal.h"

OSDefineMetaClassAndAbstractStructors(OSContainer, OSObject)
kern_return_t OSContainer::_Dispatch(OSObject* self, const IORPC rpc) { return OSObject::_Dispatch(self, rpc); }
OSDefineMetaClassAndAbstractStructors(OSCollection, OSContainer)
kern_return_t OSCollection::_Dispatch(OSObject* self, const IORPC rpc) { return OSContainer::_Dispatch(self, rpc); }

template <class T>
static T* allocObject()
{
    T* object = static_cast<T*>(T::metaClass()->alloc());
    if (object != nullptr && !object->init()) {
        object->release();
        return nullptr;
    }
    return object;
}

// ---- OSData

OSDefineMetaClassAndStructors(OSData, OSContainer)
kern_return_t OSData::_Dispatch(OSObject* self, const IORPC rpc) { return OSContainer::_Dispatch(self, rpc); }

OSData* OSData::withCapacity(uint32_t capacity)
{
    OSData* data = allocObject<OSData>();
    if (data == nullptr) {
        return nullptr;
    }
    data->owned_ = true;
    if (capacity > 0) {
        data->bytes_ = static_cast<unsigned char*>(malloc(capacity));
        if (data->bytes_ == nullptr) {
            data->release();
            return nullptr;
        }
        data->capacity_ = capacity;
    }
    return data;
}

OSData* OSData::withBytes(const void* bytes, size_t length)
{
    if (bytes == nullptr && length > 0) {
        return nullptr;
    }
    if (length > UINT32_MAX) {
        return nullptr;
    }
    OSData* data = withCapacity(static_cast<uint32_t>(length));
    if (data != nullptr && length > 0) {
        memcpy(data->bytes_, bytes, length);
        data->length_ = length;
    }
    return data;
}

OSData* OSData::withBytesNoCopy(void* bytes, size_t length)
{
    if (bytes == nullptr && length > 0) {
        return nullptr;
    }
    OSData* data = allocObject<OSData>();
    if (data != nullptr) {
        data->bytes_ = static_cast<unsigned char*>(bytes);
        data->length_ = length;
        data->capacity_ = length;
        data->owned_ = false;
    }
    return data;
}

OSData* OSData::withData(const OSData* other)
{
    return other == nullptr ? nullptr : withBytes(other->bytes_, other->length_);
}

const void* OSData::getBytesNoCopy() const
{
    return length_ == 0 ? nullptr : bytes_;
}

const void* OSData::getBytesNoCopy(size_t start, size_t numBytes) const
{
    if (start > length_ || numBytes > length_ - start || numBytes == 0) {
        return nullptr;
    }
    return bytes_ + start;
}

bool OSData::appendBytes(const void* bytes, size_t length)
{
    if (length == 0) {
        return true;
    }
    if (bytes == nullptr || !owned_ || length > SIZE_MAX - length_) {
        return false;
    }
    if (length_ + length > capacity_) {
        size_t wanted = capacity_ * 2 > length_ + length ? capacity_ * 2 : length_ + length;
        auto* grown = static_cast<unsigned char*>(realloc(bytes_, wanted));
        if (grown == nullptr) {
            return false;
        }
        bytes_ = grown;
        capacity_ = wanted;
    }
    memcpy(bytes_ + length_, bytes, length);
    length_ += length;
    return true;
}

bool OSData::appendBytes(const OSData* other)
{
    return other != nullptr && appendBytes(other->bytes_, other->length_);
}

bool OSData::isEqualTo(const void* bytes, size_t length) const
{
    return length == length_ && (length == 0 || memcmp(bytes, bytes_, length) == 0);
}

bool OSData::isEqualTo(const OSData* other) const
{
    return other != nullptr && isEqualTo(other->bytes_, other->length_);
}

bool OSData::isEqualTo(const OSMetaClassBase* other) const
{
    return isEqualTo(OSDynamicCast(const OSData, other));
}

void OSData::free()
{
    if (owned_) {
        ::free(bytes_);
    }
    bytes_ = nullptr;
    length_ = 0;
    super::free();
}

// ---- OSString

OSDefineMetaClassAndStructors(OSString, OSContainer)
kern_return_t OSString::_Dispatch(OSObject* self, const IORPC rpc) { return OSContainer::_Dispatch(self, rpc); }

OSString* OSString::withCString(const char* cString)
{
    return cString == nullptr ? nullptr : withCString(cString, strlen(cString));
}

OSString* OSString::withCString(const char* cString, size_t length)
{
    if (cString == nullptr) {
        return nullptr;
    }
    length = strnlen(cString, length);
    OSString* string = allocObject<OSString>();
    if (string == nullptr) {
        return nullptr;
    }
    string->chars_ = static_cast<char*>(malloc(length + 1));
    if (string->chars_ == nullptr) {
        string->release();
        return nullptr;
    }
    memcpy(string->chars_, cString, length);
    string->chars_[length] = '\0';
    string->length_ = length;
    return string;
}

const char* OSString::getCStringNoCopy() const
{
    return chars_ == nullptr ? "" : chars_;
}

bool OSString::isEqualTo(const char* cString) const
{
    return cString != nullptr && strcmp(getCStringNoCopy(), cString) == 0;
}

bool OSString::isEqualTo(const OSString* other) const
{
    return other != nullptr && isEqualTo(other->getCStringNoCopy());
}

bool OSString::isEqualTo(const OSMetaClassBase* other) const
{
    return isEqualTo(OSDynamicCast(const OSString, other));
}

void OSString::free()
{
    ::free(chars_);
    chars_ = nullptr;
    super::free();
}

// ---- OSNumber

OSDefineMetaClassAndStructors(OSNumber, OSContainer)
kern_return_t OSNumber::_Dispatch(OSObject* self, const IORPC rpc) { return OSContainer::_Dispatch(self, rpc); }

OSNumber* OSNumber::withNumber(uint64_t value, size_t numberOfBits)
{
    if (numberOfBits != 8 && numberOfBits != 16 && numberOfBits != 32 && numberOfBits != 64) {
        return nullptr;
    }
    OSNumber* number = allocObject<OSNumber>();
    if (number != nullptr) {
        number->bits_ = numberOfBits;
        number->value_ = numberOfBits == 64 ? value : value & ((1ULL << numberOfBits) - 1);
    }
    return number;
}

bool OSNumber::isEqualTo(const OSNumber* other) const
{
    return other != nullptr && other->value_ == value_;
}

bool OSNumber::isEqualTo(const OSMetaClassBase* other) const
{
    return isEqualTo(OSDynamicCast(const OSNumber, other));
}

// ---- OSBoolean

OSDefineMetaClassAndStructors(OSBoolean, OSContainer)
kern_return_t OSBoolean::_Dispatch(OSObject* self, const IORPC rpc) { return OSContainer::_Dispatch(self, rpc); }

OSBoolean* DextlinkMakeBoolean(bool value)
{
    OSBoolean* b = allocObject<OSBoolean>();
    if (b == nullptr) {
        abort();  // at image load: nothing can run without them
    }
    b->value_ = value;
    return b;
}

OSBoolean* const kOSBooleanTrue = DextlinkMakeBoolean(true);
OSBoolean* const kOSBooleanFalse = DextlinkMakeBoolean(false);

OSBoolean* OSBoolean::withBoolean(bool value)
{
    return value ? kOSBooleanTrue : kOSBooleanFalse;
}

// ---- OSArray

OSDefineMetaClassAndStructors(OSArray, OSCollection)
kern_return_t OSArray::_Dispatch(OSObject* self, const IORPC rpc) { return OSCollection::_Dispatch(self, rpc); }

OSArray* OSArray::withCapacity(uint32_t capacity)
{
    OSArray* array = allocObject<OSArray>();
    if (array != nullptr && capacity > 0 && !array->grow(capacity)) {
        array->release();
        return nullptr;
    }
    return array;
}

bool OSArray::grow(uint32_t minimum)
{
    if (minimum <= capacity_) {
        return true;
    }
    uint32_t wanted = capacity_ * 2 > minimum ? capacity_ * 2 : minimum;
    auto* grown = static_cast<const OSMetaClassBase**>(realloc(items_, sizeof(*items_) * wanted));
    if (grown == nullptr) {
        return false;
    }
    items_ = grown;
    capacity_ = wanted;
    return true;
}

bool OSArray::setObject(const OSMetaClassBase* object)
{
    return setObject(count_, object);
}

bool OSArray::setObject(uint32_t index, const OSMetaClassBase* object)
{
    if (object == nullptr || index > count_ || count_ == UINT32_MAX || !grow(count_ + 1)) {
        return false;
    }
    memmove(&items_[index + 1], &items_[index], sizeof(*items_) * (count_ - index));
    object->retain();
    items_[index] = object;
    count_++;
    return true;
}

OSObject* OSArray::getObject(uint32_t index) const
{
    if (index >= count_) {
        return nullptr;
    }
    return const_cast<OSObject*>(static_cast<const OSObject*>(items_[index]));
}

void OSArray::removeObject(uint32_t index)
{
    if (index >= count_) {
        return;
    }
    const OSMetaClassBase* removed = items_[index];
    memmove(&items_[index], &items_[index + 1], sizeof(*items_) * (count_ - index - 1));
    count_--;
    removed->release();
}

bool OSArray::iterateObjects(void* refcon, bool (*callback)(void* refcon, OSObject* object)) const
{
    if (callback == nullptr) {
        return false;
    }
    for (uint32_t i = 0; i < count_; i++) {
        if (callback(refcon, getObject(i))) {
            break;
        }
    }
    return true;
}

void OSArray::free()
{
    while (count_ > 0) {
        removeObject(count_ - 1);
    }
    ::free(items_);
    items_ = nullptr;
    super::free();
}

// ---- OSDictionary

OSDefineMetaClassAndStructors(OSDictionary, OSCollection)
kern_return_t OSDictionary::_Dispatch(OSObject* self, const IORPC rpc) { return OSCollection::_Dispatch(self, rpc); }

OSDictionary* OSDictionary::withCapacity(uint32_t capacity)
{
    OSDictionary* dict = allocObject<OSDictionary>();
    if (dict != nullptr && capacity > 0) {
        dict->entries_ = static_cast<Entry*>(calloc(capacity, sizeof(Entry)));
        if (dict->entries_ == nullptr) {
            dict->release();
            return nullptr;
        }
        dict->capacity_ = capacity;
    }
    return dict;
}

int OSDictionary::indexOf(const char* key) const
{
    for (uint32_t i = 0; i < count_; i++) {
        if (entries_[i].key->isEqualTo(key)) {
            return static_cast<int>(i);
        }
    }
    return -1;
}

bool OSDictionary::setObject(const char* key, const OSMetaClassBase* object)
{
    if (key == nullptr || object == nullptr) {
        return false;
    }
    int found = indexOf(key);
    if (found >= 0) {
        object->retain();
        entries_[found].value->release();
        entries_[found].value = object;
        return true;
    }
    if (count_ == capacity_) {
        uint32_t wanted = capacity_ == 0 ? 4 : capacity_ * 2;
        auto* grown = static_cast<Entry*>(realloc(entries_, sizeof(Entry) * wanted));
        if (grown == nullptr) {
            return false;
        }
        entries_ = grown;
        capacity_ = wanted;
    }
    OSString* keyString = OSString::withCString(key);
    if (keyString == nullptr) {
        return false;
    }
    object->retain();
    entries_[count_].key = keyString;
    entries_[count_].value = object;
    count_++;
    return true;
}

bool OSDictionary::setObject(const OSString* key, const OSMetaClassBase* object)
{
    return key != nullptr && setObject(key->getCStringNoCopy(), object);
}

OSObject* OSDictionary::getObject(const char* key) const
{
    int found = key == nullptr ? -1 : indexOf(key);
    return found < 0 ? nullptr : const_cast<OSObject*>(static_cast<const OSObject*>(entries_[found].value));
}

OSObject* OSDictionary::getObject(const OSString* key) const
{
    return key == nullptr ? nullptr : getObject(key->getCStringNoCopy());
}

void OSDictionary::removeObject(const char* key)
{
    int found = key == nullptr ? -1 : indexOf(key);
    if (found < 0) {
        return;
    }
    Entry removed = entries_[found];
    memmove(&entries_[found], &entries_[found + 1], sizeof(Entry) * (count_ - static_cast<uint32_t>(found) - 1));
    count_--;
    removed.key->release();
    removed.value->release();
}

bool OSDictionary::iterateObjects(void* refcon, bool (*callback)(void* refcon, OSObject* key, OSObject* object)) const
{
    if (callback == nullptr) {
        return false;
    }
    for (uint32_t i = 0; i < count_; i++) {
        if (callback(refcon, entries_[i].key,
                     const_cast<OSObject*>(static_cast<const OSObject*>(entries_[i].value)))) {
            break;
        }
    }
    return true;
}

void OSDictionary::free()
{
    for (uint32_t i = 0; i < count_; i++) {
        entries_[i].key->release();
        entries_[i].value->release();
    }
    ::free(entries_);
    entries_ = nullptr;
    count_ = 0;
    super::free();
}
