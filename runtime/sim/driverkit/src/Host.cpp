// The host ABI (dextlink_host.h).
#include <dextlink_host.h>

#include <DriverKit/DriverKit.h>

#include <cstring>
#include <mutex>
#include <string>

#include "host.h"
#include "internal.h"
#include "runtime.h"

namespace {

std::mutex gSinkLock;
dextlink_host_log_sink gLogSink = nullptr;
void* gLogContext = nullptr;
dextlink_host_completion_sink gCompletionSink = nullptr;
void* gCompletionContext = nullptr;

OSObject* object(dextlink_host_object* o)
{
    return reinterpret_cast<OSObject*>(o);
}

const OSObject* object(const dextlink_host_object* o)
{
    return reinterpret_cast<const OSObject*>(o);
}

dextlink_host_object* handle(OSObject* o)
{
    return reinterpret_cast<dextlink_host_object*>(o);
}

int32_t setValue(dextlink_host_object* dictionary, const char* key, OSObject* value)
{
    OSDictionary* dict = OSDynamicCast(OSDictionary, object(dictionary));
    if (dict == nullptr || key == nullptr || value == nullptr) {
        return kIOReturnBadArgument;
    }
    return dict->setObject(key, value) ? kIOReturnSuccess : kIOReturnNoMemory;
}

}  // namespace

bool dextlink::host::deliverLog(int type, const char* message)
{
    std::lock_guard<std::mutex> guard(gSinkLock);
    if (gLogSink == nullptr) {
        return false;
    }
    gLogSink(gLogContext, static_cast<uint8_t>(type), message);
    return true;
}

void dextlink::host::deliverCompletion(uint64_t reference, int32_t status, const uint64_t* values, uint32_t count)
{
    dextlink_host_completion_sink sink;
    void* context;
    {
        std::lock_guard<std::mutex> guard(gSinkLock);
        sink = gCompletionSink;
        context = gCompletionContext;
    }
    if (sink != nullptr) {
        sink(context, reference, status, values, count);
    }
}

extern "C" void dextlink_host_set_log_sink(dextlink_host_log_sink sink, void* context)
{
    std::lock_guard<std::mutex> guard(gSinkLock);
    gLogSink = sink;
    gLogContext = context;
}

extern "C" void dextlink_host_set_completion_sink(dextlink_host_completion_sink sink, void* context)
{
    std::lock_guard<std::mutex> guard(gSinkLock);
    gCompletionSink = sink;
    gCompletionContext = context;
}

extern "C" dextlink_host_object* dextlink_host_dictionary_create(void)
{
    return handle(OSDictionary::withCapacity(4));
}

extern "C" int32_t dextlink_host_dictionary_set_string(dextlink_host_object* dictionary, const char* key,
                                                       const char* value)
{
    OSString* string = OSString::withCString(value);
    int32_t result = setValue(dictionary, key, string);
    OSSafeReleaseNULL(string);
    return result;
}

extern "C" int32_t dextlink_host_dictionary_set_number(dextlink_host_object* dictionary, const char* key,
                                                       uint64_t value)
{
    OSNumber* number = OSNumber::withNumber(value, 64);
    int32_t result = setValue(dictionary, key, number);
    OSSafeReleaseNULL(number);
    return result;
}

extern "C" int32_t dextlink_host_dictionary_set_bool(dextlink_host_object* dictionary, const char* key, int value)
{
    return setValue(dictionary, key, OSBoolean::withBoolean(value != 0));
}

extern "C" int32_t dextlink_host_dictionary_set_object(dextlink_host_object* dictionary, const char* key,
                                                       dextlink_host_object* value)
{
    return setValue(dictionary, key, object(value));
}

extern "C" dextlink_host_object* dextlink_host_array_create(void)
{
    return handle(OSArray::withCapacity(4));
}

extern "C" int32_t dextlink_host_array_append(dextlink_host_object* array, dextlink_host_object* value)
{
    OSArray* target = OSDynamicCast(OSArray, object(array));
    if (target == nullptr || value == nullptr) {
        return kIOReturnBadArgument;
    }
    return target->setObject(object(value)) ? kIOReturnSuccess : kIOReturnNoMemory;
}

extern "C" dextlink_host_object* dextlink_host_string_create(const char* value)
{
    return value == nullptr ? nullptr : handle(OSString::withCString(value));
}

extern "C" dextlink_host_object* dextlink_host_number_create(uint64_t value)
{
    return handle(OSNumber::withNumber(value, 64));
}

extern "C" dextlink_host_object* dextlink_host_bool_create(int value)
{
    // The two booleans are shared constants; the host's release of its
    // reference is balanced by this retain.
    OSBoolean* boolean = OSBoolean::withBoolean(value != 0);
    boolean->retain();
    return handle(boolean);
}

