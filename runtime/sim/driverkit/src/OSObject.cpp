#include <DriverKit/OSObject.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "internal.h"

namespace {

struct Registry {
    std::mutex lock;
    std::map<std::string, const OSMetaClass*> classes;
};

Registry& registry()
{
    static Registry instance;
    return instance;
}

}  // namespace

OSMetaClass::OSMetaClass(const char* name, const OSMetaClass* superClass, Factory factory)
    : name_(name), super_(superClass), factory_(factory), instances_(0)
{
    Registry& r = registry();
    std::lock_guard<std::mutex> guard(r.lock);
    // Two images defining the same class name: the first keeps the name, as
    // one dext cannot have two classes of one name anyway.
    if (!r.classes.emplace(name, this).second) {
        dextlink::runtimeError("class %s is defined twice; the second definition is not registered", name);
    }
}

OSMetaClass::~OSMetaClass()
{
    Registry& r = registry();
    std::lock_guard<std::mutex> guard(r.lock);
    auto found = r.classes.find(name_);
    if (found != r.classes.end() && found->second == this) {
        r.classes.erase(found);
    }
}

bool OSMetaClass::isSubclassOf(const OSMetaClass* other) const
{
    for (const OSMetaClass* c = this; c != nullptr; c = c->super_) {
        if (c == other) {
            return true;
        }
    }
    return false;
}

OSObject* OSMetaClass::alloc() const
{
    if (factory_ == nullptr) {
        return nullptr;
    }
    OSObject* object = factory_();
    if (object != nullptr) {
        object->counted_ = true;
        instanceConstructed();
    }
    return object;
}

const OSMetaClass* OSMetaClass::forName(const char* name)
{
    if (name == nullptr) {
        return nullptr;
    }
    Registry& r = registry();
    std::lock_guard<std::mutex> guard(r.lock);
    auto found = r.classes.find(name);
    return found == r.classes.end() ? nullptr : found->second;
}

long OSMetaClass::getInstanceCount() const
{
    return __atomic_load_n(&instances_, __ATOMIC_SEQ_CST);
}

void OSMetaClass::instanceConstructed() const
{
    __atomic_add_fetch(&instances_, 1, __ATOMIC_SEQ_CST);
}

void OSMetaClass::instanceDestroyed() const
{
    __atomic_sub_fetch(&instances_, 1, __ATOMIC_SEQ_CST);
}

std::string dextlink::leakReport()
{
    std::string report;
    Registry& r = registry();
    {
        std::lock_guard<std::mutex> guard(r.lock);
        for (const auto& entry : r.classes) {
            long live = entry.second->getInstanceCount();
            // OSBoolean's two shared instances live for the whole process.
            if (live > 0 && entry.first != "OSBoolean") {
                report += entry.first + ": " + std::to_string(live) + " live object" + (live == 1 ? "" : "s") + "\n";
            }
        }
    }
    return report + mallocLeakReport();
}

// OSObject's own metaclass is the root: no superclass, not instantiable.
const OSMetaClass* OSObject::metaClass()
{
    static const OSMetaClass meta("OSObject", nullptr, nullptr);
    return &meta;
}

const OSMetaClass* OSObject::getMetaClass() const
{
    return OSObject::metaClass();
}

static const OSMetaClass* const OSObjectRegistration = OSObject::metaClass();

OSObject::OSObject() : retainCount_(1), freeReachedBase_(false), counted_(false) {}

OSObject::~OSObject() = default;

void OSObject::retain() const
{
    __atomic_add_fetch(&retainCount_, 1, __ATOMIC_RELAXED);
}

void OSObject::release() const
{
    int left = __atomic_sub_fetch(&retainCount_, 1, __ATOMIC_ACQ_REL);
    if (left > 0) {
        return;
    }
    if (left < 0) {
        dextlink::runtimeError("%s released more often than retained", getMetaClass()->getClassName());
        return;
    }
    OSObject* self = const_cast<OSObject*>(this);
    const OSMetaClass* meta = getMetaClass();
    self->free();
    if (!self->freeReachedBase_) {
        dextlink::runtimeError("%s::free() did not call super::free()", meta->getClassName());
    }
    if (self->counted_) {
        meta->instanceDestroyed();
    }
    delete self;
}

int OSObject::getRetainCount() const
{
    return __atomic_load_n(&retainCount_, __ATOMIC_RELAXED);
}

bool OSObject::init()
{
    return true;
}

void OSObject::free()
{
    freeReachedBase_ = true;
}

kern_return_t OSObject::Dispatch(const IORPC rpc)
{
    return OSObject::_Dispatch(this, rpc);
}

kern_return_t OSObject::_Dispatch(OSObject* self, const IORPC rpc)
{
    switch (rpc.methodID) {
    case OSObject_SetDispatchQueue_ID: {
        auto* a = static_cast<OSObject_SetDispatchQueue_Invocation*>(rpc.arguments);
        return self->SetDispatchQueue_Impl(a->name, a->queue);
    }
    case OSObject_CopyDispatchQueue_ID: {
        auto* a = static_cast<OSObject_CopyDispatchQueue_Invocation*>(rpc.arguments);
        return self->CopyDispatchQueue_Impl(a->name, a->queue);
    }
    default:
        return kIOReturnUnsupported;
    }
}

kern_return_t OSObjectDispatchInvocation(OSObject* self, OSDispatchMethod supermethod, uint64_t methodID,
                                         void* invocation)
{
    IORPC rpc = {methodID, invocation};
    return supermethod != nullptr ? supermethod(self, rpc) : self->Dispatch(rpc);
}

kern_return_t OSObject::SetDispatchQueue(const IODispatchQueueName name, IODispatchQueue* queue,
                                         OSDispatchMethod supermethod)
{
    OSObject_SetDispatchQueue_Invocation a = {name, queue};
    return OSObjectDispatchInvocation(this, supermethod, OSObject_SetDispatchQueue_ID, &a);
}

kern_return_t OSObject::CopyDispatchQueue(const IODispatchQueueName name, IODispatchQueue** queue,
                                          OSDispatchMethod supermethod)
{
    OSObject_CopyDispatchQueue_Invocation a = {name, queue};
    return OSObjectDispatchInvocation(this, supermethod, OSObject_CopyDispatchQueue_ID, &a);
}

kern_return_t OSObject::SetDispatchQueue_Impl(const char*, IODispatchQueue*)
{
    return kIOReturnUnsupported;
}

kern_return_t OSObject::CopyDispatchQueue_Impl(const char*, IODispatchQueue** queue)
{
    if (queue != nullptr) {
        *queue = nullptr;
    }
    return kIOReturnUnsupported;
}

void OSRequiredCastFailed(const OSMetaClassBase* object, const OSMetaClass* wanted)
{
    dextlink::runtimeError("OSRequiredCast: %s is not a %s",
                           object == nullptr ? "NULL" : object->getMetaClass()->getClassName(),
                           wanted->getClassName());
    abort();
}
