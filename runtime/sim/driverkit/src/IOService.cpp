#include <DriverKit/IOService.h>
#include <DriverKit/IOUserClient.h>
#include <DriverKit/OSDictionary.h>
#include <DriverKit/OSString.h>

#include <map>
#include <mutex>
#include <string>

#include "internal.h"

struct IOService::State {
    std::mutex lock;
    OSDictionary* properties = nullptr;
    IOService* provider = nullptr;
    bool registered = false;
    bool started = false;
    std::map<std::string, IODispatchQueue*> queues;
};

OSDefineMetaClassAndStructors(IOService, OSObject)

kern_return_t IOService::_Dispatch(OSObject* self, const IORPC rpc)
{
    auto* service = static_cast<IOService*>(self);
    switch (rpc.methodID) {
    case IOService_Start_ID:
        return service->IOService::Start_Impl(static_cast<IOService_Start_Invocation*>(rpc.arguments)->provider);
    case IOService_Stop_ID:
        return service->IOService::Stop_Impl(static_cast<IOService_Stop_Invocation*>(rpc.arguments)->provider);
    case IOService_RegisterService_ID:
        return service->IOService::RegisterService_Impl();
    case IOService_NewUserClient_ID: {
        auto* a = static_cast<IOService_NewUserClient_Invocation*>(rpc.arguments);
        return service->IOService::NewUserClient_Impl(a->type, a->userClient);
    }
    case IOService_Create_ID: {
        auto* a = static_cast<IOService_Create_Invocation*>(rpc.arguments);
        return service->IOService::Create_Impl(a->provider, a->propertiesKey, a->result);
    }
    case IOService_Terminate_ID:
        return service->IOService::Terminate_Impl(static_cast<IOService_Terminate_Invocation*>(rpc.arguments)->options);
    case IOService_CopyProperties_ID:
        return service->IOService::CopyProperties_Impl(
            static_cast<IOService_CopyProperties_Invocation*>(rpc.arguments)->properties);
    case IOService_SetProperties_ID:
        return service->IOService::SetProperties_Impl(
            static_cast<IOService_SetProperties_Invocation*>(rpc.arguments)->properties);
    case OSObject_SetDispatchQueue_ID: {
        auto* a = static_cast<OSObject_SetDispatchQueue_Invocation*>(rpc.arguments);
        return service->IOService::SetDispatchQueue_Impl(a->name, a->queue);
    }
    case OSObject_CopyDispatchQueue_ID: {
        auto* a = static_cast<OSObject_CopyDispatchQueue_Invocation*>(rpc.arguments);
        return service->IOService::CopyDispatchQueue_Impl(a->name, a->queue);
    }
    default:
        return OSObject::_Dispatch(self, rpc);
    }
}

bool IOService::init()
{
    if (!super::init()) {
        return false;
    }
    state_ = new State();
    // "A default queue is created by DriverKit for every new IOService
    // object with the name kIOServiceDefaultQueueName" (IOService.iig).
    IODispatchQueue* queue = nullptr;
    if (IODispatchQueue::Create(kIOServiceDefaultQueueName, 0, 0, &queue) != kIOReturnSuccess) {
        return false;
    }
    state_->queues[kIOServiceDefaultQueueName] = queue;
    return true;
}

void IOService::free()
{
    if (state_ != nullptr) {
        for (auto& entry : state_->queues) {
            entry.second->release();
        }
        OSSafeReleaseNULL(state_->properties);
        OSSafeReleaseNULL(state_->provider);
        delete state_;
        state_ = nullptr;
    }
    super::free();
}

kern_return_t IOService::Start(IOService* provider, OSDispatchMethod supermethod)
{
    IOService_Start_Invocation a = {provider};
    return OSObjectDispatchInvocation(this, supermethod, IOService_Start_ID, &a);
}

kern_return_t IOService::Stop(IOService* provider, OSDispatchMethod supermethod)
{
    IOService_Stop_Invocation a = {provider};
    return OSObjectDispatchInvocation(this, supermethod, IOService_Stop_ID, &a);
}

