// OSObject, OSMetaClass and the iig conventions of this runtime (IIG.md).
//
// Reference counting is atomic; an object's `free()` runs when the last
// reference goes, then the runtime deletes it. Every class registers an
// OSMetaClass under its C++ name: casts walk that chain (no RTTI), the host
// and IOService::Create make objects by name through it, and it counts live
// objects per class for the leak report.
#ifndef DEXTLINK_DRIVERKIT_OSOBJECT_H
#define DEXTLINK_DRIVERKIT_OSOBJECT_H

#include <DriverKit/IOTypes.h>

class OSObject;
class OSMetaClass;
class OSAction;
class OSString;
class IODispatchQueue;

typedef char IODispatchQueueName[256];
typedef OSObject* OSObjectPtr;

// An in-process method call: the method's id (<Class>_<Method>_ID: Apple's
// value where its generated headers publish one, else the FNV-1a 64-bit hash
// of "Class::Method", IIG.md) and a pointer to its <Class>_<Method>_Invocation. Apple's IORPC is a Mach
// message; dext code never looks inside either.
struct IORPC {
    uint64_t methodID;
    void* arguments;
};

// What SUPERDISPATCH names: the static `_Dispatch` of the superclass, which
// runs that class's `_Impl` of the method (IIG.md, "Dispatch").
typedef kern_return_t (*OSDispatchMethod)(OSObject* self, const IORPC rpc);

#define SUPERDISPATCH (&super::_Dispatch)
#define IMPL(ClassName, MethodName) ClassName::MethodName##_Impl(ClassName##_##MethodName##_Args)
#define APPLE_KEXT_OVERRIDE override

// iig attributes: they steer Apple's RPC generator; in process they mean
// nothing to the compiler (IIG.md says what the generator does with each).
#define LOCAL
#define LOCALONLY
#define KERNEL
#define NATIVE
#define QUEUENAME(name)
#define TYPE(method)
#define TARGET

class OSMetaClass {
public:
    typedef OSObject* (*Factory)();

    // Registers the class under `name` (for the lifetime of this object).
    OSMetaClass(const char* name, const OSMetaClass* superClass, Factory factory);
    ~OSMetaClass();
    OSMetaClass(const OSMetaClass&) = delete;
    OSMetaClass& operator=(const OSMetaClass&) = delete;

    const char* getClassName() const { return name_; }
    const OSMetaClass* getSuperClass() const { return super_; }
    bool isSubclassOf(const OSMetaClass* other) const;

    // A new instance with one reference, not yet init()ed; NULL for an
    // abstract class (no factory).
    OSObject* alloc() const;
    // The class registered under `name`, or NULL.
    static const OSMetaClass* forName(const char* name);
    // Instances of exactly this class alive now.
    long getInstanceCount() const;

    // Runtime bookkeeping, not for dext code.
    void instanceConstructed() const;
    void instanceDestroyed() const;

private:
    const char* name_;
    const OSMetaClass* super_;
    Factory factory_;
    mutable long instances_;
};

class OSMetaClassBase {
public:
    virtual void retain() const = 0;
    virtual void release() const = 0;
    virtual const OSMetaClass* getMetaClass() const = 0;
    virtual bool isEqualTo(const OSMetaClassBase* other) const { return this == other; }

protected:
    OSMetaClassBase() = default;
    virtual ~OSMetaClassBase() = default;
};

class OSObject : public OSMetaClassBase {
public:
    static const OSMetaClass* metaClass();
    const OSMetaClass* getMetaClass() const override;
    void retain() const override;
    void release() const override;
    int getRetainCount() const;

    virtual bool init();
    virtual void free();

    virtual kern_return_t Dispatch(const IORPC rpc);
    static kern_return_t _Dispatch(OSObject* self, const IORPC rpc);

    // The queue named `name` for this object's methods; IOService keeps a
    // table of them (a plain OSObject has none: kIOReturnUnsupported).
    kern_return_t SetDispatchQueue(const IODispatchQueueName name, IODispatchQueue* queue,
                                   OSDispatchMethod supermethod = nullptr);
    kern_return_t CopyDispatchQueue(const IODispatchQueueName name, IODispatchQueue** queue,
                                    OSDispatchMethod supermethod = nullptr);

protected:
    OSObject();
    ~OSObject() override;

