// OSSharedPtr: an owning pointer to an OSObject (one reference), as dexts
// use it for ivars (`ivars->buffer.attach()` as an out parameter, `.get()`,
// `.reset()`).
#ifndef DEXTLINK_DRIVERKIT_OSSHAREDPTR_H
#define DEXTLINK_DRIVERKIT_OSSHAREDPTR_H

#include <DriverKit/OSObject.h>

struct OSRetainTag {};
struct OSNoRetainTag {};
inline constexpr OSRetainTag OSRetain{};
inline constexpr OSNoRetainTag OSNoRetain{};

template <typename T>
class OSSharedPtr {
public:
    OSSharedPtr() = default;
    OSSharedPtr(decltype(nullptr)) {}
    // Takes a new reference.
    OSSharedPtr(T* object, OSRetainTag) : object_(object)
    {
        if (object_ != nullptr) {
            object_->retain();
        }
    }
    // Adopts the caller's reference.
    OSSharedPtr(T* object, OSNoRetainTag) : object_(object) {}
    OSSharedPtr(const OSSharedPtr& other) : OSSharedPtr(other.object_, OSRetain) {}
    OSSharedPtr(OSSharedPtr&& other) noexcept : object_(other.object_) { other.object_ = nullptr; }
    ~OSSharedPtr() { reset(); }

    OSSharedPtr& operator=(const OSSharedPtr& other)
    {
        if (this != &other) {
            reset(other.object_, OSRetain);
        }
        return *this;
    }
    OSSharedPtr& operator=(OSSharedPtr&& other) noexcept
    {
        if (this != &other) {
            reset();
            object_ = other.object_;
            other.object_ = nullptr;
        }
        return *this;
    }
    OSSharedPtr& operator=(decltype(nullptr))
    {
        reset();
        return *this;
    }

    T* get() const { return object_; }
    T* operator->() const { return object_; }
    T& operator*() const { return *object_; }
    explicit operator bool() const { return object_ != nullptr; }

    void reset()
    {
        T* old = object_;
        object_ = nullptr;
        if (old != nullptr) {
            old->release();
        }
    }
    void reset(T* object, OSRetainTag)
    {
        if (object != nullptr) {
            object->retain();
        }
        reset();
        object_ = object;
    }
    void reset(T* object, OSNoRetainTag)
    {
        reset();
        object_ = object;
    }
    // Gives up the reference without releasing it.
    T* detach()
    {
        T* object = object_;
        object_ = nullptr;
        return object;
    }
    // Releases the current object and returns where a created one (with the
    // reference the creator returns) is to be stored.
    T** attach()
    {
        reset();
        return &object_;
    }

private:
    T* object_ = nullptr;
};

template <typename T, typename U>
inline bool operator==(const OSSharedPtr<T>& a, const OSSharedPtr<U>& b)
{
    return a.get() == b.get();
}

template <typename T>
inline bool operator==(const OSSharedPtr<T>& a, decltype(nullptr))
{
    return a.get() == nullptr;
}

template <typename T>
inline bool operator!=(const OSSharedPtr<T>& a, decltype(nullptr))
{
    return a.get() != nullptr;
}

template <typename T, typename U>
inline OSSharedPtr<T> OSDynamicPtrCast(const OSSharedPtr<U>& from)
{
    return OSSharedPtr<T>(OSDynamicCast(T, from.get()), OSRetain);
}

template <typename T, typename U>
inline OSSharedPtr<T> OSStaticPtrCast(const OSSharedPtr<U>& from)
{
    return OSSharedPtr<T>(static_cast<T*>(from.get()), OSRetain);
}

#endif