kern_return_t IOService::RegisterService(OSDispatchMethod supermethod)
{
    IOService_RegisterService_Invocation a = {0};
    return OSObjectDispatchInvocation(this, supermethod, IOService_RegisterService_ID, &a);
}

kern_return_t IOService::NewUserClient(uint32_t type, IOUserClient** userClient, OSDispatchMethod supermethod)
{
    IOService_NewUserClient_Invocation a = {type, userClient};
    return OSObjectDispatchInvocation(this, supermethod, IOService_NewUserClient_ID, &a);
}

kern_return_t IOService::Create(IOService* provider, const IOPropertyName propertiesKey, IOService** result,
                                OSDispatchMethod supermethod)
{
    IOService_Create_Invocation a = {provider, propertiesKey, result};
    return OSObjectDispatchInvocation(this, supermethod, IOService_Create_ID, &a);
}

kern_return_t IOService::Terminate(uint64_t options, OSDispatchMethod supermethod)
{
    IOService_Terminate_Invocation a = {options};
    return OSObjectDispatchInvocation(this, supermethod, IOService_Terminate_ID, &a);
}

kern_return_t IOService::CopyProperties(OSDictionary** properties, OSDispatchMethod supermethod)
{
    IOService_CopyProperties_Invocation a = {properties};
    return OSObjectDispatchInvocation(this, supermethod, IOService_CopyProperties_ID, &a);
}

kern_return_t IOService::SetProperties(OSDictionary* properties, OSDispatchMethod supermethod)
{
    IOService_SetProperties_Invocation a = {properties};
    return OSObjectDispatchInvocation(this, supermethod, IOService_SetProperties_ID, &a);
}

kern_return_t IOService::Start_Impl(IOService* provider)
{
    if (provider == nullptr) {
        return kIOReturnBadArgument;
    }
    std::lock_guard<std::mutex> guard(state_->lock);
    if (state_->provider != provider) {
        provider->retain();
        if (state_->provider != nullptr) {
            state_->provider->release();
        }
        state_->provider = provider;
    }
    state_->started = true;
    return kIOReturnSuccess;
}

kern_return_t IOService::Stop_Impl(IOService*)
{
    std::lock_guard<std::mutex> guard(state_->lock);
    state_->started = false;
    state_->registered = false;
    return kIOReturnSuccess;
}

kern_return_t IOService::RegisterService_Impl()
{
    std::lock_guard<std::mutex> guard(state_->lock);
    state_->registered = true;
    return kIOReturnSuccess;
}

kern_return_t IOService::NewUserClient_Impl(uint32_t, IOUserClient** userClient)
{
    // Without an override there is no connection (docs/driverkit.md §9-2).
    if (userClient != nullptr) {
        *userClient = nullptr;
    }
    return kIOReturnError;
}

kern_return_t IOService::Create_Impl(IOService* provider, const char* propertiesKey, IOService** result)
{
    if (result == nullptr) {
        return kIOReturnBadArgument;
    }
    *result = nullptr;
    // docs/driverkit.md §9-1: IOService::Create_Impl begins with this check.
    if (provider != this) {
        return kIOReturnUnsupported;
    }
    OSDictionary* mine = GetPropertiesInternal();
    OSDictionary* properties = mine == nullptr ? nullptr : OSDynamicCast(OSDictionary, mine->getObject(propertiesKey));
    if (properties == nullptr) {
        dextlink::runtimeError("%s::Create: no dictionary under \"%s\" in its properties",
                               getMetaClass()->getClassName(), propertiesKey == nullptr ? "(null)" : propertiesKey);
        return kIOReturnBadArgument;
    }
    OSString* className = OSDynamicCast(OSString, properties->getObject("IOUserClass"));
    if (className == nullptr) {
        dextlink::runtimeError("%s::Create: the \"%s\" dictionary has no IOUserClass string",
                               getMetaClass()->getClassName(), propertiesKey);
        return kIOReturnBadArgument;
    }
    const OSMetaClass* meta = OSMetaClass::forName(className->getCStringNoCopy());
    if (meta == nullptr) {
        dextlink::runtimeError("%s::Create: no class named %s is registered", getMetaClass()->getClassName(),
                               className->getCStringNoCopy());
        return kIOReturnNotFound;
    }
    if (!meta->isSubclassOf(IOService::metaClass())) {
        dextlink::runtimeError("%s::Create: %s is not an IOService", getMetaClass()->getClassName(),
                               className->getCStringNoCopy());
        return kIOReturnBadArgument;
    }
    auto* created = static_cast<IOService*>(meta->alloc());
    if (created == nullptr) {
        return kIOReturnNoMemory;
    }
    if (!created->init()) {
        created->release();
        return kIOReturnNoMemory;
    }
    created->SetPropertiesInternal(properties);
    // Attached before Start, as the kernel attaches a new object to its provider.
    created->SetProviderInternal(this);
    kern_return_t started = created->Start(this);
    if (started != kIOReturnSuccess) {
        created->release();
        return started;
    }
    *result = created;
    return kIOReturnSuccess;
}