    kern_return_t SetDispatchQueue_Impl(const char* name, IODispatchQueue* queue);
    kern_return_t CopyDispatchQueue_Impl(const char* name, IODispatchQueue** queue);

private:
    friend class OSMetaClass;
    mutable int retainCount_;
    bool freeReachedBase_;
    // Made by OSMetaClass::alloc, so counted in its class's live objects.
    bool counted_;
};

#define OSObject_SetDispatchQueue_ID 0x9d3940573ed25405ULL
#define OSObject_CopyDispatchQueue_ID 0xa21397dcb683f212ULL
#define OSObject_SetDispatchQueue_Args const char *name, IODispatchQueue *queue
#define OSObject_CopyDispatchQueue_Args const char *name, IODispatchQueue **queue
struct OSObject_SetDispatchQueue_Invocation {
    const char* name;
    IODispatchQueue* queue;
};
struct OSObject_CopyDispatchQueue_Invocation {
    const char* name;
    IODispatchQueue** queue;
};

// In a class body: the metaclass accessors and the dispatch entry points
// (IIG.md, "Class header").
#define OSDeclareDefaultStructors(className)                               \
public:                                                                    \
    static const OSMetaClass* metaClass();                                 \
    const OSMetaClass* getMetaClass() const override;                      \
    kern_return_t Dispatch(const IORPC rpc) override;                      \
    static kern_return_t _Dispatch(OSObject* self, const IORPC rpc);       \
                                                                           \
private:

// In one .cpp per class: the metaclass, registered by name when the image
// loads (the dext's .so or the runtime), and the instance factory.
#define OSDefineMetaClassAndStructors(className, superclassName)                            \
    static OSObject* className##_DextlinkFactory() { return new className(); }              \
    const OSMetaClass* className::metaClass()                                               \
    {                                                                                       \
        static const OSMetaClass meta(#className, superclassName::metaClass(),              \
                                      className##_DextlinkFactory);                         \
        return &meta;                                                                       \
    }                                                                                       \
    const OSMetaClass* className::getMetaClass() const { return className::metaClass(); }  \
    kern_return_t className::Dispatch(const IORPC rpc) { return className::_Dispatch(this, rpc); } \
    static const OSMetaClass* const className##_DextlinkRegistration = className::metaClass();

// The same for a class that cannot be instantiated by name.
#define OSDefineMetaClassAndAbstractStructors(className, superclassName)                   \
    const OSMetaClass* className::metaClass()                                               \
    {                                                                                       \
        static const OSMetaClass meta(#className, superclassName::metaClass(), nullptr);    \
        return &meta;                                                                       \
    }                                                                                       \
    const OSMetaClass* className::getMetaClass() const { return className::metaClass(); }  \
    kern_return_t className::Dispatch(const IORPC rpc) { return className::_Dispatch(this, rpc); } \
    static const OSMetaClass* const className##_DextlinkRegistration = className::metaClass();

// Calls `function` with a method invocation (used by the non-virtual method
// stubs): through `supermethod` when the caller passed SUPERDISPATCH, else
// through the object's most derived class.
kern_return_t OSObjectDispatchInvocation(OSObject* self, OSDispatchMethod supermethod,
                                         uint64_t methodID, void* invocation);

template <class T, class U>
inline T* OSDynamicCastImpl(U* object)
{
    if (object == nullptr) {
        return nullptr;
    }
    const OSMetaClassBase* base = object;
    if (!base->getMetaClass()->isSubclassOf(T::metaClass())) {
        return nullptr;
    }
    return static_cast<T*>(const_cast<OSMetaClassBase*>(base));
}

// A failed required cast ends the dext, as DriverKit's does; this names both classes.
[[noreturn]] void OSRequiredCastFailed(const OSMetaClassBase* object, const OSMetaClass* wanted);

template <class T, class U>
inline T* OSRequiredCastImpl(U* object)
{
    T* result = OSDynamicCastImpl<T>(object);
    if (result == nullptr) {
        OSRequiredCastFailed(object, T::metaClass());
    }
    return result;
}

#define OSDynamicCast(type, inst) (::OSDynamicCastImpl<type>(inst))
#define OSRequiredCast(type, inst) (::OSRequiredCastImpl<type>(inst))
#define OSTypeAlloc(type) (static_cast<type*>(type::metaClass()->alloc()))

#define OSSafeReleaseNULL(inst)   \
    do {                          \
        if ((inst) != nullptr) {  \
            (inst)->release();    \
        }                         \
        (inst) = nullptr;         \
    } while (0)

#endif