extern "C" dextlink_host_object* dextlink_host_data_create(const void* bytes, size_t length)
{
    if (bytes == nullptr && length > 0) {
        return nullptr;
    }
    return handle(OSData::withBytes(bytes, length));
}

extern "C" int dextlink_host_class_exists(const char* class_name)
{
    return OSMetaClass::forName(class_name) != nullptr;
}

extern "C" const char* dextlink_host_class_name(const dextlink_host_object* o)
{
    return o == nullptr ? "" : object(o)->getMetaClass()->getClassName();
}

extern "C" int dextlink_host_is_kind_of(const dextlink_host_object* o, const char* class_name)
{
    const OSMetaClass* meta = OSMetaClass::forName(class_name);
    return o != nullptr && meta != nullptr && object(o)->getMetaClass()->isSubclassOf(meta);
}

extern "C" int32_t dextlink_host_service_start(dextlink_host_object* personality, dextlink_host_object** service)
{
    if (service == nullptr) {
        return kIOReturnBadArgument;
    }
    *service = nullptr;
    OSDictionary* properties = OSDynamicCast(OSDictionary, object(personality));
    if (properties == nullptr) {
        return kIOReturnBadArgument;
    }
    // The provider stub stands for the nub the personality matched: a
    // plain IOService, started on nothing.
    auto* provider = static_cast<IOService*>(IOService::metaClass()->alloc());
    if (provider == nullptr || !provider->init()) {
        if (provider != nullptr) {
            provider->release();
        }
        return kIOReturnNoMemory;
    }
    IOService* started = nullptr;
    kern_return_t ret = dextlink::host::startService(properties, provider, &started);
    provider->release();
    if (ret == kIOReturnSuccess) {
        *service = handle(started);
    }
    return ret;
}

