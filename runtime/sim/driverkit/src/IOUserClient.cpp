#include <DriverKit/IOUserClient.h>
#include <DriverKit/OSData.h>
#include <DriverKit/IOMemoryDescriptor.h>

#include "host.h"
#include "internal.h"
#include "runtime.h"

OSDefineMetaClassAndAbstractStructors(IOUserClient, IOService)

kern_return_t IOUserClient::_Dispatch(OSObject* self, const IORPC rpc)
{
    auto* client = static_cast<IOUserClient*>(self);
    switch (rpc.methodID) {
    case IOUserClient_AsyncCompletion_ID: {
        auto* a = static_cast<IOUserClient_AsyncCompletion_Invocation*>(rpc.arguments);
        client->IOUserClient::AsyncCompletion_Impl(a->action, a->status, a->asyncData, a->asyncDataCount);
        return kIOReturnSuccess;
    }
    // CopyClientMemoryForType_ID is not handled here: the method is `= 0` in
    // DriverKit's .iig, so only a subclass that implements it answers it.
    // For one that does not, the chain ends in OSObject::_Dispatch, which
    // answers kIOReturnUnsupported (UNVERIFIED: no source states the code a
    // Mac returns to IOConnectMapMemory64 then).
    default:
        return IOService::_Dispatch(self, rpc);
    }
}

bool IOUserClient::init()
{
    return super::init();
}

void IOUserClient::free()
{
    super::free();
}

kern_return_t IOUserClient::ExternalMethod(uint64_t, IOUserClientMethodArguments* arguments,
                                           const IOUserClientMethodDispatch* dispatch, OSObject* target,
                                           void* reference)
{
    if (arguments == nullptr) {
        return kIOReturnBadArgument;
    }
    dextlink_dispatch_checks checks = {};
    if (dispatch != nullptr) {
        checks.completion_exists = dispatch->checkCompletionExists;
        checks.scalar_input_count = dispatch->checkScalarInputCount;
        checks.structure_input_size = dispatch->checkStructureInputSize;
        checks.scalar_output_count = dispatch->checkScalarOutputCount;
        checks.structure_output_size = dispatch->checkStructureOutputSize;
    }
    dextlink_call_shape shape = {};
    shape.has_completion = arguments->completion != nullptr ? 1 : 0;
    shape.scalar_input_count = arguments->scalarInputCount;
    if (arguments->structureInputDescriptor != nullptr) {
        uint64_t length = 0;
        arguments->structureInputDescriptor->GetLength(&length);
        shape.structure_input_length = length;
    } else if (arguments->structureInput != nullptr) {
        shape.structure_input_length = arguments->structureInput->getLength();
    }
    shape.scalar_output_count = arguments->scalarOutputCount;
    shape.structure_output_maximum_size = arguments->structureOutputMaximumSize;
    kern_return_t checked = dextlink_driverkit_check_dispatch(dispatch != nullptr ? &checks : nullptr, &shape);
    if (checked != kIOReturnSuccess) {
        return checked;
    }
    if (dispatch->function == nullptr) {
        return kIOReturnNoCompletion;
    }
    return dispatch->function(target, reference, arguments);
}

void IOUserClient::AsyncCompletion(OSAction* action, IOReturn status, const IOUserClientAsyncArgumentsArray asyncData,
                                   uint32_t asyncDataCount, OSDispatchMethod supermethod)
{
    IOUserClient_AsyncCompletion_Invocation a = {action, status, asyncData, asyncDataCount};
    OSObjectDispatchInvocation(this, supermethod, IOUserClient_AsyncCompletion_ID, &a);
}

kern_return_t IOUserClient::CopyClientMemoryForType(uint64_t type, uint64_t* options, IOMemoryDescriptor** memory,
                                                    OSDispatchMethod supermethod)
{
    IOUserClient_CopyClientMemoryForType_Invocation a = {type, options, memory};
    return OSObjectDispatchInvocation(this, supermethod, IOUserClient_CopyClientMemoryForType_ID, &a);
}

void IOUserClient::AsyncCompletion_Impl(OSAction* action, IOReturn status, const uint64_t* asyncData,
                                        uint32_t asyncDataCount)
{
    // More than 16 values: the iig stub returns without sending anything
    // (docs/driverkit.md §4.1-3).
    if (asyncDataCount > kIOUserClientAsyncArgumentsCountMax) {
        return;
    }
    if (action == nullptr) {
        // DriverKit dereferences NULL here (docs/driverkit.md §4.1-3); this
        // runtime reports it instead of crashing the host.
        dextlink::runtimeError("%s::AsyncCompletion with a NULL action", getMetaClass()->getClassName());
        return;
    }
    if (action->GetTargetMsgID() != dextlink::kHostCompletionMethodID) {
        dextlink::runtimeError("%s::AsyncCompletion with an action that did not come with an async call",
                               getMetaClass()->getClassName());
        return;
    }
    if (asyncDataCount > 0 && asyncData == nullptr) {
        dextlink::runtimeError("%s::AsyncCompletion: %u values but no array", getMetaClass()->getClassName(),
                               asyncDataCount);
        return;
    }
    if (action->IsCancelled()) {
        return;
    }
    const auto* reference = static_cast<const dextlink::HostCompletionReference*>(action->GetReference());
    dextlink::host::deliverCompletion(reference->reference, status, asyncData, asyncDataCount);
}