kern_return_t IOService::Terminate_Impl(uint64_t)
{
    // Terminate is asynchronous in DriverKit and ends in Stop; here the host
    // stops the service (dextlink_host_stop) when it tears the dext down.
    return kIOReturnSuccess;
}

kern_return_t IOService::CopyProperties_Impl(OSDictionary** properties)
{
    if (properties == nullptr) {
        return kIOReturnBadArgument;
    }
    *properties = GetPropertiesInternal();
    if (*properties == nullptr) {
        return kIOReturnNotFound;
    }
    (*properties)->retain();
    return kIOReturnSuccess;
}

kern_return_t IOService::SetProperties_Impl(OSDictionary*)
{
    // "By default the method will fail" (IOService.iig).
    return kIOReturnUnsupported;
}

kern_return_t IOService::SetDispatchQueue_Impl(const char* name, IODispatchQueue* queue)
{
    if (name == nullptr || queue == nullptr) {
        return kIOReturnBadArgument;
    }
    queue->retain();
    std::lock_guard<std::mutex> guard(state_->lock);
    IODispatchQueue*& slot = state_->queues[name];
    if (slot != nullptr) {
        slot->release();
    }
    slot = queue;
    return kIOReturnSuccess;
}

kern_return_t IOService::CopyDispatchQueue_Impl(const char* name, IODispatchQueue** queue)
{
    if (name == nullptr || queue == nullptr) {
        return kIOReturnBadArgument;
    }
    std::lock_guard<std::mutex> guard(state_->lock);
    auto found = state_->queues.find(name);
    if (found == state_->queues.end()) {
        *queue = nullptr;
        return kIOReturnNotFound;
    }
    found->second->retain();
    *queue = found->second;
    return kIOReturnSuccess;
}

IOService* IOService::GetProvider() const
{
    std::lock_guard<std::mutex> guard(state_->lock);
    return state_->provider;
}

bool IOService::IsRegistered() const
{
    std::lock_guard<std::mutex> guard(state_->lock);
    return state_->registered;
}

bool IOService::IsStarted() const
{
    std::lock_guard<std::mutex> guard(state_->lock);
    return state_->started;
}

void IOService::SetPropertiesInternal(OSDictionary* properties)
{
    if (properties != nullptr) {
        properties->retain();
    }
    std::lock_guard<std::mutex> guard(state_->lock);
    if (state_->properties != nullptr) {
        state_->properties->release();
    }
    state_->properties = properties;
}

OSDictionary* IOService::GetPropertiesInternal() const
{
    std::lock_guard<std::mutex> guard(state_->lock);
    return state_->properties;
}

void IOService::SetProviderInternal(IOService* provider)
{
    if (provider != nullptr) {
        provider->retain();
    }
    std::lock_guard<std::mutex> guard(state_->lock);
    if (state_->provider != nullptr) {
        state_->provider->release();
    }
    state_->provider = provider;
}