kern_return_t dextlink::host::startService(OSDictionary* properties, IOService* provider, IOService** service)
{
    *service = nullptr;
    OSString* className = OSDynamicCast(OSString, properties->getObject("IOUserClass"));
    if (className == nullptr) {
        return kIOReturnBadArgument;
    }
    const OSMetaClass* meta = OSMetaClass::forName(className->getCStringNoCopy());
    if (meta == nullptr) {
        return kIOReturnNotFound;
    }
    if (!meta->isSubclassOf(IOService::metaClass()) || meta->isSubclassOf(IOUserClient::metaClass())) {
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
    created->SetProviderInternal(provider);
    kern_return_t started = kIOReturnSuccess;
    dextlink::host::runOnQueue(created, nullptr, [&] { started = created->Start(provider); });
    if (started != kIOReturnSuccess) {
        created->release();
        return started;
    }
    *service = created;
    return kIOReturnSuccess;
}

extern "C" int dextlink_host_service_is_registered(const dextlink_host_object* s)
{
    const IOService* service = OSDynamicCast(const IOService, object(s));
    return service != nullptr && service->IsRegistered();
}

extern "C" dextlink_host_object* dextlink_host_provider(const dextlink_host_object* s)
{
    const IOService* service = OSDynamicCast(const IOService, object(s));
    return service == nullptr ? nullptr : handle(service->GetProvider());
}

extern "C" int32_t dextlink_host_new_user_client(dextlink_host_object* s, uint32_t type,
                                                 dextlink_host_object** client)
{
    if (client == nullptr) {
        return kIOReturnBadArgument;
    }
    *client = nullptr;
    IOService* service = OSDynamicCast(IOService, object(s));
    if (service == nullptr) {
        return kIOReturnBadArgument;
    }
    IOUserClient* created = nullptr;
    kern_return_t result = kIOReturnSuccess;
    dextlink::host::runOnQueue(service, nullptr, [&] { result = service->NewUserClient(type, &created); });
    if (result != kIOReturnSuccess) {
        if (created != nullptr) {
            dextlink::runtimeError("%s::NewUserClient failed (0x%08x) but returned an object; released",
                                   service->getMetaClass()->getClassName(), static_cast<unsigned>(result));
            created->release();
        }
        return result;
    }
    // serviceNewUserClient refuses anything but a user client (docs/driverkit.md §9-2).
    if (OSDynamicCast(IOUserClient, static_cast<OSObject*>(created)) == nullptr) {
        if (created != nullptr) {
            created->release();
        }
        return kIOReturnUnsupported;
    }
    *client = handle(created);
    return kIOReturnSuccess;
}

extern "C" int32_t dextlink_host_stop(dextlink_host_object* s)
{
    IOService* service = OSDynamicCast(IOService, object(s));
    if (service == nullptr) {
        return kIOReturnBadArgument;
    }
    if (!service->IsStarted()) {
        return kIOReturnNotReady;
    }
    kern_return_t result = kIOReturnSuccess;
    dextlink::host::runOnQueue(service, nullptr, [&] { result = service->Stop(service->GetProvider()); });
    return result;
}

extern "C" void dextlink_host_release(dextlink_host_object* o)
{
    if (o != nullptr) {
        object(o)->release();
    }
}

namespace {

// A descriptor holding a copy of a client's buffer, as the kernel makes one
// for structures over 4096 bytes (docs/driverkit.md §3.2).
IOMemoryDescriptor* descriptorWith(const void* bytes, uint64_t length, bool readOnlyMappings)
{
    IOBufferMemoryDescriptor* buffer = nullptr;
    if (IOBufferMemoryDescriptor::Create(readOnlyMappings ? kIOMemoryDirectionOut : kIOMemoryDirectionIn, length,
                                         0, &buffer) != kIOReturnSuccess) {
        return nullptr;
    }
    if (bytes != nullptr) {
        memcpy(buffer->GetBackingAddress(), bytes, length);
    }
    buffer->SetMappingsReadOnlyInternal(readOnlyMappings);
    return buffer;
}

}  // namespace

extern "C" int32_t dextlink_host_external_method(dextlink_host_object* c, dextlink_host_call* call)
{
    IOUserClient* client = OSDynamicCast(IOUserClient, object(c));
    if (client == nullptr || call == nullptr) {
        return kIOReturnBadArgument;
    }
    // The iig stub's limits (docs/driverkit.md §1 "Limits"): more than 16 scalars is an overrun.
    if (call->scalar_input_count > kIOUserClientScalarArrayCountMax ||
        call->scalar_output_count > kIOUserClientScalarArrayCountMax ||
        (call->scalar_input_count > 0 && call->scalar_input == nullptr) ||
        (call->structure_input_length > 0 && call->structure_input == nullptr) ||
        (call->structure_output_capacity > 0 && call->structure_output_capacity != kIOUserClientVariableStructureSize &&
         (call->structure_output == nullptr || call->structure_output_buffer_length < call->structure_output_capacity))) {
        return call->scalar_input_count > kIOUserClientScalarArrayCountMax ||
                       call->scalar_output_count > kIOUserClientScalarArrayCountMax
                   ? kIOReturnOverrun
                   : kIOReturnBadArgument;
    }
    uint64_t scalarOutput[kIOUserClientScalarArrayCountMax] = {};
    IOUserClientMethodArguments arguments;
    memset(&arguments, 0, sizeof(arguments));
    arguments.version = kIOUserClientMethodArgumentsCurrentVersion;
    arguments.selector = call->selector;
    arguments.scalarInput = call->scalar_input;
    arguments.scalarInputCount = call->scalar_input_count;
    arguments.scalarOutput = scalarOutput;
    arguments.scalarOutputCount = call->scalar_output_count;
    arguments.structureOutputMaximumSize = call->structure_output_capacity;

    OSData* structureInput = nullptr;
    IOMemoryDescriptor* structureInputDescriptor = nullptr;
    IOMemoryDescriptor* structureOutputDescriptor = nullptr;
    OSAction* completion = nullptr;
    kern_return_t result = kIOReturnSuccess;
    const bool descriptorOutput = call->structure_output_capacity > 4096 &&
                                  call->structure_output_capacity != kIOUserClientVariableStructureSize;
    if (call->structure_input_length > 4096) {
        structureInputDescriptor = descriptorWith(call->structure_input, call->structure_input_length, true);
        result = structureInputDescriptor == nullptr ? kIOReturnNoMemory : kIOReturnSuccess;
    } else if (call->structure_input_length > 0) {
        structureInput = OSData::withBytes(call->structure_input, call->structure_input_length);
        result = structureInput == nullptr ? kIOReturnNoMemory : kIOReturnSuccess;
    }
    if (result == kIOReturnSuccess && descriptorOutput) {
        structureOutputDescriptor = descriptorWith(nullptr, call->structure_output_capacity, false);
        result = structureOutputDescriptor == nullptr ? kIOReturnNoMemory : kIOReturnSuccess;
    }
    if (result == kIOReturnSuccess && call->is_async) {
        result = OSAction::Create(client, dextlink::kHostCompletionMethodID, dextlink::kHostCompletionMethodID,
                                  sizeof(dextlink::HostCompletionReference), &completion);
        if (result == kIOReturnSuccess) {
            static_cast<dextlink::HostCompletionReference*>(completion->GetReference())->reference =
                call->async_reference;
        }
    }
    if (result == kIOReturnSuccess) {
        arguments.structureInput = structureInput;
        arguments.structureInputDescriptor = structureInputDescriptor;
        arguments.structureOutputDescriptor = structureOutputDescriptor;
        arguments.completion = completion;
        // The dispatch argument is NULL when called in the driver (docs/driverkit.md §2.1-5).
        dextlink::host::runOnQueue(client, kIOUserClientQueueNameExternalMethod, [&] {
            result = client->ExternalMethod(call->selector, &arguments, nullptr, nullptr, nullptr);
        });
    }
    call->structure_output_length = 0;
    call->structure_output_set = arguments.structureOutput != nullptr;
    if (result == kIOReturnSuccess) {
        // The dext may lower the count, never raise it (docs/driverkit.md §3.2-5).
        uint32_t count = arguments.scalarOutputCount < call->scalar_output_count ? arguments.scalarOutputCount
                                                                                 : call->scalar_output_count;
        if (call->scalar_output != nullptr && count > 0) {
            memcpy(call->scalar_output, scalarOutput, sizeof(uint64_t) * count);
        }
        call->scalar_output_count = count;
        if (arguments.structureOutput != nullptr) {
            size_t length = arguments.structureOutput->getLength();
            if (descriptorOutput || length > call->structure_output_capacity) {
                // §3.3-1, 2: longer than offered, or an OSData beside a descriptor.
                result = kIOReturnBadArgument;
            } else if (length > call->structure_output_buffer_length || (length > 0 && call->structure_output == nullptr)) {
                // A variable output the host's buffer cannot take: it learns the length.
                result = kIOReturnNoSpace;
                call->structure_output_length = length;
            } else if (length > 0) {
                memcpy(call->structure_output, arguments.structureOutput->getBytesNoCopy(), length);
                call->structure_output_length = length;
            }
        } else if (descriptorOutput) {
            memcpy(call->structure_output, structureOutputDescriptor->GetBackingAddress(),
                   call->structure_output_capacity);
            call->structure_output_length = call->structure_output_capacity;
        } else if (call->structure_output_capacity != kIOUserClientVariableStructureSize) {
            // No OSData: the client gets its capacity back (§3.3-1).
            call->structure_output_length = call->structure_output_capacity;
        }
    }
    // "The OSData instance will be released by the OS" (§3.3-1).
    OSSafeReleaseNULL(arguments.structureOutput);
    OSSafeReleaseNULL(structureInput);
    OSSafeReleaseNULL(structureInputDescriptor);
    OSSafeReleaseNULL(structureOutputDescriptor);
    // Retained only during ExternalMethod (§4.1-2): the dext retains it to keep it.
    OSSafeReleaseNULL(completion);
    return result;
}

extern "C" int32_t dextlink_host_copy_client_memory(dextlink_host_object* c, uint64_t type,
                                                    dextlink_host_memory* memory)
{
    IOUserClient* client = OSDynamicCast(IOUserClient, object(c));
    if (client == nullptr || memory == nullptr) {
        return kIOReturnBadArgument;
    }
    memset(memory, 0, sizeof(*memory));
    memory->fd = -1;
    uint64_t options = 0;
    IOMemoryDescriptor* descriptor = nullptr;
    kern_return_t result = kIOReturnSuccess;
    dextlink::host::runOnQueue(client, nullptr,
                               [&] { result = client->CopyClientMemoryForType(type, &options, &descriptor); });
    if (result != kIOReturnSuccess) {
        OSSafeReleaseNULL(descriptor);
        return result;
    }
    if (descriptor == nullptr) {
        return kIOReturnBadArgument;
    }
    uint64_t length = 0;
    descriptor->GetLength(&length);
    memory->fd = descriptor->GetBackingFD();
    memory->offset = descriptor->GetBackingOffset();
    memory->length = length;
    memory->read_only = (options & kIOUserClientMemoryReadOnly) != 0;
    // "One reference will be consumed by the caller" (docs/driverkit.md §5-1);
    // the fd stays valid because the dext answers with the same descriptor
    // for as long as the user client lives (§9-5).
    descriptor->release();
    return memory->fd < 0 ? kIOReturnNoMemory : kIOReturnSuccess;
}

extern "C" size_t dextlink_host_leak_report(char* buffer, size_t size)
{
    std::string report = dextlink::leakReport();
    if (buffer != nullptr && size > 0) {
        size_t n = report.size() < size - 1 ? report.size() : size - 1;
        memcpy(buffer, report.data(), n);
        buffer[n] = '\0';
    }
    return report.size();
}
